"""The host as a system (issue 18): the per-stage Cortex-A9 model (fpgagen/runtime/host_model.py) and the capture
process with shared-memory frames (fpgagen/runtime/shared.py). The model's tests check relationships between
plans (more camera pixels cost more when the ARM letterboxes, the camera build drops the resize, end to end is
the minimum of the accelerator and the host, the bracket is ordered), never its numbers."""

from __future__ import annotations

import numpy as np
import pytest

from fpgagen.runtime import host_model
from fpgagen.runtime.host_model import A9_FIGURES, HostPlan, estimate, stages


def _names(plan):
    return [s.name for s in stages(plan)]


def _host_ms(plan):
    return estimate(1e6, 1.0, plan).host_ms_per_frame


def test_every_figure_names_its_source_and_is_a_bracket():
    for name, fig in A9_FIGURES.items():
        assert 0 < fig.low < fig.high, name
        assert fig.kind in ("reference manual", "published", "assumption") and len(fig.source) > 20, name
        if fig.kind == "assumption":
            assert "assumption" in fig.source, name  # said to be one where it is used


def test_host_letterbox_cost_grows_with_camera_pixels():
    small, large = HostPlan((640, 480), 416, False), HostPlan((1280, 720), 416, False)
    for end in (0, 1):
        assert _host_ms(large)[end] > _host_ms(small)[end]
    resize = [next(s for s in stages(p) if "letterbox" in s.name).ms() for p in (small, large)]
    # the resize writes the same 416-wide output; the capture converts 3x the pixels
    cap = [next(s for s in stages(p) if s.name.startswith("capture")).ms() for p in (small, large)]
    assert resize[0] != resize[1] or cap[1][0] > cap[0][0]
    assert cap[1][0] == pytest.approx(3 * cap[0][0], rel=0.05)


def test_the_camera_build_removes_the_resize_and_copies_the_camera_frame():
    host, fabric = HostPlan((640, 480), 416, False), HostPlan((640, 480), 416, True)
    assert any("letterbox" in n for n in _names(host)) and not any("letterbox" in n for n in _names(fabric))
    copy = {p.letterbox_in_fabric: next(s for s in stages(p) if "DMA buffer" in s.name) for p in (host, fabric)}
    assert copy[True].bytes_copied == 640 * 480 * 3 and copy[False].bytes_copied == 416 * 416 * 3


def test_end_to_end_is_the_minimum_of_accelerator_and_host_and_the_bracket_is_ordered():
    plan = HostPlan((640, 480), 416, True)
    free = estimate(1e9, 1.0, plan)  # an accelerator that never binds: the host decides
    assert free.end_to_end_fps[0] <= free.end_to_end_fps[1] and free.host_ms_per_frame[0] < free.host_ms_per_frame[1]
    assert free.bound_by.startswith("host")
    slow = estimate(free.end_to_end_fps[0] / 2, 1.0, plan)  # an accelerator slower than the host's low bound
    assert slow.end_to_end_fps == (slow.accelerator_fps, slow.accelerator_fps) and slow.bound_by == "accelerator"
    mid = estimate((free.end_to_end_fps[0] + free.end_to_end_fps[1]) / 2, 1.0, plan)
    assert mid.end_to_end_fps[0] == free.end_to_end_fps[0] and mid.end_to_end_fps[1] == mid.accelerator_fps


def test_two_processes_beat_one_and_frames_per_transfer_amortize_the_driver():
    one = estimate(1e9, 1.0, HostPlan((640, 480), 416, True, processes=1)).end_to_end_fps
    two = estimate(1e9, 1.0, HostPlan((640, 480), 416, True, processes=2)).end_to_end_fps
    assert two[0] > one[0] and two[1] > one[1]
    dma = [next(s for s in stages(HostPlan((640, 480), 416, True, frames_per_transfer=k)) if "DMA" in s.name).calls
           for k in (1, 4)]
    assert dma[1] < dma[0]


