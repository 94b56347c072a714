"""The deployment pipeline's checks (ML-EXray's catches): what the accelerator received against fpgagen's reference
pre-processing of the same photo, and the post-processing settings against the detector's.

The reference frame is what fpgagen's runtime hands the backend (fpgagen.runtime.model.FaceDetector.preprocess):
``letterbox_exact`` (OpenCV's INTER_LINEAR_EXACT, pad 114, centred) to the network's square input, or for a
--camera build ``fit_exact`` into the camera frame. Each check names one difference and measures what it alone
costs: the reference frame with only that fault applied, run through the C-sim, against the reference frame's
output (differing codes; detections gained and lost, IoU >= 0.5, when the build has a detector.json).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..data.transforms import PAD_VALUE, Letterbox, letterbox_size
from ..errors import FpgagenError

REFERENCE_METHOD = "INTER_LINEAR_EXACT"
# what a deployment may resize with instead; fpgagen's training letterbox (transforms.letterbox) is INTER_AREA when
# shrinking and INTER_LINEAR when enlarging
RESIZE_METHODS = {"INTER_LINEAR_EXACT": cv2.INTER_LINEAR_EXACT, "INTER_LINEAR": cv2.INTER_LINEAR,
                  "INTER_AREA": cv2.INTER_AREA, "INTER_NEAREST": cv2.INTER_NEAREST, "INTER_CUBIC": cv2.INTER_CUBIC}
TRAIN_NOTE = {"INTER_AREA": " (fpgagen's training letterbox when shrinking)",
              "INTER_LINEAR": " (fpgagen's training letterbox when enlarging)"}


def geometry(image_shape, acc) -> dict:
    """Where the reference pre-processing puts the picture: frame (W, H), resized (nw, nh) at (dx, dy), pad value."""
    h, w = image_shape[:2]
    pre = acc.net.input.preprocess
    if pre:  # --camera: the photo is fitted into a camera frame (fit_exact); the fabric letterboxes that
        cam_w, cam_h = pre["camera"]
        scale = min(cam_w / w, cam_h / h)
        nw, nh = min(cam_w, max(1, round(w * scale))), min(cam_h, max(1, round(h * scale)))
        return {"frame": (cam_w, cam_h), "nw": nw, "nh": nh, "dx": (cam_w - nw) // 2, "dy": (cam_h - nh) // 2,
                "pad": int(pre.get("pad", PAD_VALUE)), "scale": scale, "bgr": pre.get("format") == "bgr"}
    s_h, s_w, _ = acc.net.in_stream_shape
    scale, nw, nh, dx, dy = letterbox_size(w, h, s_h)
    return {"frame": (s_w, s_h), "nw": nw, "nh": nh, "dx": dx, "dy": dy, "pad": PAD_VALUE, "scale": scale,
            "bgr": False}


def make_frame(image: np.ndarray, g: dict, method: str = REFERENCE_METHOD, dx=None, dy=None, pad=None):
    """The photo resized with ``method`` into ``g``'s geometry (optionally at another offset or pad value)."""
    w, h = g["frame"]
    dx, dy, pad = (g["dx"] if dx is None else dx), (g["dy"] if dy is None else dy), (g["pad"] if pad is None else pad)
    out = np.full((h, w, 3), pad, np.uint8)
    nw, nh = g["nw"], g["nh"]
    picture = image if (nw, nh) == image.shape[1::-1] else cv2.resize(image, (nw, nh),
                                                                       interpolation=RESIZE_METHODS[method])
    x0, y0 = max(dx, 0), max(dy, 0)
    x1, y1 = min(dx + nw, w), min(dy + nh, h)
    out[y0:y1, x0:x1] = picture[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    if g["bgr"]:
        out = out[..., ::-1]
    return out


def reference_frame(image: np.ndarray, acc) -> tuple[np.ndarray, dict]:
    g = geometry(image.shape, acc)
    return make_frame(image, g), g


def _content_box(frame: np.ndarray, pad: float, tol: float = 1.5):
    """(x0, y0, x1, y1) of the rows/columns that are not all the pad value, or None for an all-pad frame."""
    not_pad = np.abs(frame.astype(np.float64) - pad).max(axis=2) > tol
    rows, cols = np.flatnonzero(not_pad.any(axis=1)), np.flatnonzero(not_pad.any(axis=0))
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _fit(d: np.ndarray, r: np.ndarray) -> tuple[float, float, float]:
    """Least squares d = a * r + b over every value; (a, b, mean |residual|)."""
    x, y = r.reshape(-1).astype(np.float64), d.reshape(-1).astype(np.float64)
    var = x.var()
    a = float(((x - x.mean()) * (y - y.mean())).mean() / var) if var > 0 else 1.0
    b = float(y.mean() - a * x.mean())
    return a, b, float(np.abs(y - (a * x + b)).mean())


def diagnose(image: np.ndarray, deployed: np.ndarray, acc) -> tuple[list[dict], dict]:
    """The four checks on the first deployed frame; returns them and, per failed check, the reference frame with
    only that fault applied (for measuring its effect)."""
    ref, g = reference_frame(image, acc)
    d = np.asarray(deployed)
    if d.ndim == 3:
        d = d[None]
    w, h = g["frame"]
    if d.ndim != 4 or d.shape[1:] != (h, w, 3):
        raise FpgagenError(f"deployed input of shape {list(d.shape)}", "--deployed-input",
                           f"pass the frames the backend received, (N, {h}, {w}, 3) uint8 (fpgagen detect "
                           "--save-input writes them)")
    d = d[0].astype(np.float64)
    faults, checks = {}, []
    if np.array_equal(d, ref):
        return [{"check": c, "ok": True, "detail": "the deployed frame equals fpgagen's reference pre-processing"}
                for c in ("channel_order", "scale", "resize", "letterbox")], {}
    letterboxed = (g["nw"], g["nh"]) != (w, h)
    # where the picture sits: the pad is the border's commonest value, the picture what differs from it (on the
    # deployed frame's own scale: a 0-1 frame pads with 114/255)
    dx, dy, pad_raw = g["dx"], g["dy"], None
    if letterboxed:
        border = np.concatenate([d[0], d[-1], d[:, 0], d[:, -1]]).mean(axis=1)
        values, counts = np.unique(np.round(border, 4), return_counts=True)
        pad_raw = float(values[np.argmax(counts)])
        span = max(float(d.max() - d.min()), 1e-9)
        box = _content_box(d, pad_raw, tol=1.5 * span / 255)
        if box is not None:
            dx = box[0] if box[2] - box[0] < w else g["dx"]
            dy = box[1] if box[3] - box[1] < h else g["dy"]
    # scale and channel order together, on the picture where the deployed frame has it: the channel order whose
    # affine fit against the reference resize (at that offset) leaves less residual
    aligned = make_frame(image, g, dx=dx, dy=dy).astype(np.float64)
    y0, y1, x0, x1 = max(dy, 0), min(dy + g["nh"], h), max(dx, 0), min(dx + g["nw"], w)
    pic_d, pic_r = d[y0:y1, x0:x1], aligned[y0:y1, x0:x1]
    fits = {False: _fit(pic_d, pic_r), True: _fit(pic_d, pic_r[..., ::-1])}
    swapped = fits[True][2] < 0.7 * fits[False][2]
    a, b, _ = fits[swapped]
    checks.append({"check": "channel_order", "ok": not swapped,
                   "detail": ("the deployed frame's channels are reversed against the reference (BGR fed to an "
                              "RGB-trained network, or the reverse)" if swapped else "same channel order (RGB)"),
                   "residual_same": round(fits[False][2], 3), "residual_swapped": round(fits[True][2], 3)})
    if swapped:
        faults["channel_order"] = ref[..., ::-1].copy()
        d = d[..., ::-1]
    scaled = abs(a - 1) > 0.05 or abs(b) > 3
    hint = " (pixels scaled to 0-1)" if scaled and 0 < a < 0.02 else ""
    checks.append({"check": "scale", "ok": not scaled, "gain": round(a, 5), "offset": round(b, 3),
                   "detail": (f"deployed = {a:.4g} x reference + {b:.3g}{hint}; the accelerator takes uint8 pixels "
                              "0-255" if scaled else f"same scale (fit {a:.3f} x + {b:.2f})")})
    if scaled:
        faults["scale"] = np.clip(np.rint(a * ref.astype(np.float64) + b), 0, 255).astype(np.uint8)
    if scaled and a:
        d = np.clip((d - b) / a, 0, 255)
    letter = {"check": "letterbox", "ok": True, "detail": "no padding at this aspect ratio (nothing to check)"}
    if letterboxed:
        pad = (pad_raw - b) / a if scaled and a else pad_raw
        pad_ok = abs(pad - g["pad"]) <= 1.5
        shift = (dx - g["dx"], dy - g["dy"])
        ok = pad_ok and shift == (0, 0)
        parts = []
        if shift != (0, 0):
            parts.append(f"the picture starts at (x {dx}, y {dy}), the reference centres it at (x {g['dx']}, "
                         f"y {g['dy']}): shifted by {shift}")
        if not pad_ok:
            parts.append(f"pad value {pad:.0f}, the reference pads with {g['pad']}")
        letter = {"check": "letterbox", "ok": ok, "offset": [dx, dy], "reference_offset": [g["dx"], g["dy"]],
                  "pad": round(pad, 1), "reference_pad": g["pad"],
                  "detail": "; ".join(parts) if parts else f"same offset ({g['dx']}, {g['dy']}) and pad {g['pad']}"}
        if not ok:
            faults["letterbox"] = make_frame(image, g, dx=dx, dy=dy, pad=int(np.clip(np.rint(pad), 0, 255)))
    # resize method: the candidates at the deployed geometry, compared on the picture
    dist = {}
    for method in RESIZE_METHODS:
        cand = make_frame(image, g, method, dx=dx, dy=dy).astype(np.float64)
        dist[method] = float(np.abs(cand[y0:y1, x0:x1] - d[y0:y1, x0:x1]).mean())
    best = min(dist, key=dist.get)
    resize_ok = best == REFERENCE_METHOD or dist[best] >= 0.7 * dist[REFERENCE_METHOD] - 1e-9
    if (g["nw"], g["nh"]) == image.shape[1::-1]:
        checks.append({"check": "resize", "ok": True, "detail": "the photo is used at its size (no resize)"})
    else:
        checks.append({"check": "resize", "ok": resize_ok, "best_match": best,
                       "mean_abs_diff": {k: round(v, 3) for k, v in dist.items()},
                       "detail": (f"the picture matches {best}{TRAIN_NOTE.get(best, '')} (mean |Δ| {dist[best]:.2f}) "
                                  f"better than fpgagen's {REFERENCE_METHOD} (mean |Δ| {dist[REFERENCE_METHOD]:.2f})"
                                  if not resize_ok else f"resized as fpgagen does ({REFERENCE_METHOD}, mean |Δ| "
                                  f"{dist[REFERENCE_METHOD]:.2f} after the other checks' corrections)")})
        if not resize_ok:
            faults["resize"] = make_frame(image, g, best)
    checks.append(letter)
    order = {"channel_order": 0, "scale": 1, "resize": 2, "letterbox": 3}
    return sorted(checks, key=lambda c: order[c["check"]]), faults


# --- effects -------------------------------------------------------------------------------------------------
def frames_to_codes(acc, frames: np.ndarray) -> np.ndarray:
    if acc.pixels_are_codes or acc.net.input.preprocess:
        return np.asarray(frames, np.int64)
    return acc.quantize_input(frames.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from ..detect.nms import iou_matrix

    return iou_matrix(a, b) if len(a) and len(b) else np.zeros((len(a), len(b)))


def gained_lost(ref_boxes: np.ndarray, boxes: np.ndarray, iou: float = 0.5) -> tuple[int, int]:
    """Detections in ``boxes`` with no reference box of IoU >= ``iou`` (gained), and reference boxes with none
    in ``boxes`` (lost)."""
    m = _iou(np.asarray(ref_boxes).reshape(-1, 4), np.asarray(boxes).reshape(-1, 4))
    lost = int((m.max(axis=1, initial=0) < iou).sum()) if m.size else len(ref_boxes)
    gained = int((m.max(axis=0, initial=0) < iou).sum()) if m.size else len(boxes)
    return gained, lost


class Effects:
    """Runs frames through the C-sim and decodes detections (when the build has detector.json)."""

    def __init__(self, acc, conf=None, nms_iou=None, anchors=None):
        from ..runtime.backends import CSimBackend
        from ..runtime.model import DEFAULT_CONF, DEFAULT_NMS_IOU, FaceDetector, read_anchors

        self.acc = acc
        self.trained = {"conf": DEFAULT_CONF, "nms_iou": DEFAULT_NMS_IOU, "anchors": read_anchors(acc.build_dir)}
        self.deployed = {"conf": conf if conf is not None else DEFAULT_CONF,
                         "nms_iou": nms_iou if nms_iou is not None else DEFAULT_NMS_IOU,
                         "anchors": anchors if anchors is not None else self.trained["anchors"]}
        self.detectors = {}
        if self.trained["anchors"] is not None:
            try:
                backend = CSimBackend(acc)
                for name, s in (("trained", self.trained), ("deployed", self.deployed)):
                    self.detectors[name] = FaceDetector(backend, s["anchors"], conf=s["conf"], nms_iou=s["nms_iou"])
            except FpgagenError:
                self.detectors = {}  # not a detector's output: effects in codes only

    def outputs(self, frames: np.ndarray):
        out = self.acc.run_stream(frames_to_codes(self.acc, frames))
        if getattr(self.acc.lib, "has_taps", False):  # the trace's library, reused: drop what it recorded
            from .taps import clear_taps

            clear_taps(self.acc.lib)
        return out[0] if isinstance(out, tuple) else out

    def boxes(self, codes: np.ndarray, which: str = "trained") -> list[np.ndarray]:
        det = self.detectors.get(which)
        if det is None:
            return []
        return [det.detector.postprocess(c.transpose(2, 0, 1)).boxes for c in codes]

    def effect(self, ref_codes, codes, ref_boxes, boxes) -> dict:
        doc = {"differing_codes": int((ref_codes != codes).sum()), "of": int(ref_codes.size),
               "max_abs_diff": int(np.abs(ref_codes.astype(np.int64) - codes).max(initial=0))}
        if self.detectors:
            doc["detections_reference"], doc["detections"] = len(ref_boxes), len(boxes)
            doc["detections_gained"], doc["detections_lost"] = gained_lost(ref_boxes, boxes)
        return doc


def run_checks(image: np.ndarray, deployed: np.ndarray | None, acc, conf=None, nms_iou=None, anchors=None):
    """Pre-processing checks (with ``deployed``) and post-processing checks, each with its measured effect."""
    effects = Effects(acc, conf, nms_iou, anchors)
    ref, _ = reference_frame(image, acc)
    pre_checks, faults = diagnose(image, deployed, acc) if deployed is not None else ([], {})
    frames = [ref] + list(faults.values())
    names = ["reference"] + list(faults)
    if deployed is not None:
        dep = np.asarray(deployed)
        dep = dep[None] if dep.ndim == 3 else dep
        frames.append(np.clip(np.rint(dep[0].astype(np.float64)), 0, 255).astype(np.uint8))
        names.append("deployed")
    codes = effects.outputs(np.stack(frames))
    boxes = effects.boxes(codes)
    by_name = dict(zip(names, range(len(names)), strict=True))
    for c in pre_checks:
        if c["check"] in faults:
            k = by_name[c["check"]]
            c["effect"] = effects.effect(codes[0], codes[k], boxes[0] if boxes else [], boxes[k] if boxes else [])
    deployed_effect = None
    if deployed is not None:
        k = by_name["deployed"]
        deployed_effect = effects.effect(codes[0], codes[k], boxes[0] if boxes else [], boxes[k] if boxes else [])
    post_checks = []
    if effects.detectors:
        dep_boxes = effects.boxes(codes[:1], "deployed")[0]
        for key in ("conf", "nms_iou", "anchors"):
            t, d = effects.trained[key], effects.deployed[key]
            same = np.allclose(np.asarray(t, np.float64), np.asarray(d, np.float64)) if \
                np.shape(t) == np.shape(d) else False
            post_checks.append({"check": key, "ok": bool(same), "trained": t, "deployed": d,
                                "detail": f"{key} {d} as deployed, {t} as the detector was trained and evaluated "
                                          f"(detector.json, fpgagen detect's defaults)"})
        if not all(c["ok"] for c in post_checks):
            gained, lost = gained_lost(boxes[0], dep_boxes)
            for c in post_checks:
                if not c["ok"]:
                    c["effect"] = {"differing_codes": 0, "detections_reference": len(boxes[0]),
                                   "detections": len(dep_boxes), "detections_gained": gained,
                                   "detections_lost": lost}
    return pre_checks, post_checks, deployed_effect, {"reference_frame": ref, "codes": codes, "boxes": boxes}


__all__ = ["Letterbox", "diagnose", "reference_frame", "run_checks"]
