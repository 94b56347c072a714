"""Upsample: nearest-neighbour upsampling by integer factors (FY, FX) per axis (TinyYOLOv3: 2 x 2).

Output pixel (oy, ox) is input pixel (oy // FY, ox // FX); values (codes) are unchanged, so the affine view
passes through.

Kernel ``fg::upsample`` (templates/hls/fg_upsample.h): one flat loop, II=1, over the output words
(OH * OW * C/PE iterations, one push each). On the first of the FY output rows of an input row it pops each
input word on the first of its FX repeats and stores it in a line buffer of one input row (W * C/PE words, the
``row`` memory; C/PE words when FY == 1); every other iteration reads the buffer. Counters, not division.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import FpgagenError
from ..memory import Memory
from .affine import AffineView
from .base import (
    CONTROL_FF,
    CONTROL_LUT,
    MEM_STYLES,
    GraphLayer,
    Lowered,
    Lowering,
    PEWords,
    Shape,
    divisors,
    resources,
    same_channels,
)


@dataclass(eq=False)
class Upsample(PEWords, GraphLayer):
    factor: tuple[int, int] = (2, 2)  # (FY, FX)
    pe: int = 1
    mem_style: str = "lutram"

    kind = "Upsample"
    KERNEL_HEADER = "fg_upsample.h"
    CONFIG_TEMPLATE = "upsample.h.j2"
    STYLES = {"mem_style": MEM_STYLES}

    def validate(self) -> None:
        h, w, c = self.in_shapes[0]
        fy, fx = self.factor
        self._require(fy >= 1 and fx >= 1 and self.out_shapes[0] == (h * fy, w * fx, c),
                      f"{self.in_shapes[0]} upsampled by {self.factor} is not {self.out_shapes[0]}",
                      "use positive integer factors")
        self._require(c % self.pe == 0, f"PE={self.pe} does not divide C={c}", f"choose PE from {divisors(c)}")

    def fold_cores(self) -> list[dict]:
        return [{"pe": p} for p in divisors(self.in_shapes[0][2])]

    def cycles(self) -> int:
        return self.words_out(0)

    def io_pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """An iteration pops on the first output row of each input row and the first repeat of each column."""
        oh, ow, _ = self.out_shapes[0]
        fy, fx = self.factor
        oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
        first = ((oy % fy == 0) & (ox % fx == 0)).reshape(-1)
        return [np.repeat(first, self.channel_words)], [np.ones(self.cycles(), bool)]

    def memories(self) -> list[Memory]:
        w = self.in_shapes[0][1]
        depth = (w if self.factor[0] > 1 else 1) * self.channel_words
        storage = self.mem_style if depth > 1 else "registers"
        return [Memory("row", 1, depth, self.pe, self.in_dtypes[0].bitwidth(), storage, reads=1, writes=1)]

    def logic(self) -> dict[str, int]:
        """Per lane a 2:1 select (popped word or buffered word); the output register; five counters."""
        bits = self.pe * self.in_dtypes[0].bitwidth()
        return resources(LUT=bits + CONTROL_LUT + 20, FF=bits + CONTROL_FF + 40)

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (x,) = self._check_inputs(inputs)
        fy, fx = self.factor
        return [np.repeat(np.repeat(x, fy, axis=1), fx, axis=2)]


def _nearest_source(out_len: int, in_len: int, mode: str, nearest: str) -> np.ndarray:
    """ONNX Resize (nearest): the input index of every output index, for the coordinate transformation ``mode``
    and rounding ``nearest`` (both from the node), at scale out_len / in_len."""
    o = np.arange(out_len, dtype=np.float64)
    scale = out_len / in_len
    if mode == "half_pixel":
        x = (o + 0.5) / scale - 0.5
    elif mode == "pytorch_half_pixel":
        x = (o + 0.5) / scale - 0.5 if out_len > 1 else np.zeros_like(o)
    elif mode == "asymmetric":
        x = o / scale
    elif mode == "align_corners":
        x = o * (in_len - 1) / (out_len - 1) if out_len > 1 else np.zeros_like(o)
    else:
        raise ValueError(mode)
    if nearest == "floor":
        idx = np.floor(x)
    elif nearest == "ceil":
        idx = np.ceil(x)
    elif nearest == "round_prefer_floor":
        idx = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif nearest == "round_prefer_ceil":
        idx = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    else:
        raise ValueError(nearest)
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def lower_resize(node, view: AffineView, shape: Shape, name: str, const) -> tuple[Upsample, AffineView]:
    """ONNX Resize (opset 11+: X, roi, scales, sizes) or Upsample (X, scales) in nearest mode on an NCHW tensor
    of stream shape ``shape``; ``const(name)`` returns an initializer or None. Only integer factors whose index
    map (under the node's coordinate transformation and rounding) is ``o // factor`` are accepted."""
    where = f"node '{node.name}' ({node.op_type})"
    attrs = {a.name: a.s.decode() if isinstance(getattr(a, "s", None), bytes) else getattr(a, "s", None)
             for a in node.attribute}
    mode = attrs.get("mode") or "nearest"
    if mode != "nearest":
        raise FpgagenError(f"{node.op_type} mode '{mode}'", where,
                           "use nearest upsampling (nn.Upsample(mode='nearest'))")
    h, w, c = shape
    inputs = list(node.input)
    scales = const(inputs[2]) if node.op_type == "Resize" and len(inputs) > 2 and inputs[2] else None
    if node.op_type == "Upsample":
        scales = const(inputs[1])
    sizes = const(inputs[3]) if node.op_type == "Resize" and len(inputs) > 3 and inputs[3] else None
    if sizes is not None and np.size(sizes) == 4:
        out_h, out_w = int(sizes[2]), int(sizes[3])
    elif scales is not None and np.size(scales) == 4:
        scales = np.asarray(scales, np.float64)
        if scales[0] != 1 or scales[1] != 1:
            raise FpgagenError(f"resize scales {scales.tolist()} change the batch or channel axis", where,
                               "upsample the spatial axes only")
        out_h, out_w = int(np.floor(h * scales[2])), int(np.floor(w * scales[3]))
    else:
        raise FpgagenError("resize without constant 4-D scales or sizes", where, "export with constant scale factors")
    if out_h % h or out_w % w or out_h < h or out_w < w:
        raise FpgagenError(f"resize {h}x{w} -> {out_h}x{out_w} is not an integer upsampling", where,
                           "use integer scale factors >= 1")
    fy, fx = out_h // h, out_w // w
    ctm = attrs.get("coordinate_transformation_mode") or ("asymmetric" if node.op_type == "Upsample" else "half_pixel")
    nearest = attrs.get("nearest_mode") or ("floor" if node.op_type == "Upsample" else "round_prefer_floor")
    try:
        ok = all(np.array_equal(_nearest_source(n_out, n_in, ctm, nearest), np.arange(n_out) // f)
                 for n_out, n_in, f in ((out_h, h, fy), (out_w, w, fx)))
    except ValueError:
        ok = False
    if not ok:
        raise FpgagenError(f"nearest resize with coordinate_transformation_mode={ctm}, nearest_mode={nearest} does "
                           "not repeat each pixel factor times", where,
                           "use torch nn.Upsample(scale_factor=k, mode='nearest') (asymmetric, floor)")
    layer = Upsample(name, (shape,), ((out_h, out_w, c),), (view.dtype,), (view.dtype,), factor=(fy, fx))
    layer.validate()
    return layer, view


def _lower(node, views, shapes, ctx) -> Lowered:
    layer, view = lower_resize(node, views[0], shapes[0], ctx.name, ctx.const)
    return Lowered(layer, view, same_channels(views))


KINDS = (Upsample,)
_RESIZE = Lowering(_lower, doc="Resize/Upsample (nearest, integer factor)")
LOWERINGS = {"Resize": _RESIZE, "Upsample": _RESIZE}
