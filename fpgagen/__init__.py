"""fpgagen: Brevitas/QONNX networks to bit-exact FPGA dataflow accelerators (Vitis-HLS C++).

``build``, ``load`` and ``Accelerator`` are imported on first use (numpy, qonnx and onnx are heavy), so that
``import fpgagen`` and ``fpgagen --help`` start instantly."""

from .errors import FpgagenError

__version__ = "0.1.0"

_LAZY = {"Accelerator": "accelerator", "build": "accelerator", "load": "accelerator", "trace": "debug"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fpgagen' has no attribute '{name}'")


def export(model, path, input_shape=None, dynamo=False):
    """Export a brevitas model to QONNX (see fpgagen.brevitas_export.export); imported lazily, torch is heavy."""
    from .brevitas_export import export as _export

    return _export(model, path, input_shape=input_shape, dynamo=dynamo)


__all__ = ["Accelerator", "FpgagenError", "build", "export", "load", "trace", "__version__"]
