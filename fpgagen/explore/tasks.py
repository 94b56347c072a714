"""The work of an explore, as plain functions that run in Ray tasks (or in-process): each resolves the contract
from its specs in the worker, does one unit of work and returns a JSON-able dict (plus model state bytes).

A user error (the factory raises, evaluate returns NaN) comes back as ``{"fatal": message}``: the driver stops
with it; it is no worker failure to retry. Any other exception propagates, so Ray retries the task once."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from ..errors import FpgagenError
from . import contract as contract_mod
from .predictor import output_of, perturbation

_CONTRACTS: dict[tuple, contract_mod.Contract] = {}


def _contract(specs: dict) -> contract_mod.Contract:
    key = tuple(sorted((k, v or "") for k, v in specs.items()))
    if key not in _CONTRACTS:
        _CONTRACTS[key] = contract_mod.resolve(specs["factory"], specs["evaluate"], specs["finetune"],
                                               specs["calibration"])
    return _CONTRACTS[key]


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(max(1, n))


def _fatal(exc: FpgagenError) -> dict:
    return {"fatal": str(exc), "what": exc.what, "where": exc.where, "fix": exc.fix}


def sensitivity_task(specs: dict, kind: str, index: int, grid: list[int], widest: tuple[int, int],
                     shape: tuple[int, int], threads: int = 1) -> dict:
    """Output perturbation of variable ``kind``[``index``] at each width of ``grid``, all others at ``widest``."""
    _threads(threads)
    try:
        c = _contract(specs)
        x = contract_mod.calibration_data(c)
        wb, ab = [widest[0]] * shape[0], [widest[1]] * shape[1]
        y_ref = output_of(contract_mod.make_model(c, wb, ab), x)
        out = {}
        for b in grid:
            w2, a2 = list(wb), list(ab)
            (w2 if kind == "w" else a2)[index] = b
            out[str(b)] = 0.0 if (w2, a2) == (wb, ab) else perturbation(output_of(contract_mod.make_model(c, w2, a2),
                                                                                  x), y_ref)
        return {"sensitivity": out}
    except FpgagenError as exc:
        return _fatal(exc)


def lower_task(specs: dict, weight_bits: list[int], act_bits: list[int], input_shape: tuple, out_dir: str,
               tables: bool = True, threads: int = 1) -> dict:
    """The factory's network at these widths, exported to QONNX and lowered to fpgagen's IR (saved in out_dir): its
    units and every node's signature (``program.units_of``, ``program.signatures``), and with ``tables`` every
    unit's options priced by the layers' own models (``program.unit_tables``)."""
    import tempfile

    from .. import export, frontend, streamline
    from . import program

    _threads(threads)
    try:
        c = _contract(specs)
        model = contract_mod.make_model(c, weight_bits, act_bits)
        with tempfile.TemporaryDirectory() as tmp:
            onnx = export(model, Path(tmp) / "model.onnx", input_shape=tuple(input_shape))
            net = streamline.lower(frontend.load_qonnx(onnx), name="explore")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        net.save(Path(out_dir))
        out = {"ir": out_dir, "layers": len(net.layers), "units": [u.names for u in program.units_of(net)],
               "signature": program.signatures(net)}
        if tables:
            out["options"] = program.options_to_json(program.unit_tables(net))
        return out
    except FpgagenError as exc:
        return _fatal(exc)


def finetune_task(specs: dict, weight_bits: list[int], act_bits: list[int], threads: int = 1) -> dict:
    """Fine-tune (when the contract has a finetune) and evaluate; the model's state comes back as bytes."""
    import torch

    _threads(threads)
    try:
        c = _contract(specs)
        model = contract_mod.make_model(c, weight_bits, act_bits)
        t0 = time.perf_counter()
        model = contract_mod.finetune_model(c, model)
        t1 = time.perf_counter()
        accuracy = contract_mod.evaluate_model(c, model)
        t2 = time.perf_counter()
    except FpgagenError as exc:
        return _fatal(exc)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return {"accuracy": accuracy, "finetune_s": round(t1 - t0, 2), "evaluate_s": round(t2 - t1, 2),
            "state": buf.getvalue()}


def build_task(specs: dict, weight_bits: list[int], act_bits: list[int], state: bytes, input_shape: tuple,
               out_dir: str, board: str, ceilings: dict | None, target_fps: float | None = None,
               threads: int = 1) -> dict:
    """The fine-tuned model built with fpgagen.build (folded by fpgagen's folder, C-sim checked bit-exact against
    the IR's numpy reference); FPS and resources are the build report's own figures. Without ``target_fps`` the
    folder picks the fastest design that fits; with it, the cheapest reaching that FPS."""
    import torch

    from .. import build, export

    _threads(threads)
    t0 = time.perf_counter()
    try:
        c = _contract(specs)
        model = contract_mod.make_model(c, weight_bits, act_bits)
        model.load_state_dict(torch.load(io.BytesIO(state), map_location="cpu", weights_only=True))
        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        onnx = export(model.eval(), out.parent / f"{out.name}.onnx", input_shape=tuple(input_shape))
    except FpgagenError as exc:
        return _fatal(exc)
    try:
        build(onnx, board=board, out_dir=out, ceilings=ceilings, target_fps=target_fps, verify=True,
              log=lambda m: None)
    except FpgagenError as exc:
        text = " ".join(str(exc).split())
        status = f"does not fit: {exc.what}" if "does not fit" in exc.what else f"failed: {text}"
        return {"status": status[:400], "build_s": round(time.perf_counter() - t0, 1)}
    report = json.loads((out / "report.json").read_text())
    used = {r: report["budget"][r]["used"] for r in ("LUT", "BRAM18", "DSP", "FF")}
    return {"status": "verified", "fps": report["fps_estimated"], "lut": used["LUT"], "bram18": used["BRAM18"],
            "dsp": used["DSP"], "ff": used["FF"], "bottleneck": report["bottleneck"], "build": str(out),
            "target_fps": target_fps,
            "csim": "bit-exact (C-sim == numpy reference, np.array_equal)",
            "build_s": round(time.perf_counter() - t0, 1)}
