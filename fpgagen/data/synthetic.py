"""The offline default data set: real faces composited onto real backgrounds, written in WIDER format.

Faces are the 100 grey 25x25 crops of ``skimage.data.lfw_subset()``; backgrounds are scikit-image's non-face
photos (:mod:`fpgagen.data.sources`). Each face gets a random height (log-uniform), aspect, position, flip,
brightness/contrast, blur or sharpening, a skin tint in colour images, and a feathered elliptical edge;
its box is the pasted crop, exact. Some faces run past the image edge (the file keeps the unclipped box, as
WIDER does, and the loader clips it). Non-face crops of ``lfw_subset`` are pasted the same way as
distractors, without a box.

**Split by source face.** A seeded permutation of the 100 faces gives ``eval_faces`` held-out faces that
appear only in the eval split; the other faces appear only in the train split (the non-face distractors are
split likewise). ``synthetic-<split>.json`` next to the annotations records the split's source-face ids and,
per image, which source faces it holds.

Everything is deterministic in ``seed``: image ``i`` of a split depends only on ``(seed, split, i)``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from . import sources
from .wider import WiderRecord, gt_file, image_dir, write_wider_gt

GENERATOR_VERSION = 4  # bump when the images a config produces change


@dataclass(frozen=True)
class SyntheticConfig:
    n_train: int = 4000
    n_eval: int = 300
    train_size: int = 256
    eval_size: int = 416
    eval_faces: int = 20  # of the 100 lfw faces, held out for the eval split only
    min_face: float = 12.0  # face height range in pixels (log-uniform), capped at max_face_frac * image size
    max_face: float = 220.0
    max_face_frac: float = 0.8
    max_faces: int = 5
    grey_fraction: float = 0.3
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def face_split(config: SyntheticConfig = SyntheticConfig()) -> dict[str, np.ndarray]:
    """Source-face ids (indices into ``lfw_subset()``'s 100 faces, and 100 non-faces) per split; disjoint."""
    rng = np.random.default_rng([config.seed, 7919])
    faces, nonfaces = rng.permutation(100), rng.permutation(100)
    k = config.eval_faces
    return {"train": np.sort(faces[k:]), "eval": np.sort(faces[:k]),
            "train_nonfaces": np.sort(nonfaces[k:]), "eval_nonfaces": np.sort(nonfaces[:k])}


# --- compositing ------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, size: int, grey: bool) -> np.ndarray:
    if rng.random() < 0.15:  # smooth procedural texture: low-resolution noise upscaled
        cells = int(rng.integers(2, 12))
        low = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
        img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    else:
        photos = sources.backgrounds()
        photo = photos[int(rng.integers(len(photos)))]
        h, w = photo.shape[:2]
        side = int(min(h, w) * rng.uniform(0.25, 1.0))
        y0, x0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        img = cv2.resize(photo[y0:y0 + side, x0:x0 + side], (size, size),
                         interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            img = img[:, ::-1]
    img = img.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-40, 40)
    if grey:
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(img, 0, 255)


def _patch(crop: np.ndarray, w: int, h: int, rng: np.random.Generator, grey: bool) -> np.ndarray:
    """A 25x25 grey crop -> (h, w, 3) float patch with photometric variation and a tint in colour images."""
    g = crop.astype(np.float32)
    if rng.random() < 0.5:
        g = g[:, ::-1]
    g = (g - g.mean()) * rng.uniform(0.6, 1.4) + g.mean() + rng.uniform(-50, 50)
    g = cv2.resize(np.ascontiguousarray(g), (w, h), interpolation=cv2.INTER_CUBIC if h > 25 else cv2.INTER_AREA)
    r = rng.random()
    if r < 0.3:
        g = cv2.GaussianBlur(g, (0, 0), rng.uniform(0.5, 1.5) * max(h, 25) / 50)
    elif r < 0.6 and h > 30:  # unsharp mask: large upscaled crops are otherwise always soft
        blur = cv2.GaussianBlur(g, (0, 0), max(h, 25) / 40)
        g = g + rng.uniform(0.5, 1.5) * (g - blur)
    if h > 40 and rng.random() < 0.5:  # grain: an upscaled 25x25 crop has no fine detail of its own
        g = g + rng.normal(0, rng.uniform(2, 8), g.shape).astype(np.float32)
    if grey:
        return np.repeat(g[:, :, None], 3, axis=2)
    tint = np.array([1.0, rng.uniform(0.72, 0.95), rng.uniform(0.55, 0.9)], np.float32)
    tint *= 1.0 / (0.299 * tint[0] + 0.587 * tint[1] + 0.114 * tint[2])  # keep the luminance
    return g[:, :, None] * tint


def _alpha(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A feathered ellipse filling most of the (h, w) box: 1 inside, blending to 0 at the edges."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    reach = rng.uniform(1.0, 1.25)  # > 1 widens the ellipse towards the box corners
    d = np.sqrt(((xx + 0.5) / w * 2 - 1) ** 2 + ((yy + 0.5) / h * 2 - 1) ** 2) / reach
    feather = rng.uniform(0.1, 0.3)
    return np.clip((1.0 - d) / feather, 0.0, 1.0)[:, :, None]


def _paste(img: np.ndarray, patch: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    H, W = img.shape[:2]
    h, w = patch.shape[:2]
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    p = patch[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    a = alpha[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    img[ay0:ay1, ax0:ax1] = a * p + (1 - a) * img[ay0:ay1, ax0:ax1]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compose(rng: np.random.Generator, size: int, face_ids: np.ndarray, nonface_ids: np.ndarray,
            config: SyntheticConfig = SyntheticConfig()) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One composite image: ``(image uint8 RGB, boxes int (N, 4) x1 y1 w h unclipped, source face ids)``."""
    faces, nonfaces = sources.lfw()
    grey = rng.random() < config.grey_fraction
    img = _background(rng, size, grey)
    # Distractors first, so faces are never hidden beneath them: lfw non-face crops and patches of other
    # photos, pasted exactly like faces, so that a feathered blob is no cue and only the content tells.
    for _ in range(int(rng.integers(0, 5))):
        side = int(np.exp(rng.uniform(np.log(10), np.log(size * 0.5))))
        w = max(4, int(side * rng.uniform(0.7, 1.3)))
        if rng.random() < 0.5:
            patch = _patch(nonfaces[int(rng.choice(nonface_ids))], w, side, rng, grey)
        else:
            patch = _background(rng, max(w, side), grey)[:side, :w]
        x0, y0 = int(rng.integers(-side // 4, size - side // 2)), int(rng.integers(-side // 4, size - side // 2))
        _paste(img, patch, _alpha(w, side, rng), x0, y0)
    n = int(rng.choice(np.arange(config.max_faces + 1), p=_face_count_p(config.max_faces)))
    boxes, ids = [], []
    hi = min(config.max_face, config.max_face_frac * size)
    for _ in range(n):
        for _try in range(20):
            h = int(round(np.exp(rng.uniform(np.log(config.min_face), np.log(hi)))))
            w = max(4, int(round(h * rng.uniform(0.78, 1.0))))
            margin = 0.3 if rng.random() < 0.1 else 0.0  # sometimes let a face run past the edge
            x0 = int(rng.integers(int(-margin * w), size - w + int(margin * w) + 1))
            y0 = int(rng.integers(int(-margin * h), size - h + int(margin * h) + 1))
            box = (x0, y0, x0 + w, y0 + h)
            if all(_iou(box, (b[0], b[1], b[0] + b[2], b[1] + b[3])) < 0.05 for b in boxes):
                break
        else:
            continue
        fid = int(rng.choice(face_ids))
        _paste(img, _patch(faces[fid], w, h, rng, grey), _alpha(w, h, rng), x0, y0)
        boxes.append((x0, y0, w, h))
        ids.append(fid)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    img = img + rng.normal(0, rng.uniform(0, 6), img.shape).astype(np.float32)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return out, np.array(boxes, np.int64).reshape(-1, 4), ids


def _face_count_p(max_faces: int) -> np.ndarray:
    p = np.array([0.5] + [1.0 / (k + 1) for k in range(1, max_faces + 1)], np.float64)
    return p / p.sum()


# --- writing the set ----------------------------------------------------------------------------------
SPLITS = {"train": ("train", "n_train", "train_size", 1), "val": ("eval", "n_eval", "eval_size", 2)}


def generate_split(root: str | Path, name: str, config: SyntheticConfig = SyntheticConfig(), log=None) -> Path:
    """Write one split (``train`` or ``val``) under ``root`` in the WIDER layout, then its marker
    ``synthetic-<name>.json`` (config, source-face ids of the split, and the source faces of every image)."""
    root = Path(root)
    split, count_field, size_field, stream = SPLITS[name]
    n, size = getattr(config, count_field), getattr(config, size_field)
    ids = face_split(config)
    folder = image_dir(root, name) / "synth"
    folder.mkdir(parents=True, exist_ok=True)
    records, per_image = [], {}
    for i in range(n):
        rng = np.random.default_rng([config.seed, stream, i])
        img, boxes, faces = compose(rng, size, ids[split], ids[f"{split}_nonfaces"], config)
        rel = f"synth/{split}_{i:05d}.jpg"
        cv2.imwrite(str(image_dir(root, name) / rel), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        records.append(WiderRecord(rel, boxes, np.zeros((len(boxes), 6), np.int64)))
        per_image[rel] = faces
        if log and (i + 1) % 1000 == 0:
            log(f"synthetic {name}: {i + 1}/{n} images")
    write_wider_gt(records, gt_file(root, name))
    marker = {"config": asdict(config), "version": GENERATOR_VERSION, "split": name, "images": n,
              "source_faces": ids[split].tolist(), "source_nonfaces": ids[f"{split}_nonfaces"].tolist(),
              "faces_per_image": per_image}
    (root / f"synthetic-{name}.json").write_text(json.dumps(marker))
    return root


def generate(root: str | Path, config: SyntheticConfig = SyntheticConfig(), log=None) -> Path:
    """Write both splits under ``root`` (WIDER split names ``train`` and ``val``; ``val`` is the eval split)."""
    for name in SPLITS:
        generate_split(root, name, config, log)
    return Path(root)


def default_root(config: SyntheticConfig = SyntheticConfig(), base: str | Path = "build/data") -> Path:
    """The cache folder: keyed by everything that shapes the images except the image counts."""
    key = SyntheticConfig(**{**asdict(config), "n_train": 0, "n_eval": 0}).key()
    return Path(base) / f"synthface-{key}"


def _complete(root: Path, name: str, config: SyntheticConfig) -> bool:
    try:
        marker = json.loads((root / f"synthetic-{name}.json").read_text())
    except (OSError, ValueError):
        return False
    if marker.get("version") != GENERATOR_VERSION or marker.get("images") != getattr(config, SPLITS[name][1]):
        return False
    shape = {k: v for k, v in asdict(config).items() if k not in ("n_train", "n_eval")}
    return {k: v for k, v in marker.get("config", {}).items() if k not in ("n_train", "n_eval")} == shape


def ensure(config: SyntheticConfig = SyntheticConfig(), splits=("train", "val"), base: str | Path = "build/data",
           log=None) -> Path:
    """The synthetic set for ``config`` under ``base``, each requested split generated once and then reused."""
    root = default_root(config, base)
    for name in splits:
        if not _complete(root, name, config):
            if log:
                log(f"generating the synthetic {name} split ({getattr(config, SPLITS[name][1])} images) in {root}")
            generate_split(root, name, config, log)
    return root


def split_record(root: str | Path, name: str) -> dict:
    """The marker of one generated split: its source-face ids and the source faces of each image."""
    return json.loads((Path(root) / f"synthetic-{name}.json").read_text())
