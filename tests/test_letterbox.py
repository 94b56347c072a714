"""Letterbox (fpgagen/ir/kinds/letterbox.py): the camera frame's resize + letterbox in the fabric. Its numpy
reference and its g++-compiled kernel (templates/hls/fg_letterbox.h) equal OpenCV's
``cv2.resize(..., interpolation=cv2.INTER_LINEAR_EXACT)`` plus the pad (np.array_equal) on random frames and sizes
(odd widths, upscaling, portrait, landscape, BGR), the loop pops and pushes as the cycle model says, and its
memories are emitted as declared."""

from __future__ import annotations

import subprocess
import zlib

import cv2
import numpy as np
import pytest
from stream_bench import TESTBENCH

from fpgagen import codegen, lint
from fpgagen.csim import ap_types_include
from fpgagen.data.transforms import letterbox_exact, resize_linear_exact
from fpgagen.ir.kinds.letterbox import camera_letterbox

FRAMES = 2
# (camera W, H, output S, pixels per cycle, BGR camera)
CASES = [(40, 30, 32, 1, False),    # landscape, shrink
         (40, 30, 32, 2, True),     # two pixels per cycle, channels swapped
         (27, 35, 32, 1, False),    # portrait, odd width
         (13, 9, 32, 1, False),     # upscaling, odd sizes
         (16, 12, 32, 2, False),    # upscaling, two pixels per cycle
         (64, 64, 32, 2, False),    # exactly 2x down (OpenCV takes its area path there)
         (32, 32, 32, 1, True),     # 1:1, no resize
         (50, 21, 24, 2, False)]    # very wide: most rows are padding
IDS = [f"{w}x{h}to{s}_ppc{p}{'_bgr' if b else ''}" for w, h, s, p, b in CASES]


def layer_of(case):
    w, h, s, ppc, bgr = case
    layer = camera_letterbox(f"lb_{w}x{h}_{s}_{ppc}{'_bgr' if bgr else ''}", (w, h), s, 114, bgr)
    layer.set_folding(ppc=ppc)
    return layer


def cv2_letterbox(frames: np.ndarray, s: int, bgr: bool) -> np.ndarray:
    out = np.stack([letterbox_exact(f, s)[0] for f in frames.astype(np.uint8)])
    return out[..., ::-1] if bgr else out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reference_equals_opencv_linear_exact(case):
    layer = layer_of(case)
    frames = np.random.default_rng(zlib.crc32(layer.name.encode())).integers(0, 256, (FRAMES, *layer.in_shape))
    got = layer.reference(frames)
    assert np.array_equal(got, cv2_letterbox(frames, layer.size, case[4]))
    nw, nh, dx, dy = layer.geometry
    assert got.shape == (FRAMES, layer.size, layer.size, 3) and (got[:, :dy] == 114).all()


