"""Quantization-aware training of the LPYOLO face detector (float pre-training, then Brevitas QAT).

The names below are imported on first use: they pull in torch and brevitas, and ``fpgagen --help`` imports
``fpgagen.train.cli`` for its argument definitions only."""

_LAZY = {
    "LossWeights": "loss", "build_targets": "loss", "yolo_loss": "loss",
    "float_lpyolo": "model", "load_checkpoint": "model", "quantize_from_float": "model",
    "save_checkpoint": "model", "shipped_checkpoint": "model",
    "SYNTH_ANCHORS": "trainer", "TrainConfig": "trainer", "train": "trainer",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fpgagen.train' has no attribute '{name}'")


__all__ = sorted(_LAZY)
