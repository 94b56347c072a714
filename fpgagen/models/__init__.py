"""Reference Brevitas networks."""

from fpgagen.models.lpyolo import PixelQuant, lpyolo, output_codes
from fpgagen.models.tinyyolov3 import TinyYOLOv3, scaled_channels, tinyyolov3
from fpgagen.models.tinyyolov3 import output_codes as tinyyolov3_output_codes

__all__ = ["PixelQuant", "TinyYOLOv3", "lpyolo", "output_codes", "scaled_channels", "tinyyolov3",
           "tinyyolov3_output_codes"]