def test_numpy_resize_equals_opencv_on_random_sizes():
    rng = np.random.default_rng(3)
    for _ in range(40):
        h, w = rng.integers(2, 90, 2)
        nh, nw = rng.integers(1, 130, 2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = cv2.resize(img, (int(nw), int(nh)), interpolation=cv2.INTER_LINEAR_EXACT)
        assert np.array_equal(resize_linear_exact(img, int(nw), int(nh)), want), (h, w, nh, nw)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("letterbox")
    env, g = codegen._environment(), codegen.Cpp()
    for header in codegen.TEMPLATE_DIR.glob("fg_*.h"):
        (root / header.name).write_text(header.read_text())
    includes, dispatch = ['#include "fg_letterbox.h"'], []
    for layer in map(layer_of, CASES):
        codegen._write_layer(env, layer, root / f"{layer.name}.h")
        includes.append(f'#include "{layer.name}.h"')
        dispatch.append(f'    if (name == "{layer.name}") return run<{g.ctype(layer.in_dtype)}, {layer.in_word}, '
                        f'{g.ctype(layer.out_dtype)}, {layer.out_word}>(&{layer.name}, f);')
    source = TESTBENCH.replace("%INCLUDES%", "\n".join(includes)).replace("%DISPATCH%", "\n".join(dispatch))
    (root / "bench.cpp").write_text(source)
    exe = root / "bench"
    cmd = ["g++", "-O1", "-std=c++14", "-Wall", "-Wno-unknown-pragmas", "-Werror=array-bounds", "-isystem",
           str(ap_types_include()), "-I", str(root), str(root / "bench.cpp"), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours = [line for line in proc.stderr.splitlines() if "fg_letterbox.h" in line and "warning" in line
            and "unused-label" not in line]
    assert not ours, "\n".join(ours)
    return root, exe


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_kernel_equals_opencv_and_its_cycle_model(case, bench):
    root, exe = bench
    layer = layer_of(case)
    frames = np.random.default_rng(zlib.crc32(layer.name.encode()) + 1).integers(0, 256, (FRAMES, *layer.in_shape))
    words = frames.reshape(FRAMES, -1, layer.in_word)
    data = root / f"{layer.name}.in"
    data.write_text(f"{words.shape[1]} {FRAMES}\n" + " ".join(map(str, words.reshape(-1).tolist())))
    proc = subprocess.run([str(exe), layer.name, str(data)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    lines = proc.stdout.split("\n")
    reads, writes = layer.stream_pattern()
    loop, depth = layer.iterations(), layer.PIPELINE_DEPTH
    assert layer.cycles() == len(reads) == loop + depth
    assert reads.sum() == layer.in_shape[0] * layer.in_shape[1] // case[3] and writes.sum() == layer.size ** 2
    want = cv2_letterbox(frames, layer.size, case[4])
    for frame in range(FRAMES):
        trace = np.array(lines[2 * frame].split()[1:], int)
        assert np.array_equal(trace & 1, reads[:loop]), "the loop pops other than stream_pattern() says"
        assert np.array_equal(trace >> 1, writes[depth - 1:depth - 1 + loop]), "the loop pushes otherwise"
        got = np.array(lines[2 * frame + 1].split()[1:], np.int64).reshape(want.shape[1:])
        assert np.array_equal(got, want[frame]), f"frame {frame}: {(got != want[frame]).sum()} values differ from cv2"
    # its arrays, parsed back from the emitted C++, cost what the layer declares
    arrays = lint.parse_arrays((root / f"{layer.name}.h").read_text())
    from_code = {"BRAM18": 0, "LUTRAM": 0}
    for a in arrays:
        for r, v in lint.price_array(a).items():
            from_code[r] += v
    assert {r: layer.resources()[r] for r in from_code} == from_code


def test_one_camera_pixel_per_cycle_keeps_640x480_above_300_fps():
    """The cycle model at 100 MHz: two pixels per cycle keep a 640x480 camera above 300 FPS; one pixel per
    cycle streams a portrait 480x640 (no padding rows) at one pixel per cycle plus the pipeline."""
    vga = camera_letterbox("vga", (640, 480), 416, 114, False)
    vga.set_folding(ppc=2)
    assert 100e6 / vga.cycles() > 300
    portrait = camera_letterbox("portrait", (480, 640), 416, 114, False)
    assert portrait.cycles() <= 480 * 640 + 416 * 2 + portrait.PIPELINE_DEPTH
    # the folding options price what they say (a probe's copy gets its own schedule), and the greedy baseline
    # takes the fewest pixels per cycle that meet its target
    cycles = {o["ppc"]: vga.__class__(**{**vga.__dict__, **o}).cycles() for o in vga.fold_options()}
    assert set(cycles) == {1, 2} and cycles[2] < 0.7 * cycles[1]
    vga.greedy_fold(100e6 / 300, 3)
    assert vga.ppc == 2
    vga.greedy_fold(100e6 / 30, 3)
    assert vga.ppc == 1


# --- a --camera build end to end: the tiny face-detector-shaped net (tests/runtime_nets.py) ----------------------
CAMERA = (80, 60)


@pytest.fixture(scope="module")
def camera_builds(tmp_path_factory):
    """The tiny detector built twice from one ONNX: plain (64x64 input) and with an 80x60 BGR camera in front."""
    from runtime_nets import TINY_ANCHORS, tiny_detector_net

    import fpgagen
    from fpgagen.runtime.model import write_detector_json

    root = tmp_path_factory.mktemp("camera")
    onnx = fpgagen.export(tiny_detector_net(0), root / "tiny.onnx")
    plain = fpgagen.build(onnx, out_dir=root / "plain", log=lambda m: None)
    camera = fpgagen.build(onnx, out_dir=root / "camera", camera=f"{CAMERA[0]}x{CAMERA[1]}:bgr", log=lambda m: None)
    for acc in (plain, camera):
        write_detector_json(acc.build_dir, TINY_ANCHORS, 64)
    return root, onnx, plain, camera


def test_camera_build_equals_the_plain_build_on_host_letterboxed_frames(camera_builds, tmp_path):
    from fpgagen.cli import main
    from fpgagen.runtime.backends import make_backend, read_runtime_spec

    root, _, plain, camera = camera_builds
    assert camera.net.layers[0].kind == "Letterbox" and camera.camera == CAMERA
    frames = np.random.default_rng(4).integers(0, 256, (3, CAMERA[1], CAMERA[0], 3), dtype=np.uint8)  # BGR
    boxed = np.stack([letterbox_exact(f[..., ::-1], 64)[0] for f in frames])  # the host letterbox, RGB
    x = boxed.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    want_codes = plain.run(x, codes=True)
    assert np.array_equal(camera.run(frames, codes=True), want_codes)
    assert np.array_equal(camera.reference(frames, codes=True), want_codes)
    assert np.array_equal(camera.run(frames), plain.run(x))  # the same dequantized outputs, same format
    # fpgagen csim on camera frames writes what the plain build writes for the letterboxed frames
    np.save(tmp_path / "frames.npy", frames)
    assert main(["csim", str(camera.build_dir), "--input", str(tmp_path / "frames.npy"), "--output",
                 str(tmp_path / "y.npy"), "--codes"]) == 0
    assert np.array_equal(np.load(tmp_path / "y.npy"), want_codes)
    # runtime.json records the letterbox; the backends take camera frames as they are
    csim = make_backend("csim", camera.build_dir)
    spec = read_runtime_spec(camera.build_dir)
    assert spec["preprocess"] == {"camera": list(CAMERA), "format": "bgr", "resize": "INTER_LINEAR_EXACT",
                                  "size": [64, 64], "scaled": [64, 48], "offset": [0, 8], "pad": 114}
    assert spec["input_shape"] == [CAMERA[1], CAMERA[0], 3] and spec["pixels_are_codes"]
    assert csim.input_codes(frames) is frames
    assert np.array_equal(csim.infer(frames), plain.run_stream(boxed))


def test_face_detector_on_a_camera_build_finds_what_the_plain_build_finds(camera_builds):
    from fpgagen.runtime.model import load_face_detector

    _, _, plain, camera = camera_builds
    rgb = np.random.default_rng(5).integers(0, 256, (2, CAMERA[1], CAMERA[0], 3), dtype=np.uint8)
    on_camera = load_face_detector(camera.build_dir, "reference", log=lambda m: None)
    on_plain = load_face_detector(plain.build_dir, "reference", log=lambda m: None)
    got, want = on_camera(list(rgb)), on_plain(list(rgb))
    assert sum(len(d.boxes) for d in want) > 0
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g.scores, w.scores) and np.allclose(g.boxes, w.boxes)
    frame, box = on_camera.preprocess(rgb[0])
    assert frame.base is rgb[0] or frame.base is rgb  # a camera frame goes to the backend uncopied (a BGR view)
    other, _ = on_camera.preprocess(rgb[0][:50, :70].copy())  # another size: fitted into a camera frame first
    assert other.shape == (CAMERA[1], CAMERA[0], 3)


def test_camera_is_refused_when_the_input_code_is_not_the_pixel(tmp_path):
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantReLU
    from torch import nn

    import fpgagen
    from fpgagen.errors import FpgagenError

    model = nn.Sequential(QuantIdentity(bit_width=8),  # a signed 8-bit input: its code is not the pixel
                          QuantConv2d(3, 4, 3, padding=1, bias=False, weight_bit_width=4), QuantReLU(bit_width=4))
    onnx = fpgagen.export(model.eval(), tmp_path / "m.onnx", input_shape=(1, 3, 8, 8))
    with pytest.raises(FpgagenError, match="input code is not the uint8 pixel.*build without --camera"):
        fpgagen.build(onnx, out_dir=tmp_path / "b", camera="64x48", log=lambda m: None)
    for bad in ("640", "640x480:yuv", "0x5"):
        with pytest.raises(FpgagenError, match="--camera"):
            fpgagen.build(onnx, out_dir=tmp_path / "b", camera=bad, log=lambda m: None)
