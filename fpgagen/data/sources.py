"""The real images that ship inside registry packages, and what each may be used for.

Training and tuning use only these (the issue's rule):

* ``skimage.data.lfw_subset()``: 100 real 25x25 grey faces (tight crops, forehead to chin) and 100 non-faces;
* scikit-image's non-face photos as backgrounds (:data:`BACKGROUNDS`).

Held out from training, for an honest demo: scikit-image's ``astronaut()`` and matplotlib's
``sample_data/grace_hopper.jpg`` (:func:`demo_photos`), although the issue would allow them. ``camera()`` is
not a background because it shows a face. Photos shipped by other packages are reserved for independent
evaluation and are never read here.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

# scikit-image photos without a human face (loaded by name from skimage.data; all ship inside the wheel).
BACKGROUNDS = ("brick", "cat", "chelsea", "coffee", "coins", "clock", "grass", "gravel", "hubble_deep_field",
               "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "colorwheel", "cell",
               "microaneurysms", "logo", "stereo_motorcycle", "horse", "shepp_logan_phantom", "checkerboard")

# Hand-set face boxes (x1, y1, x2, y2 in the original pixels) of the two held-out photos: used only to say
# whether a demo detection hits the face, never for training or choosing thresholds.
DEMO_FACE_BOXES = {"astronaut": [(170, 55, 265, 172)], "grace_hopper": [(160, 118, 352, 335)]}


def _skimage():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import skimage.data

    return skimage.data


@functools.cache
def lfw() -> tuple[np.ndarray, np.ndarray]:
    """``(faces, non_faces)``: two uint8 arrays of shape (100, 25, 25) from ``skimage.data.lfw_subset()``."""
    data = _skimage().lfw_subset()
    data = np.clip(np.round(data * 255), 0, 255).astype(np.uint8)
    return data[:100].copy(), data[100:].copy()


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    elif img.dtype != np.uint8:
        img = np.clip(np.round(img * 255 if img.max() <= 1.0 else img), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.shape[2] == 4:
        img = img[:, :, :3]
    return np.ascontiguousarray(img)


@functools.cache
def backgrounds() -> tuple[np.ndarray, ...]:
    """The background photos as uint8 RGB arrays (a stereo pair counts twice)."""
    data = _skimage()
    out = []
    for name in BACKGROUNDS:
        img = getattr(data, name)()
        for part in img[:2] if isinstance(img, tuple) else (img,):
            out.append(_rgb(np.asarray(part)))
    return tuple(out)


@dataclass(eq=False)
class Photo:
    name: str
    image: np.ndarray  # uint8 RGB
    faces: np.ndarray  # (N, 4) float32 x1 y1 x2 y2, hand-set


def demo_photos() -> list[Photo]:
    """The two held-out real photos: scikit-image's astronaut and matplotlib's Grace Hopper (colour)."""
    import matplotlib.cbook

    astronaut = _rgb(_skimage().astronaut())
    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    hopper = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return [Photo(name, img, np.array(DEMO_FACE_BOXES[name], np.float32))
            for name, img in (("astronaut", astronaut), ("grace_hopper", hopper))]
