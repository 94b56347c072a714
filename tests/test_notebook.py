"""boards/pynq_z2/notebooks/face_detect.ipynb runs top to bottom (nbclient), on the C-sim backend."""

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "boards" / "pynq_z2" / "notebooks" / "face_detect.ipynb"


def test_face_detect_notebook_runs_on_csim(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="pip install nbformat nbclient ipykernel (the dev extra)")
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    settings = nb.cells[1]
    assert settings.source.startswith("BACKEND = None")
    settings.source = settings.source.replace("BACKEND = None", 'BACKEND = "csim"', 1)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "CSimBackend" in text or "csim backend" in text
    assert "face(s)" in text and "4 frames" in text and "inference" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2


def test_notebook_sample_photo_on_a_board_without_scikit_image(tmp_path, monkeypatch):
    """On the board (no scikit-image): deploy/'s sample.jpg is the first frame; with neither it nor a camera the
    notebook says what to do instead of stopping on an AssertionError."""
    import json
    import sys

    import cv2
    import numpy as np

    cells = json.loads(NOTEBOOK.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith("def sample_photo"))
    definition = source[:source.index("\nphoto = sample_photo()")]
    from fpgagen.synth.flow import write_sample_photo

    (tmp_path / "deploy").mkdir()
    write_sample_photo(tmp_path / "deploy" / "sample.jpg")  # what fpgagen bitstream puts in deploy/
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage.data -> ImportError
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: type("NoCamera", (), {
        "read": lambda self: (False, None), "release": lambda self: None})())
    scope = {"Path": Path, "CAMERA": None}
    exec(definition, scope)
    with pytest.raises(RuntimeError, match="put a photo named sample.jpg beside this notebook"):
        scope["sample_photo"]()
    monkeypatch.chdir(tmp_path / "deploy")
    photo = scope["sample_photo"]()
    assert photo.shape == (512, 512, 3) and photo.dtype == np.uint8
