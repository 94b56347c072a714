"""LPYOLO (TinyYOLOv3 x0.2, 416x416) through the generator, bit-exact in every published bit width, and the
accumulator sizing that keeps it exact."""

import time

import nets
import numpy as np
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantIdentity
from nets import random_lpyolo
from qonnx.core.datatype import DataType
from torch import nn

import fpgagen
from fpgagen import codegen
from fpgagen.errors import CSimError
from fpgagen.models import PixelQuant, lpyolo

WIDTHS = [(2, 4), (3, 5), (4, 2), (4, 4), (6, 4), (8, 3)]



def check_full_size(wbits, abits, tmp_path, frames=2):
    model = random_lpyolo(wbits, abits, seed=10 * wbits + abits)
    start = time.perf_counter()
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "lpyolo.onnx"), board="pynq_z2", out_dir=tmp_path / "b",
                        log=lambda m: None)
    x = nets.net_input(model, 3, shape=(frames, 3, 416, 416))
    got = acc.run(x, codes=True)
    exact = nets.exact_codes(model, x)
    assert got.shape == (frames, 18, 13, 13)
    assert np.array_equal(acc.reference(x, codes=True), exact)
    assert np.array_equal(got, exact), f"{(got != exact).sum()} of {got.size} codes differ"
    flips = nets.float32_boundary_flips(model, x)  # proves any float32 disagreement is a k - 1/2 boundary
    if flips == 0:
        assert np.array_equal(got, nets.brevitas_codes(model, x))
    assert len(np.unique(got)) > 10  # a live head, not a saturated constant
    print(f"\nLPYOLO W{wbits}A{abits} 416x416 x{frames}: bit-exact in {time.perf_counter() - start:.1f} s "
          f"(float32 boundary flips in Brevitas: {flips})")


def test_lpyolo_w4a4_full_size_bitexact(tmp_path):
    check_full_size(4, 4, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("wbits,abits", WIDTHS, ids=[f"{w}W{a}A" for w, a in WIDTHS])
def test_lpyolo_all_widths_full_size_bitexact(wbits, abits, tmp_path):
    check_full_size(wbits, abits, tmp_path)


def test_lpyolo_topology_and_input_codes():
    model = lpyolo(4, 4)
    convs = [m for m in model.modules() if isinstance(m, QuantConv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 32, 56, 104, 208, 56, 104, 18]
    assert [c.kernel_size[0] for c in convs] == [3, 3, 3, 3, 3, 3, 3, 1, 3, 1]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert convs[0].quant_weight().bit_width.item() == 8 and convs[1].quant_weight().bit_width.item() == 4
    pixels = torch.arange(256, dtype=torch.float32).reshape(1, 1, 16, 16).expand(1, 3, 16, 16) / 255
    quant = model[0].act_quant
    assert quant.scale().item() == np.float32(1 / 255) and quant.zero_point().item() == 0
    codes = torch.round(model[0](pixels) / quant.scale()).to(torch.int64)
    assert torch.equal(codes, (pixels * 255).round().to(torch.int64))  # the input code is the uint8 pixel


# --- accumulators ---------------------------------------------------------------------------------------------
def one_conv_net():
    """Input quantizer + one 8-bit conv emitting raw accumulators: the output *is* the accumulator."""
    torch.manual_seed(4)
    model = nn.Sequential(QuantIdentity(act_quant=PixelQuant, return_quant_tensor=True),
                          QuantConv2d(3, 4, 3, padding=1, weight_bit_width=8, bias=False))
    model.input_shape = (1, 3, 8, 8)
    return model.eval()


def extreme_input(mvau, lo, hi):
    """An image whose window at output pixel (1, 1) drives the accumulator to its largest magnitude."""
    acc_hi = np.where(mvau.weights > 0, mvau.weights * hi, mvau.weights * lo).sum(1)
    acc_lo = np.where(mvau.weights > 0, mvau.weights * lo, mvau.weights * hi).sum(1)
    channel, want_max = max([(c, True) for c in range(mvau.mh)] + [(c, False) for c in range(mvau.mh)],
                            key=lambda cm: abs(acc_hi[cm[0]] if cm[1] else acc_lo[cm[0]]))
    w = mvau.weights[channel].reshape(3, 3, 3)  # (ky, kx, c)
    codes = np.zeros((1, 8, 8, 3), np.int64)
    codes[0, 0:3, 0:3, :] = np.where((w > 0) == want_max, hi, lo)
    return codes, channel, (acc_hi if want_max else acc_lo)[channel]


def test_accumulator_is_sized_from_real_ranges_and_reaches_its_extreme(tmp_path):
    model = one_conv_net()
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "c.onnx"), out_dir=tmp_path / "b", log=lambda m: None)
    mvau = acc.net.layers[-1]
    codes, channel, extreme = extreme_input(mvau, 0, 255)
    out = acc.run_stream(codes)
    assert out[0, 1, 1, channel] == extreme  # C-sim reaches the extreme value without overflow...
    assert np.array_equal(out, acc.reference_stream(codes))
    bits = mvau.acc_dtype.bitwidth()
    assert -(2 ** (bits - 2)) > extreme or extreme > 2 ** (bits - 2) - 1  # ...and it needs every bit
    # Brevitas in exact arithmetic agrees: the output really is the accumulator times the scales
    x = (codes.transpose(0, 3, 1, 2) / np.float32(255)).astype(np.float32)
    assert nets.exact_codes(model, x)[0, channel, 1, 1] == extreme


def test_too_narrow_accumulator_is_caught(tmp_path):
    model = one_conv_net()
    acc = fpgagen.build(fpgagen.export(model, tmp_path / "c.onnx"), out_dir=tmp_path / "b", log=lambda m: None)
    mvau = acc.net.layers[-1]
    codes, channel, extreme = extreme_input(mvau, 0, 255)
    mvau.acc_dtype = DataType[f"INT{mvau.acc_dtype.bitwidth() - 1}"]  # one bit short, as a sizing bug would make it
    codegen.generate(acc.net, acc.hls_dir, acc.board)
    acc._lib = None
    out = acc.run_stream(codes)
    assert out[0, 1, 1, channel] != extreme  # the C model wraps exactly like the hardware register
    acc.random_stream_input = lambda frames, seed=0: codes  # build-time verification on the extreme frame
    with pytest.raises(CSimError, match="differs from the numpy reference"):
        acc.verify(frames=1)
