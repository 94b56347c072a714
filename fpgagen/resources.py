"""Where fpgagen's data folders are: the Jinja templates and static kernels (``templates/``) and the board
descriptions (``boards/``). They live at the repository's top level and are installed into the package as
``fpgagen/templates`` and ``fpgagen/boards`` (pyproject.toml / setup.py map them), so both a source checkout (editable
or on PYTHONPATH) and a plain ``pip install .`` find them."""

from __future__ import annotations

from pathlib import Path

from .errors import FpgagenError

PACKAGE = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """``name`` ("templates" or "boards") inside the installed package, else at the top of the source tree."""
    for root in (PACKAGE / name, PACKAGE.parent / name):
        if root.is_dir():
            return root
    raise FpgagenError(f"fpgagen's '{name}' folder is missing", str(PACKAGE),
                       "reinstall fpgagen (pip install .) or run it from a complete source checkout")
