"""The float LPYOLO twin, float -> quantized transfer with activation-range calibration, and checkpoints.

The *float model* has LPYOLO's exact topology (``fpgagen.models.lpyolo``) with float weights and activations:
``Identity`` where the input quantizer sits (an uint8 pixel / 255 loses nothing there), ``Conv2d``,
``BatchNorm2d``, plain ``ReLU``, and a ``Hardtanh`` head. Its module indices equal the Brevitas model's, so a
state dict moves across by name.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import torch
from brevitas.nn import QuantHardTanh, QuantReLU
from torch import nn

from ..models.lpyolo import BACKBONE, HEAD_CHANNELS, INPUT_SHAPE, lpyolo

CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED = {"w4a4": CHECKPOINT_DIR / "lpyolo_w4a4_synthface.pt", "float": CHECKPOINT_DIR / "lpyolo_float_synthface.pt"}
FORMAT = "fpgagen-lpyolo-checkpoint-1"


def float_lpyolo() -> nn.Sequential:
    layers: list[nn.Module] = [nn.Identity()]
    cin = 3
    for cout, k, pool in BACKBONE:
        layers += [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2, 2))
        cin = cout
    layers += [nn.Conv2d(cin, HEAD_CHANNELS, 1, bias=True), nn.Hardtanh(-1.0, 1.0)]
    model = nn.Sequential(*layers)
    model.input_shape = INPUT_SHAPE
    return model.eval()


def build_model(kind: str, weight_bits: int = 4, act_bits: int = 4) -> nn.Sequential:
    """``kind`` "float" (the float twin) or "quant" (Brevitas ``lpyolo(weight_bits, act_bits)``)."""
    if kind == "float":
        return float_lpyolo()
    if kind == "quant":
        return lpyolo(weight_bits=weight_bits, act_bits=act_bits)
    raise ValueError(f"unknown model kind {kind!r}")


def _scaling_value(module) -> torch.nn.Parameter:
    """The learned clip value of a Brevitas activation (scale = value / (2**bits - 1) for unsigned)."""
    return module.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl.value


def freeze_head_scale(model: nn.Sequential) -> None:
    """Keep the hardtanh's scale at 2**-7 so that y stays in [-1, 1) and the decode formulas hold."""
    head = model[-1]
    if isinstance(head, QuantHardTanh):
        _scaling_value(head).requires_grad_(False)


def _best_clip(x: np.ndarray, levels: int) -> float:
    """The clip value whose uniform ``levels``-step quantization of ``x >= 0`` has the least squared error."""
    top = float(np.max(x)) if x.size else 1.0
    if top <= 0:
        return 1.0
    best, best_err = top, np.inf
    for c in top * np.linspace(0.05, 1.0, 60):
        s = c / levels
        err = np.mean((np.clip(np.round(x / s), 0, levels) * s - x) ** 2)
        if err < best_err:
            best, best_err = c, err
    return float(best)


def equalize_channels(model: nn.Sequential, max_gain: float = 64.0) -> nn.Sequential:
    """Rescale each conv's output channels to a common weight range, compensated in the BatchNorm after it.

    A conv followed by BatchNorm computes the same function when output channel c's weights and the running
    mean are multiplied by ``k_c > 0`` and the running variance by ``k_c**2`` (up to BatchNorm's epsilon).
    Choosing ``k_c`` so every channel's largest weight equals the layer's largest makes a per-tensor weight
    quantizer use its full range on every channel instead of rounding small channels to zero. In place.
    """
    with torch.no_grad():
        for conv, bn in zip(model, list(model)[1:], strict=False):
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            m = conv.weight.abs().amax(dim=(1, 2, 3))
            k = (m.max() / m.clamp(min=1e-12)).clamp(max=max_gain)
            conv.weight.mul_(k.view(-1, 1, 1, 1))
            bn.running_mean.mul_(k)
            bn.running_var.mul_(k * k)
    return model


