"""Face data: the WIDER FACE loader (the real path, ``--data``) and the synthetic composite set (the offline
default), which is written in WIDER format so both go through one loader."""

from . import sources, synthetic
from .synthetic import SyntheticConfig
from .transforms import Letterbox, augment, letterbox
from .wider import (
    Sample,
    WiderFace,
    WiderRecord,
    clip_boxes,
    format_wider_gt,
    parse_wider_gt,
    read_image,
    read_wider_gt,
    write_wider_gt,
)

__all__ = ["Letterbox", "Sample", "SyntheticConfig", "WiderFace", "WiderRecord", "augment", "clip_boxes",
           "format_wider_gt", "letterbox", "parse_wider_gt", "read_image", "read_wider_gt", "sources",
           "synthetic", "write_wider_gt"]
