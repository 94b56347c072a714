"""Brevitas -> QONNX -> fpgagen: C-sim integer codes equal Brevitas' own, and equal the numpy reference."""

import nets
import numpy as np
import pytest
import torch
from checks import assert_bitexact, build_net
from nets import valid_padding_net

import fpgagen


@pytest.mark.parametrize("wbits,abits", [(4, 4), (2, 2), (8, 8)])
def test_conv_net_bitexact(wbits, abits, tmp_path_factory, quiet):
    model = nets.conv_net(wbits, abits, seed=wbits)
    acc = build_net(model, tmp_path_factory, quiet, f"conv_w{wbits}a{abits}")
    x, got = assert_bitexact(model, acc)
    if nets.float32_boundary_flips(model, x) == 0:
        # run() returns what the torch model returns, dequantized the same way
        with torch.no_grad():
            y_torch = model(torch.from_numpy(x)).numpy()
        assert np.array_equal(acc.run(x), y_torch)


def test_float32_boundary_case_is_explained(tmp_path_factory, quiet):
    """A known input where Brevitas' float32 forward rounds two values across k - 1/2 (0.49999995 exactly,
    0.50000024 in float32): fpgagen must equal the exact result, and the difference must be that boundary."""
    model = nets.conv_net(4, 4, seed=1)
    acc = build_net(model, tmp_path_factory, quiet, "boundary")
    x = nets.net_input(model, 5, shape=(2, 3, 32, 32))
    assert nets.float32_boundary_flips(model, x) > 0
    got = acc.run(x, codes=True)
    assert np.array_equal(got, nets.exact_codes(model, x))
    assert not np.array_equal(got, nets.brevitas_codes(model, x))


def test_conv_net_dynamo_export_bitexact(tmp_path_factory, quiet):
    model = nets.conv_net(4, 4, seed=11)
    acc = build_net(model, tmp_path_factory, quiet, "conv_dynamo", dynamo=True)
    assert_bitexact(model, acc)


def test_pow2_scales_with_ties_bitexact(tmp_path_factory, quiet):
    model = nets.pow2_net(seed=3)
    x = nets.net_input(model, 1, shape=(3, *model.input_shape[1:]))
    assert nets.count_ties(model, x) > 20, "the power-of-two net must exercise rounding ties"
    acc = build_net(model, tmp_path_factory, quiet, "pow2")
    assert_bitexact(model, acc)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_fc_net_bitexact(dynamo, tmp_path_factory, quiet):
    model = nets.fc_net(seed=5)
    acc = build_net(model, tmp_path_factory, quiet, "fc", dynamo=dynamo)  # MatMul (legacy) or Gemm (dynamo)
    assert [layer.kind for layer in acc.net.layers].count("MVAU") == 3
    assert_bitexact(model, acc, frames=8)


def test_conv1x1_and_stride2_bitexact(tmp_path_factory, quiet):
    model = nets.conv1x1_stride2_net(seed=6)
    acc = build_net(model, tmp_path_factory, quiet, "c1x1s2")
    kinds = [layer.kind for layer in acc.net.layers]
    assert any(getattr(lay, "stride", (1, 1)) == (2, 2) for lay in acc.net.layers)
    assert kinds.count("MVAU") > kinds.count("SlidingWindow"), "a 1x1 conv needs no sliding window"
    assert_bitexact(model, acc)


def test_accumulator_output_bitexact(tmp_path_factory, quiet):
    model = nets.acc_output_net(seed=7)
    acc = build_net(model, tmp_path_factory, quiet, "accout")
    assert acc.net.output.kind == "accumulators"
    assert acc.net.layers[-1].thresholds is None
    assert_bitexact(model, acc)


def test_negative_bn_scale_present_and_exact(tmp_path_factory, quiet):
    """The conv nets use negative BatchNorm gammas; check the lowering really negated some MVAU rows."""
    model = nets.conv_net(4, 4, seed=4)
    gammas = [m.weight.detach().numpy() for m in model.modules() if isinstance(m, nets.nn.BatchNorm2d)]
    assert any((g < 0).any() for g in gammas)
    acc = build_net(model, tmp_path_factory, quiet, "negbn")
    assert_bitexact(model, acc)


FOLDINGS = [
    {},  # all PE = SIMD = 1
    {"conv_0": {"pe": 2, "simd": 3}, "conv_0_window": {"simd": 3}},
    {"conv_0": {"pe": 4, "simd": 27}, "conv_0_window": {"simd": 27}, "conv_1": {"pe": 8, "simd": 8},
     "conv_1_window": {"simd": 8}, "maxpool_0": {"pe": 2}},
    {"conv_0": {"pe": 8, "simd": 9}, "conv_0_window": {"simd": 9}, "conv_1": {"pe": 1, "simd": 24},
     "conv_1_window": {"simd": 24}},
    # binary-search thresholds, DSP PEs next to LUT PEs, LUTRAM weights
    {"conv_0": {"pe": 4, "simd": 9, "dsp_pe": 2, "thr_mode": "search", "mem_style": "lutram"},
     "conv_0_window": {"simd": 9}, "conv_1": {"pe": 2, "simd": 8, "thr_mode": "search", "dsp_pe": 2},
     "conv_1_window": {"simd": 8}, "conv_3": {"thr_mode": "search"}},
]


@pytest.mark.parametrize("folding", FOLDINGS, ids=["unfolded", "pe2simd3", "wide", "mixed", "search_dsp"])
def test_folding_never_changes_results(folding, tmp_path_factory, quiet):
    model = nets.conv_net(4, 4, seed=2)
    d = tmp_path_factory.mktemp("fold")
    path = fpgagen.export(model, d / "m.onnx")
    base = {lay.name: {k: 1 for k in lay.folding() if k != "ifm_word"}
            for lay in fpgagen.build(path, out_dir=d / "probe", verify=False, log=quiet).net.layers
            if lay.folding()}
    for name, attrs in folding.items():
        base[name].update(attrs)
    acc = fpgagen.build(path, out_dir=d / "b", folding=base, log=quiet)
    for name, attrs in folding.items():
        for key, value in attrs.items():
            assert getattr(acc.net.layer(name), key) == value
    assert_bitexact(model, acc, frames=2)


def test_load_reopens_without_rebuilding(tmp_path_factory, quiet):
    model = nets.conv_net(4, 4, seed=9)
    acc = build_net(model, tmp_path_factory, quiet, "reload")
    x = nets.net_input(model, 3, shape=(2, *model.input_shape[1:]))
    again = fpgagen.load(acc.build_dir, log=quiet)
    assert np.array_equal(again.run(x, codes=True), acc.run(x, codes=True))
    assert np.array_equal(again.reference(x), acc.run(x))



def test_valid_padding_stride2_and_odd_pooling_bitexact(tmp_path_factory, quiet):
    model = valid_padding_net()
    acc = build_net(model, tmp_path_factory, quiet, "valid")
    windows = [lay for lay in acc.net.layers if lay.kind == "SlidingWindow"]
    assert [w.pads for w in windows] == [(0, 0, 0, 0), (0, 0, 0, 0)] and windows[0].kernel == (3, 5)
    assert acc.net.out_stream_shape == (4, 6, 6)
    assert_bitexact(model, acc)
