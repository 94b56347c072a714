import numpy as np
import pytest

from fpgagen.packing import pack, unpack


@pytest.mark.parametrize("word,bits,signed", [(3, 8, False), (4, 4, True), (5, 3, False), (2, 8, True), (1, 17, True)])
def test_pack_roundtrip(word, bits, signed):
    g = np.random.default_rng(bits)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    codes = g.integers(lo, hi + 1, size=(3, word * 10))
    data = pack(codes, word, bits)
    assert data.shape == (3, 10 * -(-word * bits // 8))
    assert np.array_equal(unpack(data, word, bits, signed, word * 10), codes)


def test_pack_bit_layout_is_little_endian_elements():
    # element e in bits [e*B, e*B+B): two 4-bit values 0x3, 0xA -> byte 0xA3
    assert pack(np.array([[3, 10]]), 2, 4).tolist() == [[0xA3]]


def test_uint8_frames_pack_without_conversion_to_the_same_bytes():
    from fpgagen.packing import frames_to_bytes

    class G:  # 8-bit input, 3 elements per stream word, a 32-bit AXI word: 4 * 5 * 3 = 60 bytes, no padding
        in_word, in_bits, in_frame_bytes = 3, 8, 60

    frames = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    fast = frames_to_bytes(frames, G)
    assert np.array_equal(fast, frames_to_bytes(frames.astype(np.int64), G))
    assert np.array_equal(fast, frames.reshape(2, -1)) and not np.shares_memory(fast, frames)
