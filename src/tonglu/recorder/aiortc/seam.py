"""The private aiortc seam that makes pass-through recording possible (aiortc pinned at 1.16.0).

1. `aiortc.rtcrtpreceiver.decoder_worker` is looked up when a receiver's thread starts (in
   `RTCRtpReceiver.receive`, after `pc.on("track")` fired). We replace it with `_seam_worker`,
   which runs the pipeline registered for that track's queue, and aiortc's original decoder for
   every other track. The pipeline gets complete encoded frames (`JitterFrame`, H.264 Annex-B).
2. Per receiver we swap in: a bounded, never-blocking input queue; a timestamp mapper that keeps
   the sender's RTP time (unwrapped to 64 bit) instead of restarting at 0; a wrapper of
   `_handle_rtp_packet` that keeps aiortc's receive statistics (RTCP receiver reports) and RTX
   unwrapping but hands every packet to our tap *instead of* aiortc's jitter buffers (audio: its
   16-packet buffer amplifies loss; video: it stalls for seconds after an unrepaired loss), so
   the tap assembles frames and sends NACK/PLI itself; a wrapper of `_handle_rtcp_packet` that sees
   sender reports (NTP <-> RTP).
`tests/recorder/test_seam_contract.py` pins all of this against the installed aiortc.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiortc.rtcrtpreceiver as _rr
from aiortc.codecs import is_rtx
from aiortc.rtp import RtcpSrPacket, RtpPacket, unwrap_rtx

from tonglu.recorder.clock import Unwrapper

log = logging.getLogger(__name__)

_original_worker = _rr.decoder_worker
_registry: dict[int, Callable[[Any], None]] = {}  # runners take the receiver's DropQueue
_lock = threading.Lock()
_P = "_RTCRtpReceiver__"


class Tap(Protocol):
    def on_video(self, packet: RtpPacket, codec: Any, repaired: bool) -> None: ...

    def on_audio(self, packet: RtpPacket) -> None: ...

    def on_sender_report(self, ntp: int, rtp: int, ssrc: int) -> None: ...


SYNC_HANDLER = "_tonglu_handle_rtp_sync"  # receiver attribute: the same handler, synchronous
WAKE_S = 0.05  # a pipeline thread is woken at most this long after a deferred frame was queued


class DropQueue(queue.Queue):
    """A queue whose `put` never blocks: beyond `limit` items it drops and counts (None always goes).

    `defer` queues a frame *without* waking the consumer thread: the event loop's `Waker` wakes
    every queue that got frames within `WAKE_S`, so a pipeline thread wakes (and takes the GIL)
    once per batch instead of once per frame. `put` (and so aiortc's end-of-stream None) wakes at
    once; the consumer drains everything queued before it, in order. A consumer that does not
    block in `get` (`recorder.pipeline`) sets `notify`, called instead of waking a `get`."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0
        self.waker: Waker | None = None
        self.dirty = False  # deferred frames the consumer has not been woken for
        self.notify: Callable[[], None] | None = None  # wakes a consumer that does not wait on us

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None and self.qsize() >= self.limit:
            self.dropped += 1
            return
        super().put(item, block=False)
        notify = self.notify
        if notify is not None:
            notify()

    def defer(self, item: Any) -> None:
        """Event loop only: queue `item` (the caller checked the limit); wake the consumer later."""
        waker = self.waker
        if waker is None:
            self.put(item)
            return
        with self.mutex:
            self.queue.append(item)
            self.unfinished_tasks += 1
        if not self.dirty:
            self.dirty = True
            waker.mark(self)

    def wake(self) -> None:
        self.dirty = False
        notify = self.notify
        if notify is not None:
            notify()
            return
        with self.mutex:
            self.not_empty.notify()


class Waker:
    """Wakes the consumers of the queues that got deferred frames, once per `WAKE_S` (one event loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval_s: float = WAKE_S) -> None:
        self.loop = loop
        self.interval_s = interval_s
        self._dirty: list[DropQueue] = []
        self._scheduled = False

    def mark(self, q: DropQueue) -> None:
        self._dirty.append(q)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_later(self.interval_s, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for q in dirty:
            q.wake()


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Waker] = weakref.WeakKeyDictionary()


def waker_for(loop: asyncio.AbstractEventLoop) -> Waker:
    w = _wakers.get(loop)
    if w is None:
        w = _wakers[loop] = Waker(loop)
    return w


class UnwrapMapper:
    """Replaces aiortc's TimestampMapper: unwrapped sender RTP time, not restarted at 0."""

    def __init__(self) -> None:
        self._u = Unwrapper(32)

    def map(self, timestamp: int) -> int:
        return self._u.unwrap(timestamp)


def _seam_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any],
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    with _lock:
        runner = _registry.pop(id(output_q), None)
    if runner is None:
        _original_worker(loop, input_q, output_q, decode_error)
        return
    try:
        runner(input_q)
    except Exception:
        log.exception("recording pipeline failed")
        while input_q.get() is not None:  # keep draining so aiortc's stop() can join us
            pass
    finally:
        asyncio.run_coroutine_threadsafe(output_q.put(None), loop)


