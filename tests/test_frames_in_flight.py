"""Frames in flight (issue 18): the PYNQ backend's ring of DMA buffers against a stand-in AXI DMA whose "fabric"
is the C-simulation, run one top call per frame in a thread of its own. The stand-in behaves as the hardware
does where it matters: one transfer per channel at a time; the fabric takes input only while its output has
somewhere to go (an armed S2MM transfer, or one frame of internal buffering); S2MM completes at the output TLAST;
status words go to a FIFO. Checked: transfers overlap (the next MM2S starts while the previous transfer is still
in the fabric), results come back in order and bit-exact, and a short, long or missing-TLAST transfer is reported
on its own frames while every other frame, the next transfer's included, is exact."""

from __future__ import annotations

import ctypes
import sys
import threading
import time
import types
from collections import deque
from pathlib import Path

import numpy as np
import pytest
from runtime_nets import TINY_SIZE

from fpgagen.runtime.backends import PynqBackend, ReferenceBackend
from fpgagen.runtime.dma import FRAME_CONTINUES, RDFD, RDFO, RLR

FAULTS = ("short", "long", "no_tlast")


class StandInDMA:
    """An AXI DMA (simple mode) wired to the C-simulation through ``fg_run_words``, plus the status FIFO."""

    def __init__(self, lib, frame_s: float = 0.002):
        self.lib, self.frame_s = lib, frame_s
        self._run = ctypes.CDLL(str(lib.path)).fg_run_words
        self._run.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_uint] * 2 + [ctypes.c_void_p] * 4 + [
            ctypes.c_char_p, ctypes.c_int]
        self.word = lib.in_bytes
        self.cond = threading.Condition()
        self.words: deque = deque()  # (word bytes, TLAST) queued by MM2S, not yet taken by the fabric
        self.mm2s_left = 0
        self.held: deque = deque()  # output frames the fabric holds while no S2MM is armed (at most one)
        self.s2mm = None  # [buffer, capacity, written] of the armed transfer
        self.transferred = 0
        self.status_words: deque = deque()
        self.faults: dict[int, str] = {}  # MM2S transfer number -> fault injected
        self.sent = 0
        self.undefined = []  # S2MM buffer overruns (PG021: undefined behaviour): must stay empty
        self.frames_run = 0
        self.stop = False
        self.sendchannel, self.recvchannel = _Send(self), _Recv(self)
        self.thread = threading.Thread(target=self._fabric, daemon=True)
        self.thread.start()

    def close(self):
        with self.cond:
            self.stop = True
            self.cond.notify_all()
        self.thread.join(5)

    # the fabric: one call of the top per frame, as soon as the frame's words are there and its output can go
    def _next_frame(self):
        n = 0
        for _, last in self.words:
            n += 1
            if last or n == self.lib.in_words:
                return n
        return None

    def _fabric(self):
        while True:
            with self.cond:
                while not self.stop and (self._next_frame() is None or self.held):
                    self.cond.wait(0.05)
                if self.stop:
                    return
                n = self._next_frame()
                taken = [self.words.popleft() for _ in range(n)]
                self.mm2s_left -= n
                self.cond.notify_all()
            out, status, out_last = self._call(taken)
            time.sleep(self.frame_s)
            with self.cond:
                self.frames_run += 1
                self.status_words.append(status)
                self.held.append((out, out_last))
                self._deliver()
                self.cond.notify_all()

    def _call(self, taken):
        words = np.stack([w for w, _ in taken])
        last = np.array([t for _, t in taken], np.uint8)
        out = np.zeros(self.lib.out_frame_bytes, np.uint8)
        status, out_last, left = np.zeros(1, np.uint32), np.zeros(1, np.uint8), np.zeros(1, np.uint32)
        err = ctypes.create_string_buffer(256)
        rc = self._run(words.ctypes.data, last.ctypes.data, len(words), 1, out.ctypes.data, status.ctypes.data,
                       out_last.ctypes.data, left.ctypes.data, err, len(err))
        assert rc == 0 and left[0] == 0, err.value  # the stand-in's framing is the adapter's
        return out, int(status[0]), bool(out_last[0])

    def _deliver(self):
        while self.held and self.s2mm is not None:
            out, out_last = self.held.popleft()
            buf, capacity, written = self.s2mm
            if written + len(out) > capacity:
                self.undefined.append(written + len(out))
                out_last = True
            else:
                buf[written: written + len(out)] = out
                written += len(out)
            self.s2mm[2] = written
            if out_last:
                self.transferred, self.s2mm = written, None


