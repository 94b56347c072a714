"""``fpgagen debug`` and ``fpgagen.trace``: taps on every stream of the graph, from the C-sim, the numpy
reference, QONNX and Brevitas (and the board's extra outputs), compared layer by layer; the first divergent layer;
quantization health; and the deployment pipeline's pre- and post-processing checked against fpgagen's own
(ML-EXray). See fpgagen/debug/taps.py for the sources, compare.py for the rules, preprocess.py for the checks.

Imported lazily (numpy, qonnx): ``fpgagen debug --help`` stays instant."""

_LAZY = {"Trace": "session", "trace": "session"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fpgagen.debug' has no attribute '{name}'")


__all__ = ["Trace", "trace"]
