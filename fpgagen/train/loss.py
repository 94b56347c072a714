"""A YOLO loss for LPYOLO's hardtanh head, computed on the head's pre-activation ``z``.

The deployed output is ``y = hardtanh(z)`` (then 8-bit quantized), decoded as in ``fpgagen.detect.decode``:
offset ``y + 0.5`` in cells, size ``(y + 1)**2 * anchor``, confidence ``y / 2 + 0.5``. A hardtanh has no
gradient once ``z`` is outside [-1, 1], so a loss on ``y`` could never pull back a positive stuck below -1.
The loss therefore works on ``z`` with the saturation applied one-sidedly: for a target at +1 it uses
``min(z, 1)`` (over-shooting is free, under-shooting always has a gradient), for -1 ``max(z, -1)``. Box fields
have targets strictly inside (-1, 1) and are regressed on ``z`` itself, which equals ``y`` there.

Assignment: each face goes to the cell holding its centre and the anchor whose shape overlaps it best.
That anchor learns x, y, w, h, objectness +1 and class +1. Every other anchor learns objectness -1, except
those whose current prediction already overlaps a face by more than ``ignore_iou`` (left alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

FIELDS = 6


@dataclass(frozen=True)
class LossWeights:
    box: float = 5.0
    obj: float = 5.0
    noobj: float = 1.0
    cls: float = 1.0
    ignore_iou: float = 0.5


def _shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter
    return inter / union


def build_targets(boxes: list[np.ndarray], grid: tuple[int, int], anchors: np.ndarray, stride: int,
                  image_size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Per-anchor targets for a batch: boxes[n] is (M, 4) x1 y1 x2 y2 in network-input pixels."""
    gh, gw = grid
    na = len(anchors)
    n = len(boxes)
    pos = np.zeros((n, na, gh, gw), bool)
    tbox = np.zeros((n, na, 4, gh, gw), np.float32)
    wbox = np.zeros((n, na, gh, gw), np.float32)
    area = float(image_size[0] * image_size[1])
    for i, b in enumerate(boxes):
        b = np.asarray(b, np.float64).reshape(-1, 4)
        if len(b) == 0:
            continue
        wh = np.maximum(b[:, 2:] - b[:, :2], 1.0)
        centre = (b[:, :2] + b[:, 2:]) / 2
        best = np.argmax(_shape_iou(wh, anchors), axis=1)
        cells = np.clip(np.floor(centre / stride).astype(np.int64), 0, [gw - 1, gh - 1])
        for k in np.argsort(-(wh[:, 0] * wh[:, 1])):  # larger faces first; a smaller one in the same slot wins
            a, (cx, cy) = best[k], cells[k]
            off = centre[k] / stride - cells[k] - 0.5
            size = np.sqrt(wh[k] / anchors[a]) - 1.0
            pos[i, a, cy, cx] = True
            tbox[i, a, :, cy, cx] = np.concatenate([np.clip(off, -0.99, 0.99), np.clip(size, -0.99, 0.99)])
            wbox[i, a, cy, cx] = 2.0 - wh[k, 0] * wh[k, 1] / area
    return {"pos": torch.from_numpy(pos), "box": torch.from_numpy(tbox), "box_weight": torch.from_numpy(wbox)}


def _pred_boxes(z: torch.Tensor, anchors: torch.Tensor, stride: int) -> torch.Tensor:
    """(N, A, 6, H, W) pre-activations -> (N, A, H, W, 4) decoded x1 y1 x2 y2 of the current predictions."""
    y = z.detach().clamp(-1, 1)
    n, na, _, gh, gw = y.shape
    gy, gx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    cx = (y[:, :, 0] + 0.5 + gx) * stride
    cy = (y[:, :, 1] + 0.5 + gy) * stride
    w = (y[:, :, 2] + 1) ** 2 * anchors[:, 0].view(1, na, 1, 1)
    h = (y[:, :, 3] + 1) ** 2 * anchors[:, 1].view(1, na, 1, 1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _ignore_mask(pred: torch.Tensor, boxes: list[np.ndarray], thr: float) -> torch.Tensor:
    ignore = torch.zeros(pred.shape[:4], dtype=torch.bool)
    for i, b in enumerate(boxes):
        if len(b) == 0:
            continue
        gt = torch.as_tensor(np.asarray(b, np.float32)).view(1, -1, 4)
        p = pred[i].reshape(-1, 1, 4)
        iw = (torch.minimum(p[..., 2], gt[..., 2]) - torch.maximum(p[..., 0], gt[..., 0])).clamp(min=0)
        ih = (torch.minimum(p[..., 3], gt[..., 3]) - torch.maximum(p[..., 1], gt[..., 1])).clamp(min=0)
        inter = iw * ih
        union = (p[..., 2] - p[..., 0]) * (p[..., 3] - p[..., 1]) + (gt[..., 2] - gt[..., 0]) * (
            gt[..., 3] - gt[..., 1]) - inter
        iou = inter / union.clamp(min=1e-9)
        ignore[i] = (iou.max(dim=1).values > thr).view(pred.shape[1:4])
    return ignore


def yolo_loss(z: torch.Tensor, boxes: list[np.ndarray], anchors, stride: int = 32,
              weights: LossWeights = LossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of the head pre-activation ``z`` (N, A*6, H, W) for ``boxes`` (per image, network pixels).

    Returns ``(loss, parts)``: the loss is summed over anchors and averaged over the batch.
    """
    anchors_np = np.asarray(anchors, np.float64).reshape(-1, 2)
    n, c, gh, gw = z.shape
    na = len(anchors_np)
    if c != na * FIELDS:
        raise ValueError(f"head has {c} channels, expected {na * FIELDS} for {na} anchors")
    z = z.view(n, na, FIELDS, gh, gw)
    t = build_targets(boxes, (gh, gw), anchors_np, stride, (gh * stride, gw * stride))
    pos = t["pos"]
    ignore = _ignore_mask(_pred_boxes(z, torch.as_tensor(anchors_np, dtype=torch.float32), stride), boxes,
                          weights.ignore_iou)
    neg = ~pos & ~ignore
    obj = z[:, :, 4]
    pos_f, neg_f = pos.float(), neg.float()
    l_obj = ((obj.clamp(max=1.0) - 1.0) ** 2 * pos_f).sum()
    l_noobj = ((obj.clamp(min=-1.0) + 1.0) ** 2 * neg_f).sum()
    l_cls = ((z[:, :, 5].clamp(max=1.0) - 1.0) ** 2 * pos_f).sum()
    l_box = (((z[:, :, :4] - t["box"]) ** 2).sum(dim=2) * t["box_weight"] * pos_f).sum()
    loss = (weights.box * l_box + weights.obj * l_obj + weights.noobj * l_noobj + weights.cls * l_cls) / n
    parts = {"box": l_box.item() / n, "obj": l_obj.item() / n, "noobj": l_noobj.item() / n,
             "cls": l_cls.item() / n, "faces": int(pos.sum())}
    return loss, parts
