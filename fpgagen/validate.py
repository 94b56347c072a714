"""Validation of everything a user hands over, where it enters, with the real problem named.

Every check raises :class:`FpgagenError` (what, where, what to do). The model checks run in
``frontend.load_qonnx``; the option, folding, board and input checks where the build, the CLI and
``Accelerator.run`` receive them. Nothing here uses ``assert``: the checks hold under ``python -O`` too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import FpgagenError

RESOURCES = ("LUT", "FF", "BRAM18", "DSP", "LUTRAM")  # as fpgagen.ir.layers.RESOURCES (a test checks they agree)
WEIGHT_BITS = (1, 32)  # constant Quants (weights, biases): an integer code range numpy and ap_int hold exactly
ACT_BITS = (1, 16)  # activation Quants become 2**bits - 1 thresholds per channel
INPUT_BITS = (1, 16)  # the host-side input quantizer
MAX_THRESHOLDS = 1 << 18  # per activation Quant (channels x levels); LPYOLO's largest is 208 x 15
REEXPORT = "re-export it with brevitas.export.export_qonnx or fpgagen.export"


# --- the ONNX model ---------------------------------------------------------------------------------------------
def check_onnx(proto, path: str | Path) -> None:
    """``onnx.checker`` with the full check (types, shapes, attributes of the standard ops: a misspelt
    'dilationz' or 'ke2nel_shape' is refused here rather than silently ignored)."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        # the whole message, on one line: its later lines name the node ("...input 'X' of node: name: ...")
        first = " ".join(str(exc).split())[:600] or type(exc).__name__
        raise FpgagenError(f"the ONNX model is invalid (onnx.checker: {first})", str(path), REEXPORT) from None
    except Exception as exc:  # the checker's C++ side raises plain errors on damaged protobufs
        raise FpgagenError(f"the ONNX model is invalid (onnx.checker: {type(exc).__name__}: {exc})"[:400],
                           str(path), REEXPORT) from None
    # The same value checks as after cleanup, first on the file as written: errors then carry the exporter's node
    # and initializer names (e.g. '/1/weight_quant/export_handler/Quant', '1.weight'), which qonnx renames.
    from qonnx.core.modelwrapper import ModelWrapper

    check_qonnx(ModelWrapper(proto), path)


def check_qonnx(model, path: str | Path) -> None:
    """After qonnx's cleanup (constants folded, shapes inferred): every initializer free of NaN, every ``Quant``'s
    scale finite and > 0, zero point an integer in range, bit width a supported integer, shapes that broadcast;
    constant divisors and BatchNorm variances usable."""
    from qonnx.util.basic import get_by_name

    graph_input = model.graph.input[0].name if model.graph.input else None
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if node.op_type == "Quant":
            _check_quant(model, node, graph_input, get_by_name)
        elif node.op_type == "Div" and len(node.input) > 1:
            divisor = model.get_initializer(node.input[1])
            if divisor is not None and np.any(divisor == 0):
                raise FpgagenError("division by a constant that is zero", _where(node), REEXPORT)
        elif node.op_type == "BatchNormalization":
            var = model.get_initializer(node.input[4]) if len(node.input) > 4 else None
            eps = get_by_name(node.attribute, "epsilon")
            eps = eps.f if eps is not None else 1e-5
            if var is not None and np.any(np.asarray(var, np.float64) + eps <= 0):
                raise FpgagenError("BatchNorm running variance + epsilon is not positive", _where(node),
                                   REEXPORT + " from a trained model (variances are >= 0)")
    graph = model.graph
    for info in (*graph.input, *graph.value_info, *graph.output):  # a zero-sized axis holds no data to stream
        dims = info.type.tensor_type.shape.dim if info.type.HasField("tensor_type") else ()
        if any(d.HasField("dim_value") and d.dim_value == 0 for d in dims):
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
            raise FpgagenError(f"tensor '{info.name}' has a zero-sized dimension {shape}", str(path),
                               "export with a real input shape (every axis >= 1), e.g. "
                               "fpgagen.export(model, path, input_shape=(1, 3, 416, 416))")
    for init in model.graph.initializer:
        value = model.get_initializer(init.name)
        if value.dtype.kind != "f":
            continue
        users = consumers.get(init.name, [])
        where = _where(users[0]) if users else f"initializer '{init.name}'"
        if np.isnan(value).any():
            raise FpgagenError(f"initializer '{init.name}' holds NaN", where, REEXPORT + " from a trained model")
        clip_bound = users and all(n.op_type == "Clip" and init.name in n.input[1:] for n in users)
        if np.isinf(value).any() and not clip_bound:
            raise FpgagenError(f"initializer '{init.name}' holds an infinite value", where,
                               REEXPORT + " from a trained model")


