"""The board's runtime as a distribution of its own, ``fpgagen-runtime``: fpgagen's Python modules with metadata that
asks only for what a PYNQ 3.x image already has, so that on the board

    pip3 install fpgagen_runtime-0.1.0-py3-none-any.whl

installs this one wheel and nothing else: never torch, never a numpy >= 2 over the image's numpy 1.x (the image's
pynq is built against it), never PyPI's pynq 4 (it dropped the Z2). The ``fpgagen`` distribution
(pyproject.toml) pins the compiler's stack (torch, brevitas, qonnx, numpy >= 2, ...) and is for the PC only.

The runtime needs numpy, OpenCV and the image's pynq, and imports none of the compiler's dependencies
(tests/test_runtime.py runs it with them blocked; tests/test_board_install.py installs this wheel into a
Python 3.10 + numpy 1.x environment and runs it there). OpenCV is the image's ``cv2``; it is an extra
(``[opencv]``: opencv-python-headless) for an image without one, because pip does not see an OpenCV that was not
installed by pip and would otherwise install a second one.

``python -m fpgagen.synth.runtime_wheel [-o DIR]`` (``make runtime-wheel``) writes the wheel; ``fpgagen bitstream``
puts one into deploy/. It is built with pip and setuptools from the installed fpgagen package.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .. import __version__
from ..errors import FpgagenError

DIST_NAME = "fpgagen-runtime"
RUNTIME_REQUIRES = ["numpy>=1.21"]  # the oldest numpy the runtime is tested with (numpy 1.21.6, Python 3.10)
OPENCV_EXTRA = ["opencv-python-headless>=4.5"]
# Not on the board: the compiler's data (its templates, board files and the training checkpoints).
EXCLUDED = ("__pycache__", "*.pyc", "templates", "boards", "checkpoints")

PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"
description = "fpgagen's host runtime for a PYNQ board: backends, detector, pipeline, stream server (no compiler)"
requires-python = ">=3.10"
license = {{ text = "Apache-2.0" }}
dependencies = {requires}

[project.optional-dependencies]
opencv = {opencv}

[project.scripts]
fpgagen = "fpgagen.cli:main"

[tool.setuptools.packages.find]
include = ["fpgagen", "fpgagen.*"]
"""


def wheel_name() -> str:
    return f"{DIST_NAME.replace('-', '_')}-{__version__}-py3-none-any.whl"


def _package_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def _sources_digest(package: Path) -> str:
    digest = hashlib.sha256(PYPROJECT.encode() + repr((RUNTIME_REQUIRES, OPENCV_EXTRA, __version__)).encode())
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if not set(rel.parts) & {"templates", "boards", "checkpoints", "__pycache__"}:
            digest.update(rel.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_runtime_wheel(out_dir: str | Path, log=print) -> Path:
    """Write out_dir/fpgagen_runtime-<version>-py3-none-any.whl (from a cache keyed by the sources) and return it."""
    out_dir = Path(out_dir)
    package = _package_dir()
    cache_root = Path(os.environ.get("FPGAGEN_CACHE") or Path.home() / ".cache" / "fpgagen")
    cached = cache_root / "runtime-wheel" / _sources_digest(package) / wheel_name()
    recorded = cached.with_name(cached.name + ".sha256")
    if not (cached.is_file() and recorded.is_file() and recorded.read_text().strip() == _sha256(cached)):
        staging = Path(tempfile.mkdtemp(prefix="fpgagen_runtime_wheel_"))
        try:
            shutil.copytree(package, staging / "fpgagen", ignore=shutil.ignore_patterns(*EXCLUDED))
            (staging / "pyproject.toml").write_text(PYPROJECT.format(
                name=DIST_NAME, version=__version__, requires=repr(RUNTIME_REQUIRES).replace("'", '"'),
                opencv=repr(OPENCV_EXTRA).replace("'", '"')))
            built = staging / "dist"
            proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                                   "-w", str(built), str(staging)], capture_output=True, text=True, cwd=staging)
            if proc.returncode != 0 or not (built / wheel_name()).is_file():
                raise FpgagenError(f"pip could not build the runtime wheel: {proc.stderr.strip()[-800:]}",
                                   str(staging), "install pip, setuptools and wheel into this Python")
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            shutil.copy2(built / wheel_name(), tmp)
            os.replace(tmp, cached)  # atomic: a concurrent build never sees half a wheel
            tmp.write_text(_sha256(cached) + "\n")
            os.replace(tmp, recorded)  # checked before every reuse: a damaged cached wheel is rebuilt
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / wheel_name()
    shutil.copy2(cached, target)
    log(f"[runtime wheel] {target} (requires {', '.join(RUNTIME_REQUIRES)}; on the board: pip3 install {target.name})")
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fpgagen.synth.runtime_wheel", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--out", default="dist", help="output directory (default dist/)")
    args = p.parse_args(argv)
    try:
        build_runtime_wheel(args.out)
    except FpgagenError as exc:
        print(f"fpgagen: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
