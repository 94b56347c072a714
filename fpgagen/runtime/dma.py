"""Frames in flight over the AXI DMA: a ring of ``allocate``d buffers, several whole frames per transfer, the next
MM2S queued as soon as the previous one is accepted, results collected in order, every frame checked.

The accelerator's side (templates/hls/fg_common.h, ``fg::axis_to_stream`` / ``fg::stream_to_axis``): frame
boundaries are counted, TLAST ends a transfer, and the output frame carries TLAST where its input frame closed
the transfer, so one S2MM transfer receives exactly the frames of one MM2S transfer. The input adapter writes one
status word per frame (bit 0 short: TLAST came early and the frame was zero-filled; bit 1 the transfer went on
past the frame; bits 31..2 words zero-filled), which the block design's AXI4-Stream FIFO (``status_fifo``, PG080)
keeps for the host.

The AXI DMA in simple mode runs one transfer per channel at a time, and the accelerator cannot take in a whole
transfer while its output has nowhere to go. So with transfers ... c-1, c, c+1::

    fill buffer c+1 (the ARM's copy)  |  fabric: finishes c-1, computes c
    wait S2MM c-1, collect it, arm S2MM c  (c's output can flow)
    wait MM2S c accepted, start MM2S c+1   (two transfers in the fabric: c and c+1)

three buffer slots (one being filled, two in flight). Each S2MM buffer has room for more frames than its transfer
sends (PG021: a packet longer than the S2MM length is undefined behaviour), so a faulty transfer still lands:

* short (TLAST early): the frame is zero-filled and reported, the transfer's later frames are reported as never
  sent; the output ends with that frame, so the next transfer is unaffected;
* long (words past the transfer's last frame): the extra words become one short frame of their own, whose output
  arrives in the same S2MM transfer and is dropped; the transfer's last frame is reported;
* missing TLAST: nothing is lost by counting; the output then runs on into the next transfer's frames, which are
  taken from this buffer for that transfer (or, with no next transfer, the receive is restarted after a timeout).

Only numpy here, and the board's ``pynq`` objects by duck typing, so the stand-in DMA of the tests drives it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

FRAME_SHORT, FRAME_CONTINUES = 1, 2  # fg::status_word's bits (templates/hls/fg_common.h)
# PG080 (AXI4-Stream FIFO) receive registers: occupancy, data, length of the next packet
RDFO, RDFD, RLR = 0x1C, 0x20, 0x24
S2MM_LENGTH = 0x58 - 0x30  # PG021: after a transfer, the bytes actually written (from the S2MM channel's base)
FRAMES_PER_TRANSFER = 4  # frames per MM2S transfer (fewer driver calls per frame on the ARM)
DMA_MAX_BYTES = (1 << 26) - 1  # PG021: the widest buffer-length register


def frames_per_transfer(in_frame_bytes: int) -> int:
    """Frames per transfer for this frame size: FRAMES_PER_TRANSFER, fewer when they would not fit the DMA's
    widest length register. The block design sizes the register from it (fpgagen.synth.flow), and runtime.json
    carries it to the board."""
    return max(1, min(FRAMES_PER_TRANSFER, DMA_MAX_BYTES // max(1, int(in_frame_bytes))))


def transfer_bytes(in_frame_bytes: int, out_frame_bytes: int) -> int:
    """The largest transfer either DMA channel makes: k input frames, or an S2MM buffer of 2k + 1 output frames."""
    k = frames_per_transfer(in_frame_bytes)
    return max(k * int(in_frame_bytes), (2 * k + 1) * int(out_frame_bytes))


@dataclass
class Transfer:
    """One MM2S transfer, the ``number``-th: ``count`` frames from buffer slot ``slot``."""

    number: int
    count: int
    slot: int
    tags: list = field(default_factory=list)
    received: bool = False  # its output already arrived inside an earlier S2MM transfer (a missing TLAST)
    out: np.ndarray | None = None
    errors: list = field(default_factory=list)


@dataclass
class Done:
    """A finished frame, in submission order: its output bytes, or the reason it has none."""

    tag: object
    data: np.ndarray | None
    error: str | None


class TransferRing:
    """``submit(byte_frames, tags)`` queues frames and returns those already finished; ``drain()`` the rest.

    ``dma``: a pynq AXI DMA (``sendchannel`` / ``recvchannel``); ``allocate``: ``pynq.allocate``; ``status``: the
    status FIFO's IP (``read(offset)``), or None (then only the S2MM byte count is checked)."""

    def __init__(self, dma, allocate, in_frame_bytes: int, out_frame_bytes: int, frames_per_transfer: int = 4,
                 slots: int = 3, status=None, timeout_s: float = 2.0):
        if frames_per_transfer < 1 or slots < 2:
            raise ValueError("frames_per_transfer >= 1 and slots >= 2")
        self.dma, self.status, self.timeout_s = dma, status, timeout_s
        self.k, self.fin, self.fout = frames_per_transfer, in_frame_bytes, out_frame_bytes
        self.out_room = 2 * frames_per_transfer + 1  # this transfer, a long one's extra frame, or the next's
        self.inputs = [allocate(shape=(self.k * in_frame_bytes,), dtype=np.uint8) for _ in range(slots)]
        self.outputs = [allocate(shape=(self.out_room * out_frame_bytes,), dtype=np.uint8) for _ in range(slots)]
        self.inflight: deque[Transfer] = deque()  # sent, output not collected, oldest first
        self.receiving: Transfer | None = None  # the transfer whose S2MM is armed
        self.sending = False  # an MM2S transfer was started and not yet waited for
        self.slot = 0
        self.events: list[tuple[str, int]] = []  # ("mm2s"/"s2mm-armed"/"s2mm-done", transfer number), for tests
        self._count = 0
        self._pending_status: deque[int] = deque()

    # --- the caller's side ---------------------------------------------------------------------------------------
    def submit(self, frames: np.ndarray, tags=None) -> list[Done]:
        """``frames``: (n, in_frame_bytes) uint8, or a list of per-frame arrays of in_frame_bytes bytes each (e.g.
        (H, W, C) pixels when the pixel is the code: each is copied straight into the DMA buffer, the one copy),
        sent in transfers of up to ``frames_per_transfer``; returns the frames finished meanwhile."""
        n = len(frames)
        tags = list(range(n)) if tags is None else list(tags)
        done: list[Done] = []
        for lo in range(0, n, self.k):
            hi = min(n, lo + self.k)
            done += self._send(frames[lo:hi], tags[lo:hi])
        return done

    def drain(self) -> list[Done]:
        done = []
        while self.inflight:
            done += self._collect()
        return done

    def collect_one(self) -> list[Done]:
        """Wait for the oldest transfer in flight and return its frames (empty when nothing is in flight)."""
        return self._collect() if self.inflight else []

    @property
    def pending(self) -> int:
        return sum(t.count for t in self.inflight)

    # --- one transfer ---------------------------------------------------------------------------------------------
    def _send(self, frames: np.ndarray, tags: list) -> list[Done]:
        count, slot = len(frames), self.slot
        self.slot = (self.slot + 1) % len(self.inputs)
        buf = self.inputs[slot]
        rows = buf[: count * self.fin].reshape(count, self.fin)
        for i in range(count):
            rows[i] = np.asarray(frames[i]).reshape(-1)  # the one copy per frame
        _call(buf, "flush")
        done = []
        if len(self.inflight) >= len(self.inputs) - 1:  # its buffer slot is still in flight, or two transfers are
            done += self._collect()
        if self.sending:
            self.dma.sendchannel.wait()  # the previous MM2S accepted: the fabric has all of it
            self.sending = False
        t = Transfer(self._count, count, slot, tags)
        self._count += 1
        self.inflight.append(t)
        if self.receiving is None:
            self._arm(t)
        _transfer(self.dma.sendchannel, buf, count * self.fin)
        self.sending = True
        self.events.append(("mm2s", t.number))
        return done

    def _arm(self, t: Transfer) -> None:
        out = self.outputs[t.slot]
        _transfer(self.dma.recvchannel, out, out.shape[0])
        self.receiving = t
        self.events.append(("s2mm-armed", t.number))

    def _collect(self) -> list[Done]:
        t = self.inflight.popleft()
        if not t.received:
            if self.receiving is not t:  # cannot happen: S2MM transfers are armed in order
                raise RuntimeError("DMA receive out of order")
            got = self._wait_receive(t)
            self.events.append(("s2mm-done", t.number))
            self.receiving = None
            self._split(t, got)
            nxt = next((u for u in self.inflight if not u.received), None)
            if nxt is not None:
                self._arm(nxt)
        if not self.inflight and self.sending:
            self.dma.sendchannel.wait()
            self.sending = False
        return [Done(tag, None if t.errors[i] else t.out[i], t.errors[i]) for i, tag in enumerate(t.tags)]

    def _wait_receive(self, t: Transfer) -> int:
        """Wait for S2MM; returns the bytes it wrote. A transfer whose TLAST never comes (missing, with nothing
        sent after it) is given up after ``timeout_s``: the receive channel is restarted and what it wrote is kept."""
        ch = self.dma.recvchannel
        deadline = time.monotonic() + self.timeout_s
        while not _idle(ch):
            if time.monotonic() > deadline:
                written = self._status_frames_closed(t)
                _call(ch, "stop")
                _call(ch, "start")
                return written * self.fout
            time.sleep(0)
        ch.wait()
        _call(self.outputs[t.slot], "invalidate")
        written = _received_bytes(ch)
        return self.outputs[t.slot].shape[0] if written is None else written

    def _status_frames_closed(self, t: Transfer) -> int:
        """After a timeout: the frames the fabric finished for ``t`` (its status words), all unclosed."""
        self._read_status()
        return min(len(self._pending_status), t.count)

    def _read_status(self) -> None:
        if self.status is None:
            return
        for _ in range(int(self.status.read(RDFO))):
            self.status.read(RLR)  # one word per packet
            self._pending_status.append(int(self.status.read(RDFD)))

    def _split(self, t: Transfer, written: int) -> None:
        """Hand each frame of ``t`` its output bytes or its error, from the S2MM byte count and the status words;
        output that belongs to the next transfer (after a missing TLAST) goes to it."""
        frames_out = written // self.fout
        # a copy: the slot's buffer is armed again two transfers later, and callers may keep the frames longer
        data = np.array(self.outputs[t.slot][: frames_out * self.fout]).reshape(frames_out, self.fout)
        self._read_status()
        status = self._pending_status
        t.out, t.errors = data, [None] * t.count
        used = 0  # output frames of this S2MM transfer accounted for
        for i in range(t.count):
            if used >= frames_out and (self.status is None or not status):
                t.errors[i] = (f"no output for frame {i + 1} of its DMA transfer of {t.count} (the transfer "
                               f"ended after {used} frame(s): short or aborted)")
                continue
            word = status.popleft() if self.status is not None and status else None
            used += 1
            if word is None:
                continue
            closes = not word & FRAME_CONTINUES
            if word & FRAME_SHORT:
                t.errors[i] = f"short DMA transfer: TLAST {word >> 2} words before the end of the frame (zero-filled)"
            if closes and i < t.count - 1:  # the transfer ended here: its later frames never reached the fabric
                for j in range(i + 1, t.count):
                    t.errors[j] = (f"not processed: its DMA transfer ended at frame {i + 1} of {t.count} "
                                   "(short or aborted)")
                break
            if i == t.count - 1 and not closes:
                self._unclosed(t, i, frames_out, used)
        t.out = data

    def _unclosed(self, t: Transfer, i: int, frames_out: int, used: int) -> None:
        """The transfer's last frame had no TLAST after it: a long transfer, or a missing TLAST."""
        status = self._pending_status
        if status and status[0] & FRAME_SHORT and frames_out > used:  # its extra words made a frame: drop it
            extra = status.popleft()
            t.errors[i] = ("long DMA transfer: words past its last frame (they made an extra frame, zero-filled by "
                           f"{extra >> 2} words, which was dropped)")
            return
        t.errors[i] = "missing TLAST at the end of its DMA transfer (the frame was counted; nothing was lost)"
        nxt = next((u for u in self.inflight if not u.received), None)
        if nxt is not None and frames_out > used:  # the output ran on into the next transfer's frames
            take = min(nxt.count, frames_out - used)
            nxt.out = np.asarray(self.outputs[t.slot][used * self.fout: (used + take) * self.fout]).reshape(
                take, self.fout).copy()
            nxt.received = True
            nxt.errors = [None] * nxt.count
            for j in range(take):
                word = status.popleft() if status else 0
                if word & FRAME_SHORT:
                    nxt.errors[j] = f"short DMA transfer: TLAST {word >> 2} words early (zero-filled)"
            for j in range(take, nxt.count):
                nxt.errors[j] = "no output: the DMA receive ended early"


def _transfer(channel, buffer, nbytes: int) -> None:
    """pynq 3.x: ``transfer(array, start=0, nbytes=0)``; older images take the whole array."""
    if nbytes == buffer.shape[0]:
        channel.transfer(buffer)
    else:
        channel.transfer(buffer, nbytes=nbytes)


def _idle(channel) -> bool:
    idle = getattr(channel, "idle", None)
    return True if idle is None else bool(idle)


def _received_bytes(channel) -> int | None:
    """S2MM_LENGTH after completion: the bytes the transfer actually wrote (PG021)."""
    value = getattr(channel, "transferred", None)
    if value is not None:
        return int(value)
    mmio, offset = getattr(channel, "_mmio", None), getattr(channel, "_offset", None)
    return int(mmio.read(offset + S2MM_LENGTH)) if mmio is not None and offset is not None else None


def _call(obj, name: str) -> None:
    fn = getattr(obj, name, None)
    if callable(fn):
        fn()
