"""The PYNQ-Z2 as a system: an ESTIMATE of the frames per second end to end, from the accelerator's cycle model and
a per-stage model of the ARM's work. Nothing here is measured on a board (there is none here).

Each host stage counts its work per frame: bytes copied, cache lines cleaned or invalidated, pixels converted,
resized or JPEG-encoded, and interpreter calls (``sys.setprofile`` events of the real code, see
:func:`count_calls`). Each count is priced with a Cortex-A9 figure (``A9_FIGURES``), a low and a high bound, whose
source is named beside it: a reference manual, a published measurement, or an assumption said to be one and
bracketed widely. The stages run on the two A9 cores as the runtime places them, and the end-to-end rate is

    min(accelerator FPS, the rate at which the busier core keeps up)

for the low and the high bound apart. ``docs/system_estimate.md`` gives the longer justification.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

CLOCK_MHZ = 650.0  # PYNQ-Z2: Zynq-7020 -1, CPU_6x4x at 650 MHz (PYNQ-Z2 board files; DS187 allows up to 667 MHz)
CACHE_LINE = 32  # bytes, L1 and the PL310 L2 (Cortex-A9 TRM, PL310 TRM)


@dataclass(frozen=True)
class Figure:
    """A Cortex-A9 price with its low/high bound and where it comes from. ``low``/``high`` are the cheap and the
    expensive end of the cost (so the low bound of the FPS uses ``high``)."""

    low: float
    high: float
    unit: str
    source: str
    kind: str  # "reference manual", "published", or "assumption"


A9_FIGURES: dict[str, Figure] = {
    "memcpy_MBps": Figure(
        300.0, 900.0, "MB/s copied (read + write) by one A9 core, DDR3 to DDR3",
        "assumption, bracketed under the ceiling of UG585 (Zynq-7000 TRM) Table 22-4: the CPU reaches DDR through "
        "the L2 at 64 bits x 355 MHz, and a copy moves each byte twice; JBLopen's 'Zynq-7000 Bare-Metal "
        "Benchmarks' measure DDR bandwidth from one A9 in the same range; Linux and numpy's memcpy add their own "
        "overhead", "assumption"),
    "cache_line_op_cycles": Figure(
        15.0, 60.0, "CPU cycles per 32-byte line cleaned (flush) or invalidated by virtual address",
        "Cortex-A9 TRM (DCCMVAC/DCIMVAC, one line per operation) and the L2C-310 TRM (Clean/Invalidate Line by "
        "PA, one register write per line, in order with DDR); the cycle count per line is an assumption",
        "assumption"),
    "yuv_to_rgb_cycles_per_px": Figure(
        2.0, 8.0, "cycles per pixel converted (camera YUYV -> BGR/RGB, or BGR <-> RGB) by OpenCV with NEON",
        "assumption: a NEON colour conversion processes 8-16 pixels per ~30-60 instructions; memory-bound at the "
        "memcpy figure for large frames", "assumption"),
    "resize_cycles_per_px": Figure(
        6.0, 24.0, "cycles per output pixel (3 channels) of OpenCV's bilinear resize (INTER_LINEAR_EXACT)",
        "assumption: fixed-point horizontal + vertical passes, NEON where OpenCV has it for 8UC3, scalar "
        "otherwise", "assumption"),
    "area_resize_cycles_per_px": Figure(
        3.0, 12.0, "cycles per input pixel of OpenCV's INTER_AREA decimation (preview only)",
        "assumption: an integer-ratio area average reads each input pixel once with a few adds (NEON for 8UC3 "
        "at 2x), memory-bound at the memcpy figure for large frames", "assumption"),
    "jpeg_Mpx_per_s": Figure(
        15.0, 45.0, "megapixels per second of libjpeg-turbo baseline compression (quality 80) on one A9 core",
        "assumption, from libjpeg-turbo's NEON SIMD (its README: 2-6x over libjpeg) and the Linaro libjpeg-turbo "
        "ARM benchmarks (Cortex-A9 boards); bracketed widely", "assumption"),
    "interpreter_call_us": Figure(
        2.0, 8.0, "microseconds per interpreter call event (Python function, builtin or numpy C function, with "
        "the array operators between them) in CPython 3.10 on a 650 MHz A9",
        "assumption: ~0.15-0.4 us per event measured on x86 (make bench prints it), times the clock ratio "
        "(~4.6x) and a per-clock ratio of 3-5x for interpreted code on a dual-issue A9", "assumption"),
    "context_switch_us": Figure(
        10.0, 60.0, "microseconds per thread context switch (a stage thread woken by a queue hand-off, the GIL "
        "handed over, caches partly refilled)",
        "assumption: lmbench-style lat_ctx on ARMv7 cores of this class is of the order of 10-30 us with a small "
        "working set; the high end adds the GIL hand-over and cache refill; bracketed widely", "assumption"),
    "syscall_us": Figure(
        5.0, 30.0, "microseconds per system call with a small payload (a socket send, a futex wake of a waiting "
        "thread with its context switch, a pipe write between processes)",
        "assumption: a few thousand cycles per system call on an A9 running Linux, up to ~20k with a context "
        "switch and the GIL handed over", "assumption"),
}


@dataclass
class Stage:
    """One host stage's work per frame (``per_frame``) or per preview (``per_frame=False``: it runs at the
    preview rate), on one core (``core``: "inference" or "capture")."""

    name: str
    core: str
    bytes_copied: int = 0
    cache_bytes: int = 0  # bytes cleaned or invalidated for the DMA
    pixels_converted: int = 0
    pixels_resized: int = 0  # output pixels of a bilinear resize
    pixels_decimated: int = 0  # input pixels of an area decimation
    pixels_encoded: int = 0
    calls: int = 0  # interpreter call events
    syscalls: int = 0
    switches: int = 0  # thread context switches
    per_frame: bool = True

    def ms(self, figures: dict[str, Figure] = A9_FIGURES) -> tuple[float, float]:
        """(low, high) milliseconds of this stage on one A9 core."""
        out = []
        for end in ("low", "high"):
            def f(name, end=end):
                return getattr(figures[name], end)
            cycles = (self.cache_bytes / CACHE_LINE * f("cache_line_op_cycles")
                      + self.pixels_converted * f("yuv_to_rgb_cycles_per_px")
                      + self.pixels_resized * f("resize_cycles_per_px")
                      + self.pixels_decimated * f("area_resize_cycles_per_px"))
            # memcpy: the low cost uses the high bandwidth; JPEG likewise
            other = self.bytes_copied / (figures["memcpy_MBps"].high if end == "low" else figures["memcpy_MBps"].low)
            other += self.pixels_encoded / (figures["jpeg_Mpx_per_s"].high if end == "low"
                                            else figures["jpeg_Mpx_per_s"].low)
            us = (cycles / CLOCK_MHZ + other + self.calls * f("interpreter_call_us") + self.syscalls * f("syscall_us")
                  + self.switches * f("context_switch_us"))
            out.append(us / 1e3)
        return out[0], out[1]


@dataclass
class HostPlan:
    """How the runtime does a frame's host work: the camera, the network's input, and where the letterbox runs."""

    camera: tuple[int, int]  # (W, H)
    size: int  # the network's input side S
    letterbox_in_fabric: bool
    color_passes: int = 2  # YUYV -> BGR in OpenCV's capture, then BGR -> RGB unless the build takes BGR
    processes: int = 2  # 2: capture and inference in their own processes (both A9 cores); 1: threads of one
    frames_per_transfer: int = 4
    # 1: the inference thread sends a frame and waits for its result before the next (the runtime before issue
    # 18), so the accelerator's latency adds to that core's time per frame; 2+: a ring of transfers in flight
    frames_in_flight: int = 2
    preview_fps: float = 10.0
    preview_side: int = 640
    out_frame_bytes: int = 3042
    candidates: int = 10  # output cells whose objectness code passes the threshold, per frame
    calls: dict = field(default_factory=dict)  # measured interpreter calls per stage (count_calls), else defaults


# Interpreter call events of each stage, counted with count_calls() on the code as it is (scripts/bench_runtime.py
# recounts them on real frames and prints both; tests/test_host_system.py checks the decode figures against a
# fresh count). "pipeline" is the per-frame bookkeeping of the stages (queue handoffs, metrics, the result).
DEFAULT_CALLS = {
    "capture": 12,  # the capture loop, the shared-memory slot handoff (or the threaded source's yield)
    "letterbox": 10,  # fast_letterbox: a few OpenCV calls (host letterbox only)
    "dma": 55,  # per transfer: the ring's bookkeeping, transfer/wait, flush/invalidate (shared by its frames)
    "decode": 90,  # unpack, integer threshold, boxes back to camera pixels, NMS set-up ...
    "decode_per_candidate": 2,  # ... and per candidate that passed the threshold (float math, NMS loop)
    "message": 35,  # the per-frame protocol message to viewers (JSON)
    "pipeline": 150,  # queue handoffs between the stages, metrics, the per-frame result
    "switches": 10,  # thread context switches per frame of the threaded pipeline (getrusage, make bench)
    "preview": 40,  # per preview: decimate, annotate, encode
}


def stages(plan: HostPlan) -> list[Stage]:
    """Every host stage of ``plan`` with its counted work. With the letterbox in the fabric the camera frame is
    copied into the DMA buffer as it is; on the host it is letterboxed (resized and padded) first."""
    w, h = plan.camera
    s = plan.size
    calls = {**DEFAULT_CALLS, **plan.calls}
    two = plan.processes >= 2
    capture_core = "capture" if two else "inference"
    dma_bytes = w * h * 3 if plan.letterbox_in_fabric else s * s * 3
    out = [Stage("capture (camera YUYV -> BGR" + (" -> RGB" if plan.color_passes > 1 else "") + ")"
                 + (" into a shared-memory slot" if two else ""), capture_core,
                 pixels_converted=w * h * plan.color_passes, calls=calls["capture"], syscalls=2 if two else 0)]
    if not plan.letterbox_in_fabric:
        scale = s / max(w, h)
        nw, nh = round(w * scale), round(h * scale)
        out.append(Stage("letterbox on the ARM (bilinear resize + pad)", "inference", pixels_resized=nw * nh,
                         bytes_copied=(s * s - nw * nh) * 3 // 2, calls=calls["letterbox"]))
    k = max(1, plan.frames_per_transfer)
    out.append(Stage("frame into the DMA buffer (one copy + cache clean), output invalidate", "inference",
                     bytes_copied=dma_bytes, cache_bytes=dma_bytes + plan.out_frame_bytes,
                     calls=-(-calls["dma"] // k)))
    out.append(Stage(f"decode (objectness code threshold first, {plan.candidates} candidates) + NMS", "inference",
                     calls=calls["decode"] + calls["decode_per_candidate"] * plan.candidates))
    # a hand-off between two stage threads wakes the waiting one (a futex wake and a context switch, the GIL):
    # the switches are counted (getrusage over the pipeline), plus one send to the viewers
    out.append(Stage("result message to viewers, pipeline bookkeeping (thread hand-offs)", "inference",
                     calls=calls["message"] + calls["pipeline"], syscalls=1, switches=calls["switches"]))
    pw, ph = _preview_size(plan)
    out.append(Stage("JPEG preview (decimated, off the inference path)", capture_core,
                     pixels_decimated=w * h if max(w, h) > plan.preview_side else 0, pixels_encoded=pw * ph,
                     calls=calls["preview"], per_frame=False))
    return out


def _preview_size(plan: HostPlan) -> tuple[int, int]:
    w, h = plan.camera
    f = min(1.0, plan.preview_side / max(w, h))
    return round(w * f), round(h * f)


@dataclass
class SystemEstimate:
    accelerator_fps: float
    latency_ms: float
    host_ms_per_frame: tuple[float, float]
    end_to_end_fps: tuple[float, float]
    bound_by: str
    stages: list[dict]
    plan: HostPlan

    def to_dict(self) -> dict:
        return {"accelerator_fps": self.accelerator_fps, "latency_ms": self.latency_ms,
                "host_ms_per_frame": list(self.host_ms_per_frame), "end_to_end_fps": list(self.end_to_end_fps),
                "bound_by": self.bound_by, "camera": list(self.plan.camera), "input_size": self.plan.size,
                "letterbox_in_fabric": self.plan.letterbox_in_fabric, "processes": self.plan.processes,
                "frames_in_flight": self.plan.frames_in_flight,
                "preview_fps": self.plan.preview_fps, "stages": self.stages,
                "note": "ESTIMATED, not measured: accelerator from the cycle model, host from counted work priced "
                        "with Cortex-A9 figures (fpgagen/runtime/host_model.py A9_FIGURES, sources there)"}


def estimate(accelerator_fps: float, latency_ms: float, plan: HostPlan,
             figures: dict[str, Figure] = A9_FIGURES) -> SystemEstimate:
    """The end-to-end bracket: each core's per-frame load (a preview stage's cost spread over the frames at the
    preview rate), the host rate the busier core allows, and the minimum with the accelerator."""
    rows, fps = [], []
    for st in stages(plan):
        lo, hi = st.ms(figures)
        rows.append({"name": st.name, "core": st.core, "per_frame": st.per_frame, "ms": [lo, hi],
                     "work": {k: v for k, v in vars(st).items()
                              if k not in ("name", "core", "per_frame") and v}})
    host = [0.0, 0.0]
    rates: dict[str, float] = {}
    for end in (0, 1):
        load: dict[str, float] = {}  # ms of work per frame, per core
        fixed: dict[str, float] = {}  # ms per second at the preview rate, per core
        for r in rows:
            if r["per_frame"]:
                load[r["core"]] = load.get(r["core"], 0.0) + r["ms"][end]
                host[end] += r["ms"][end]
            else:
                fixed[r["core"]] = fixed.get(r["core"], 0.0) + r["ms"][end] * plan.preview_fps
        if plan.frames_in_flight <= 1:  # the inference core blocks for the whole latency of every frame
            load["inference"] = load.get("inference", 0.0) + latency_ms
        rates = {c: max(0.0, 1e3 - fixed.get(c, 0.0)) / ms for c, ms in load.items() if ms > 0}
        fps.append(min(accelerator_fps, min(rates.values())))
    lo_fps, hi_fps = fps[1], fps[0]  # the expensive end of every price gives the low FPS
    if lo_fps >= accelerator_fps:
        bound = "accelerator"
    else:  # the core with the lowest rate at the expensive end, and its largest stage
        core = min(rates, key=rates.get)
        top = max((r for r in rows if r["core"] == core), key=lambda r: r["ms"][1] * (
            1.0 if r["per_frame"] else plan.preview_fps / max(lo_fps, 1e-9)))
        bound = f"host: the {core} core (largest stage: {top['name']})"
    return SystemEstimate(accelerator_fps, latency_ms, (host[0], host[1]), (lo_fps, hi_fps), bound, rows, plan)


def count_calls(fn, *args, **kwargs) -> tuple[object, int]:
    """Run ``fn`` and count its interpreter call events (Python and C function calls) with ``sys.setprofile``:
    the "calls" a stage costs, counted on the code as it is rather than guessed."""
    n = [0]

    def prof(frame, event, arg):
        if event in ("call", "c_call"):
            n[0] += 1

    old = sys.getprofile()
    sys.setprofile(prof)
    try:
        result = fn(*args, **kwargs)
    finally:
        sys.setprofile(old)
    return result, n[0]


def plan_from_runtime_spec(spec: dict, camera: tuple[int, int] = (640, 480), **options) -> HostPlan:
    """The plan for a build from its runtime.json: with a ``preprocess`` entry (a camera build) the letterbox
    runs in the fabric at that camera size; otherwise the ARM letterboxes frames of ``camera``."""
    pre = spec.get("preprocess")
    size = int(spec["input_shape"][0]) if not pre else int(pre["size"][0])
    if pre:
        passes = 1 if str(pre.get("format", "rgb")).lower() == "bgr" else 2
        return HostPlan(tuple(int(v) for v in pre["camera"]), size, True, color_passes=passes,
                        out_frame_bytes=int(spec["out_frame_bytes"]), **options)
    return HostPlan(camera, size, False, out_frame_bytes=int(spec["out_frame_bytes"]), **options)


def format_system(doc: dict) -> str:
    """The report's system section as text (fpgagen report, make bench)."""
    lo, hi = doc["end_to_end_fps"]
    hlo, hhi = doc["host_ms_per_frame"]
    w, h = doc["camera"]
    where = "in the fabric" if doc["letterbox_in_fabric"] else "on the ARM"
    flight = doc.get("frames_in_flight", 2)
    lines = [f"system (ESTIMATED, not measured): {w}x{h} camera, letterbox {where}, {doc['processes']} host "
             f"process(es), {'frames in flight' if flight > 1 else 'one frame in flight (the host waits)'}, "
             f"preview {doc['preview_fps']:g}/s",
             f"  accelerator {doc['accelerator_fps']:.1f} FPS pipelined (cycle model), one frame's latency "
             f"{doc['latency_ms']:.2f} ms",
             f"  host {hlo:.2f}-{hhi:.2f} ms of ARM work per frame; end to end {lo:.0f}-{hi:.0f} FPS; bound by "
             f"{doc['bound_by']}"]
    for r in doc["stages"]:
        per = "per frame" if r["per_frame"] else f"per preview ({doc['preview_fps']:g}/s)"
        lines.append(f"    {r['name']:<74} {r['ms'][0]:6.2f}-{r['ms'][1]:6.2f} ms {per}, {r['core']} core")
    return "\n".join(lines)
