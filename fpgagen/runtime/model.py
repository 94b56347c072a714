"""A face detector on a backend: letterbox -> ``backend.infer`` -> integer decode + NMS (fpgagen.detect) -> boxes
in the original image's pixels. Also the shipped face detector's accelerator, built on first use and cached.

A build directory made for detection carries ``detector.json`` (anchors, input size) beside ``network.json``, so
the boxes decode against the anchors the head was trained with, never silently against the paper's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..data.transforms import PAD_VALUE, Letterbox, fit_exact, letterbox_exact
from ..detect import Backend as DetectBackend
from ..detect import Detections, Detector
from ..errors import FpgagenError
from .backends import RUNTIME_JSON, Backend, default_backend, make_backend, read_runtime_spec, write_runtime_spec

DETECTOR_JSON = "detector.json"
SHIPPED_CHECKPOINT = "lpyolo_w4a4_synthface.pt"
MANIFEST = "manifest.json"
MIN_SIDE, MAX_SIDE = 8, 16384  # images outside these sides are refused with a clear error
DEFAULT_CONF, DEFAULT_NMS_IOU = 0.5, 0.3


def check_image(image, where: str = "image") -> np.ndarray:
    """A uint8 RGB image (H, W, 3) of sensible size, or a FpgagenError that says what is wrong and what to do."""
    if not isinstance(image, np.ndarray):
        raise FpgagenError(f"not an image array ({type(image).__name__})", where, "pass a uint8 RGB numpy array")
    if image.dtype != np.uint8:
        raise FpgagenError(f"{image.dtype} pixels", where,
                           "convert to 8-bit first (e.g. (img >> 8).astype(np.uint8) for 16-bit), or pass the file "
                           "path so OpenCV converts it")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        raise FpgagenError("a greyscale image (one channel)", where,
                           "convert it with cv2.cvtColor(img, cv2.COLOR_GRAY2RGB), or pass the file path")
    if image.ndim != 3 or image.shape[2] != 3:
        raise FpgagenError(f"an image of shape {list(image.shape)}", where, "pass RGB pixels of shape (H, W, 3)")
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE or max(h, w) > MAX_SIDE:
        raise FpgagenError(f"an image of {w}x{h} pixels", where,
                           f"pass images between {MIN_SIDE} and {MAX_SIDE} pixels a side")
    return image


def fast_letterbox(image: np.ndarray, size: int, pad: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """The host letterbox: fpgagen.data.transforms.letterbox's geometry (same scale, size and offsets) with
    OpenCV's bit-exact bilinear (INTER_LINEAR_EXACT) at every scale, so the host, the reference and C-sim
    backends and a --camera build's fabric letterbox give the same bytes (fpgagen.data.transforms.letterbox_exact).
    The shipped checkpoint was trained with ``letterbox`` (area averaging when shrinking)."""
    return letterbox_exact(image, size, pad)


DEFAULT_CAMERA = "640x480"  # the shipped detector's default build: this camera's letterbox in the fabric


class FaceDetector:
    """``preprocess`` (letterbox to the accelerator's uint8 input), ``backend.infer``, ``postprocess`` (integer
    decode, NMS, back to original pixels). The pipeline runs the three in separate threads."""

    def __init__(self, backend: Backend, anchors, conf: float = DEFAULT_CONF, nms_iou: float = DEFAULT_NMS_IOU,
                 max_det: int = 100):
        self.fabric_letterbox = getattr(backend, "preprocess", None)
        h, w, c = (*self.fabric_letterbox["size"][::-1], 3) if self.fabric_letterbox else backend.input_shape
        if h != w or c != 3:
            raise FpgagenError(f"an accelerator input of {w}x{h}x{c}", repr(backend),
                               "the face detector takes square RGB frames (LPYOLO at a multiple of 32)")
        out_shape = tuple(getattr(backend, "output_shape", ()) or ())
        n_anchors = len(np.asarray(anchors, np.float64).reshape(-1, 2))
        if h % 32 or (out_shape and out_shape != (h // 32, w // 32, n_anchors * 6)):
            raise FpgagenError(f"an accelerator of input {w}x{h}x{c} and output {list(out_shape)} is not a face "
                               f"detector for {n_anchors} anchor(s)", repr(backend),
                               f"the face detector is LPYOLO-shaped: input a multiple of 32, output (H/32, W/32, "
                               f"6 x anchors) = {[h // 32, w // 32, n_anchors * 6]}; check --accelerator and --anchors")
        if backend.output_quant is None:
            raise FpgagenError("an output that is not one per-tensor quantizer", repr(backend),
                               "the detector decodes LPYOLO's QuantHardTanh codes")
        if not (0 < conf < 1) or not (0 < nms_iou <= 1):
            raise FpgagenError(f"conf={conf!r}, nms_iou={nms_iou!r}", "FaceDetector",
                               "use 0 < conf < 1 (objectness) and 0 < nms_iou <= 1")
        self.backend, self.size = backend, h
        self.anchors = np.asarray(anchors, np.float64).reshape(-1, 2)
        self.detector = Detector(DetectBackend(self._run_nchw, backend.output_quant, backend.name), self.anchors,
                                 h, conf=conf, nms_iou=nms_iou, max_det=max_det)

    def _run_nchw(self, batch: np.ndarray) -> np.ndarray:
        return self.backend.infer(batch).transpose(0, 3, 1, 2)

    def preprocess(self, image: np.ndarray, where: str = "image") -> tuple[np.ndarray, Letterbox]:
        """An RGB image -> the backend's frame and the map from network pixels back to the image's. A --camera
        build takes a camera-sized frame as it is (the fabric letterboxes it); another image is first fitted into
        a camera-sized frame on the host."""
        image = check_image(image, where)
        if not self.fabric_letterbox:
            return fast_letterbox(image, self.size)
        cam_w, cam_h = self.fabric_letterbox["camera"]
        if image.shape[:2] == (cam_h, cam_w):
            frame, fit = image, Letterbox(1.0, 0, 0)
        else:
            frame, fit = fit_exact(image, cam_w, cam_h, self.fabric_letterbox["pad"])
        if self.fabric_letterbox["format"] == "bgr":  # the fabric swaps the channels of a BGR camera
            frame = frame[..., ::-1]
        scale = self.size / max(cam_w, cam_h)  # the fabric's letterbox geometry (fpgagen.data.transforms)
        dx, dy = self.fabric_letterbox["offset"]
        return frame, Letterbox(fit.scale * scale, fit.dx * scale + dx, fit.dy * scale + dy)

    def postprocess(self, codes: np.ndarray, box: Letterbox, image_shape) -> Detections:
        """One frame's output codes (h, w, c) in stream order -> detections in the original image's pixels."""
        det = self.detector.postprocess(codes.transpose(2, 0, 1))  # a view; only candidates reach float
        b = box.to_original(det.boxes)
        h, w = image_shape[:2]
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w - 1)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h - 1)
        return Detections(b, det.scores)

    def __call__(self, images: list[np.ndarray]) -> list[Detections]:
        """Whole images in, detections out, one batch through the backend (no pipeline)."""
        if not images:
            return []
        pre = [self.preprocess(img, f"image {i}") for i, img in enumerate(images)]
        codes = self.backend.infer(np.stack([p[0] for p in pre]))
        return [self.postprocess(c, p[1], img.shape) for c, p, img in zip(codes, pre, images, strict=True)]


def detections_json(det: Detections, digits: int = 1) -> list[dict]:
    return [{"box": [round(float(v), digits) for v in b], "score": round(float(s), 4)}
            for b, s in zip(det.boxes, det.scores, strict=True)]


# --- the shipped face detector, built once and cached ---------------------------------------------------------
def cache_root() -> Path:
    return Path(os.environ.get("FPGAGEN_CACHE", Path.home() / ".cache" / "fpgagen"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(build_dir: Path) -> None:
    files = {p.relative_to(build_dir).as_posix(): _digest(p) for p in sorted(build_dir.rglob("*"))
             if p.is_file() and p.name != MANIFEST}
    (build_dir / MANIFEST).write_text(json.dumps(files, indent=1))


def verify_manifest(build_dir: Path) -> str | None:
    """None when every file the build recorded is there with the same SHA-256; else what is wrong."""
    try:
        files = json.loads((build_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return "no manifest"
    for rel, digest in files.items():
        path = build_dir / rel
        if not path.is_file():
            return f"{rel} is missing"
        if _digest(path) != digest:
            return f"{rel} changed"
    return None if {"network.json", "network.npz", DETECTOR_JSON, RUNTIME_JSON} <= set(files) else "incomplete build"


GENERATOR_SKIP = {"runtime", "train", "data", "detect", "checkpoints", "synth", "__pycache__"}


def generator_fingerprint(board: str) -> str:
    """SHA-256 of the code that turns the checkpoint into a build (the compiler's Python, the HLS templates, the
    board file): a new fpgagen that generates different C++ gets a new cached build, never a stale one."""
    package = Path(__file__).resolve().parent.parent
    roots = [package, package.parent / "templates" / "hls", package.parent / "boards" / board]
    digest = hashlib.sha256()
    for root in roots:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and not GENERATOR_SKIP & set(rel.parts) and path.suffix in (".py", ".j2", ".h", ".yaml"):
                digest.update(rel.as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def shipped_face_build(board: str = "pynq_z2", log=print, camera: str | None = DEFAULT_CAMERA) -> Path:
    """The build directory of the shipped W4A4 face detector (416x416), built on first use under the user cache
    (``$FPGAGEN_CACHE`` or ``~/.cache/fpgagen``) and checked against its manifest before every reuse. By default
    with a 640x480 camera's letterbox in the fabric (``camera``; None: the plain 416x416-input build)."""
    import fpgagen

    # the same file as fpgagen.train.shipped_checkpoint("w4a4"), found without importing torch (a cache hit
    # must stay light: on the board there is no torch at all)
    ckpt = Path(fpgagen.__file__).parent / "checkpoints" / SHIPPED_CHECKPOINT
    key = hashlib.sha256(ckpt.read_bytes() + f"{fpgagen.__version__}|{board}|416|{camera or ''}|".encode()
                         + generator_fingerprint(board).encode()).hexdigest()[:16]
    variant = "-" + camera.replace(":", "_") if camera else ""
    build_dir = cache_root() / "models" / f"lpyolo_w4a4_face{variant}-{key}"
    problem = verify_manifest(build_dir) if build_dir.exists() else "not built yet"
    if problem is None:
        return build_dir
    if build_dir.exists():
        log(f"fpgagen: rebuilding the cached face detector ({problem}): {build_dir}")
        shutil.rmtree(build_dir, ignore_errors=True)
    log(f"fpgagen: building the shipped face detector for {board} once (about 20 s on 2 cores: export, fold, "
        f"generate, compile and verify the C-simulation); cached in {build_dir}")
    try:
        from fpgagen.train.model import load_checkpoint
    except ImportError as exc:  # e.g. on the board, where only the runtime is installed
        raise FpgagenError(f"building the shipped face detector needs torch and brevitas ({exc})",
                           "the shipped face detector", "build it on a PC (fpgagen detect there, or fpgagen "
                           "bitstream for the board) and pass its folder with --accelerator") from None

    start = time.perf_counter()
    tmp = build_dir.with_name(f"{build_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model, info = load_checkpoint(ckpt)
    # The model file lies beside the build, not in it: a build replaces its directory whole.
    onnx = fpgagen.export(model, tmp.with_suffix(".onnx"), input_shape=(1, 3, 416, 416))
    try:
        fpgagen.build(onnx, board=board, out_dir=tmp, log=lambda m: log(f"fpgagen:   {m}"),  # verified, with progress
                      camera=camera)
    finally:
        Path(onnx).unlink(missing_ok=True)
    write_detector_json(tmp, info["anchors"], 416, source=ckpt.name)
    write_runtime_spec(fpgagen.load(tmp, log=lambda m: None))
    write_manifest(tmp)
    try:
        tmp.rename(build_dir)
    except OSError:  # another process finished first: use its build
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"fpgagen: face detector built in {time.perf_counter() - start:.0f} s")
    return build_dir


