"""Board descriptions: boards/<name>/board.yaml (part, clock, resources)."""

from __future__ import annotations

import yaml

from .errors import FpgagenError
from .resources import resource_dir
from .validate import check_board

BOARDS_DIR = resource_dir("boards")


def available_boards() -> list[str]:
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.yaml"))


def load_board(name: str) -> dict:
    path = BOARDS_DIR / name / "board.yaml"
    if not isinstance(name, str) or not name or "/" in name or name.startswith(".") or not path.is_file():
        raise FpgagenError(f"unknown board '{name}'", "--board", f"choose one of: {', '.join(available_boards())}")
    try:
        cfg = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FpgagenError(f"cannot read the board file ({first})", str(path),
                           "fix the YAML (see boards/pynq_z2/board.yaml)") from None
    return check_board(cfg, path)
