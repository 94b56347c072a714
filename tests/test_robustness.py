"""Hostile input, bounded in time: property-based fuzzing of models, foldings and board files, and builds raced,
interrupted and killed.

The invariant everywhere: a clean ``fpgagen: error:`` with exit status 2, or a build whose C-simulation equals
qonnx's execution of the very same file (integer codes, ``np.array_equal``). Never a traceback, a hang or a
silent difference; and an earlier build directory survives anything a later build goes through.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nets
import numpy as np
import onnx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import numpy_helper

import fpgagen
from fpgagen import board as board_module
from fpgagen.cli import main

ROOT = Path(__file__).resolve().parent.parent
FUZZ = settings(max_examples=int(os.environ.get("FPGAGEN_FUZZ_EXAMPLES", "12")), deadline=None, database=None,
                derandomize="FPGAGEN_FUZZ_RANDOM" not in os.environ,  # reproducible in make test
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SPECIAL = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, -1.0, 1e30, -1e30, 1e-30, 3.4e38, 0.37, 7.0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny net (3x8x8, one conv) exported once, with its float input on the pixel grid."""
    d = tmp_path_factory.mktemp("tiny")
    model = nets.tiny_net(seed=3)
    path = fpgagen.export(model, d / "tiny.onnx")
    return {"path": path, "bytes": path.read_bytes(), "x": nets.net_input(model, 7, (3, 3, 8, 8)), "dir": d}


_counter = itertools.count()


class Hang(Exception):
    pass


def _hang(signum, frame):
    raise Hang("fpgagen took more than 120 s: a hang")


def run_cli(*args) -> tuple[int, str]:
    """``fpgagen ARGS`` in process (fast); returns (exit status, stderr). An uncaught exception fails the test, and
    so does a call that takes more than 120 s."""
    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(120)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main([str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return rc, err.getvalue()


def assert_clean_error(rc: int, stderr: str) -> None:
    assert rc == 2, stderr
    assert stderr.strip().splitlines()[-1].startswith("fpgagen: error: "), stderr
    assert "Traceback" not in stderr


def qonnx_codes(path: Path, x: np.ndarray, acc) -> np.ndarray:
    """qonnx's own execution of the file, turned into the output quantizer's integer codes."""
    from qonnx.core.onnx_exec import execute_onnx

    from fpgagen.frontend import load_qonnx

    model = load_qonnx(path)
    name_in, name_out = model.graph.input[0].name, model.graph.output[0].name
    y = np.concatenate([execute_onnx(model, {name_in: x[i:i + 1]})[name_out] for i in range(len(x))])
    spec = acc.net.output
    assert spec.kind == "codes", spec.kind
    shape = (1, -1) + (1,) * (y.ndim - 2)
    scale = np.asarray(spec.scale, np.float64).reshape(shape) if np.size(spec.scale) > 1 else spec.scale
    zero = np.asarray(spec.offset, np.float64).reshape(shape) if np.size(spec.offset) > 1 else spec.offset
    return np.round(y.astype(np.float64) / scale + zero).astype(np.int64)


def check_build_or_clean_error(model_path: Path, x: np.ndarray, out: Path, *extra) -> str:
    rc, stderr = run_cli("build", model_path, "-o", out, *extra)
    if rc != 0:
        assert_clean_error(rc, stderr)
        return "error"
    acc = fpgagen.load(out, log=lambda m: None)
    got = acc.run(x, codes=True)
    assert np.array_equal(got, qonnx_codes(model_path, x, acc)), "C-sim differs from qonnx's execution"
    return "built"


# --- ONNX models -----------------------------------------------------------------------------------------------
def _float_initializers(proto) -> list[str]:
    return [i.name for i in proto.graph.initializer if numpy_helper.to_array(i).dtype.kind == "f"]


@st.composite
def onnx_mutation(draw):
    """One mutation of the exported tiny model, as (description, bytes)."""
    proto = onnx.ModelProto()
    proto.ParseFromString(TINY_BYTES[0])
    kind = draw(st.sampled_from(["value", "value", "element", "bits", "attribute", "quant_attr", "truncate",
                                 "flip"]))
    if kind in ("value", "element"):
        name = draw(st.sampled_from(_float_initializers(proto)))
        init = next(i for i in proto.graph.initializer if i.name == name)
        arr = numpy_helper.to_array(init).copy()
        value = draw(st.sampled_from(SPECIAL) | st.floats(allow_nan=True, allow_infinity=True, width=32))
        if kind == "value" or arr.size == 0:
            arr = np.full_like(arr, value)
        else:
            arr.reshape(-1)[draw(st.integers(0, arr.size - 1))] = value
        init.CopyFrom(numpy_helper.from_array(arr, name))
        return f"{kind} {name}={value!r}", proto.SerializeToString()
    if kind == "bits":
        quants = [n for n in proto.graph.node if n.op_type == "Quant"]
        node = draw(st.sampled_from(quants))
        value = draw(st.sampled_from([-1.0, 0.0, 1.0, 2.0, 3.0, 2.5, 8.0, 16.0, 17.0, 24.0, 32.0, float("nan")]))
        node.input[3] = f"fuzz_bits_{node.name}"
        proto.graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), node.input[3]))
        return f"bits {node.name}={value}", proto.SerializeToString()
    if kind == "attribute":
        nodes = [n for n in proto.graph.node if len(n.attribute)]
        node = draw(st.sampled_from(nodes))
        attr = node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
        if draw(st.booleans()):
            node.attribute.remove(attr)
            return f"removed {node.name}.{attr.name}", proto.SerializeToString()
        pos = draw(st.integers(0, len(attr.name) - 1))
        old = attr.name
        attr.name = old[:pos] + draw(st.sampled_from("z2_X")) + old[pos + 1:]
        return f"renamed {node.name}.{old} -> {attr.name}", proto.SerializeToString()
    if kind == "quant_attr":
        node = draw(st.sampled_from([n for n in proto.graph.node if n.op_type == "Quant"]))
        attr = draw(st.sampled_from(["signed", "narrow", "rounding_mode"]))
        for a in list(node.attribute):
            if a.name == attr:
                node.attribute.remove(a)
        if attr == "rounding_mode":
            node.attribute.append(onnx.helper.make_attribute(attr, draw(st.sampled_from(["FLOOR", "CEIL", "X"]))))
        else:
            node.attribute.append(onnx.helper.make_attribute(attr, draw(st.sampled_from([0, 1, 2, -1]))))
        return f"{node.name}.{attr} changed", proto.SerializeToString()
    data = bytearray(TINY_BYTES[0])
    pos = draw(st.integers(0, len(data) - 1))
    if kind == "truncate":
        return f"truncated at {pos}", bytes(data[:pos])
    data[pos] ^= draw(st.integers(1, 255))
    return f"byte {pos} flipped", bytes(data)


