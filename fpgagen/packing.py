"""Pack integer codes into the AXI-Stream bytes the accelerator exchanges with the host, and back.

A frame is its elements in stream order, each B bits wide, element e at bit e*B of a little-endian byte stream
(signed values in two's complement), padded with zero bits at the end to a whole AXI word. The accelerator's
input adapter unpacks those AXI words into the first layer's stream words and its output adapter packs the last
layer's stream words the same way (templates/hls/fg_common.h), so the bytes do not depend on any layer's folding.
The C-simulation bridge and the board driver move exactly these bytes. Only numpy here: the board imports this.

More than one output. A network with K outputs (a tuple in torch, ``graph.output`` order in QONNX) still sends
one output frame per input frame, in one DMA transfer: the outputs follow each other in output order, each as
a *segment* laid out exactly as a one-output frame (its own element width B_k, elements contiguous, little-endian
bit packing, zero-padded to a whole AXI word), so segment k starts on an AXI-word boundary at word
sum_{j<k} ceil(E_j * B_j / W). The port has one AXI width W, the widest any output's stream word needs
(``axi_width``), and TLAST is set on the very last word of the last segment only. A one-output frame is the
K = 1 case, byte for byte what it always was. Example (W = 32): output 0 holds 3 UINT4 codes [1, 2, 3] and
output 1 holds 2 INT8 codes [-1, 5]: bytes 21 03 00 00 | ff 05 00 00, TLAST on the second word.
The hardware's output adapter (``fg::stream_to_axis`` per segment, one process, templates/hls/top.cpp.j2) drains
output stream 0 for segment 0, then stream 1, and so on; ``fpgagen.fifo`` sizes the later outputs' FIFOs so
that what the graph produces meanwhile fits (typically a whole frame of those outputs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

AXI_WIDTHS = (32, 64)  # what a Zynq-7000 HP port and the AXI DMA's stream side take


@dataclass(frozen=True)
class Segment:
    """One output's part of the output frame: ``word`` elements per stream word, ``bits`` per element, ``elems``
    per frame."""

    word: int
    bits: int
    elems: int


@dataclass(frozen=True)
class StreamGeometry:
    """How one frame crosses the two AXI-Stream ports (``fpgagen.geometry.stream_geometry(net)`` builds it).

    ``*_word``: elements per stream word of the first/last layer; ``*_bits``: bits per element; ``*_elems``:
    elements per frame; ``*_axi_bits``: the AXI-Stream data width (32 or 64). The ``out_*`` fields describe
    output 0; ``extra_outputs`` the segments of outputs 1, 2, ... (empty for a one-output network), which follow
    it in the same output frame (module docstring)."""

    in_word: int
    in_bits: int
    in_elems: int
    in_axi_bits: int
    out_word: int
    out_bits: int
    out_elems: int
    out_axi_bits: int
    extra_outputs: tuple[Segment, ...] = ()

    @property
    def segments(self) -> tuple[Segment, ...]:
        """Every output's segment, in output order."""
        return (Segment(self.out_word, self.out_bits, self.out_elems), *self.extra_outputs)

    def segment_words(self, k: int) -> int:
        """AXI words of output k's segment (a whole number: each segment is padded to a word)."""
        seg = self.segments[k]
        return -(-seg.elems * seg.bits // self.out_axi_bits)

    def segment_stream_words(self, k: int) -> int:
        seg = self.segments[k]
        return seg.elems // seg.word

    def segment_offset(self, k: int) -> int:
        """The byte at which output k's segment starts in the output frame."""
        return sum(self.segment_words(j) for j in range(k)) * self.out_axi_bits // 8

    @property
    def out_adapter_cycles(self) -> int:
        """Iterations of the output adapter per frame: one fg::stream_to_axis loop per segment, each
        max(AXI words, stream words) + 1 trips."""
        return sum(max(self.segment_words(k), self.segment_stream_words(k)) + 1 for k in range(len(self.segments)))

    @property
    def in_words(self) -> int:
        """AXI words per input frame."""
        return -(-self.in_elems * self.in_bits // self.in_axi_bits)

    @property
    def out_words(self) -> int:
        """AXI words per output frame (every segment's)."""
        return sum(self.segment_words(k) for k in range(len(self.segments)))

    @property
    def in_frame_bytes(self) -> int:
        return self.in_words * self.in_axi_bits // 8

    @property
    def out_frame_bytes(self) -> int:
        return self.out_words * self.out_axi_bits // 8

    @property
    def in_stream_words(self) -> int:
        """Stream words per frame into the first layer."""
        return self.in_elems // self.in_word

    @property
    def out_stream_words(self) -> int:
        """Stream words per frame of output 0 (the only output, usually)."""
        return self.out_elems // self.out_word

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.extra_outputs:
            del d["extra_outputs"]  # a one-output geometry reads as it always did
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StreamGeometry:
        extra = tuple(Segment(**{k: int(seg[k]) for k in ("word", "bits", "elems")})
                      for seg in d.get("extra_outputs", ()))
        return cls(**{k: int(d[k]) for k in cls.__dataclass_fields__ if k != "extra_outputs"}, extra_outputs=extra)


def axi_width(stream_word_bits: int) -> int:
    """The AXI-Stream width for a stream word: 32 bits carry a word of up to 32 bits per cycle, which is all the
    kernel can take; anything wider gets 64 (the HP port's width), so the DMA never limits the kernel more than
    the port must."""
    return 32 if stream_word_bits <= 32 else 64


def pack_elements(codes: np.ndarray, bits: int, frame_bytes: int) -> np.ndarray:
    """(frames, elements) integer codes -> (frames, frame_bytes) uint8, elements contiguous, zero padded."""
    frames, elems = codes.shape
    if bits == 8 and codes.dtype == np.uint8:
        raw = codes  # already the bytes (uint8 pixels when the input code is the pixel): no int64 round trip
    elif bits == 8:
        raw = (codes.astype(np.int64) & 0xFF).astype(np.uint8)
    else:
        masked = codes.astype(np.int64) & ((1 << bits) - 1)
        bitplanes = ((masked[..., None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(frames, -1)
        raw = np.packbits(bitplanes, axis=-1, bitorder="little")
    if raw.shape[1] > frame_bytes:
        raise ValueError(f"{elems} elements of {bits} bits do not fit {frame_bytes} bytes")
    out = np.zeros((frames, frame_bytes), np.uint8)
    out[:, : raw.shape[1]] = raw
    return out


def unpack_elements(data: np.ndarray, bits: int, signed: bool, elems: int) -> np.ndarray:
    """(frames, bytes) uint8 -> (frames, elements) int64 codes; the padding after the last element is ignored."""
    frames = data.shape[0]
    used = -(-elems * bits // 8)
    if bits == 8:
        raw = data[:, :elems].astype(np.int64)
    else:
        bitplanes = np.unpackbits(np.ascontiguousarray(data[:, :used]), axis=-1, bitorder="little")
        bitplanes = bitplanes[:, : elems * bits].reshape(frames, elems, bits).astype(np.int64)
        raw = (bitplanes << np.arange(bits)).sum(axis=-1)
    if signed:
        raw = np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)
    return raw


def pack(codes: np.ndarray, word: int, bits: int) -> np.ndarray:
    """(frames, elements) codes -> bytes with every group of ``word`` elements padded to whole bytes (the layout
    of one stream word per byte-aligned slot; kept for tools that look at single stream words)."""
    frames, elems = codes.shape
    nbytes = -(-word * bits // 8)
    words = codes.reshape(frames * (elems // word), word)
    return pack_elements(words, bits, nbytes).reshape(frames, -1)


def unpack(data: np.ndarray, word: int, bits: int, signed: bool, elems: int) -> np.ndarray:
    """The inverse of :func:`pack`: (frames, bytes) uint8 -> (frames, elements) int64 codes."""
    frames = data.shape[0]
    nbytes = -(-word * bits // 8)
    words = data.reshape(frames * (elems // word), nbytes)
    return unpack_elements(words, bits, signed, word).reshape(frames, elems)


def frames_to_bytes(codes: np.ndarray, geometry: StreamGeometry) -> np.ndarray:
    """Input stream codes (N, H, W, C) -> the bytes one DMA transfer per frame carries, (N, in_frame_bytes) uint8.

    ``geometry`` is ``fpgagen.geometry.stream_geometry(net)``; the C-simulation bridge and the board driver both
    take exactly these bytes, so a C-sim test also covers what the board receives."""
    n = codes.shape[0]
    return pack_elements(codes.reshape(n, -1), geometry.in_bits, geometry.in_frame_bytes)


def output_frames_to_bytes(codes, geometry: StreamGeometry) -> np.ndarray:
    """Output stream codes (N, H, W, C), or one such array per output (a list or tuple, in output order) -> the
    bytes the accelerator sends per frame (the testbench's vectors), (N, out_frame_bytes) uint8."""
    outputs = list(codes) if isinstance(codes, list | tuple) else [codes]
    if len(outputs) != len(geometry.segments):
        raise ValueError(f"{len(outputs)} outputs for a geometry of {len(geometry.segments)}")
    n = outputs[0].shape[0]
    parts = []
    for k, (seg, out) in enumerate(zip(geometry.segments, outputs, strict=True)):
        flat = np.asarray(out).reshape(n, -1)
        if flat.shape[1] != seg.elems:
            raise ValueError(f"output {k} has {flat.shape[1]} elements per frame, its segment {seg.elems}")
        parts.append(pack_elements(flat, seg.bits, geometry.segment_words(k) * geometry.out_axi_bits // 8))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def bytes_to_output_frames(data: np.ndarray, geometry: StreamGeometry, shapes, signed) -> list[np.ndarray]:
    """The output bytes of N frames, (N, out_frame_bytes) uint8 -> one array of stream codes (N, *shapes[k]) int64
    per output; ``signed[k]``: output k's elements are two's complement. Each segment's padding is ignored."""
    n = data.shape[0]
    data = data.reshape(n, -1)
    out = []
    for k, seg in enumerate(geometry.segments):
        start = geometry.segment_offset(k)
        part = data[:, start: start + geometry.segment_words(k) * geometry.out_axi_bits // 8]
        out.append(unpack_elements(part, seg.bits, bool(signed[k]), seg.elems).reshape(n, *shapes[k]))
    return out


def bytes_to_frames(data: np.ndarray, geometry: StreamGeometry, out_shape: tuple[int, int, int],
                    signed: bool) -> np.ndarray:
    """The output bytes of N frames, (N, bytes) uint8 -> output stream codes (N, H, W, C) int64."""
    n = data.shape[0]
    flat = unpack_elements(data.reshape(n, -1), geometry.out_bits, signed, int(np.prod(out_shape)))
    return flat.reshape(n, *out_shape)