def quantize_from_float(float_model: nn.Sequential, images: torch.Tensor, weight_bits: int = 4,
                        act_bits: int = 4) -> nn.Sequential:
    """A Brevitas LPYOLO with the float model's weights and BatchNorm (channels equalized first, see
    :func:`equalize_channels`), each ReLU's clip calibrated on ``images``.

    The clip of each 4-bit (``act_bits``) ReLU minimises the squared quantization error of the float model's
    activations at that layer on the calibration batch (float pixels in [0, 1], NCHW).
    """
    float_model = equalize_channels(copy.deepcopy(float_model))
    quant = lpyolo(weight_bits=weight_bits, act_bits=act_bits)
    missing, unexpected = quant.load_state_dict(float_model.state_dict(), strict=False)
    if unexpected:
        raise RuntimeError(f"float and quantized LPYOLO differ: {unexpected}")
    acts: dict[int, np.ndarray] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: acts.__setitem__(i, out.detach().numpy()))
             for i, m in enumerate(float_model) if isinstance(m, nn.ReLU)]
    float_model.eval()
    with torch.no_grad():
        float_model(images)
    for h in hooks:
        h.remove()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for i, m in enumerate(quant):
            if isinstance(m, QuantReLU):
                x = acts[i].ravel()
                x = x[rng.integers(0, x.size, min(x.size, 200_000))]
                _scaling_value(m).fill_(_best_clip(x, 2 ** act_bits - 1))
    freeze_head_scale(quant)
    return quant.eval()


# --- checkpoints ------------------------------------------------------------------------------------------
def save_checkpoint(path: str | Path, model: nn.Module, kind: str, weight_bits: int | None = None,
                    act_bits: int | None = None, anchors=None, meta: dict | None = None) -> Path:
    """A model-only checkpoint (weights, kind, bit widths, anchors, a record of how it was trained)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save({"format": FORMAT, "kind": kind, "weight_bits": weight_bits, "act_bits": act_bits,
                "anchors": [list(map(float, a)) for a in anchors] if anchors is not None else None,
                "meta": meta or {}, "state_dict": state}, path)
    return path


def load_checkpoint(path: str | Path, kind: str | None = None, where: str | None = None) -> tuple[nn.Sequential, dict]:
    """``(model in eval mode, info)``; ``info`` holds kind, weight_bits, act_bits, anchors and meta. ``kind``
    ("float" or "quant"): refuse a checkpoint of the other kind; ``where`` names the option it came from."""
    from ..errors import FpgagenError

    path = Path(path)
    where = f"{where} {path}" if where else str(path)
    fix = "pass a .pt written by 'fpgagen train'" + (f" (its {'float.pt' if kind == 'float' else 'w*a*.pt'})"
                                                     if kind else "")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise FpgagenError(f"cannot read the checkpoint ({' '.join(str(exc).split())[:200]})", where, fix) from None
    except Exception as exc:  # torch's unpickler raises others (e.g. on truncated zip members) for garbage
        raise FpgagenError(f"cannot read the checkpoint ({type(exc).__name__})", where, fix) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise FpgagenError("not an fpgagen LPYOLO checkpoint", where, fix)
    if ckpt.get("kind") not in ("float", "quant"):
        raise FpgagenError(f"an LPYOLO checkpoint of unknown kind {ckpt.get('kind')!r}", where, fix)
    if kind is not None and ckpt["kind"] != kind:
        raise FpgagenError(f"a {ckpt['kind']} checkpoint where a {kind} one is needed", where, fix)
    try:
        model = build_model(ckpt["kind"], ckpt.get("weight_bits") or 4, ckpt.get("act_bits") or 4)
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:  # wrong bit widths for the weights, missing or extra tensors, a damaged state_dict
        raise FpgagenError(f"the checkpoint's weights do not fit an LPYOLO {ckpt['kind']} model "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})", where, fix) from None
    freeze_head_scale(model)
    info = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model.eval(), info


def shipped_checkpoint(kind: str = "w4a4") -> Path:
    """The checkpoint that ships with fpgagen: ``"w4a4"`` (the deployable one) or ``"float"`` (its float twin)."""
    return SHIPPED[kind]
