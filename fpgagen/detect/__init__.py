"""Post-processing for LPYOLO face detection: integer-domain decode, NMS, WIDER-style AP, annotated images."""

from .decode import LPYOLO_ANCHORS, STRIDE, Detections, code_threshold, decode_codes, decode_float
from .detector import Backend, Detector, accelerator_backend, torch_backend
from .draw import annotate, mosaic, save_rgb
from .evaluate import BAND_NOTE, BANDS, APResult, GroundTruth, average_precision, evaluate, plot_pr, voc_ap
from .nms import iou_matrix, nms

__all__ = ["BANDS", "BAND_NOTE", "LPYOLO_ANCHORS", "STRIDE", "APResult", "Backend", "Detections", "Detector",
           "GroundTruth", "accelerator_backend", "annotate", "average_precision", "code_threshold", "decode_codes",
           "decode_float", "evaluate", "iou_matrix", "mosaic", "nms", "plot_pr", "save_rgb", "torch_backend", "voc_ap"]
