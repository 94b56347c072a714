"""``fpgagen bitstream``: a built accelerator -> C-sim-verified HLS project -> Vitis HLS IP -> Vivado block design
-> fpgagen.bit/.hwh in build/<net>/deploy/, on a local Xilinx install or in the docker/ image.

Every step writes its log into the build directory and a finished step is not redone (the HLS export is keyed
by a hash of the sources it was made from). Without the tools it stops after writing everything they need, with
a message that says what to run; it never writes a bitstream of its own.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import jinja2

from ..codegen import COSIM_DIR
from ..errors import FpgagenError
from ..packing import StreamGeometry
from ..runtime.dma import transfer_bytes

DOCKER_IMAGE = os.environ.get("FPGAGEN_DOCKER_IMAGE", "fpgagen-xilinx:2022.1")
# Board files as Vivado names them, for a board.yaml without a vivado.board_part (both shipped boards have one).
BOARD_PARTS = {"pynq_z2": "tul.com.tw:pynq-z2:part0:*", "pynq_z1": "www.digilentinc.com:pynq-z1:part0:*"}


def board_part_pattern(board: dict) -> str | None:
    return (board.get("vivado") or {}).get("board_part") or BOARD_PARTS.get(board["name"])
HLS_INSTALL_GLOBS = ["/tools/Xilinx/Vitis_HLS/*/bin", "/opt/Xilinx/Vitis_HLS/*/bin", "/tools/Xilinx/Vitis/*/bin",
                     "/opt/Xilinx/Vitis/*/bin"]
VIVADO_INSTALL_GLOBS = ["/tools/Xilinx/Vivado/*/bin", "/opt/Xilinx/Vivado/*/bin"]


def dma_length_width(frame_bytes: int) -> int:
    """Bits of the AXI DMA's buffer-length register so that one transfer carries ``frame_bytes`` (the runtime's
    largest transfer: fpgagen.runtime.dma.transfer_bytes, several frames): the register holds at most
    2^bits - 1 bytes; PG021 allows 8 to 26 bits and defaults to 14 (16 KiB), which stays the floor."""
    bits = max(14, int(frame_bytes).bit_length())
    if bits > 26:
        raise FpgagenError(f"a frame of {frame_bytes:,} bytes exceeds the AXI DMA's largest transfer "
                           f"(2^26 - 1 bytes)", "the block design", "use a smaller input resolution")
    return bits


def render_block_design(out_dir: Path, top: str, io: StreamGeometry, board: dict, ip_repo: str) -> Path:
    """Write out_dir/block_design.tcl for the board (PS7, AXI DMA on HP0, the HLS IP, status FIFO)."""
    pattern = board_part_pattern(board)
    if pattern is None:
        raise FpgagenError(f"no block design for board '{board['name']}' (its board.yaml names no vivado.board_part)",
                           "fpgagen bitstream", f"supported: {', '.join(BOARD_PARTS)}")
    from ..codegen import TEMPLATE_DIR  # templates/hls; the Vivado templates sit beside it

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR.parent / "vivado")),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    length_width = dma_length_width(transfer_bytes(io.in_frame_bytes, io.out_frame_bytes))
    available = {"LUT": board["resources"]["LUT"], "FF": board["resources"]["FF"],
                 "BRAM36": board["resources"]["BRAM18"] // 2, "DSP": board["resources"]["DSP"]}
    text = env.get_template("block_design.tcl.j2").render(
        net_name=top.removesuffix("_top"), top=top, io=io, board=board, board_part_pattern=pattern,
        board_title=board.get("title", board["name"]),
        board_files=(board.get("vivado") or {}).get("board_files", f"the {board['name']} board files"),
        ip_repo=ip_repo, length_width=length_width, hp_port="HP0", available=available)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "block_design.tcl"
    path.write_text(text)
    return path


# --- finding the tools ----------------------------------------------------------------------------------------
def _candidates(name: str, env_vars: tuple[str, ...], globs: list[str]) -> tuple[str | None, list[str]]:
    looked = ["PATH"]
    found = shutil.which(name)
    for var in env_vars:
        if os.environ.get(var):
            looked.append(f"${var}/bin")
            path = Path(os.environ[var]) / "bin" / name
            if found is None and path.is_file():
                found = str(path)
    for pattern in globs:
        looked.append(pattern)
        if found is None:
            hits = sorted(glob.glob(str(Path(pattern) / name)))
            found = hits[-1] if hits else None
    return found, looked


def find_tools() -> dict:
    """{"hls": [command...] or None, "vivado": path or None, "looked": [...]}. Vitis HLS is `vitis_hls`; from
    2024.2 on it may only be `vitis-run --mode hls`."""
    hls, looked_hls = _candidates("vitis_hls", ("XILINX_HLS",), HLS_INSTALL_GLOBS)
    hls_cmd = [hls, "-f", "run_hls.tcl"] if hls else None
    if hls_cmd is None:
        run, _ = _candidates("vitis-run", ("XILINX_VITIS",), HLS_INSTALL_GLOBS)
        hls_cmd = [run, "--mode", "hls", "--tcl", "run_hls.tcl"] if run else None
    vivado, looked_viv = _candidates("vivado", ("XILINX_VIVADO",), VIVADO_INSTALL_GLOBS)
    return {"hls": hls_cmd, "vivado": vivado, "looked": list(dict.fromkeys(looked_hls + looked_viv))}


def docker_engine() -> tuple[bool, str]:
    """Whether a Docker engine answers (a `docker` client alone is not enough)."""
    client = shutil.which("docker")
    if client is None:
        return False, "no docker command"
    try:
        proc = subprocess.run([client, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                              timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"docker info failed ({exc})"
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no message"])[0][:200]
        return False, f"a docker client but no engine (docker info: {first})"
    return True, f"docker engine {proc.stdout.strip()}"


def docker_image_present(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


# --- running a tool -------------------------------------------------------------------------------------------
def run_tool(cmd: list[str], cwd: Path, log_path: Path, label: str, log, env: dict | None = None) -> None:
    """Run a tool, its whole output into log_path; show its phase lines, errors and a heartbeat with the elapsed
    time, so an hour-long Vivado run is visibly alive."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log(f"[{label}] {' '.join(cmd)}  (in {cwd}; log {log_path})")
    done = threading.Event()

    def heartbeat():
        while not done.wait(60):
            log(f"[{label} {_elapsed(start)}] still running; tail -f {log_path}")

    beat = threading.Thread(target=heartbeat, daemon=True)
    with open(log_path, "w") as sink:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, **(env or {})}, bufsize=1)
        except OSError as exc:
            raise FpgagenError(f"cannot start {cmd[0]} ({exc})", str(cwd), "check the tool installation") from None
        beat.start()
        try:
            for line in proc.stdout:
                sink.write(line)
                sink.flush()
                text = line.rstrip()
                if text.startswith("FPGAGEN-PHASE") or text.startswith(("ERROR:", "CRITICAL WARNING:")):
                    log(f"[{label} {_elapsed(start)}] {text.removeprefix('FPGAGEN-PHASE ')}")
            rc = proc.wait()
        finally:
            done.set()
    if rc != 0:
        raise FpgagenError(f"{label} failed (exit {rc}) after {_elapsed(start)}", str(log_path),
                           "read the log's first ERROR line; fix and rerun (finished steps are kept)")
    log(f"[{label}] finished in {_elapsed(start)}")


