"""Installing the runtime on a PYNQ 3.x image: the ``fpgagen-runtime`` wheel (fpgagen/synth/runtime_wheel.py) asks
only for what the image has (numpy 1.x; OpenCV and pynq are the image's), so ``pip3 install <wheel>`` installs
nothing else and never torch. The slow test installs it with that one command into a Python 3.10 + numpy 1.21.6 +
OpenCV 4.6 environment (the image's versions; built once from PyPI into the fpgagen cache) and runs the board
runtime there with the stand-in pynq of tests/test_runtime.py, against the C-simulation."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import zipfile
from email.parser import Parser
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from runtime_nets import TINY_ANCHORS, TINY_SIZE, build_tiny
from test_runtime import BOARD_SCRIPT

from fpgagen.runtime.backends import ReferenceBackend, write_runtime_spec
from fpgagen.runtime.model import write_detector_json
from fpgagen.synth.runtime_wheel import build_runtime_wheel, wheel_name

# A PYNQ 3.0.x image for the PYNQ-Z2: Ubuntu 22.04, Python 3.10, numpy 1.21 (shared/facts.md); OpenCV 4.6 is the
# oldest opencv-python-headless with wheels for that pair.
BOARD_PYTHON = "3.10"
BOARD_PACKAGES = ["numpy==1.21.6", "opencv-python-headless==4.6.0.66"]
COMPILER_ONLY = {"torch", "brevitas", "qonnx", "onnx", "onnxruntime", "onnxoptimizer", "scipy", "jinja2", "hls4ml",
                 "matplotlib", "scikit-image", "pynq"}


def metadata(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    msg = Parser().parsestr(text)
    return {"name": msg["Name"], "python": msg["Requires-Python"], "requires": msg.get_all("Requires-Dist") or []}


def test_runtime_wheel_asks_for_nothing_the_image_lacks(tmp_path):
    """The wheel's metadata: numpy 1.21 (the image's) satisfies it, no numpy >= 2, no torch or other compiler
    dependency; OpenCV only as an extra; Python 3.10 allowed. No templates, boards or checkpoints inside."""
    wheel = build_runtime_wheel(tmp_path, log=lambda m: None)
    assert wheel.name == wheel_name() == "fpgagen_runtime-0.1.0-py3-none-any.whl"
    meta = metadata(wheel)
    assert meta["name"] == "fpgagen-runtime" and "3.10.0" in Requirement(f"x{meta['python']}").specifier
    required = [Requirement(r) for r in meta["requires"] if "extra ==" not in r]
    assert [r.name for r in required] == ["numpy"]
    assert "1.21.6" in required[0].specifier and "1.21.5" in required[0].specifier
    extras = [Requirement(r) for r in meta["requires"] if "extra ==" in r]
    assert {r.name for r in extras} == {"opencv-python-headless"}
    assert not {Requirement(r).name for r in meta["requires"]} & COMPILER_ONLY
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "fpgagen/runtime/backends.py" in names and "fpgagen/detect/decode.py" in names
    assert not [n for n in names if n.split("/")[1:2] in (["templates"], ["boards"], ["checkpoints"])]


def board_python() -> str | None:
    """A Python 3.10 here: on PATH, from pyenv, or from uv."""
    found = shutil.which(f"python{BOARD_PYTHON}")
    if found and subprocess.run([found, "-c", "import venv"], capture_output=True).returncode == 0:
        return found
    hits = sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{BOARD_PYTHON}.*/bin/python{BOARD_PYTHON}")))
    if hits:
        return hits[-1]
    if shutil.which("uv"):
        proc = subprocess.run(["uv", "python", "find", BOARD_PYTHON], capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.strip()
    return None


def board_venv() -> Path:
    """A venv with the image's Python and packages, built once into the fpgagen cache (checked before reuse)."""
    python = board_python()
    if python is None:
        pytest.skip(f"no Python {BOARD_PYTHON} on this machine (pyenv, PATH or uv)")
    cache = Path(os.environ.get("FPGAGEN_CACHE") or Path.home() / ".cache" / "fpgagen")
    venv = cache / "board-venv" / f"py{BOARD_PYTHON}-{'-'.join(BOARD_PACKAGES)}"
    probe = "import sys, numpy, cv2; print('%d.%d' % sys.version_info[:2], numpy.__version__, cv2.__version__)"
    want = f"{BOARD_PYTHON} {BOARD_PACKAGES[0].split('==')[1]} {BOARD_PACKAGES[1].split('==')[1].rsplit('.', 1)[0]}"
    check = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True) \
        if (venv / "bin" / "python").exists() else None
    if check is None or check.stdout.strip() != want:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *BOARD_PACKAGES], capture_output=True,
                             text=True)
        assert pip.returncode == 0, pip.stderr[-2000:]
        check = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True)
        assert check.stdout.strip() == want, check.stdout + check.stderr
    return venv


def freeze(venv: Path) -> set[str]:
    out = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


@pytest.mark.slow  # first run: a venv from PyPI (numpy, OpenCV: ~1 min); then ~40 s (the tiny build, the install)
def test_runtime_installs_with_one_command_and_runs_on_python310_numpy1(tmp_path):
    venv = board_venv()
    pip = str(venv / "bin" / "pip")
    subprocess.run([pip, "uninstall", "-q", "-y", "fpgagen-runtime"], capture_output=True)
    before = freeze(venv)
    wheel = build_runtime_wheel(tmp_path / "dist", log=lambda m: None)
    try:
        # the one documented command; --no-index proves it needs nothing from PyPI: it installs nothing else
        proc = subprocess.run([pip, "install", "--no-index", str(wheel)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        after = freeze(venv)
        assert {p.split("==")[0] for p in after - before} == {"fpgagen-runtime"} and before - after == set()
        assert subprocess.run([pip, "check"], capture_output=True, text=True).returncode == 0

        tiny = build_tiny(tmp_path / "tiny")
        deploy = tmp_path / "deploy"
        deploy.mkdir()
        write_runtime_spec(tiny).rename(deploy / "runtime.json")
        write_detector_json(deploy, TINY_ANCHORS, TINY_SIZE)
        (deploy / "face.bit").write_bytes(b"bit")
        frames = np.random.default_rng(5).integers(0, 256, (3, TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)
        np.save(tmp_path / "frames.npy", frames)
        np.save(tmp_path / "want.npy", ReferenceBackend(tiny).infer(frames))
        (tmp_path / "board.py").write_text(BOARD_SCRIPT)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        python = str(venv / "bin" / "python")
        where = subprocess.run([python, "-c", "import fpgagen, numpy, sys; print(fpgagen.__file__, numpy.__version__, "
                                "'%d.%d' % sys.version_info[:2])"], capture_output=True, text=True, env=env,
                               cwd=tmp_path)
        installed, numpy_version, version = where.stdout.split()
        assert Path(installed).is_relative_to(venv) and numpy_version == "1.21.6" and version == BOARD_PYTHON
        run = subprocess.run([python, str(tmp_path / "board.py"), str(deploy), str(tiny.lib.path),
                              str(tmp_path / "frames.npy"), str(tmp_path / "want.npy"), str(tmp_path / "out")],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "board path OK 3 []" in run.stdout
        cli = subprocess.run([str(venv / "bin" / "fpgagen"), "serve", "--help"], capture_output=True, text=True,
                             env=env, cwd=tmp_path)
        assert cli.returncode == 0 and "--camera" in cli.stdout, cli.stderr[-2000:]
    finally:
        subprocess.run([pip, "uninstall", "-q", "-y", "fpgagen-runtime"], capture_output=True)