def _where(node) -> str:
    return f"node '{node.name}' ({node.op_type})"


def _check_quant(model, node, graph_input: str | None, get_by_name) -> None:
    where = _where(node)
    if len(node.input) != 4:
        raise FpgagenError(f"Quant with {len(node.input)} inputs (x, scale, zero point, bit width expected)",
                           where, REEXPORT)
    scale, zero, bits = (model.get_initializer(n) for n in node.input[1:4])
    if scale is None or zero is None or bits is None:
        return  # non-constant parameters: streamline names that case
    const_input = model.get_initializer(node.input[0]) is not None or any(
        n.op_type == "Constant" and node.input[0] in n.output for n in model.graph.node)
    for name in ("signed", "narrow"):  # required by the QONNX spec (qonnx refuses to run a Quant without them)
        a = get_by_name(node.attribute, name)
        if a is None or a.type != a.INT or a.i not in (0, 1):
            have = "missing" if a is None else f"{a.i}" if a.type == a.INT else "not an integer"
            raise FpgagenError(f"Quant attribute '{name}' is {have} (0 or 1 required)", where, REEXPORT)
    signed, narrow = bool(get_by_name(node.attribute, "signed").i), bool(get_by_name(node.attribute, "narrow").i)
    # bit width: one integer in the range the role supports
    kind, (lo_bits, hi_bits) = (("weight/bias", WEIGHT_BITS) if const_input else
                                ("input", INPUT_BITS) if node.input[0] == graph_input else
                                ("activation", ACT_BITS))
    bits = np.asarray(bits, np.float64)
    if bits.size != 1:
        raise FpgagenError(f"bit width has {bits.size} values", where, "use one bit width per quantizer")
    b = float(bits.reshape(-1)[0])
    if not math.isfinite(b) or b != int(b) or not lo_bits <= b <= hi_bits:
        raise FpgagenError(f"{kind} bit width {b:g} is not supported", where,
                           f"use an integer bit width from {lo_bits} to {hi_bits} for {kind} quantizers")
    b = int(b)
    if b == 1 and signed:
        raise FpgagenError(f"1-bit signed {kind} Quant (qonnx reads it as bipolar -1/+1, not as the codes -1/0)",
                           where, "use 2-bit signed or 1-bit unsigned quantizers")
    # scale: finite and > 0
    scale = np.asarray(scale, np.float64)
    bad = ~np.isfinite(scale) | (scale <= 0)
    if bad.any():
        value = scale.reshape(-1)[np.argmax(bad.reshape(-1))]
        raise FpgagenError(f"{kind} scale {value:g} is not a finite number > 0", where,
                           REEXPORT + " from a trained model (Brevitas scales are positive)")
    # zero point: integer, inside the code range
    zero = np.asarray(zero, np.float64)
    lo = -(2 ** (b - 1)) + int(narrow) if signed else 0
    hi = 2 ** (b - 1) - 1 if signed else 2**b - 1 - int(narrow)
    if not np.all(np.isfinite(zero)) or np.any(zero != np.rint(zero)):
        raise FpgagenError(f"{kind} zero point is not an integer", where, "use integer zero points")
    if np.any(zero < lo) or np.any(zero > hi):
        raise FpgagenError(f"{kind} zero point {zero.min():g}..{zero.max():g} lies outside the code range "
                           f"[{lo}, {hi}]", where, "use a zero point inside the quantizer's range")
    # shapes: scale and zero point broadcast over the quantized tensor without growing it
    shape = model.get_tensor_shape(node.input[0])
    if shape is not None:
        for label, arr in (("scale", scale), ("zero point", zero)):
            try:
                grown = np.broadcast_shapes(arr.shape, tuple(shape))
            except ValueError:
                grown = None
            if grown != tuple(shape):
                raise FpgagenError(f"{kind} {label} of shape {list(arr.shape)} does not broadcast to the tensor "
                                   f"{list(shape)}", where, "use a scalar or per-channel (shape [C, 1, 1]) value")
        if kind == "activation":
            channels = int(shape[1]) if len(shape) > 1 else 1
            if channels * (hi - lo) > MAX_THRESHOLDS:
                raise FpgagenError(f"{b}-bit activations on {channels} channels need {channels * (hi - lo):,} "
                                   f"thresholds (the limit is {MAX_THRESHOLDS:,})", where,
                                   "use fewer activation bits (4-8 is typical)")


# --- numeric options ----------------------------------------------------------------------------------------
def check_target_fps(fps) -> None:
    if fps is None:
        return
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not math.isfinite(fps) or fps <= 0:
        raise FpgagenError(f"target FPS {fps!r} is not a finite number > 0", "--target-fps",
                           "pass e.g. --target-fps 30, or leave it out for the fastest design that fits")


