"""Board descriptions: boards/<name>/board.yaml (part, clock, resources)."""

from __future__ import annotations

import yaml

from .errors import FpgagenError
from .resources import resource_dir

BOARDS_DIR = resource_dir("boards")


def available_boards() -> list[str]:
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.yaml"))


def load_board(name: str) -> dict:
    path = BOARDS_DIR / name / "board.yaml"
    if not path.is_file():
        raise FpgagenError(f"unknown board '{name}'", "--board", f"choose one of: {', '.join(available_boards())}")
    return yaml.safe_load(path.read_text())
