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