TINY_BYTES: list[bytes] = []  # filled by the test before hypothesis draws (strategies run outside fixtures)


def test_fuzz_onnx_models(tiny, tmp_path):
    TINY_BYTES[:] = [tiny["bytes"]]
    outcomes = []

    @FUZZ
    @given(onnx_mutation())
    def check(mutation):
        what, data = mutation
        path = tmp_path / f"m{next(_counter)}.onnx"
        path.write_bytes(data)
        outcomes.append((what, check_build_or_clean_error(path, tiny["x"], tmp_path / f"b{next(_counter)}")))

    check()
    kinds = {outcome for _, outcome in outcomes}
    print("fuzz outcomes:", outcomes)
    assert kinds == {"error", "built"}, outcomes  # it reaches the validators and the C-sim == qonnx comparison


def test_fuzzed_value_examples_that_must_build(tiny, tmp_path):
    """Hostile but legal values build, and C-sim equals qonnx: a BatchNorm gamma of 0 (constant channel), a
    negative gamma, a huge weight (clipped), an activation scale of 1e30 (everything rounds to zero)."""
    proto = onnx.load_from_string(tiny["bytes"])
    gamma = next(i.name for i in proto.graph.initializer if i.name.endswith(".weight") and len(i.dims) == 1)
    weight = next(i.name for i in proto.graph.initializer if len(i.dims) == 4)
    for name, value in ((gamma, 0.0), (gamma, -1.5), (weight, 1e30)):
        p = onnx.load_from_string(tiny["bytes"])
        init = next(i for i in p.graph.initializer if i.name == name)
        arr = numpy_helper.to_array(init).copy()
        arr.reshape(-1)[0] = value
        init.CopyFrom(numpy_helper.from_array(arr, name))
        path = tmp_path / f"legal{next(_counter)}.onnx"
        onnx.save(p, path)
        assert check_build_or_clean_error(path, tiny["x"], tmp_path / f"b{next(_counter)}") == "built", name