def test_one_frame_in_flight_adds_the_latency_to_every_frame():
    # the runtime before frames in flight: send, wait for the result, then send the next frame
    plan = dict(camera=(640, 480), size=416, letterbox_in_fabric=False, processes=1, preview_fps=0.0)
    ring = estimate(1e9, 5.0, HostPlan(**plan))
    serial = estimate(1e9, 5.0, HostPlan(**plan, frames_in_flight=1))
    for end in (0, 1):
        host_ms = 1e3 / ring.end_to_end_fps[end]  # the inference core's own ms per frame at that end
        assert abs(1e3 / serial.end_to_end_fps[end] - (host_ms + 5.0)) < 1e-6
    assert serial.end_to_end_fps[1] < 1e3 / 5.0


def test_the_preview_rate_costs_the_capture_core_only():
    quiet, busy = (estimate(1e9, 1.0, HostPlan((640, 480), 416, True, preview_fps=f)) for f in (0.0, 30.0))
    assert busy.end_to_end_fps[0] <= quiet.end_to_end_fps[0]
    assert busy.host_ms_per_frame == quiet.host_ms_per_frame  # per-frame work is unchanged: the preview is apart


def test_the_plan_follows_runtime_json():
    spec = {"input_shape": [416, 416, 3], "out_frame_bytes": 3042}
    assert not host_model.plan_from_runtime_spec(spec).letterbox_in_fabric
    cam = {**spec, "input_shape": [480, 640, 3],
           "preprocess": {"camera": [640, 480], "format": "bgr", "size": [416, 416], "scaled": [416, 312],
                          "offset": [0, 52], "pad": 114}}
    plan = host_model.plan_from_runtime_spec(cam)
    assert plan.letterbox_in_fabric and plan.camera == (640, 480) and plan.size == 416 and plan.color_passes == 1


def test_call_counts_are_counted_not_guessed():
    """count_calls counts the interpreter events of real code: a loop of n calls counts at least n."""
    def work(n):
        return sum(abs(i) for i in range(n))

    _, few = host_model.count_calls(work, 10)
    _, many = host_model.count_calls(work, 1000)
    assert many - few >= 990


def test_default_call_counts_match_the_code():
    """DEFAULT_CALLS (used when a report cannot run the code) stay within 2x of a fresh count of the decode path,
    with few and with many candidates (the per-candidate term must carry the growth)."""
    from fpgagen.detect import Backend as DetectBackend
    from fpgagen.detect import Detector

    anchors = np.array([[10, 14], [23, 27], [37, 58]], np.float64)
    det = Detector(DetectBackend(lambda b: b, (2.0 ** -7, 0.0), "codes"), anchors, 416, conf=0.5, nms_iou=0.3)
    rng = np.random.default_rng(0)
    calls = host_model.DEFAULT_CALLS
    for m in (2, 10, 60):
        codes = rng.integers(-128, 128, (18, 13, 13)).astype(np.int64)
        obj = np.full(3 * 13 * 13, -100)
        obj[rng.choice(obj.size, m, replace=False)] = 100  # m candidates pass the threshold
        codes[4::6] = obj.reshape(3, 13, 13)
        _, n = host_model.count_calls(det.postprocess, codes)
        model = calls["decode"] + calls["decode_per_candidate"] * m
        assert model / 2 <= n <= 2 * model, (m, n, model)


