"""Quantization-aware training of the LPYOLO face detector (float pre-training, then Brevitas QAT)."""

from .loss import LossWeights, build_targets, yolo_loss
from .model import (
    float_lpyolo,
    load_checkpoint,
    quantize_from_float,
    save_checkpoint,
    shipped_checkpoint,
)
from .trainer import SYNTH_ANCHORS, TrainConfig, train

__all__ = ["SYNTH_ANCHORS", "LossWeights", "TrainConfig", "build_targets", "float_lpyolo", "load_checkpoint",
           "quantize_from_float", "save_checkpoint", "shipped_checkpoint", "train", "yolo_loss"]