def copy_verified_build(src: Path, dst: Path, log=print) -> Path:
    """``dst`` as a copy of the verified build ``src`` (its manifest checked), kept when it already holds that
    build (the same manifest): 'make bitstream' and 'make demo' reuse the cached shipped detector this way
    instead of building it again. What was added to ``dst`` since (vivado/, deploy/) stays while it is current."""
    problem = verify_manifest(src)
    if problem is not None:
        raise FpgagenError(f"the build to copy is damaged ({problem})", str(src), "delete it and run again")
    same = (dst / MANIFEST).is_file() and (dst / MANIFEST).read_bytes() == (src / MANIFEST).read_bytes()
    if same and verify_manifest(dst) is None:
        log(f"reusing {dst} (the verified build of {src.name})")
        return dst
    if dst.exists() and not (dst / "network.json").is_file() and any(dst.iterdir()):
        raise FpgagenError("the folder holds files and is not an fpgagen build", str(dst), "move it away first")
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    log(f"copied the verified build {src} to {dst}")
    return dst


def write_detector_json(build_dir: Path, anchors, input_size: int, source: str = "") -> None:
    doc = {"task": "face detection (LPYOLO)", "anchors": [[float(a), float(b)] for a, b in anchors],
           "input_size": input_size, "checkpoint": source}
    (Path(build_dir) / DETECTOR_JSON).write_text(json.dumps(doc, indent=1))


