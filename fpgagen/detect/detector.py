"""The detection pipeline around any backend: letterbox -> backend -> decode -> NMS -> original pixels. The
letterbox is fpgagen.data.transforms.letterbox_exact (cv2.INTER_LINEAR_EXACT), the one the fabric computes.

A backend maps a batch of letterboxed uint8 RGB images (N, S, S, 3) to the head's output (N, 18, S/32, S/32):
either int8 codes (``Backend.quant = (scale, zero_point)``, decoded on the integer path) or floats
(``quant = None``). :func:`accelerator_backend` wraps a built fpgagen accelerator (C-simulation);
:func:`torch_backend` wraps a torch model (the float LPYOLO twin or a Brevitas LPYOLO).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..data.transforms import letterbox_exact
from .decode import STRIDE, Detections, decode_codes, decode_float
from .nms import nms


@dataclass(eq=False)
class Backend:
    run: Callable[[np.ndarray], np.ndarray]  # uint8 (N, S, S, 3) -> (N, C, S/32, S/32)
    quant: tuple[float, float] | None = None  # (scale, zero_point) of integer codes; None for float outputs
    name: str = "backend"


def accelerator_backend(acc, name: str = "accelerator") -> Backend:
    """A built :class:`fpgagen.Accelerator`: the uint8 pixel is the input code, the output stays integer."""
    if len(acc.net.outputs) != 1:
        raise ValueError("the detector needs a one-output network (LPYOLO's hardtanh head)")
    spec = acc.net.output
    scale, zero = np.unique(np.asarray(spec.scale, np.float64)), np.unique(np.asarray(spec.offset, np.float64))
    if getattr(spec, "kind", "codes") != "codes" or scale.size != 1 or zero.size != 1:
        raise ValueError("the detector needs one per-tensor output quantizer (LPYOLO's hardtanh)")

    pixels_are_codes = acc.pixels_are_codes

    def run(batch: np.ndarray, chunk: int = 32) -> np.ndarray:
        outs = []
        for i in range(0, len(batch), chunk):
            if pixels_are_codes:  # the uint8 NHWC pixels are the input stream: no float, no transpose
                out = acc.run_stream(np.ascontiguousarray(batch[i:i + chunk], np.uint8))
            else:
                x = batch[i:i + chunk].transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
                out = acc._to_stream(np.asarray(acc.run(x, codes=True)))
            outs.append(out.transpose(0, 3, 1, 2).astype(np.int64))  # (N, H, W, C) -> the head's (N, C, H, W)
        return np.concatenate(outs)

    return Backend(run, (float(scale[0]), float(zero[0])), name)


def torch_backend(model, codes: bool | None = None, name: str = "torch", batch: int = 16) -> Backend:
    """A torch LPYOLO. ``codes=True`` (default for a Brevitas model) returns the hardtanh's integer codes."""
    import torch

    head = model[-1]
    quant_head = hasattr(head, "act_quant")
    codes = quant_head if codes is None else codes
    if codes and not quant_head:
        raise ValueError("integer codes need a Brevitas model whose last layer quantizes (QuantHardTanh)")
    scale = zero = None
    if codes:
        with torch.no_grad():
            scale = float(head.act_quant.scale().detach())
            zero = float(head.act_quant.zero_point().detach())

    def run(images: np.ndarray) -> np.ndarray:
        model.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(images), batch):
                x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch].transpose(0, 3, 1, 2)))
                y = model(x.float() / 255)
                y = y.value if hasattr(y, "value") else y
                if codes:
                    y = torch.round(y / scale + zero).to(torch.int64)
                outs.append(y.numpy())
        return np.concatenate(outs)

    return Backend(run, (scale, zero) if codes else None, name)


class Detector:
    """Faces in images of any size: letterbox to ``input_size``, run the backend, decode, NMS, map back."""

    def __init__(self, backend: Backend, anchors, input_size: int = 416, conf: float = 0.5,
                 nms_iou: float = 0.3, stride: int = STRIDE, max_det: int = 100):
        # No default: boxes decode against the anchors the head was trained with, and the paper's WIDER anchors
        # (LPYOLO_ANCHORS) make a model trained with others draw boxes the wrong size without any warning.
        if anchors is None:
            raise ValueError("Detector needs the anchors the head was trained with: pass info['anchors'] from "
                             "fpgagen.train.load_checkpoint, or fpgagen.detect.LPYOLO_ANCHORS for the paper's WIDER "
                             "FACE model")
        anchors = np.asarray(anchors, np.float64)
        if anchors.ndim != 2 or anchors.shape[1] != 2 or len(anchors) == 0:
            raise ValueError(f"anchors are (w, h) pairs, got {anchors.tolist()}")
        if input_size % stride:
            raise ValueError(f"input_size must be a multiple of {stride}, got {input_size}")
        self.backend, self.anchors, self.input_size = backend, np.asarray(anchors, np.float64), input_size
        self.conf, self.nms_iou, self.stride, self.max_det = conf, nms_iou, stride, max_det

    def postprocess(self, out: np.ndarray) -> Detections:
        """One image's head output -> NMS'd detections in network-input pixels."""
        if self.backend.quant is not None:
            det = decode_codes(out, *self.backend.quant, conf=self.conf, anchors=self.anchors, stride=self.stride)
        else:
            det = decode_float(out, conf=self.conf, anchors=self.anchors, stride=self.stride)
        return nms(det, self.nms_iou, self.max_det)

    def preprocess(self, images: list[np.ndarray]) -> tuple[np.ndarray, list]:
        """uint8 RGB images -> the backend's batch (N, S, S, 3) and each image's letterbox."""
        boxes = [letterbox_exact(img, self.input_size) for img in images]  # the fabric's (INTER_LINEAR_EXACT)
        return np.stack([b[0] for b in boxes]), [b[1] for b in boxes]

    def detections(self, images: list[np.ndarray], letterboxes: list, outs: np.ndarray) -> list[Detections]:
        """Backend outputs -> detections in each image's own pixels, clipped to the image."""
        result = []
        for img, lb, out in zip(images, letterboxes, outs, strict=True):
            det = self.postprocess(out)
            b = lb.to_original(det.boxes)
            h, w = img.shape[:2]
            b[:, [0, 2]] = b[:, [0, 2]].clip(0, w - 1)
            b[:, [1, 3]] = b[:, [1, 3]].clip(0, h - 1)
            result.append(Detections(b, det.scores))
        return result

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """uint8 RGB images of any size -> detections in each image's own pixels, clipped to the image."""
        if not images:
            return []
        batch, letterboxes = self.preprocess(images)
        return self.detections(images, letterboxes, self.backend.run(batch))