def check_ceilings(ceilings) -> None:
    if ceilings is None:
        return
    if not isinstance(ceilings, dict):
        raise FpgagenError(f"ceilings must map resources to fractions, not {type(ceilings).__name__}", "--ceiling",
                           "pass e.g. LUT=0.7,DSP=1.0")
    for name, value in ceilings.items():
        if name not in RESOURCES:
            raise FpgagenError(f"unknown resource '{name}'", "--ceiling", f"use {', '.join(RESOURCES)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value <= 1):
            raise FpgagenError(f"ceiling {name}={value!r} is not a fraction in (0, 1]", "--ceiling",
                               "pass fractions of the device, e.g. LUT=0.7")


def check_optimizer(optimizer) -> None:
    if optimizer not in ("ilp", "greedy"):
        raise FpgagenError(f"unknown optimizer {optimizer!r}", "--optimizer", "use ilp or greedy")


# --- folding JSON --------------------------------------------------------------------------------------------
def check_folding(folding, where: str = "folding JSON") -> dict:
    """Schema of a folding: ``{"layers": {name: {attr: value}}}`` or ``{name: {attr: value}}``, each value a
    whole number or a style name. Which layers and attributes exist, and which values divide, is checked against
    the network by ``Layer.set_folding``."""
    fix = 'write {"conv_0": {"pe": 2, "simd": 3}, ...} (a build\'s folding.json is one)'
    if not isinstance(folding, dict):
        raise FpgagenError(f"the folding is a JSON {_json_type(folding)}, not an object", where, fix)
    entries = folding["layers"] if "layers" in folding else folding
    if not isinstance(entries, dict):
        raise FpgagenError(f"\"layers\" is a JSON {_json_type(entries)}, not an object", where, fix)
    for name, attrs in entries.items():
        if not isinstance(attrs, dict):
            raise FpgagenError(f"the entry for {json_text(name)} is a JSON {_json_type(attrs)}, not an object", where,
                               fix)
        for attr, value in attrs.items():
            whole = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, float) and math.isfinite(value) and value == int(value))
            if not (whole or isinstance(value, str)):
                example = '"bram"' if str(attr).endswith("_style") else '"search"' if attr == "thr_mode" else "2"
                raise FpgagenError(f"{json_text(attr)} = {json_text(value)} is neither a whole number nor a style "
                                   "name", f"{where}, layer {name}", f"write e.g. {json_text(attr)}: {example}")
    return folding


