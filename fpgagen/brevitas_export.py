"""Brevitas model -> QONNX file, a thin wrapper over ``brevitas.export.export_qonnx``."""

from __future__ import annotations

import contextlib
import io
import logging
import pathlib
import warnings

import torch


def export(model: torch.nn.Module, path, input_shape=None, dynamo: bool = False) -> pathlib.Path:
    """Export ``model`` to QONNX at ``path`` and return the path.

    ``input_shape`` defaults to ``model.input_shape``. ``dynamo=False`` uses the legacy TorchScript
    exporter, ``dynamo=True`` the torch.export one; qonnx's ``cleanup_model`` normalises both.
    """
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError(
                "export() needs an input shape: pass input_shape=(1, C, H, W) or set model.input_shape"
            )
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    # A fixed dummy input keeps the export reproducible; its values do not reach the graph.
    dummy = torch.rand(tuple(input_shape), generator=torch.Generator().manual_seed(0))
    kwargs = {"dynamo": True, "optimize": True} if dynamo else {"dynamo": False}
    # Only chatter is silenced (warnings, brevitas' and torch.onnx's logging, torch.onnx's progress
    # prints); exceptions still propagate.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from brevitas.export import export_qonnx  # heavy import, keep ``import fpgagen`` cheap

        names = [n for n in logging.root.manager.loggerDict if n.startswith("brevitas")] + ["torch.onnx"]
        loggers = [logging.getLogger(n) for n in names]
        levels = [lg.level for lg in loggers]
        try:
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            export_qonnx(model, dummy, export_path=str(path), **kwargs)
        finally:
            for lg, lv in zip(loggers, levels, strict=True):
                lg.setLevel(lv)
    return path