def read_anchors(build_dir: Path):
    try:
        return json.loads((Path(build_dir) / DETECTOR_JSON).read_text())["anchors"]
    except (OSError, ValueError, KeyError):
        return None


def load_face_detector(build_dir: str | Path | None = None, backend: str | None = None, anchors=None,
                       conf: float = DEFAULT_CONF, nms_iou: float = DEFAULT_NMS_IOU, log=print,
                       camera: str | None = DEFAULT_CAMERA, **backend_options) -> FaceDetector:
    """The detector on ``backend`` (default: pynq on a board, csim elsewhere). ``build_dir`` None: the shipped
    face detector, built with ``camera``'s letterbox in the fabric (None: the plain build). Anchors: ``anchors``,
    else the build's detector.json, else an error (never a silent default)."""
    if build_dir is None and backend == "pynq":  # on the board: no torch to build with, and no bitstream to find
        raise FpgagenError("the pynq backend runs a bitstream, and none was given", "--backend pynq",
                           "pass the deploy folder 'fpgagen bitstream' wrote (build/<net>/deploy/, copied to the "
                           "board), e.g. 'fpgagen detect photo.jpg --accelerator deploy/ --backend pynq'")
    build_dir = shipped_face_build(log=log, camera=camera) if build_dir is None else Path(build_dir)
    if not (build_dir / "network.json").is_file() and read_runtime_spec(build_dir) is None:
        raise FpgagenError("not an fpgagen build directory (no network.json)", str(build_dir),
                           f"pass a directory written by 'fpgagen build' (or a deploy directory with "
                           f"{RUNTIME_JSON}), or leave --accelerator out for the shipped face detector")
    anchors = anchors if anchors is not None else read_anchors(build_dir)
    if anchors is None:
        raise FpgagenError("the anchors the head was trained with are unknown", str(build_dir / DETECTOR_JSON),
                           "pass --anchors w,h,w,h,w,h, the ones the head was trained with (a checkpoint of "
                           "'fpgagen train' stores them), or rebuild with 'make bitstream' / 'fpgagen detect' that "
                           "write detector.json")
    return FaceDetector(make_backend(backend or default_backend(), build_dir, **backend_options), anchors,
                        conf=conf, nms_iou=nms_iou)
