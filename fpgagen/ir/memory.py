"""On-chip memories, declared once per layer: the template emits each array and its pragmas from its ``Memory``,
and the cost model prices the same ``Memory``. A test parses the emitted C++ back and requires the same figures.

Every memory is emitted as a three-dimensional C++ array ``name[banks][depth][elems]``:
- dim 1 (``banks``) is completely partitioned: independent memories, each with its own ports;
- dim 3 (``elems``) is completely reshaped into one word of ``elems * elem_bits`` bits;
- dim 2 (``depth``) is the address.
``storage`` is where HLS puts each bank: ``bram`` or ``lutram`` (BIND_STORAGE with the port type below), or
``registers`` (completely partitioned: no memory, one register per element).

Stream FIFOs (``fifo=True``, fpgagen.fifo.fifo_memory) are declared with the same class but emitted as an
``hls::stream`` of ``depth`` words of ``elems`` x ``elem_bits`` bits with ``#pragma HLS STREAM depth=`` and
``BIND_STORAGE type=fifo impl=srl|bram`` (top.cpp); their storage is ``srl`` (SRLC32E shift registers, one LUT per
bit per 32 words, counted as LUTRAM) or ``bram``. Arrays never use ``srl``; FIFOs never use ``lutram``/``registers``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

RESOURCES = ("LUT", "FF", "BRAM18", "DSP", "LUTRAM")


def resources(**kw: float) -> dict[str, int]:
    return {r: int(math.ceil(kw.get(r, 0))) for r in RESOURCES}


def add_resources(*parts: dict) -> dict[str, int]:
    return {r: sum(p.get(r, 0) for p in parts) for r in RESOURCES}


def bram18(depth: int, width: int) -> int:
    """BRAM18 blocks for a ``depth`` x ``width``-bit memory: FINN-R's formula, which picks the aspect ratio from the
    width (16K x 1 ... 512 x 36) and splits the rest over blocks side by side and stacked."""
    if depth <= 0 or width <= 0:
        return 0
    if width <= 4:
        return math.ceil(depth / 4096) * math.ceil(width / 4)
    if width <= 9:
        return math.ceil(depth / 2048) * math.ceil(width / 9)
    if width <= 18 or depth > 512:
        return math.ceil(depth / 1024) * math.ceil(width / 18)
    return math.ceil(depth / 512) * math.ceil(width / 36)


def rom_luts(depth: int, width: int) -> int:
    """A ROM (or single-port RAM) in LUTs: one LUT6 holds 64 x 1 bit (FINN-R's LUTRAM term W*ceil(depth/64))."""
    return width * math.ceil(depth / 64) if depth > 1 else 0


def ram_luts(depth: int, width: int) -> int:
    """A simple-dual-port RAM (one write, one read per cycle) in LUTs: a RAM64M slice quad stores 64 x 3 bits in 4
    LUTs (3 read LUTs plus the write-address LUT); up to 32 deep, a RAM32M stores 32 x 6 bits in 4 LUTs."""
    if depth <= 32:
        return 4 * math.ceil(width / 6)
    return 4 * math.ceil(width / 3) * math.ceil(depth / 64)


STORAGES = ("bram", "lutram", "registers")
FIFO_STORAGES = ("srl", "bram")
SRL_DEPTH = 32  # an SRLC32E shifts 32 words of one bit per LUT

# Ports per cycle each BIND_STORAGE type offers: (reads, writes) at most, and (read or write) in total.
PORT_TYPES = {"rom_1p": (1, 0, 1), "rom_2p": (2, 0, 2), "rom_np": (8, 0, 8), "ram_1p": (1, 1, 1),
              "ram_s2p": (1, 1, 2), "ram_2p": (2, 1, 2), "ram_t2p": (2, 2, 2)}


@dataclass(frozen=True)
class Memory:
    """One array of a layer's kernel: ``banks`` memories of ``depth`` words of ``elems`` x ``elem_bits`` bits.

    ``reads``/``writes``: accesses per bank per cycle that the kernel's pipelined loop makes (a ROM writes 0).
    """

    name: str
    banks: int
    depth: int
    elems: int
    elem_bits: int
    storage: str = "bram"
    reads: int = 1
    writes: int = 0
    fifo: bool = False  # a stream FIFO (one push and one pop per cycle), not an array

    @property
    def width(self) -> int:
        return self.elems * self.elem_bits

    @property
    def writable(self) -> bool:
        return self.writes > 0

    @property
    def bind_type(self) -> str:
        """The BIND_STORAGE type with the fewest ports that serves ``reads`` and ``writes`` per cycle."""
        if self.fifo:
            return "fifo"
        if not self.writable:
            if self.storage == "lutram" and self.reads > 2:
                return "rom_np"  # distributed ROM: one LUT copy per read port
            return "rom_1p" if self.reads <= 1 else "rom_2p"
        if self.writes == 1 and self.reads <= 1:
            return "ram_s2p"
        return "ram_t2p" if self.writes == 2 else "ram_2p"

    def ports_ok(self) -> bool:
        """Whether one bank of this storage can serve ``reads`` + ``writes`` accesses per cycle."""
        if self.storage == "registers" or self.fifo:
            return True
        max_r, max_w, total = PORT_TYPES[self.bind_type]
        if self.storage == "bram" and self.bind_type == "rom_np":
            return False
        return self.reads <= max_r and self.writes <= max_w and self.reads + self.writes <= total

    def resources(self) -> dict[str, int]:
        """BRAM18 / LUT / LUTRAM / FF of all banks (``bram18``, ``rom_luts`` and ``ram_luts`` are the per-bank
        models; a 1-deep ROM is a set of constants HLS folds into logic)."""
        return dict(_priced(self))  # a copy: callers may add to it


@functools.lru_cache(maxsize=65536)  # Memory is frozen; the folder prices the same few thousand many times
def _priced(mem: Memory) -> dict[str, int]:
    if mem.fifo and mem.storage == "srl":
        srl = mem.banks * mem.width * math.ceil(mem.depth / SRL_DEPTH)
        return resources(LUT=srl, LUTRAM=srl)
    if mem.storage == "registers" or (mem.depth <= 1 and not mem.writable):
        return resources(FF=mem.banks * mem.depth * mem.width if mem.writable else 0)
    if mem.storage == "bram":
        return resources(BRAM18=mem.banks * bram18(mem.depth, mem.width))
    per_bank = ram_luts(mem.depth, mem.width) if mem.writable else rom_luts(mem.depth, mem.width)
    copies = max(1, mem.reads) if mem.bind_type == "rom_np" else 1
    luts = mem.banks * per_bank * copies
    return resources(LUT=luts, LUTRAM=luts)


def memory_resources(memories: list[Memory]) -> dict[str, int]:
    total = resources()
    for m in memories:
        for r, v in _priced(m).items():
            total[r] += v
    return total
