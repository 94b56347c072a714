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


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory):
    """The tiny face-detector-shaped build of tests/runtime_nets.py, built once for the modules that share it."""
    from runtime_nets import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny_detector"))