# --- folding files ---------------------------------------------------------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers(-5, 70) | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                     max_size=3), max_leaves=8)
layer_names = st.sampled_from(["conv_0", "conv_0_window", "conv_9", "layers", ""])
attr_names = st.sampled_from(["pe", "simd", "ifm_word", "fifo_depth", "mem_style", "dsp_pe", "lanes",
                              "fifo_style", "thr_style"])
attr_values = st.integers(-2, 40) | st.sampled_from([0.5, 2.0, float("nan"), float("inf"), "auto", "block",
                                                     "distributed", "registers", None, True, [], {}])
foldings = (json_values | st.dictionaries(layer_names, st.dictionaries(attr_names, attr_values, max_size=3),
                                          max_size=2)
            | st.dictionaries(st.just("layers"), st.dictionaries(layer_names, json_values, max_size=2)))


def test_fuzz_folding_files(tiny, tmp_path):
    @FUZZ
    @given(foldings, st.booleans())
    def check(folding, garble):
        path = tmp_path / f"f{next(_counter)}.json"
        text = json.dumps(folding)
        path.write_text(text[: len(text) // 2] if garble else text)
        check_build_or_clean_error(tiny["path"], tiny["x"], tmp_path / f"b{next(_counter)}", "--folding", path,
                                   "--no-verify")

    check()


# --- board files -----------------------------------------------------------------------------------------------
def _board_variants():
    good = yaml.safe_load((ROOT / "boards" / "pynq_z2" / "board.yaml").read_text())
    paths = [("clock_mhz",), ("resources", "LUT"), ("resources", "BRAM18"), ("resources",), ("ceilings", "LUT"),
             ("shell", "DSP"), ("name",), ("part",), ("ceilings",), ("shell",)]
    values = st.sampled_from([None, 0, -1, 1.5, float("nan"), float("inf"), "x", [], {}, True, 10**12, 0.5])
    return good, st.sampled_from(paths), values


@st.composite
def board_texts(draw):
    good, paths, values = _board_variants()
    doc = json.loads(json.dumps(good))
    mode = draw(st.sampled_from(["set", "set", "drop", "garble", "empty"]))
    if mode == "garble":
        text = yaml.safe_dump(doc)
        pos = draw(st.integers(0, len(text) - 1))
        return text[:pos] + draw(st.sampled_from([":", "[", "{", "\t", "- ", "'"])) + text[pos:]
    if mode == "empty":
        return draw(st.sampled_from(["", "[]", "42", "name: [unclosed"]))
    path = draw(paths)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if mode == "drop":
        target.pop(path[-1], None)
    else:
        target[path[-1]] = draw(values)
    return yaml.safe_dump(doc)


def test_fuzz_board_files(tiny, tmp_path, monkeypatch):
    boards = tmp_path / "boards"
    monkeypatch.setattr(board_module, "BOARDS_DIR", boards)

    @FUZZ
    @given(board_texts())
    def check(text):
        name = f"fuzz{next(_counter)}"
        (boards / name).mkdir(parents=True)
        (boards / name / "board.yaml").write_text(text)
        out = tmp_path / f"b{next(_counter)}"
        rc, stderr = run_cli("build", tiny["path"], "--board", name, "-o", out, "--no-verify")
        if rc != 0:
            assert_clean_error(rc, stderr)
        else:
            assert fpgagen.load(out).reference(tiny["x"], codes=True).shape == (3, 4, 8, 8)

    check()


# --- races, interrupts and kills -------------------------------------------------------------------------------
def tree_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def cli_process(*args, pause_at=None, pause_s=60):
    """The CLI in a child process; with ``pause_at`` it sleeps at that build step (tests/support/pausing_cli.py)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    command = ["-m", "fpgagen.cli"]
    if pause_at is not None:
        command = [str(ROOT / "tests" / "support" / "pausing_cli.py"), str(pause_at), str(pause_s)]
    return subprocess.Popen([sys.executable, *command, *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_pause(proc, timeout=60) -> str:
    """Read the child's stderr until it says it is pausing; returns what it printed."""
    seen, start = [], time.monotonic()
    for line in proc.stderr:
        seen.append(line)
        if "pausing at" in line:
            return "".join(seen)
        if time.monotonic() - start > timeout:
            break
    proc.kill()
    raise AssertionError("the build never reached its pause point:\n" + "".join(seen))


@pytest.fixture(scope="module")
def good_build(tiny, tmp_path_factory):
    """A finished build directory plus a second model (other weights) that later builds try to put there."""
    d = tmp_path_factory.mktemp("good")
    out = d / "build"
    acc = fpgagen.build(tiny["path"], out_dir=out, log=lambda m: None)
    other = fpgagen.export(nets.tiny_net(seed=11), d / "other.onnx")
    fpgagen.build(other, out_dir=d / "warm_cache", log=lambda m: None)  # its C-sim library is cached: fast kills
    return {"out": out, "codes": acc.run(tiny["x"], codes=True), "other": other}


def assert_intact(good_build, tiny, digest):
    out = good_build["out"]
    assert tree_digest(out) == digest
    assert np.array_equal(fpgagen.load(out, log=lambda m: None).run(tiny["x"], codes=True), good_build["codes"])


@pytest.mark.parametrize("sig,step", [(signal.SIGKILL, "1"), (signal.SIGKILL, "4"), (signal.SIGKILL, "6"),
                                      (signal.SIGKILL, "swapped"), (signal.SIGINT, "3"), (signal.SIGINT, "5")])
def test_interrupted_build_keeps_the_previous_directory(good_build, tiny, sig, step):
    out = good_build["out"]
    digest = tree_digest(out)
    proc = cli_process("build", good_build["other"], "-o", out, pause_at=step)
    wait_for_pause(proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    if step == "swapped" and tree_digest(out) != digest:
        # killed after the atomic exchange: the new build is in place, complete and consistent
        acc = fpgagen.load(out, log=lambda m: None)
        assert np.array_equal(acc.run(tiny["x"], codes=True), acc.reference(tiny["x"], codes=True))
        assert (out / "hls" / "tb_expected.bin").is_file()
    else:
        assert_intact(good_build, tiny, digest)  # load() recovers a directory a kill left aside mid-swap
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    if sig == signal.SIGINT:
        assert leftovers == [], leftovers
    # the next build takes over the stale lock and cleans up whatever the dead one left
    rc, stderr = run_cli("build", tiny["path"], "-o", out)
    assert rc == 0, stderr
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []
    assert np.array_equal(fpgagen.load(out, log=lambda m: None).run(tiny["x"], codes=True), good_build["codes"])


def test_concurrent_build_is_refused_and_the_first_completes(good_build, tiny):
    out = good_build["out"]
    first = cli_process("build", good_build["other"], "-o", out, pause_at="2", pause_s=3)
    wait_for_pause(first)
    rc, stderr = run_cli("build", tiny["path"], "-o", out)
    assert_clean_error(rc, stderr)
    assert f"another fpgagen build (pid {first.pid})" in stderr
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    other = fpgagen.load(out, log=lambda m: None)  # entirely the first build's: its network, its C++
    assert np.array_equal(other.run(tiny["x"], codes=True), other.reference(tiny["x"], codes=True))
    assert not np.array_equal(other.run(tiny["x"], codes=True), good_build["codes"])
    rc, stderr = run_cli("build", tiny["path"], "-o", out)  # restore for the other tests
    assert rc == 0, stderr


def test_rebuild_leaves_nothing_stale(good_build, tiny):
    out = good_build["out"]
    junk = out / "hls" / "layers" / "old_layer.h"
    junk.write_text("// from an earlier build\n")
    rc, stderr = run_cli("build", tiny["path"], "-o", out)
    assert rc == 0, stderr
    assert not junk.exists()


def test_no_verify_writes_a_complete_project(tiny, tmp_path):
    out = tmp_path / "nv"
    rc, stderr = run_cli("build", tiny["path"], "-o", out, "--no-verify")
    assert rc == 0, stderr
    acc = fpgagen.load(out, log=lambda m: None)
    for name in ("tb_input.bin", "tb_expected.bin", "top.cpp", "testbench.cpp", "run_hls.tcl"):
        assert (out / "hls" / name).is_file(), name
    # the vectors are the numpy reference's: C-sim of the same bytes gives the expected bytes
    data = np.fromfile(out / "hls" / "tb_input.bin", np.uint8).reshape(2, -1)
    expected = np.fromfile(out / "hls" / "tb_expected.bin", np.uint8).reshape(2, -1)
    assert np.array_equal(acc.lib.run(data), expected)


def test_swap_without_atomic_exchange_is_recovered(tmp_path, monkeypatch):
    """Where the filesystem has no RENAME_EXCHANGE the swap is two renames; killed between them, the previous
    build waits at .out.old-<pid> and the next lock holder (or load) puts it back."""
    from fpgagen import builddir

    out = tmp_path / "out"
    out.mkdir()
    (out / "build.json").write_text("old")
    monkeypatch.setattr(builddir, "_exchange", lambda a, b: False)

    class Killed(BaseException):
        pass

    def die(where):
        raise Killed(where)

    with builddir.BuildLock(out):
        tmp = builddir.temporary_dir(out)
        (tmp / "build.json").write_text("new")
        with pytest.raises(Killed):
            builddir.swap_in(tmp, out, pause=die)
    assert not out.exists() and len(list(tmp_path.glob(".out.old-*"))) == 1
    builddir.recover_unlocked(out)
    assert (out / "build.json").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the dead build's temporary is gone too
    with builddir.BuildLock(out):
        tmp = builddir.temporary_dir(out)
        (tmp / "build.json").write_text("new")
        builddir.swap_in(tmp, out)
    assert (out / "build.json").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_model_inside_the_build_directory_is_refused(tiny, tmp_path):
    out = tmp_path / "b"
    rc, stderr = run_cli("build", tiny["path"], "-o", out, "--no-verify")
    assert rc == 0, stderr
    inside = out / "model.onnx"
    inside.write_bytes(tiny["bytes"])
    assert_clean_error(*run_cli("build", inside, "-o", out, "--no-verify"))
    assert inside.read_bytes() == tiny["bytes"]


def test_csim_cache_key_ignores_where_the_project_lies(good_build, tmp_path):
    """The build compiles in a temporary directory; the cached library must be found from the final one."""
    import shutil

    from fpgagen.csim import compile_library

    shutil.copytree(good_build["out"] / "hls", tmp_path / "elsewhere" / "hls")
    logs = []
    first = compile_library(good_build["out"] / "hls", log=logs.append)
    assert compile_library(tmp_path / "elsewhere" / "hls", log=logs.append) == first
    assert all("cached" in m for m in logs), logs


def test_rebuild_keeps_what_it_does_not_write(tiny, tmp_path):
    """A bitstream's deploy/ (hours of Vivado) or a user's notes in a build directory are never deleted by a
    rebuild: the previous directory is kept whole beside the new one, and nothing of it leaks into the new one."""
    out = tmp_path / "b"
    assert run_cli("build", tiny["path"], "-o", out, "--no-verify")[0] == 0
    (out / "deploy").mkdir()
    (out / "deploy" / "fpgagen.bit").write_bytes(b"bits")
    (out / "cycles.png").write_bytes(b"png")  # written by 'fpgagen report': regenerated, not kept
    assert run_cli("build", tiny["path"], "-o", out, "--no-verify")[0] == 0
    assert not (out / "deploy").exists() and not (out / "cycles.png").exists()
    assert (tmp_path / "b.previous" / "deploy" / "fpgagen.bit").read_bytes() == b"bits"
    assert run_cli("build", tiny["path"], "-o", out, "--no-verify")[0] == 0  # nothing extra now: no new copy
    assert (tmp_path / "b.previous" / "deploy" / "fpgagen.bit").read_bytes() == b"bits"


def test_report_rewrite_is_atomic(good_build, monkeypatch, tmp_path):
    """'fpgagen report' replaces report.md and the plots whole: a failure while a plot is written leaves every file
    as it was and no temporary behind; write_atomic itself keeps the old file when its writer fails."""
    from fpgagen import builddir, report

    build = tmp_path / "copy"
    shutil.copytree(good_build["out"], build)
    before = {p.name: p.read_bytes() for p in build.iterdir() if p.is_file()}

    def broken_savefig(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        report.report(build)
    after = {p.name: p.read_bytes() for p in build.iterdir() if p.is_file()}
    assert after == before
    target = tmp_path / "kept.txt"
    target.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("new, half")
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        builddir.write_atomic(target, writer=half_then_fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    builddir.write_atomic(target, "new")
    assert target.read_text() == "new"
