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
