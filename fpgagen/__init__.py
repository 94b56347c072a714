"""fpgagen: Brevitas/QONNX networks to bit-exact FPGA dataflow accelerators (Vitis-HLS C++)."""

from .accelerator import Accelerator, build, load
from .errors import FpgagenError

__version__ = "0.1.0"


def export(model, path, input_shape=None, dynamo=False):
    """Export a brevitas model to QONNX (see fpgagen.brevitas_export.export); imported lazily, torch is heavy."""
    from .brevitas_export import export as _export

    return _export(model, path, input_shape=input_shape, dynamo=dynamo)


__all__ = ["Accelerator", "FpgagenError", "build", "export", "load", "__version__"]
