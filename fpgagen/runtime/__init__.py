"""The host runtime: inference backends (pynq | csim | reference) over uint8 NHWC frames, the threaded detection
pipeline, the TCP stream server (protocol v1), the browser view and the viewer; ``fpgagen detect/serve/view``.

Submodules are imported on use, so ``import fpgagen.runtime`` stays light (OpenCV, the C-sim and pynq load
only when needed)."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Backend": "backends", "CSimBackend": "backends", "PynqBackend": "backends", "ReferenceBackend": "backends",
    "make_backend": "backends", "default_backend": "backends", "estimated_fps": "backends",
    "FaceDetector": "model", "load_face_detector": "model", "shipped_face_build": "model",
    "check_image": "model", "detections_json": "model",
    "Pipeline": "pipeline", "Metrics": "pipeline", "Frame": "pipeline", "Result": "pipeline",
    "preview_jpeg": "pipeline",
    "ImageFiles": "sources", "Arrays": "sources", "VideoCapture": "sources", "read_image": "sources",
    "FileSink": "sinks", "DisplaySink": "sinks", "CallbackSink": "sinks", "has_display": "sinks",
    "StreamServer": "server", "WebServer": "web", "Viewer": "viewer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
