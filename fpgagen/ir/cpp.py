"""The C++ helpers templates call as ``g.*``, and what every layer kind declares to emit code.

A kind names its static kernel ``KERNEL_HEADER`` (templates/hls/fg_*.h; "" when its ``CONFIG_TEMPLATE``'s
``kernel()`` macro renders the kernel instead) and ``CONFIG_TEMPLATE`` (templates/hls/*.h.j2, whose
``instance(L, g)`` macro emits one layer's config struct, memories and wrapper function), and ``CPP``, the
helpers its template calls as ``g``. Codegen asks the layer (``render_instance``), never its type.
"""

from __future__ import annotations

from typing import ClassVar

import jinja2
import numpy as np
from qonnx.core.datatype import DataType


class Cpp:
    """The helpers every kind's config template calls as ``g.*``; types are qonnx DataTypes."""

    @staticmethod
    def ctype(dt: DataType) -> str:
        """The C++ element type of a stream or array of ``dt``; a BIPOLAR value (-1/+1) travels as one bit b,
        standing for 2b - 1 (see stream_codes)."""
        if dt.name == "BIPOLAR":
            return "ap_uint<1>"
        if not dt.is_integer():
            raise ValueError(f"no C++ integer type for {dt.name}")
        return f"ap_int<{dt.bitwidth()}>" if dt.signed() else f"ap_uint<{dt.bitwidth()}>"

    @staticmethod
    def native(dt: DataType) -> str:
        prefix = "int" if dt.signed() else "uint"
        for bits in (8, 16, 32, 64):
            if dt.bitwidth() <= bits:
                return f"{prefix}{bits}_t"
        raise ValueError(f"{dt.name} is wider than 64 bits")

    @staticmethod
    def int_native(bits: int) -> str:
        """The native signed integer the C model stores a ``bits``-wide ROM value in (see FG_ROM_TYPE)."""
        return next(f"int{b}_t" for b in (8, 16, 32, 64) if bits <= b)

    @staticmethod
    def bits(dt: DataType) -> int:
        return dt.bitwidth()

    @staticmethod
    def rom_ctype(dt: DataType) -> str:
        """A ROM element: the ap_int type in synthesis, a native integer of the same value in the C model."""
        return f"FG_ROM_TYPE({Cpp.ctype(dt)}, {Cpp.native(dt)})"

    @staticmethod
    def zeros(*shape: int) -> np.ndarray:
        return np.zeros(shape, np.int64)

    @staticmethod
    def c_array_lines(a: np.ndarray) -> str:
        """A brace initializer, each sub-array on a line of its own."""
        a = np.asarray(a)
        if a.ndim == 1:
            return "{" + ", ".join(str(int(v)) for v in a) + "}"
        return "{" + ",\n ".join(Cpp.c_array_lines(sub) for sub in a) + "}"

    @staticmethod
    def c_array(a: np.ndarray) -> str:
        """A brace initializer; the innermost rows stay on one line each, so a weight ROM reads row by row."""
        a = np.asarray(a)
        if a.dtype == bool:
            a = a.astype(np.int64)
        if a.ndim == 1:
            return "{" + ", ".join(str(int(v)) for v in a) + "}"
        inner = [Cpp.c_array(sub) for sub in a]
        if a.ndim > 2:
            return "{" + ",\n".join(inner) + "}"
        lines, line = [], ""
        for item in inner:  # wrap the rows of the last two dimensions at ~110 columns
            if line and len(line) + len(item) > 108:
                lines.append(line.rstrip())
                line = ""
            line += item + ", "
        lines.append(line)
        return "{" + "\n ".join(lines).rstrip(", ") + "}"


class EmitsCode:
    """What a layer kind declares for code generation (see the module docstring)."""

    KERNEL_HEADER: ClassVar[str] = ""
    CONFIG_TEMPLATE: ClassVar[str] = ""
    CPP: ClassVar[type[Cpp]] = Cpp

    def render_instance(self, env: jinja2.Environment) -> str:
        """This layer's config struct, memories and wrapper function (its CONFIG_TEMPLATE's ``instance`` macro)."""
        return str(env.get_template(self.CONFIG_TEMPLATE).module.instance(self, self.CPP()))