class _Send:
    def __init__(self, dma):
        self.dma = dma

    def transfer(self, buffer, nbytes=0):
        d = self.dma
        data = np.array(buffer[: nbytes or len(buffer)]).reshape(-1, d.word)
        last = np.zeros(len(data), bool)
        last[-1] = True
        fault = d.faults.get(d.sent)
        if fault == "short":  # the transfer stops in the middle of its first frame
            data, last = data[: d.lib.in_words // 2], last[: d.lib.in_words // 2]
            last[-1] = True
        elif fault == "long":  # three words past its last frame
            data = np.concatenate([data, data[:3]])
            last = np.zeros(len(data), bool)
            last[-1] = True
        elif fault == "no_tlast":
            last[-1] = False
        with d.cond:
            assert d.mm2s_left == 0, "MM2S started while busy"
            d.sent += 1
            d.mm2s_left = len(data)
            d.words.extend(zip(data, last, strict=True))
            d.cond.notify_all()

    @property
    def idle(self):
        return self.dma.mm2s_left == 0

    def wait(self):
        d = self.dma
        with d.cond:
            assert d.cond.wait_for(lambda: d.mm2s_left == 0, 10), "MM2S never accepted"


class _Recv:
    def __init__(self, dma):
        self.dma = dma

    def transfer(self, buffer, nbytes=0):
        d = self.dma
        with d.cond:
            assert d.s2mm is None, "S2MM armed while busy"
            d.s2mm = [buffer, nbytes or len(buffer), 0]
            d._deliver()
            d.cond.notify_all()

    @property
    def idle(self):
        return self.dma.s2mm is None

    @property
    def transferred(self):
        return self.dma.transferred

    def wait(self):
        d = self.dma
        with d.cond:
            assert d.cond.wait_for(lambda: d.s2mm is None, 10), "S2MM never completed"

    def stop(self):  # abort the receive in progress (what it wrote stays in the buffer)
        with self.dma.cond:
            self.dma.s2mm = None

    def start(self):
        pass


class _StatusFifo:
    """PG080's receive registers over the stand-in's status words."""

    def __init__(self, dma):
        self.dma = dma

    def read(self, offset):
        with self.dma.cond:
            if offset == RDFO:
                return len(self.dma.status_words)
            if offset == RLR:
                return 4
            assert offset == RDFD
            return self.dma.status_words.popleft()


def stand_in_pynq(dma):
    mod = types.ModuleType("pynq")
    mod.allocate = lambda shape, dtype: np.zeros(shape, dtype)

    class Overlay:
        def __init__(self, path):
            self.ip_dict = {"dma": {"type": "xilinx.com:ip:axi_dma:7.1"}}
            self.dma, self.status_fifo = dma, _StatusFifo(dma)

    mod.Overlay = Overlay
    return mod


@pytest.fixture
def tiny(tiny_detector):
    return tiny_detector


@pytest.fixture
def board(tiny, tmp_path, monkeypatch):
    dma = StandInDMA(tiny.lib)
    monkeypatch.setitem(sys.modules, "pynq", stand_in_pynq(dma))
    (tmp_path / "design.bit").write_bytes(b"bit")
    backend = PynqBackend(tiny, bitstream=tmp_path / "design.bit", frames_per_transfer=2)
    backend.ring.timeout_s = 0.5
    yield backend, dma
    dma.close()


def _frames(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)


def test_transfers_overlap_and_results_keep_their_order(tiny, board):
    backend, dma = board
    frames = _frames(9, seed=1)  # 5 transfers of 2, 2, 2, 2, 1 frames
    want = ReferenceBackend(tiny).infer(frames)
    assert np.array_equal(backend.infer(frames), want)
    events = backend.ring.events
    sends = [n for e, n in events if e == "mm2s"]
    assert sends == list(range(5))
    for c in range(4):  # MM2S c+1 starts before S2MM c completes: two transfers in the fabric at once
        assert events.index(("mm2s", c + 1)) < events.index(("s2mm-done", c)), events
    assert dma.frames_run == 9 and not dma.undefined
    # the status words of a two-frame transfer: "continues" on its first frame, a clean end on its second
    assert not dma.status_words and backend.ring.pending == 0
    assert np.array_equal(backend.infer(frames[:3]), want[:3])  # the ring goes on where it stopped


@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_transfer_costs_only_its_own_frames(tiny, board, fault):
    backend, dma = board
    frames = _frames(8, seed=2)
    want = ReferenceBackend(tiny).infer(frames)
    dma.faults = {1: fault}  # transfer 1 carries frames 2 and 3
    data, errors = backend.infer_each(frames)
    bad = {i for i, e in enumerate(errors) if e}
    expected_bad = {"short": {2, 3}, "long": {3}, "no_tlast": {3}}[fault]
    assert bad == expected_bad, errors
    words = {"short": ["short DMA transfer", "not processed"], "long": ["long DMA transfer"],
             "no_tlast": ["missing TLAST"]}[fault]
    assert all(any(w in errors[i] for w in words) for i in bad), errors
    good = [i for i in range(8) if i not in bad]
    assert np.array_equal(backend.decode(np.stack([data[i] for i in good])), want[good])  # the next ones exact
    assert not dma.undefined
    assert np.array_equal(backend.infer(frames[:2]), want[:2])  # and the ring is healthy afterwards


def test_missing_tlast_on_the_last_transfer_is_reported_after_a_timeout(tiny, board):
    backend, dma = board
    frames = _frames(4, seed=3)
    want = ReferenceBackend(tiny).infer(frames)
    dma.faults = {1: "no_tlast"}  # the last transfer: nothing after it closes the S2MM transfer
    data, errors = backend.infer_each(frames)
    assert [bool(e) for e in errors] == [False, False, False, True] and "missing TLAST" in errors[3]
    assert np.array_equal(backend.decode(np.stack(data[:3])), want[:3])
    assert np.array_equal(backend.infer(frames), want)  # the receive channel was restarted


def test_status_bits_match_the_kernel():
    from fpgagen.runtime import dma

    header = (Path(__file__).resolve().parents[1] / "templates" / "hls" / "fg_common.h").read_text()
    assert f"FRAME_SHORT = {dma.FRAME_SHORT}u" in header and f"FRAME_CONTINUES = {FRAME_CONTINUES}u" in header


def test_the_pipeline_keeps_frames_in_flight_in_order(tiny, board):
    from runtime_nets import TINY_ANCHORS, moving_frames

    from fpgagen.runtime.model import FaceDetector
    from fpgagen.runtime.pipeline import Pipeline
    from fpgagen.runtime.sinks import CallbackSink
    from fpgagen.runtime.sources import Arrays

    backend, dma = board
    images = moving_frames(12)
    want = FaceDetector(ReferenceBackend(tiny), TINY_ANCHORS)(images)
    got = []
    Pipeline(Arrays(images), FaceDetector(backend, TINY_ANCHORS), [CallbackSink(got.append)], metrics_every=0,
             log=lambda m: None).run()
    assert [r.index for r in got] == list(range(12)) and not any(r.error for r in got)
    for r, w in zip(got, want, strict=True):
        assert np.array_equal(r.detections.boxes, w.boxes) and np.array_equal(r.detections.scores, w.scores)
    assert dma.frames_run == 12 and len([e for e in backend.ring.events if e[0] == "mm2s"]) >= 6


@pytest.mark.parametrize("signed", [True, False])
def test_output_codes_fast_path_equals_the_shared_unpacking(signed):
    from fpgagen import packing
    from fpgagen.packing import StreamGeometry
    from fpgagen.runtime.backends import output_codes

    g = StreamGeometry(in_word=3, in_bits=8, in_elems=12, in_axi_bits=32, out_word=18, out_bits=8,
                       out_elems=2 * 2 * 18, out_axi_bits=64)
    lo, hi = (-128, 128) if signed else (0, 256)
    codes = np.random.default_rng(4).integers(lo, hi, (3, 2, 2, 18))
    data = packing.output_frames_to_bytes(codes, g)
    got = output_codes(data, g, (2, 2, 18), signed)
    assert got.dtype == np.int64 and np.array_equal(got, codes)
    assert np.array_equal(got, packing.bytes_to_frames(data, g, (2, 2, 18), signed))