def _elapsed(start: float) -> str:
    s = int(time.perf_counter() - start)
    return f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"


# --- the flow -------------------------------------------------------------------------------------------------
def hls_sources_digest(hls_dir: Path, with_cosim: bool = True) -> str:
    digest = hashlib.sha256()
    bases = [hls_dir, hls_dir.parent / COSIM_DIR / "hls"] if with_cosim else [hls_dir]
    for base in bases:  # run_hls.tcl co-simulates the reduced copy too
        files = [*base.glob("*.h"), *base.glob("*.cpp"), *base.glob("*.tcl"), *base.glob("tb_*.bin"),
                 *(base / "layers").glob("*.h")]
        for path in sorted(files):
            name = os.path.relpath(path, hls_dir)
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def testbench_check(hls_dir: Path, log) -> None:
    """Compile and run the HLS testbench (the one csim_design runs: vectors, then the short/long-transfer TLAST
    checks) with g++ against the ap_types headers; skipped when these exact sources already passed."""
    from ..csim import ap_types_include

    stamp = hls_dir / ".testbench_passed"
    digest = hls_sources_digest(hls_dir, with_cosim=False)
    if stamp.is_file() and stamp.read_text().strip() == digest:
        log("[testbench] passed before on these sources")
        return
    hls_dir = hls_dir.resolve()
    tmp = tempfile.mkdtemp(prefix="fpgagen_tb_")
    exe = Path(tmp) / "testbench"
    cmd = [os.environ.get("CXX", "g++"), "-O2", "-std=c++14", "-w", "-isystem", str(ap_types_include()), "-I",
           str(hls_dir), str(hls_dir / "testbench.cpp"), str(hls_dir / "top.cpp"), "-o", str(exe)]
    start = time.perf_counter()
    build = subprocess.run(cmd, capture_output=True, text=True)
    if build.returncode != 0:
        (hls_dir / "testbench_build.log").write_text(" ".join(cmd) + "\n" + build.stderr)
        raise FpgagenError("g++ failed to compile the HLS testbench", str(hls_dir / "testbench_build.log"),
                           "this is an fpgagen bug; please report it with that log")
    try:
        run = subprocess.run([str(exe)], cwd=hls_dir, capture_output=True, text=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if run.returncode != 0:
        raise FpgagenError(f"the HLS testbench failed under g++: {run.stdout.strip()}", str(hls_dir),
                           "this is an fpgagen bug; please report it")
    stamp.write_text(digest + "\n")
    log(f"[testbench] {run.stdout.strip()} (g++, {time.perf_counter() - start:.0f} s)")


# --- RTL co-simulation on a reduced-resolution copy -----------------------------------------------------------
# build_dir/cosim (codegen.COSIM_DIR): the copy's build, whose hls/ run_hls.tcl co-simulates
MAX_COPY_ATTEMPTS = 3


def _same_layers(a, b) -> str | None:
    """None when the two networks have the same layers (names, kinds, folding and styles) in the same order."""
    sig = [[(lay.name, lay.kind, lay.folding(), lay.styles()) for lay in net.layers] for net in (a, b)]
    if sig[0] == sig[1]:
        return None
    diff = next((x, y) for x, y in zip(*sig, strict=False) if x != y) if len(sig[0]) == len(sig[1]) else None
    return f"the layers differ ({diff[0][0]} vs {diff[1][0]})" if diff else "the layer count differs"


def _resized_model(model: Path, h: int, w: int, dst: Path) -> Path:
    """The ONNX model with its data input at h x w (NCHW) and every inferred shape cleared, for qonnx to redo."""
    import onnx

    proto = onnx.load(str(model))
    weights = {init.name for init in proto.graph.initializer}
    data = [inp for inp in proto.graph.input if inp.name not in weights][0]
    dims = data.type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = h, w
    del proto.graph.value_info[:]
    for out in proto.graph.output:  # the batch dimension stays; the others become unknown, for qonnx to infer
        for dim in out.type.tensor_type.shape.dim[1:]:
            dim.ClearField("dim_value")
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(dst))
    return dst


