"""The accelerator's AXI-Stream interface: the frame byte layout (fpgagen.packing), the input/output adapters
(fg::axis_to_stream / fg::stream_to_axis in fg_common.h) across word boundaries, several frames per DMA transfer
(frame boundaries by count, TLAST at the transfer's end, mirrored on the output), and the TLAST checks on the
input (a short or aborted transfer, a long one and a missing TLAST are flagged and do not shift the frames after
them)."""

import ctypes
import shutil
import subprocess

import nets
import numpy as np
import pytest

import fpgagen
from fpgagen import packing
from fpgagen.csim import ap_types_include
from fpgagen.geometry import stream_geometry
from fpgagen.packing import StreamGeometry


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("axisio")
    path = fpgagen.export(nets.conv_net(4, 4, seed=3), d / "axisnet.onnx")
    return fpgagen.build(path, out_dir=d / "b", log=lambda m: None)


def test_frame_layout_is_elements_contiguous_padded_to_an_axi_word():
    g = StreamGeometry(in_word=3, in_bits=4, in_elems=9, in_axi_bits=32, out_word=1, out_bits=8, out_elems=5,
                       out_axi_bits=64)
    codes = np.arange(1, 10).reshape(1, 1, 3, 3)  # 9 elements x 4 bits = 36 bits -> 2 AXI words of 32 bits
    data = packing.frames_to_bytes(codes, g)
    assert g.in_words == 2 and g.in_frame_bytes == 8 and data.shape == (1, 8)
    # element e at bit 4e, little endian: 0x21, 0x43, 0x65, 0x87, then element 8 (0x9) and zero padding
    assert data[0].tolist() == [0x21, 0x43, 0x65, 0x87, 0x09, 0, 0, 0]
    out = packing.output_frames_to_bytes(np.array([[[[-1, 2, -3, 4, 5]]]]), g)
    assert out.shape == (1, 8) and out[0].tolist() == [0xFF, 2, 0xFD, 4, 5, 0, 0, 0]
    assert np.array_equal(packing.bytes_to_frames(out, g, (1, 1, 5), signed=True), [[[[-1, 2, -3, 4, 5]]]])