def test_report_system_section_follows_the_build():
    from fpgagen.ir.layers import RESOURCES
    from fpgagen.report import markdown, system_section

    layer = {"name": "conv_0", "kind": "MVAU", "in_shape": [416, 416, 3], "out_shape": [416, 416, 8]}
    doc = {"layers": [layer], "fps_estimated": 355.6, "latency_ms_estimated": 5.1, "output_frame_bytes": 3042}
    plain = system_section(doc)
    assert set(plain) >= {"accelerator_fps", "latency_ms", "host_ms_per_frame", "end_to_end_fps", "bound_by"}
    assert not plain["letterbox_in_fabric"] and plain["camera"] == [640, 480]
    assert plain["end_to_end_fps"][0] <= plain["end_to_end_fps"][1] <= plain["accelerator_fps"] == 355.6
    cam = {**doc, "layers": [{"name": "letterbox", "kind": "Letterbox", "in_shape": [720, 1280, 3],
                              "out_shape": [416, 416, 3]}, layer]}
    fabric = system_section(cam)
    assert fabric["letterbox_in_fabric"] and fabric["camera"] == [1280, 720] and fabric["input_size"] == 416
    assert not any("letterbox" in st["name"] for st in fabric["stages"])
    text = markdown({**doc, "system": plain, "network": "n", "board": "b", "clock_mhz": 100, "note": "",
                     "bottleneck": "conv_0", "bottleneck_cycles": 1, "latency_cycles_estimated": 1,
                     "budget": {r: {"used": 0, "shell": 0, "cap": 1, "ceiling": 1.0, "device": 1,
                                    "fraction_of_device": 0.0} for r in RESOURCES},
                     "layers": [{**layer, "resources": dict.fromkeys(RESOURCES, 0),
                                 "fifo": {"depth": 2, "width_bits": 8, "style": "srl",
                                          "resources": dict.fromkeys(RESOURCES, 0)},
                                 "folding": {}, "styles": {}, "cycles": 1, "out_dtype": "UINT8"}]})
    assert "The board as a system (estimated)" in text and "ESTIMATED" in text


# --- the capture process --------------------------------------------------------------------------------------
class SyntheticCamera:
    """A camera that makes frame i from its index (so the test can recompute it), as fast as it is read."""

    def __init__(self, n, w=96, h=64):
        self.n, self.w, self.h, self.i = n, w, h, 0

    def open(self):
        return self.w, self.h

    def read(self, into):
        if self.i >= self.n:
            return False
        into[...] = frame_of(self.i, self.w, self.h)
        self.i += 1
        return True

    def close(self):
        pass


def frame_of(i, w=96, h=64):
    img = np.random.default_rng(1000 + i).integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[10:40, (3 * i) % (w - 30):(3 * i) % (w - 30) + 30] = 255
    return img


@pytest.fixture
def tiny(tiny_detector):
    return tiny_detector


def test_shared_memory_camera_feeds_the_pipeline_and_drops_the_oldest(tiny):
    from runtime_nets import TINY_ANCHORS

    from fpgagen.runtime.backends import ReferenceBackend
    from fpgagen.runtime.model import FaceDetector
    from fpgagen.runtime.pipeline import Pipeline
    from fpgagen.runtime.shared import SharedCamera
    from fpgagen.runtime.sinks import CallbackSink

    detector = FaceDetector(ReferenceBackend(tiny), TINY_ANCHORS)
    source = SharedCamera(SyntheticCamera(40), (64, 96, 3), slots=6, preview_fps=50.0, preview_side=48)
    got = []
    pipe = Pipeline(source, detector, [CallbackSink(got.append, wants_jpeg=True)], preview_fps=50.0,
                    metrics_every=0, log=lambda m: None)
    snap = pipe.run()
    indices = [r.index for r in got]
    assert indices == sorted(indices) and len(set(indices)) == len(indices) and not any(r.error for r in got)
    dropped = source.dropped.value + sum(snap["dropped"].values())
    assert len(got) + dropped == 40  # every frame the camera made was either shown or counted as dropped
    for r in got[:: max(1, len(got) // 5)]:  # the shared slot held exactly frame r.index when it was run
        want = detector([frame_of(r.index)])[0]
        assert np.array_equal(r.detections.boxes, want.boxes)
    jpegs = [r.jpeg for r in got if r.jpeg]
    assert jpegs, "no preview came from the capture process"
    import cv2

    assert max(cv2.imdecode(np.frombuffer(jpegs[-1], np.uint8), cv2.IMREAD_COLOR).shape[:2]) == 48