def reduced_copy(acc, log=print):
    """The same network (layers, weights, folding) at a lower input resolution, built and verified (C-sim ==
    reference) into build_dir/cosim, so RTL co-simulation of every kernel, the ``__SYNTHESIS__`` branches included,
    takes minutes instead of hours. Sizes H/2^k x W/2^k are tried, the largest whose testbench stays under the
    co-simulation cycle limit first. Returns (Accelerator or None, why not)."""
    from .. import codegen, fold
    from ..accelerator import build

    shape = acc.net.input.shape
    if len(shape) != 4:
        return None, "the input has no height and width to reduce"
    try:
        model = Path(json.loads((acc.build_dir / "build.json").read_text())["model"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, "build.json does not name the model"
    if not model.is_file():
        return None, f"the model it was built from ({model}) is gone"
    (height, width), cycles = shape[2:], acc.net.bottleneck().cycles()
    sizes = [(height >> k, width >> k) for k in range(1, 12)
             if height % (1 << k) == 0 and width % (1 << k) == 0 and height >> k and width >> k]
    fits = [s for s in sizes if cycles * s[0] * s[1] // (height * width) * codegen.TESTBENCH_CALLS
            <= codegen.COSIM_CYCLE_LIMIT]
    order = fits + [s for s in reversed(sizes) if s not in fits]
    folding = {"layers": {name: {k: v for k, v in attrs.items() if k not in ("fifo_depth", "fifo_style")}
                          for name, attrs in fold.folding_of(acc.net)["layers"].items()}}
    why = "no smaller size divides the input"
    for h, w in order[:MAX_COPY_ATTEMPTS]:
        small = _resized_model(model, h, w, acc.build_dir / f"{COSIM_DIR}_model" / f"{acc.net.name}.onnx")
        try:
            copy = build(small, board=acc.board["name"], out_dir=acc.build_dir / COSIM_DIR, folding=folding,
                         log=lambda msg: None)
        except FpgagenError as exc:
            why = f"at {h}x{w}: {exc}"
            continue
        differs = _same_layers(acc.net, copy.net)
        if differs is None:
            log(f"[cosim] reduced copy at {h}x{w} (from {height}x{width}), same layers and folding, C-sim verified: "
                f"{copy.net.bottleneck().cycles():,} cycles/frame, in {acc.build_dir / COSIM_DIR / 'hls'}")
            return copy, ""
        why = f"at {h}x{w}: {differs}"
    return None, why


def hls_ip_dir(hls_dir: Path, top: str) -> Path:
    return hls_dir / f"{top}_hls" / "solution1" / "impl" / "ip"


def prepare(build_dir: Path, board_name: str | None = None, cosim: bool | None = None, log=print) -> dict:
    """Everything that needs no Xilinx tool: reopen the build, verify C-sim == reference (bit-exact) and the HLS
    testbench under g++, write the Vivado Tcl. Returns the flow's context."""
    from .. import codegen
    from ..accelerator import load
    from ..board import load_board
    from ..geometry import stream_geometry

    build_dir = Path(build_dir)
    acc = load(build_dir, log=log)
    board = load_board(board_name) if board_name else acc.board
    if board["name"] != acc.board["name"]:
        raise FpgagenError(f"the build is for {acc.board['name']}, not {board['name']}", str(build_dir),
                           f"rebuild with: fpgagen build MODEL --board {board['name']}")
    hls_dir = acc.hls_dir
    top = codegen.top_name(acc.net)
    io = stream_geometry(acc.net)
    log(f"[C-sim] verifying the HLS project against the numpy reference (bit-exact) in {hls_dir}")
    acc.verify()
    testbench_check(hls_dir, log)
    vivado_dir = build_dir / "vivado"
    ip_repo = os.path.relpath(hls_ip_dir(hls_dir, top), vivado_dir)
    bd = render_block_design(vivado_dir, top, io, board, ip_repo)
    adapters = {"input adapter": max(io.in_words, io.in_stream_words),
                "output adapter": io.out_adapter_cycles}
    bottleneck = acc.net.bottleneck()
    for name, cycles in adapters.items():  # an AXI word narrower than the stream word costs extra cycles
        if cycles > bottleneck.cycles():
            log(f"[warning] the {name} needs {cycles:,} cycles/frame, more than the bottleneck layer "
                f"{bottleneck.name} ({bottleneck.cycles():,}): it limits the frame rate")
    mode = cosim_mode(acc, cosim, log)
    (build_dir / "logs").mkdir(exist_ok=True)
    log(f"[tcl] {hls_dir / 'run_hls.tcl'} (cosim: {COSIM_MODES[mode]}) and {bd}; AXI-Stream in "
        f"{io.in_axi_bits} b x {io.in_words:,} words, out {io.out_axi_bits} b x {io.out_words:,} words, DMA length "
        f"register {dma_length_width(transfer_bytes(io.in_frame_bytes, io.out_frame_bytes))} bits")
    return {"acc": acc, "board": board, "build_dir": build_dir, "hls_dir": hls_dir, "vivado_dir": vivado_dir,
            "top": top, "io": io, "cosim": mode, "cosim_default": tcl_cosim_default(acc)}


COSIM_MODES = {"reduced": "on the reduced-resolution copy", "full": "on the design itself", "0": "off"}


def tcl_cosim_default(acc) -> str:
    """What run_hls.tcl does without FPGAGEN_COSIM: the reduced copy when it exists, else the design when small."""
    from .. import codegen

    if (acc.build_dir / COSIM_DIR / "hls" / "top.cpp").is_file():
        return "reduced"
    return "full" if codegen.cosim_by_default(acc.net) else "0"


def cosim_mode(acc, cosim: bool | None, log) -> str:
    """FPGAGEN_COSIM for run_hls.tcl: ``cosim`` False (--no-cosim) -> "0"; True (--cosim) -> "full"; None (the
    default) -> "full" when the design's testbench simulates in minutes, else "reduced" on a copy at a lower
    resolution (made here, or reused when an earlier run made it from the same network), else "0"."""
    from .. import codegen
    from ..accelerator import load

    if cosim is not None:
        return "full" if cosim else "0"
    if codegen.cosim_by_default(acc.net):
        return "full"
    copy_dir = acc.build_dir / COSIM_DIR
    if (copy_dir / "network.json").is_file() and (copy_dir / "hls" / "tb_input.bin").is_file():
        try:
            if _same_layers(acc.net, load(copy_dir, log=lambda msg: None).net) is None:
                log(f"[cosim] reusing the reduced-resolution copy in {copy_dir}")
                return "reduced"
        except FpgagenError:
            pass
    shutil.rmtree(copy_dir, ignore_errors=True)
    copy, why = reduced_copy(acc, log)
    if copy is None:
        log(f"[cosim] no reduced-resolution copy ({why}): RTL co-simulation is off; --cosim runs it on the design "
            "itself (hours)")
        return "0"
    return "reduced"


def next_steps(ctx: dict) -> str:
    b, h, v = ctx["build_dir"], ctx["hls_dir"], ctx["vivado_dir"]
    cosim = "" if ctx["cosim"] == ctx["cosim_default"] else f"FPGAGEN_COSIM={ctx['cosim']} "
    return (f"with Vitis HLS and Vivado 2022.1+ on PATH (source <Xilinx>/Vivado/2022.1/settings64.sh), run "
            f"'fpgagen bitstream {b}', or by hand: 'cd {h} && {cosim}vitis_hls -f run_hls.tcl' then "
            f"'cd {v} && vivado -mode batch -notrace -source block_design.tcl'; or in Docker: "
            f"'make docker-image XILINX_INSTALLER=/path/to/FPGAs_AdaptiveSoCs_Unified_2022.1_....tar.gz' (the "
            f"full-product .tar.gz or its extracted folder, not the web installer; see docker/README.md) then "
            f"'fpgagen bitstream {b} --docker'")


def bitstream(build_dir: str | Path, board: str | None = None, use_docker: bool = False, cosim: bool | None = None,
              log=print) -> Path:
    """The whole flow; returns build_dir/deploy. Raises FpgagenError (exit 2) when the tools are missing."""
    ctx = prepare(Path(build_dir), board, cosim, log)
    build_dir, hls_dir, vivado_dir, top = ctx["build_dir"], ctx["hls_dir"], ctx["vivado_dir"], ctx["top"]
    env = {"FPGAGEN_COSIM": ctx["cosim"]}
    if use_docker:
        ok, why = docker_engine()
        if not ok:
            raise FpgagenError(f"--docker: {why}; the HLS project is ready at {hls_dir} and the Vivado Tcl at "
                               f"{vivado_dir}; to finish: start a Docker engine (or use a host with one), "
                               f"{next_steps(ctx)}")
        if not docker_image_present(DOCKER_IMAGE):
            raise FpgagenError(f"no Docker image {DOCKER_IMAGE}", "docker images",
                               "build it once with: make docker-image XILINX_INSTALLER=/path/to/the/installer")
        runner = _docker_runner(build_dir, env)
        hls_cmd, vivado_cmd = ["vitis_hls", "-f", "run_hls.tcl"], ["vivado", "-mode", "batch", "-notrace", "-source",
                                                                   "block_design.tcl"]
    else:
        tools = find_tools()
        if tools["hls"] is None or tools["vivado"] is None:
            missing = "/".join(n for n, k in (("Vitis HLS", "hls"), ("Vivado", "vivado")) if tools[k] is None)
            ok, why = docker_engine()
            docker_note = f"; docker: {why}" if not ok else "; a Docker engine is up: try --docker"
            raise FpgagenError(f"no {missing} found (looked in {', '.join(tools['looked'])}){docker_note}; the HLS "
                               f"project is ready at {hls_dir} (C-sim verified bit-exact, testbench passed) and the "
                               f"Vivado Tcl at {vivado_dir / 'block_design.tcl'}; to finish: {next_steps(ctx)}")
        runner = None
        hls_cmd = tools["hls"]
        vivado_cmd = [tools["vivado"], "-mode", "batch", "-notrace", "-source", "block_design.tcl"]

    def run(cmd, cwd, name):
        if runner:
            runner(cmd, cwd, build_dir / "logs" / f"{name}.log", name, log)
        else:
            run_tool(cmd, cwd, build_dir / "logs" / f"{name}.log", name, log, env)

    from .reports import check_implementation, check_initiation_intervals, parse_csynth_dir, write_synthesis_report

    stamp = hls_dir / ".hls_export_done"
    digest = hls_sources_digest(hls_dir)
    exported = (hls_ip_dir(hls_dir, top) / "component.xml").is_file()
    if exported and stamp.is_file() and stamp.read_text().strip() == digest:
        log(f"[vitis_hls] the IP exported before from these sources is reused ({hls_ip_dir(hls_dir, top)})")
    else:
        run(hls_cmd, hls_dir, "vitis_hls")
        stamp.write_text(digest + "\n")
    report_dir = hls_dir / f"{top}_hls" / "solution1" / "syn" / "report"
    csynth = parse_csynth_dir(report_dir)
    write_synthesis_report(build_dir, csynth, None)
    check_initiation_intervals(csynth, report_dir)
    run(vivado_cmd, vivado_dir, "vivado")
    implementation = check_implementation(vivado_dir / "output", ctx["board"])
    write_synthesis_report(build_dir, csynth, implementation)
    return write_deploy(ctx)


def _docker_runner(build_dir: Path, env: dict):
    def runner(cmd, cwd, log_path, label, log):
        inside = "/build/" + Path(cwd).resolve().relative_to(build_dir.resolve()).as_posix()
        docker = ["docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
                  "-v", f"{build_dir.resolve()}:/build", "-w", inside]
        for key, value in env.items():
            docker += ["-e", f"{key}={value}"]
        run_tool(docker + [DOCKER_IMAGE] + cmd, cwd, log_path, label, log)
    return runner


DEPLOY_README = """# fpgagen deploy folder for {net} on {board}

Copy this folder to the {title} (a PYNQ 3.0.x SD image; PYNQ 4 dropped the Z1 and Z2, and the image's own `pynq`
must be used: never `pip install pynq` there) under the image's Jupyter root, `/home/xilinx/jupyter_notebooks`, e.g.
`scp -r deploy xilinx@pynq:/home/xilinx/jupyter_notebooks/fpgagen` (password `xilinx`; or drag the folder into
Jupyter's file browser at http://pynq:9090). The notebook then shows up in Jupyter under `fpgagen/`.

Install the runtime, once, on the board (in a Jupyter terminal, or as root with the image's `pynq-venv` active):

    pip3 install {wheel}

It is fpgagen's host runtime alone (`fpgagen-runtime`): it asks only for numpy >= 1.21, which the image has, so pip
installs nothing else, never torch, and leaves the image's numpy 1.x and pynq as they are. It uses the image's
OpenCV (`cv2`); on an image without one: `pip3 install opencv-python-headless`. Then `fpgagen serve . --camera 0
--host 0.0.0.0`, or the notebook `{notebook_name}`.

- `fpgagen.bit`, `fpgagen.hwh`: the overlay (`pynq.Overlay("fpgagen.bit")`); DMA `dma` (simple mode; a transfer
  carries one or more whole frames, TLAST at its end, and the output transfer ends where the input's did; its MM2S
  and S2MM interrupts go to the PS through `irq_concat` into IRQ_F2P, so pynq's DMA driver can wait on them instead
  of polling), status FIFO `status_fifo` (AXI4-Stream FIFO, PG080: RDFO at 0x1C = words waiting, then RLR at 0x24
  and RDFD at 0x20 per word). One status word per input frame: bit 0 = TLAST came early (frame zero-filled), bit 1 =
  no TLAST at the frame's end (the transfer goes on; on its last frame: a long transfer or a missing TLAST), bits
  31..2 = words zero-filled. The accelerator never drops a status word: once 512 are waiting unread, it waits for
  the host. The runtime (fpgagen/runtime/dma.py) keeps two transfers in flight and checks every frame.
- `stream_geometry.json`: the frame layout the DMA moves (fpgagen.packing.frames_to_bytes / bytes_to_frames).
- `runtime.json` (and `detector.json` for a face detector): what `fpgagen serve deploy/ --backend pynq` reads
  instead of the IR (see the README's "Host runtime").
- `report.md`: fpgagen's estimates beside the Vitis HLS and Vivado figures.
- `{wheel}`: the runtime wheel above (`make runtime-wheel` writes the same on the PC).
- `face_detect.ipynb` and `sample.jpg`: the notebook and the photo it detects faces in when there is no camera.
"""


SAMPLE_PHOTO = "sample.jpg"


def write_sample_photo(path: Path) -> Path:
    """scikit-image's astronaut (NASA's portrait of Eileen Collins, public domain), never trained or tuned on, as
    the notebook's sample frame: the board image has neither scikit-image nor, often, a camera."""
    import cv2
    import skimage.data

    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def write_deploy(ctx: dict) -> Path:
    build_dir, vivado_out = ctx["build_dir"], ctx["vivado_dir"] / "output"
    deploy = build_dir / "deploy"
    deploy.mkdir(exist_ok=True)
    for name in ("fpgagen.bit", "fpgagen.hwh"):
        src = vivado_out / name
        if not src.is_file():
            raise FpgagenError(f"Vivado finished without {name}", str(vivado_out), "see logs/vivado.log")
        shutil.copy2(src, deploy / name)
    shutil.copy2(ctx["hls_dir"] / "stream_geometry.json", deploy / "stream_geometry.json")
    from ..board import BOARDS_DIR

    notebook = BOARDS_DIR / ctx["board"]["name"] / "notebooks" / "face_detect.ipynb"
    if not notebook.is_file():  # one notebook serves every PYNQ board: it reads runtime.json, not the board
        notebook = BOARDS_DIR / "pynq_z2" / "notebooks" / "face_detect.ipynb"
    if notebook.is_file():
        shutil.copy2(notebook, deploy / notebook.name)
    write_sample_photo(deploy / SAMPLE_PHOTO)  # the notebook's first frame where the board has no camera
    estimates = (build_dir / "report.md").read_text() if (build_dir / "report.md").is_file() else ""
    synth = (build_dir / "synth_report.md").read_text()
    (deploy / "report.md").write_text(estimates + "\n" + synth)
    from .runtime_wheel import build_runtime_wheel

    wheel = build_runtime_wheel(deploy, log=lambda msg: None)
    (deploy / "README.md").write_text(DEPLOY_README.format(net=ctx["acc"].net.name, board=ctx["board"]["name"],
                                                           wheel=wheel.name, notebook_name=notebook.name,
                                                           title=ctx["board"].get("title", ctx["board"]["name"])))
    (deploy / "deploy.json").write_text(json.dumps({"top": ctx["top"], "geometry": ctx["io"].to_dict()}, indent=1))
    from ..runtime.backends import write_deploy_files

    write_deploy_files(ctx["acc"], deploy)  # runtime.json (+ detector.json): the board's runtime needs no IR
    return deploy
