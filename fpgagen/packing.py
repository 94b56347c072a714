"""Pack integer codes into the AXI-Stream bytes the accelerator exchanges with the host, and back.

Element e of a word sits in bits [e*B, e*B + B) of a little-endian word of ceil(N*B/8) bytes; signed values in
two's complement. The C-simulation bridge and the board driver move exactly these bytes.
"""

from __future__ import annotations

import numpy as np


def pack(codes: np.ndarray, word: int, bits: int) -> np.ndarray:
    """(frames, elements) integer codes -> (frames, bytes) uint8."""
    frames, elems = codes.shape
    nbytes = -(-word * bits // 8)
    words = codes.reshape(frames, elems // word, word)
    if bits == 8:
        return (words.astype(np.int64) & 0xFF).astype(np.uint8).reshape(frames, -1)
    raw = words.astype(np.int64) & ((1 << bits) - 1)
    bitplanes = ((raw[..., None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(frames, elems // word, -1)
    pad = nbytes * 8 - word * bits
    if pad:
        bitplanes = np.concatenate([bitplanes, np.zeros((*bitplanes.shape[:2], pad), np.uint8)], axis=-1)
    return np.packbits(bitplanes, axis=-1, bitorder="little").reshape(frames, -1)


def unpack(data: np.ndarray, word: int, bits: int, signed: bool, elems: int) -> np.ndarray:
    """(frames, bytes) uint8 -> (frames, elements) int64 codes."""
    frames = data.shape[0]
    nbytes = -(-word * bits // 8)
    words = data.reshape(frames, elems // word, nbytes)
    if bits == 8:
        raw = words.astype(np.int64)
    else:
        bitplanes = np.unpackbits(words, axis=-1, bitorder="little")[..., : word * bits]
        bitplanes = bitplanes.reshape(frames, elems // word, word, bits).astype(np.int64)
        raw = (bitplanes << np.arange(bits)).sum(axis=-1)
    if signed:
        raw = np.where(raw >= 1 << (bits - 1), raw - (1 << bits), raw)
    return raw.reshape(frames, elems)


def frames_to_bytes(codes: np.ndarray, geometry) -> np.ndarray:
    """Input stream codes (N, H, W, C) -> the bytes one DMA transfer per frame carries, (N, bytes) uint8.

    ``geometry`` is ``fpgagen.codegen.stream_geometry(net)``; the C-simulation bridge and the board driver both
    take exactly these bytes, so a C-sim test also covers what the board receives."""
    n = codes.shape[0]
    return pack(codes.reshape(n, -1), geometry.in_word, geometry.in_bits)


def bytes_to_frames(data: np.ndarray, geometry, out_shape: tuple[int, int, int], signed: bool) -> np.ndarray:
    """The output bytes of N frames, (N, bytes) uint8 -> output stream codes (N, H, W, C) int64."""
    n = data.shape[0]
    flat = unpack(data, geometry.out_word, geometry.out_bits, signed, int(np.prod(out_shape)))
    return flat.reshape(n, *out_shape)
