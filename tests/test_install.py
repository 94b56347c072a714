"""A non-editable install works: ``pip install --target`` puts the package (with templates/ and boards/ inside it)
in a fresh folder, and a tiny network builds from there, outside the repository, bit-exact in C-simulation."""

import os
import subprocess
import sys
from pathlib import Path

import nets
import pytest

import fpgagen

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
from pathlib import Path
import fpgagen
from fpgagen import codegen, board
target = Path(sys.argv[1]).resolve()
for path in (fpgagen.__file__, codegen.TEMPLATE_DIR, board.BOARDS_DIR):
    assert Path(path).resolve().is_relative_to(target), (path, target)
acc = fpgagen.build(sys.argv[2], out_dir=sys.argv[3], log=lambda msg: None)  # verify=True: C-sim == reference
print("built", acc.build_dir, sorted(p.name for p in (acc.build_dir / "hls").glob("fg_*.h")))
"""


@pytest.mark.slow  # about 40 s: pip builds the package, then g++ compiles the C-sim
def test_non_editable_install_builds_a_network(tmp_path):
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert (target / "fpgagen" / "templates" / "hls" / "mvau.h.j2").is_file()
    assert (target / "fpgagen" / "boards" / "pynq_z2" / "board.yaml").is_file()
    model = fpgagen.export(nets.fc_net(seed=3), tmp_path / "fc.onnx")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(target), str(model), str(work / "build")],
                          capture_output=True, text=True, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "built" in proc.stdout and "fg_mvau.h" in proc.stdout


@pytest.mark.slow  # about 15 s: pip builds the wheel
def test_wheel_builds_without_setuptools_warnings_and_carries_every_data_file(tmp_path):
    """`make demo`/`make setup` printed ~310 lines of setuptools warnings (data folders declared as data of a
    parent package, the licence as a TOML table): none are left, and every template, board file, notebook and
    checkpoint is in the wheel (the Vivado template was missing before)."""
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                           "-w", str(tmp_path / "wheel"), str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    output = proc.stdout + proc.stderr
    assert "BuildBackendWarning" not in output and "SetuptoolsDeprecationWarning" not in output, output[-3000:]
    names = set(zipfile.ZipFile(next((tmp_path / "wheel").glob("fpgagen-*.whl"))).namelist())
    wanted = {f"fpgagen/{p.relative_to(ROOT).as_posix()}" for folder in ("templates", "boards")
              for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    wanted |= {f"fpgagen/checkpoints/{p.name}" for p in (ROOT / "fpgagen" / "checkpoints").iterdir()}
    assert wanted <= names, sorted(wanted - names)
