import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))  # the shared helpers: nets.py, checks.py, ...

# Keep compiled C-sim libraries inside the test session unless the user points the cache elsewhere.
os.environ.setdefault("FPGAGEN_CACHE", str(Path(__file__).resolve().parent.parent / "build" / ".cache"))


@pytest.fixture(scope="session")
def quiet():
    return lambda msg: None
