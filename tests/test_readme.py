"""The README's Python example is run as written (in a scratch directory) and must do what it says: the
C-simulated accelerator returns exactly what the Brevitas model returns."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first ```python block under "## Use"."""
    text = README.read_text()
    use = text[text.index("\n## Use"):]
    match = re.search(r"```python\n(.*?)```", use, re.S)
    if match is None:
        raise ValueError("README.md has no python example under '## Use'")
    return match.group(1)


def test_readme_example_runs_and_is_bit_exact(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_example(), str(README), "exec"), namespace)  # noqa: S102 - our own README
    y, y_ref, y_torch, codes = (namespace[k] for k in ("y", "y_ref", "y_torch", "codes"))
    assert y.dtype == np.float32 and y.shape == y_torch.shape == (4, 10)
    assert np.array_equal(y, y_torch)
    assert np.array_equal(y, y_ref)
    assert np.issubdtype(codes.dtype, np.integer) and len(np.unique(codes)) > 8
    assert (tmp_path / "build" / "my_net" / "report.json").is_file()
    assert os.path.isfile(tmp_path / "my_net.onnx")