@pytest.mark.parametrize("bits,signed", [(1, False), (3, True), (4, False), (5, True), (8, False), (11, True)])
def test_pack_elements_roundtrip(bits, signed):
    g = np.random.default_rng(bits)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    codes = g.integers(lo, hi + 1, size=(3, 37))
    frame_bytes = -(-37 * bits // 64) * 8
    data = packing.pack_elements(codes, bits, frame_bytes)
    assert data.shape == (3, frame_bytes)
    assert np.array_equal(packing.unpack_elements(data, bits, signed, 37), codes)


def test_axi_width_follows_the_stream_word():
    assert packing.axi_width(24) == 32 and packing.axi_width(32) == 32
    assert packing.axi_width(33) == 64 and packing.axi_width(144) == 64


def test_geometry_round_trips_through_a_dict(project):
    geometry = stream_geometry(project.net)
    assert StreamGeometry.from_dict(geometry.to_dict()) == geometry
    assert (project.lib.in_frame_bytes, project.lib.out_frame_bytes) == (geometry.in_frame_bytes,
                                                                        geometry.out_frame_bytes)


ADAPTER_CASES = [  # (N elements, B bits, W AXI bits): words smaller, equal and larger than the AXI word
    (3, 8, 32), (1, 4, 32), (5, 3, 64), (8, 8, 64), (18, 8, 64), (7, 5, 32), (3, 11, 64), (2, 16, 32)]


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_adapters_unpack_and_pack_across_word_boundaries(project, tmp_path):
    """Each adapter instance unpacks a packed frame into stream words and packs them back; the stream words must
    equal numpy's elements and the bytes must come back identical, with TLAST only on the last word."""
    frames, cases, calls = {}, [], []
    for i, (n, b, w) in enumerate(ADAPTER_CASES):
        stream_words = 7 + i  # odd counts, so frames end mid-word
        elems = n * stream_words
        axi_words = -(-elems * b // w)
        codes = np.random.default_rng(i).integers(0, 2**b, size=(1, elems))
        data = packing.pack_elements(codes, b, axi_words * w // 8)
        frames[i] = (codes[0], data[0])
        (tmp_path / f"in{i}.bin").write_bytes(data.tobytes())
        cases.append(f"check<{n}, {b}, {w}, {axi_words}, {stream_words}>({i});")
        calls.append(i)
    src = tmp_path / "adapters.cpp"
    src.write_text(ADAPTER_HARNESS.replace("CASES", "\n    ".join(cases)))
    exe = tmp_path / "adapters"
    subprocess.run(["g++", "-O1", "-std=c++14", "-w", "-isystem", str(ap_types_include()), "-I",
                    str(project.hls_dir), str(src), "-o", str(exe)], check=True)
    proc = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i in calls:
        codes, data = frames[i]
        got = np.array([int(v) for v in (tmp_path / f"elems{i}.txt").read_text().split()])
        assert np.array_equal(got, codes), f"case {ADAPTER_CASES[i]}: unpacked elements differ"
        assert (tmp_path / f"out{i}.bin").read_bytes() == data.tobytes(), f"case {ADAPTER_CASES[i]}: repacked"


ADAPTER_HARNESS = r"""
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>
#include "fg_common.h"
thread_local const char *fg::current_layer = "adapter test";

template <unsigned N, unsigned B, int W, unsigned AXI_WORDS, unsigned STREAM_WORDS>
void check(int id) {
    std::ifstream f("in" + std::to_string(id) + ".bin", std::ios::binary);
    std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    hls::stream<fg::AxisWord<W> > in, out;
    hls::stream<fg::Vec<ap_uint<B>, N> > mid;
    hls::stream<fg::AxisWord<32> > status;
    hls::stream<ap_uint<1> > transfer_end;
    for (unsigned w = 0; w < AXI_WORDS; w++) {
        fg::AxisWord<W> word;
        for (unsigned b = 0; b < W / 8; b++) word.data.range(8 * b + 7, 8 * b) = bytes[w * (W / 8) + b];
        word.last = (w == AXI_WORDS - 1);
        in.write(word);
    }
    fg::axis_to_stream<ap_uint<B>, N, B, W, AXI_WORDS, STREAM_WORDS>(in, mid, status, transfer_end);
    if (mid.size() != STREAM_WORDS || !in.empty() || status.read().data != 0 || transfer_end.size() != 1)
        throw std::runtime_error("unpack");
    FILE *e = std::fopen(("elems" + std::to_string(id) + ".txt").c_str(), "w");
    hls::stream<fg::Vec<ap_uint<B>, N> > again;
    for (unsigned s = 0; s < STREAM_WORDS; s++) {
        const fg::Vec<ap_uint<B>, N> word = mid.read();
        for (unsigned i = 0; i < N; i++) std::fprintf(e, "%u\n", word.v[i].to_uint());
        again.write(word);
    }
    std::fclose(e);
    fg::stream_to_axis<ap_uint<B>, N, B, W, STREAM_WORDS, AXI_WORDS>(again, out, transfer_end);
    if (out.size() != AXI_WORDS || !again.empty() || !transfer_end.empty()) throw std::runtime_error("pack");
    FILE *o = std::fopen(("out" + std::to_string(id) + ".bin").c_str(), "wb");
    for (unsigned w = 0; w < AXI_WORDS; w++) {
        const fg::AxisWord<W> word = out.read();
        if (word.last != (w == AXI_WORDS - 1)) throw std::runtime_error("TLAST");
        for (unsigned b = 0; b < W / 8; b++) std::fputc(word.data.range(8 * b + 7, 8 * b).to_uint(), o);
    }
    std::fclose(o);
}

int main() {
    CASES
    return 0;
}
"""


def run_words(project, words: np.ndarray, last: np.ndarray, calls: int):
    """Raw AXI words (n, bytes per word) with TLAST flags through the C-sim, `calls` calls of the top; returns
    (rc, error, output frames, status words, output TLAST per frame, input words left unread)."""
    lib = ctypes.CDLL(str(project.lib.path))
    lib.fg_run_words.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p,
                                 ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    words = np.ascontiguousarray(words, np.uint8)
    last = np.ascontiguousarray(last, np.uint8)
    out = np.zeros((calls, project.lib.out_frame_bytes), np.uint8)
    status = np.zeros(calls, np.uint32)
    out_last = np.zeros(calls, np.uint8)
    left = np.zeros(1, np.uint32)
    err = ctypes.create_string_buffer(512)
    rc = lib.fg_run_words(words.ctypes.data, last.ctypes.data, len(words), calls, out.ctypes.data,
                          status.ctypes.data, out_last.ctypes.data, left.ctypes.data, err, len(err))
    return rc, err.value.decode(), out, status, out_last.tolist(), int(left[0])


def frame_words(project, frames: int, seed: int):
    codes = project.random_stream_input(frames, seed)
    g = stream_geometry(project.net)
    data = packing.frames_to_bytes(codes, g).reshape(frames * g.in_words, g.in_axi_bits // 8)
    expected = packing.output_frames_to_bytes(project.reference_stream(codes), g)
    return g, data, expected


def test_several_frames_per_transfer_tlast_at_its_end_mirrored_on_the_output(project):
    g, data, expected = frame_words(project, 3, seed=4)
    last = np.zeros(len(data), np.uint8)
    last[-1] = 1  # one DMA transfer of 3 frames: TLAST on its very last word only
    rc, err, out, status, out_last, left = run_words(project, data, last, calls=3)
    assert rc == 0, err
    assert status.tolist() == [2, 2, 0]  # FRAME_CONTINUES on all but the transfer's last frame
    assert out_last == [0, 0, 1] and left == 0  # one S2MM transfer of 3 frames ends after the third
    assert np.array_equal(out, expected)


def test_short_transfer_is_flagged_and_the_next_frame_is_exact(project):
    g, data, expected = frame_words(project, 2, seed=5)
    assert g.in_words >= 4
    cut = g.in_words // 3  # frame 0 aborted after a third of its words, TLAST on the last one sent
    words = np.concatenate([data[:cut], data[g.in_words:]])
    last = np.zeros(len(words), np.uint8)
    last[cut - 1] = last[-1] = 1
    rc, err, out, status, out_last, left = run_words(project, words, last, calls=2)
    assert rc == 0, err
    assert status.tolist() == [1 | (g.in_words - cut) << 2, 0]  # FRAME_SHORT, zero-filled words
    assert out_last == [1, 1] and left == 0
    assert np.array_equal(out[1], expected[1])


def test_long_transfer_makes_a_short_frame_and_the_next_frame_is_exact(project):
    g, data, expected = frame_words(project, 2, seed=6)
    extra = 5  # frame 0 sent without TLAST, then 5 stray words, the last with TLAST, then frame 1
    words = np.concatenate([data[: g.in_words], data[:extra], data[g.in_words:]])
    last = np.zeros(len(words), np.uint8)
    last[g.in_words + extra - 1] = last[-1] = 1
    rc, err, out, status, out_last, left = run_words(project, words, last, calls=3)
    assert rc == 0, err
    # frame 0 exact but not closed; the stray words a short frame of their own; frame 1 exact: nothing shifted
    assert status.tolist() == [2, 1 | (g.in_words - extra) << 2, 0]
    assert out_last == [0, 1, 1] and left == 0
    assert np.array_equal(out[0], expected[0]) and np.array_equal(out[2], expected[1])


def test_missing_tlast_loses_nothing(project):
    g, data, expected = frame_words(project, 2, seed=8)
    last = np.zeros(len(data), np.uint8)
    last[-1] = 1  # frame 0 sent as its own transfer but without its TLAST: counted, flagged, the next one intact
    rc, err, out, status, out_last, left = run_words(project, data, last, calls=2)
    assert rc == 0, err
    assert status.tolist() == [2, 0] and out_last == [0, 1] and left == 0
    assert np.array_equal(out, expected)


def test_a_frame_is_complete_by_count_even_when_no_tlast_follows(project):
    g, data, expected = frame_words(project, 1, seed=7)
    rc, err, out, status, out_last, left = run_words(project, data, np.zeros(len(data), np.uint8), calls=1)
    assert rc == 0, err  # no wait for a TLAST that never comes: the frame ends by count
    assert status.tolist() == [2] and out_last == [0] and np.array_equal(out, expected)
    rc, err, *_ = run_words(project, data[:-1], np.zeros(len(data) - 1, np.uint8), calls=1)
    assert rc == 1 and "stream read while empty" in err  # one word short and no TLAST: the frame cannot end


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_ap_axiu_is_used_whenever_the_headers_have_it(project, tmp_path):
    """With a Vitis HLS install the include path has ap_axi_sdata.h and the C model must use its ap_axiu, as
    synthesis does. The hls4ml ap_types lack it, so a stand-in header (a test fixture, not Xilinx's) checks the
    switch: fg::AxisWord<W> must then be that header's type."""
    fake = tmp_path / "inc"
    fake.mkdir()
    (fake / "ap_axi_sdata.h").write_text(
        "// TEST FIXTURE standing in for Xilinx's header: only the fields fpgagen uses\n#pragma once\n"
        "#include <ap_int.h>\ntemplate <int D, int U, int TI, int TD> struct ap_axiu {\n"
        "    ap_uint<D> data; ap_uint<(D + 7) / 8> keep, strb; ap_uint<1> last; enum { from_fixture = 1 };\n};\n")
    src = tmp_path / "probe.cpp"
    src.write_text('#include "fg_common.h"\nthread_local const char *fg::current_layer = "probe";\n'
                   "static_assert(fg::AxisWord<64>::from_fixture == 1, \"AxisWord is not ap_axiu\");\n"
                   "int main() { return 0; }\n")
    cmd = ["g++", "-std=c++14", "-w", "-fsyntax-only", "-isystem", str(ap_types_include()), "-I", str(project.hls_dir)]
    with_fixture = subprocess.run([*cmd, "-I", str(fake), str(src)], capture_output=True, text=True)
    assert with_fixture.returncode == 0, with_fixture.stderr
    without = subprocess.run([*cmd, str(src)], capture_output=True, text=True)  # hls4ml headers: the mirror struct
    assert without.returncode != 0 and "from_fixture" in without.stderr
