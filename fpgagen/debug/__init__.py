"""``fpgagen debug`` and ``fpgagen.trace``: taps on every stream of the graph, from the C-sim, the numpy
reference, QONNX and Brevitas (and the board's extra outputs), compared layer by layer; the first divergent layer;
quantization health; and the deployment pipeline's pre- and post-processing checked against fpgagen's own
(ML-EXray). See fpgagen/debug/taps.py for the sources, compare.py for the rules, preprocess.py for the checks."""

from .trace import Trace, trace

__all__ = ["Trace", "trace"]