def _json_type(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def json_text(value) -> str:
    import json

    try:
        return json.dumps(value)[:60]
    except (TypeError, ValueError):
        return repr(value)[:60]


# --- board.yaml ----------------------------------------------------------------------------------------------
def check_board(cfg, path: str | Path) -> dict:
    """Schema of boards/<name>/board.yaml: name, part, clock_mhz > 0, resources (every resource an integer
    > 0), optional ceilings (fractions in (0, 1]) and shell (integers >= 0), optional title and vivado (board_part,
    board_files: strings the block-design Tcl quotes)."""
    where, fix = str(path), "fix the file (see boards/pynq_z2/board.yaml)"
    if not isinstance(cfg, dict):
        raise FpgagenError(f"the board file holds a YAML {type(cfg).__name__}, not a mapping", where, fix)
    for key in ("name", "part"):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            raise FpgagenError(f"'{key}' is missing or not a string", where, fix)
    clock = cfg.get("clock_mhz")
    if isinstance(clock, bool) or not isinstance(clock, int | float) or not math.isfinite(clock) or clock <= 0:
        raise FpgagenError(f"clock_mhz = {clock!r} is not a number > 0", where, fix)
    res = cfg.get("resources")
    if not isinstance(res, dict):
        raise FpgagenError("'resources' is missing or not a mapping", where, fix)
    for r in RESOURCES:
        v = res.get(r)
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise FpgagenError(f"resources.{r} = {v!r} is not an integer > 0", where, fix)
    vivado = cfg.get("vivado", {})
    if not isinstance(vivado, dict) or not all(isinstance(vivado.get(k, ""), str) for k in ("board_part",
                                                                                          "board_files")):
        raise FpgagenError("'vivado' is not a mapping of strings (board_part, board_files)", where, fix)
    if any(ch in str(vivado.get("board_files", "")) + str(cfg.get("title", "")) for ch in '[]$"\\'):
        raise FpgagenError("vivado.board_files or title holds a Tcl special character ([ ] $ \" \\)", where, fix)
    for section, low, high in (("ceilings", 0.0, 1.0), ("shell", 0, None)):
        if section not in cfg:
            continue
        values = cfg[section]
        if not isinstance(values, dict):
            raise FpgagenError(f"'{section}' is not a mapping", where, fix)
        for r, v in values.items():
            if r not in RESOURCES:
                raise FpgagenError(f"{section}.{r}: unknown resource", where, f"use {', '.join(RESOURCES)}")
            number = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
            if section == "ceilings" and not (number and low < v <= high):
                raise FpgagenError(f"ceilings.{r} = {v!r} is not a fraction in (0, 1]", where, fix)
            if section == "shell" and not (number and isinstance(v, int) and v >= 0):
                raise FpgagenError(f"shell.{r} = {v!r} is not an integer >= 0", where, fix)
    return cfg


# --- arrays handed to a built accelerator ----------------------------------------------------------------------
def check_input_array(x, shape: tuple[int, ...], where: str) -> np.ndarray:
    """A float input batch for ``Accelerator.run``: real numbers, shape [N, *shape[1:]] with N >= 1, finite."""
    want = f"[N, {', '.join(map(str, shape[1:]))}]"
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise FpgagenError(f"the input is not an array ({exc})", where, f"pass a float32 array of shape {want}") \
            from None
    if arr.dtype.kind not in "fiub":
        raise FpgagenError(f"input of dtype {arr.dtype}", where, f"pass a float32 array of shape {want}")
    if arr.ndim != len(shape) or tuple(arr.shape[1:]) != tuple(shape[1:]):
        raise FpgagenError(f"input of shape {list(arr.shape)}", where, f"pass an array of shape {want}")
    if arr.shape[0] == 0:
        raise FpgagenError("the input batch is empty (N = 0)", where, f"pass at least one frame, shape {want}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise FpgagenError(f"the input holds NaN or infinity (first at index {bad})", where,
                           "pass finite values (the quantizer has no code for NaN)")
    return arr


def check_camera(camera) -> tuple[int, int, bool] | None:
    """``--camera WxH[:rgb|bgr]`` (or ``camera="640x480"``): (W, H, BGR camera) or None."""
    if camera is None:
        return None
    fix = "write the camera as WxH[:rgb|bgr], e.g. 640x480 or 1280x720:bgr"
    if not isinstance(camera, str):
        raise FpgagenError(f"camera {camera!r} is not text", "--camera", fix)
    size, _, order = camera.strip().lower().partition(":")
    order = order or "rgb"
    try:
        w, h = (int(v) for v in size.split("x"))
    except ValueError:
        raise FpgagenError(f"'{camera}' is not a camera size", "--camera", fix) from None
    if order not in ("rgb", "bgr"):
        raise FpgagenError(f"channel order '{order}'", "--camera", fix)
    if not (2 <= w <= 8192 and 2 <= h <= 8192):
        raise FpgagenError(f"a camera of {w}x{h} pixels", "--camera", "use 2 to 8192 pixels a side")
    return w, h, order == "bgr"


def check_camera_frames(x, camera: tuple[int, int], where: str) -> np.ndarray:
    """Camera frames for a build with the letterbox in the fabric: uint8 (N, H, W, 3) at the camera's size."""
    w, h = camera
    arr = np.asarray(x)
    if arr.dtype != np.uint8 or arr.ndim != 4 or tuple(arr.shape[1:]) != (h, w, 3) or arr.shape[0] == 0:
        raise FpgagenError(f"input of shape {list(arr.shape)} and type {arr.dtype}", where,
                           f"pass uint8 camera frames of shape [N, {h}, {w}, 3] (this build letterboxes in the "
                           "fabric)")
    return arr


# --- output locations ----------------------------------------------------------------------------------------
BUILD_MARKERS = ("build.json", "network.json", "hls/top.cpp")  # any one marks an fpgagen build directory


def check_out_dir(out_dir: Path) -> None:
    """A build directory: absent, empty, or an earlier fpgagen build (which the new build replaces whole); never
    a folder of the user's own files. Its parent must be creatable."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FpgagenError(f"'{out_dir}' exists and is not a directory", "-o/--out",
                           "pass a new or existing build directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not any((out_dir / m).exists() for m in BUILD_MARKERS):
        raise FpgagenError(f"'{out_dir}' holds files and is not an fpgagen build directory (a build replaces its "
                           "directory whole)", "-o/--out", "pass a new or empty directory, e.g. build/<model name>")
    parent = out_dir.resolve().parent
    for p in (parent, *parent.parents):
        if p.exists():
            if not p.is_dir():
                raise FpgagenError(f"'{p}' is a file, so '{out_dir}' cannot be created", "-o/--out",
                                   "pass a directory path")
            break