def install() -> None:
    """Idempotent."""
    _rr.decoder_worker = _seam_worker


def installed() -> bool:
    return _rr.decoder_worker is _seam_worker


def attach(
    receiver: Any, kind: str, runner: Callable[[DropQueue], None], tap: Tap, queue_limit: int = 256
) -> DropQueue:
    """Take over one receiver. Must run in `pc.on("track")`, before the receiver starts."""
    install()
    q = DropQueue(queue_limit)
    try:
        q.waker = waker_for(asyncio.get_running_loop())
    except RuntimeError:  # not on an event loop: every frame wakes the consumer
        pass
    setattr(receiver, _P + "decoder_queue", q)
    setattr(receiver, _P + "timestamp_mapper", UnwrapMapper())
    with _lock:
        _registry[id(receiver._track._queue)] = runner
    codecs: dict[int, Any] = getattr(receiver, _P + "codecs")
    original_rtcp: Callable[..., Awaitable[None]] = receiver._handle_rtcp_packet

    streams: dict[int, Any] = getattr(receiver, _P + "remote_streams")
    rtx_ssrc: dict[int, int] = getattr(receiver, _P + "rtx_ssrc")

    rtx_of: dict[int, tuple[Any, bool]] = {}  # payload type -> (codec, is RTX): `codec.name` splits a string

    def handle_rtp_sync(packet: RtpPacket) -> None:
        if not receiver._enabled:
            return
        codec = codecs.get(packet.payload_type)
        if codec is None:
            return
        known = rtx_of.get(packet.payload_type)
        if known is None or known[0] is not codec:
            known = rtx_of[packet.payload_type] = (codec, is_rtx(codec))
        stats = streams.get(packet.ssrc)
        if stats is None:
            stats = streams[packet.ssrc] = _rr.StreamStatistics(codec.clockRate)
        stats.add(packet)  # keeps RTCP receiver reports right
        if kind == "audio":
            tap.on_audio(packet)
            return
        repaired = False
        if known[1]:
            original = rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original is None or len(packet.payload) < 2 or not isinstance(apt, int) or apt not in codecs:
                return  # RTX padding probe, or unknown
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
            codec = codecs[apt]
            repaired = True
        tap.on_video(packet, codec, repaired)

    async def handle_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
        handle_rtp_sync(packet)

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            tap.on_sender_report(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp, packet.ssrc)
        await original_rtcp(packet)

    receiver._handle_rtp_packet = handle_rtp
    setattr(receiver, SYNC_HANDLER, handle_rtp_sync)  # taken by recorder.fastpath
    receiver._handle_rtcp_packet = handle_rtcp
    return q


def unregister(receiver: Any) -> None:
    """Forget a receiver whose thread never started (the peer never connected)."""
    track = getattr(receiver, "_track", None)
    if track is not None:
        with _lock:
            _registry.pop(id(track._queue), None)


async def send_pli(receiver: Any, media_ssrc: int) -> None:
    await receiver._send_rtcp_pli(media_ssrc)


async def send_nack(receiver: Any, media_ssrc: int, lost: list[int]) -> None:
    await receiver._send_rtcp_nack(media_ssrc, lost)
