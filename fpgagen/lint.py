"""Generated-code lint: reads the emitted HLS C++ (and the static kernel library) back and checks what a Vitis HLS
reviewer would, so that no pragma promises what C-sim cannot check and the report prices the code as written.

Checks (each finding is "file:line: what"):
* no ``#pragma HLS DEPENDENCE ... false`` (a promise C-sim cannot check);
* no ``/`` or ``%`` inside a pipelined loop unless the divisor is a literal power of two or both operands are
  compile-time constants (template constants, literals, variables of unrolled loops): anything else is a divider;
* a label on every loop (so the HLS reports name them);
* every array the generated code declares is one of its layer's ``Memory`` declarations, with the same shape, its
  ``ports_ok()`` true, and the BIND_STORAGE type and impl the declaration asks for.

``parse_arrays`` and ``parse_streams`` are also what tests/test_memories_from_code.py prices the code from.

Limits (a text lint, not a compiler): the divider check reads each pipelined loop's own body, not the bodies of the
inline helpers it calls (those in the static library are reviewed and unit-tested instead); only arrays with numeric
dimensions (the generated declarations) are compared with the Memory declarations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_INT_TYPE = re.compile(r"ap_(u?)int<\s*(\d+)\s*>")
_DECL = re.compile(r"^[ \t]*(?P<static>static\s+const\s+)?(?P<ctype>FG_ROM_TYPE\([^;=]*?\)|[\w:]+(?:<[^;=]*?>)?)"
                   r"[ \t]+(?P<name>\w+)(?P<dims>(?:\[\s*\d+\s*\])+)\s*(?:=|;)", re.M)
_STREAM = re.compile(r"hls::stream<\s*(?P<type>.+?)\s*>\s+(?P<name>\w+)\s*(?:\(|;)")
_PRAGMA = re.compile(r"^[ \t]*#pragma\s+HLS\s+(?P<body>.*)$", re.M)


@dataclass
class Array:
    """One array as the code declares it, with the pragmas that name it."""

    name: str
    ctype: str
    elem_bits: int
    dims: list[int]
    line: int
    rom: bool
    partition: list[int] = field(default_factory=list)  # dims completely partitioned (0: all)
    reshape: list[int] = field(default_factory=list)  # dims completely reshaped
    bind_type: str | None = None
    impl: str | None = None

    @property
    def registers(self) -> bool:
        return 0 in self.partition

    def _product(self, dims: list[int]) -> int:
        out = 1
        for d in dims:
            out *= self.dims[d - 1]
        return out

    @property
    def banks(self) -> int:
        return self._product(self.partition) if not self.registers else 0

    @property
    def width(self) -> int:
        return self.elem_bits * self._product(self.reshape)

    @property
    def depth(self) -> int:
        rest = [d for d in range(1, len(self.dims) + 1) if d not in self.partition and d not in self.reshape]
        return self._product(rest)


@dataclass
class Stream:
    name: str
    width: int
    line: int
    depth: int | None = None
    impl: str | None = None


def strip_comments(text: str) -> str:
    """Comments blanked out (newlines kept, so line numbers stay)."""
    text = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


# Macros defined whenever Vitis HLS compiles (templates/hls/fg_common.h): __SYNTHESIS__ itself, and the kernels'
# synthesis form and its stream loops, which it implies.
SYNTHESIS_MACROS = ("__SYNTHESIS__", "FG_SYNTHESIS_FORM", "FG_STREAM_LOOPS")
_MACRO = "(?:" + "|".join(SYNTHESIS_MACROS) + ")"


def synthesis_view(text: str) -> str:
    """The code synthesis sees: lines under ``#ifndef __SYNTHESIS__`` (or ``#if ... !defined(__SYNTHESIS__)``) and
    the ``#else`` of ``#ifdef __SYNTHESIS__`` are blanked (newlines kept), and likewise for the other
    ``SYNTHESIS_MACROS``. Other conditions count as visible."""
    out, stack = [], []  # per open #if: True/False (visible in synthesis) or None (unknown: visible)
    for line in text.split("\n"):
        d = line.strip()
        visible = all(v is not False for v in stack)
        if re.match(r"#\s*if", d):
            if re.fullmatch(rf"#\s*ifdef\s+{_MACRO}", d) or re.fullmatch(rf"#\s*if\s+defined\({_MACRO}\)", d):
                stack.append(True)
            elif re.fullmatch(rf"#\s*ifndef\s+{_MACRO}", d) or re.search(rf"!\s*defined\({_MACRO}\)", d):
                stack.append(False)
            else:
                stack.append(None)
            out.append("")
            continue
        if re.match(r"#\s*else", d) and stack:
            stack[-1] = None if stack[-1] is None else not stack[-1]
            out.append("")
            continue
        if re.match(r"#\s*endif", d) and stack:
            stack.pop()
            out.append("")
            continue
        out.append(line if visible else "")
    return "\n".join(out)


def _typedefs(text: str) -> dict[str, str]:
    return {m.group(2): m.group(1).strip() for m in re.finditer(r"typedef\s+(.+?)\s+(\w+)\s*;", text)}


def type_bits(ctype: str, typedefs: dict[str, str]) -> int | None:
    """Bits of one element of ``ctype`` as synthesis stores it: ap_[u]int<W>, bool, FG_ROM_TYPE(hls, native) (the
    hls type), typedef names (resolved in the same file), fg::Vec<T, N> (N elements)."""
    for _ in range(8):
        ctype = ctype.strip()
        rom = re.fullmatch(r"FG_ROM_TYPE\((.+),\s*\w+\s*\)", ctype)
        if rom:
            ctype = rom.group(1)
            continue
        vec = re.fullmatch(r"(?:fg::)?Vec<\s*(.+)\s*,\s*(\d+)\s*>", ctype)
        if vec:
            inner = type_bits(vec.group(1), typedefs)
            return None if inner is None else inner * int(vec.group(2))
        m = _INT_TYPE.fullmatch(ctype)
        if m:
            return int(m.group(2))
        if ctype == "bool":
            return 1
        key = ctype.split("::")[-1]
        if key not in typedefs or typedefs[key] == ctype:
            return None
        ctype = typedefs[key]
    return None


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _pragmas(text: str) -> list[tuple[int, str]]:
    return [(_line_of(text, m.start()), m.group("body")) for m in _PRAGMA.finditer(text)]


def parse_arrays(text: str) -> list[Array]:
    """Every array with numeric dimensions that the file declares, with its partition/reshape/storage pragmas."""
    code = strip_comments(text)
    types = _typedefs(code)
    arrays = {}
    for m in _DECL.finditer(code):
        if m.group("ctype") in ("return", "typedef", "struct") or "hls::stream" in m.group("ctype"):
            continue
        dims = [int(d) for d in re.findall(r"\[\s*(\d+)\s*\]", m.group("dims"))]
        arrays[m.group("name")] = Array(m.group("name"), m.group("ctype"), type_bits(m.group("ctype"), types) or 0,
                                        dims, _line_of(code, m.start("name")), bool(m.group("static")))
    for _, body in _pragmas(code):
        var = re.search(r"variable=(\w+)", body)
        if not var or var.group(1) not in arrays:
            continue
        a = arrays[var.group(1)]
        dim = re.search(r"\bdim=(\d+)", body)
        if body.startswith("ARRAY_PARTITION") and "complete" in body:
            a.partition.append(int(dim.group(1)) if dim else 0)
        elif body.startswith("ARRAY_RESHAPE") and "complete" in body:
            a.reshape.append(int(dim.group(1)) if dim else 0)
        elif body.startswith("BIND_STORAGE"):
            kind, impl = re.search(r"type=(\w+)", body), re.search(r"impl=(\w+)", body)
            a.bind_type, a.impl = kind and kind.group(1), impl and impl.group(1)
    return list(arrays.values())


def parse_streams(text: str) -> list[Stream]:
    """Every hls::stream the file declares as a variable, with its STREAM depth and BIND_STORAGE fifo impl."""
    code = strip_comments(text)
    types = _typedefs(code)
    streams = {}
    for m in _STREAM.finditer(code):  # a variable: "hls::stream<T> name(" (parameters are "> &name")
        bits = type_bits(m.group("type"), types)
        if bits is not None:
            streams[m.group("name")] = Stream(m.group("name"), bits, _line_of(code, m.start()))
    for _, body in _pragmas(code):
        var = re.search(r"variable=(\w+)", body)
        if not var or var.group(1) not in streams:
            continue
        s = streams[var.group(1)]
        if body.startswith("STREAM"):
            depth = re.search(r"depth=(\d+)", body)
            s.depth = int(depth.group(1)) if depth else None
        elif body.startswith("BIND_STORAGE") and "type=fifo" in body:
            impl = re.search(r"impl=(\w+)", body)
            s.impl = impl and impl.group(1)
    return list(streams.values())


# --- pricing what the code says (not the declarations) ---------------------------------------------------------
SRL_DEPTH = 32  # an SRLC32E shifts 32 words of one bit per LUT


def price_array(a: Array) -> dict[str, int]:
    """BRAM18 and LUTRAM of one parsed array: registers cost none; BRAM by FINN-R's formula per bank; LUTRAM by
    64 x 1 bit per LUT6 for a ROM, RAM64M/RAM32M capacities for a RAM (fpgagen.ir.memory's primitives)."""
    from .ir.memory import bram18, ram_luts, rom_luts

    if a.registers:
        return {"BRAM18": 0, "LUTRAM": 0}
    if a.impl not in ("bram", "lutram"):
        raise ValueError(f"array '{a.name}' has no BIND_STORAGE impl in the code")
    if a.impl == "bram":
        return {"BRAM18": a.banks * bram18(a.depth, a.width), "LUTRAM": 0}
    per_bank = ram_luts(a.depth, a.width) if a.bind_type.startswith("ram") else rom_luts(a.depth, a.width)
    return {"BRAM18": 0, "LUTRAM": a.banks * per_bank}


def price_stream(s: Stream) -> dict[str, int]:
    """BRAM18 and LUTRAM of one parsed FIFO: BRAM by FINN-R's formula, SRL by 32 words of one bit per LUT."""
    from .ir.memory import bram18

    if not s.depth or s.impl not in ("srl", "bram"):
        raise ValueError(f"stream '{s.name}' has no STREAM depth or fifo impl in the code")
    if s.impl == "bram":
        return {"BRAM18": bram18(s.depth, s.width), "LUTRAM": 0}
    return {"BRAM18": 0, "LUTRAM": s.width * -(-s.depth // SRL_DEPTH)}


def project_memory_figures(hls_dir: Path) -> dict[str, dict[str, int]]:
    """Per generated layer header and per FIFO (``<stream>``), BRAM18 and LUTRAM priced from the code alone."""
    hls_dir = Path(hls_dir)
    out = {}
    for path in sorted((hls_dir / "layers").glob("*.h")):
        total = {"BRAM18": 0, "LUTRAM": 0}
        for a in parse_arrays(path.read_text()):
            for r, v in price_array(a).items():
                total[r] += v
        out[path.stem] = total
    for s in parse_streams((hls_dir / "top.cpp").read_text()):
        out[f"<{s.name}>"] = price_stream(s)
    return out


# --- loops ----------------------------------------------------------------------------------------------------
@dataclass
class Loop:
    line: int
    var: str | None
    label: str | None
    body: str  # the body's text (comments stripped)
    body_start: int
    pipelined: bool
    unrolled: bool


def _match_brace(code: str, open_pos: int) -> int:
    depth = 0
    for i in range(open_pos, len(code)):
        if code[i] == "{":
            depth += 1
        elif code[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return len(code)


def _direct_pragmas(body: str) -> str:
    """The pragmas of a loop body outside its nested loops (those shape the loop itself)."""
    out, depth = [], 0
    for line in body.splitlines():
        if depth == 0 and line.strip().startswith("#pragma"):
            out.append(line)
        depth += line.count("{") - line.count("}")
    return "\n".join(out)


def loops(code: str) -> list[Loop]:
    out = []
    for m in re.finditer(r"\b(for|while)\s*\(", code):
        head_end = code.index(")", m.end()) if m.group(1) == "while" else _close_paren(code, m.end() - 1)
        var = re.match(r"\s*\(\s*(?:unsigned|int|unsigned\s+int|size_t)?\s*(\w+)\s*=", code[m.end() - 1:])
        before = code[: m.start()].rstrip()
        label = re.search(r"(\w+)\s*:$", before)
        label = label.group(1) if label and not before.endswith("::") and label.group(1) not in ("default",) \
            else None
        rest = code[head_end + 1:]
        brace = re.match(r"\s*\{", rest)
        if brace:
            start = head_end + 1 + brace.end() - 1
            body = code[start + 1: _match_brace(code, start)]
        else:
            start = head_end + 1
            body = rest.split(";", 1)[0]
        direct = _direct_pragmas(body)
        out.append(Loop(_line_of(code, m.start()), var.group(1) if var else None, label, body, start,
                        "PIPELINE" in direct, "UNROLL" in direct))
    return out


def _close_paren(code: str, open_pos: int) -> int:
    depth = 0
    for i in range(open_pos, len(code)):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(code)


_CONST_TOKEN = re.compile(r"(?:\d+[uUlL]*|\w+::[A-Z][A-Z0-9_]*|[A-Z][A-Z0-9_]*)")


def _is_const(expr: str, unrolled: set[str]) -> bool:
    """Whether ``expr`` uses only compile-time constants: literals, C::NAME / NAME constants, unrolled loop
    variables (each a constant in its own copy of the body)."""
    tokens = re.findall(r"[\w:]+", expr)
    return bool(tokens) and all(_CONST_TOKEN.fullmatch(t) or t in unrolled for t in tokens)


def _operand_left(code: str, pos: int) -> str:
    i = pos - 1
    while i >= 0 and code[i] in " \t":
        i -= 1
    if i >= 0 and code[i] == ")":
        depth = 0
        for j in range(i, -1, -1):
            depth += {")": 1, "(": -1}.get(code[j], 0)
            if depth == 0:
                return code[j: i + 1]
    m = re.search(r"[\w:]+$", code[: i + 1])
    return m.group() if m else ""


def _operand_right(code: str, pos: int) -> str:
    rest = code[pos + 1:]
    m = re.match(r"\s*\(", rest)
    if m:
        start = pos + 1 + m.end() - 1
        return code[start: _close_paren(code, start) + 1]
    m = re.match(r"\s*([\w:]+)", rest)
    return m.group(1) if m else ""


def _power_of_two_literal(expr: str) -> bool:
    m = re.fullmatch(r"\(?\s*(\d+)[uUlL]*\s*\)?", expr)
    return bool(m) and int(m.group(1)) > 0 and int(m.group(1)) & (int(m.group(1)) - 1) == 0


def lint_text(text: str, filename: str = "<code>") -> list[str]:
    """The file-level checks: DEPENDENCE false, dividers in pipelined loops, loop labels."""
    code = synthesis_view(strip_comments(text))
    found = []
    for line, body in _pragmas(code):
        if body.startswith("DEPENDENCE") and re.search(r"\bfalse\b", body):
            found.append(f"{filename}:{line}: DEPENDENCE ... false promises what C-sim cannot check")
    all_loops = loops(code)
    for lp in all_loops:
        if lp.label is None:
            found.append(f"{filename}:{lp.line}: loop without a label")
    for lp in all_loops:
        if not lp.pipelined:
            continue
        unrolled = {inner.var for inner in loops(lp.body) if inner.unrolled and inner.var}
        for m in re.finditer(r"(?<![/*])([/%])(?![/*=])", lp.body):
            left, right = _operand_left(lp.body, m.start()), _operand_right(lp.body, m.start())
            if _power_of_two_literal(right) or (_is_const(left, unrolled) and _is_const(right, unrolled)):
                continue
            line = _line_of(code, lp.body_start) + lp.body.count("\n", 0, m.start())
            found.append(f"{filename}:{line}: '{left} {m.group(1)} {right}' in a pipelined loop is a divider")
    return found


def lint_memories(text: str, memories: list, filename: str = "<code>") -> list[str]:
    """The layer's emitted arrays against its Memory declarations (fpgagen.ir.memory)."""
    found = []
    arrays = {a.name: a for a in parse_arrays(text)}
    declared = {m.name: m for m in memories}
    for name, a in arrays.items():
        m = declared.get(name)
        if m is None:
            found.append(f"{filename}:{a.line}: array '{name}' is not one of the layer's memory declarations")
            continue
        if a.dims != [m.banks, m.depth, m.elems] or a.elem_bits != m.elem_bits:
            found.append(f"{filename}:{a.line}: '{name}' is {a.dims} x {a.elem_bits} bits, declared "
                         f"[{m.banks}, {m.depth}, {m.elems}] x {m.elem_bits}")
        if not m.ports_ok():
            found.append(f"{filename}:{a.line}: '{name}' needs {m.reads} reads + {m.writes} writes per cycle, more "
                         f"than {m.bind_type} in {m.storage} offers")
        if m.storage == "registers":
            if not a.registers:
                found.append(f"{filename}:{a.line}: '{name}' is declared as registers but not completely partitioned")
        elif (a.bind_type, a.impl) != (m.bind_type, m.storage):
            found.append(f"{filename}:{a.line}: '{name}' is bound to type={a.bind_type} impl={a.impl}, declared "
                         f"type={m.bind_type} impl={m.storage}")
    for name in declared.keys() - arrays.keys():
        found.append(f"{filename}: memory '{name}' is declared but not emitted")
    return found


def lint_project(hls_dir: Path, net=None, static_headers: bool = True) -> list[str]:
    """Every check over a generated HLS project: its generated files and (``static_headers``) its static kernel
    headers, and (given the network) each layer header's arrays against the layer's memory declarations. Every
    build runs it on what it generated (the static headers, the same in every project, are linted by the tests)."""
    hls_dir = Path(hls_dir)
    found = []
    # what synthesis compiles (the C-sim bridge and the testbench are host code)
    headers = [p for p in sorted(hls_dir.glob("*.h")) if static_headers or not p.name.startswith("fg_")]
    files = headers + [hls_dir / "top.cpp"] + sorted((hls_dir / "layers").glob("*.h"))
    for path in files:
        found += lint_text(path.read_text(), str(path.relative_to(hls_dir)))
    for layer in net.layers if net is not None else []:
        path = hls_dir / "layers" / f"{layer.name}.h"
        found += lint_memories(path.read_text(), layer.memories(), str(path.relative_to(hls_dir)))
    return found
