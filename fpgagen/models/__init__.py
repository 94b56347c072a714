"""Reference Brevitas networks."""

from fpgagen.models.lpyolo import PixelQuant, lpyolo, output_codes

__all__ = ["PixelQuant", "lpyolo", "output_codes"]
