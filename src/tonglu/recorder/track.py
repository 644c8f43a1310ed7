"""One track of one peer: the packet tap (event loop side) and the segment pipeline (its thread).

`TrackState` outlives peers: the segment numbering and the open peer-disconnect gap of a
source's track continue when the peer comes back. `PeerTrack` lives as long as one peer:
- on the event loop it sees every RTP packet (`on_rtp` / `on_audio`) and sender report, feeds the
  clock and the gap detector, and passes gap events to the session;
- in the process's pipeline thread (`recorder.pipeline`, registered from aiortc's receiver thread
  through the seam) it takes the queued frames (`step`): segment decisions, muxing; it hands each
  sealed file to the sealer pool (hash, spool, ledger) so it never waits on fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiortc.codecs import depayload
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import RtpPacket

from tonglu.evidence import keys
from tonglu.evidence.fsutil import write_atomic, write_durable
from tonglu.evidence.logctx import ContextLogger, context_logger
from tonglu.evidence.manifest import GapRecord, SegmentRecord
from tonglu.evidence.spool import EVIDENCE, sha256_file
from tonglu.recorder import pipeline
from tonglu.recorder.aiortc import seam
from tonglu.recorder.assembler import FrameAssembler, h264_frame_start, vp8_frame_start
from tonglu.recorder.clock import ClockStep, SourceClock, Timeline, TrackClock, Unwrapper
from tonglu.recorder.codecs import h264_keyframe, opus_duration, vp8_keyframe, vp8_payload
from tonglu.recorder.consultation import Withhold
from tonglu.recorder.context import RecorderContext, spawn
from tonglu.recorder.events import GapClosed
from tonglu.recorder.faults import failpoint
from tonglu.recorder.gaps import GapDetector, GapPolicy
from tonglu.recorder.muxer import CONTAINER_FOR, CONTENT_TYPE, SegmentWriter
from tonglu.recorder.overload import OverloadGap, OverloadTracker
from tonglu.recorder.segmenter import Segmenter

SIDECAR = ".seg.json"
QUEUE_LIMIT = 256  # frames between the event loop and a track's pipeline thread


@dataclass
class TrackState:
    """Per (session, source, track), across peers."""

    source: str
    track: str
    next_index: int = 0
    sealed: int = 0
    last_end_ns: int | None = None  # wall end of the newest sealed or open media
    last_rtp: int | None = None
    pending_gap: tuple[str, int, int | None, str] | None = None  # reason, start_ns, rtp_start, detail
    withhold: Withhold | None = None  # a lawyer consultation: media not recorded (recorder.consultation)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allocate(self) -> int:
        with self.lock:
            n = self.next_index
            self.next_index += 1
            return n


@dataclass
class AudioItem:
    payload: bytes
    rtp: int


class CutItem:
    """Seal the open segment now (the pipeline's side of a consultation that is not recorded)."""


CUT = CutItem()


def seal_file(
    ctx: RecorderContext,
    session: str,
    record: dict[str, Any],
    path: Path,
    content_type: str,
    log: ContextLogger,
) -> SegmentRecord:
    """Hash, spool, append the manifest entry (blocking: sealer thread or start-up).

    Crash-consistent: the final record is written durably into the sidecar *before* the file is
    moved into the spool, and the sidecar is removed only after the entry is in the ledger. A
    crash at any instant leaves either the staged file (sealed again at start-up) or a sidecar
    whose entry start-up recovery appends if it is missing (`recorder.recovery`): never a spooled
    segment without its entry, never an entry twice."""
    digest, size = sha256_file(path)
    rec = SegmentRecord(**{**record, "sha256": digest, "bytes": size})
    sidecar = path.with_name(path.name + SIDECAR)
    write_durable(sidecar, json.dumps({"session": session, "record": rec.to_body(), "sealing": True}).encode())
    failpoint("seal.before_spool")
    ctx.spool.put_file(rec.key, path, sha256=digest, size=size, content_type=content_type, bucket=EVIDENCE)
    failpoint("seal.after_spool")
    ctx.append(session, "segment", rec.to_body())
    failpoint("seal.after_append")
    sidecar.unlink(missing_ok=True)
    log.info("segment sealed", extra={"segment": rec.index})
    return rec


class PeerTrack:
    def __init__(
        self,
        *,
        ctx: RecorderContext,
        session: str,
        room: str,
        source: str,
        track: str,
        kind: str,
        peer_id: str,
        state: TrackState,
        source_clock: SourceClock,
        loop: asyncio.AbstractEventLoop,
        on_gap: Callable[[GapClosed], None],
        on_first_packet: Callable[[PeerTrack, int], None],
        on_sealed: Callable[[SegmentRecord], None],
        queue_limit: int = QUEUE_LIMIT,
        writer_factory: Callable[..., SegmentWriter] = SegmentWriter,
    ) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.session = session
        self.source = source
        self.track = track
        self.kind = kind
        self.peer_id = peer_id
        self.state = state
        self.loop = loop
        self.on_gap = on_gap
        self.on_first_packet = on_first_packet
        self.on_sealed = on_sealed
        self.clock_rate = 90000 if kind == "video" else 48000
        self.queue_limit = queue_limit
        self.writer_factory = writer_factory
        self.overload = OverloadTracker(kind, self.clock_rate)
        self._last_video: tuple[int, int] = (0, self.clock_rate // 30)  # (rtp, frame duration)
        self.clock = TrackClock(self.clock_rate, source_clock)
        self.timeline = Timeline(self.clock_rate)  # committed wall bounds (pipeline thread only)
        policy = GapPolicy.video(gap_frames=s.video_gap_frames) if kind == "video" else GapPolicy.audio(s.audio_gap_ms)
        self.detector = GapDetector(source, track, self.clock, policy)
        self.segmenter = Segmenter(kind, self.clock_rate, s.segment_seconds)
        self.log = context_logger(__name__, room=room, session=session, track=f"{source}/{track}")
        self._rtp = Unwrapper(32)
        self._seq = Unwrapper(16)
        self.nack = NackGenerator()
        self._nacked_ns = 0
        self.assembler = FrameAssembler()
        self._codec_params: Any = None
        self._name_of: tuple[Any, str] = (None, "")  # (codec, its name), event loop side
        self._lower_of: tuple[Any, str] = (None, "")  # (codec, its name in lower case), pipeline thread
        self.media_ssrc: int | None = None
        self.receiver: Any = None
        self.queue: seam.DropQueue | None = None
        self.first_arrival_ns: int | None = None
        self.last_arrival_ns: int | None = None
        self.codec: str | None = None
        self.writer: SegmentWriter | None = None
        self._record: dict[str, Any] | None = None
        self.frames = 0
        self.dropped_before_key = 0
        self.ended = asyncio.Event()  # set when the pipeline has sealed the track's last segment
        self.lane: pipeline.Lane | None = None  # set once aiortc started the receiver
        self.error: str | None = None
        # live viewers (recorder.relay): publishing costs nothing while nobody watches
        self.tap = ctx.relay.track(session, source, track, kind) if ctx.relay is not None else None

    # -- event loop side -------------------------------------------------------------------
    @property
    def codec_params(self) -> Any:
        """The negotiated codec of the frames seen so far (None before the first frame)."""
        return self._codec_params

    def attach(self, receiver: Any) -> None:
        self.receiver = receiver
        self.queue = seam.attach(receiver, self.kind, self.run, self, queue_limit=self.queue_limit)
        if self.tap is not None:
            self.tap.upstream = self.request_keyframe

    def _packet(self, packet: RtpPacket, seq: int, repaired: bool, duration: int) -> int:
        now = time.time_ns()
        rtp = self._rtp.unwrap(packet.timestamp)
        if not repaired:
            self.media_ssrc = packet.ssrc
        events = self.detector.on_packet(seq, rtp, now, repaired=repaired, duration=duration)
        if not repaired:
            if self.first_arrival_ns is None:
                self.first_arrival_ns = now
                self.on_first_packet(self, rtp)
            self.last_arrival_ns = now
        for ev in events:
            self._handle_gap(ev)
        return rtp

    def on_video(self, packet: RtpPacket, codec: Any, repaired: bool) -> None:
        """Event loop, synchronous (called straight from the socket callback, `recorder.aiortc.fastpath`)."""
        self._codec_params = codec
        seq16 = packet.sequence_number
        seq = self._seq.unwrap(seq16)
        nack = self.nack
        if not nack.missing and nack.max_seq is not None and seq16 == (nack.max_seq + 1) & 0xFFFF:
            nack.max_seq = seq16  # in order, nothing missing: what `add` would do, without its scans
        elif nack.add(packet):
            spawn(seam.send_nack(self.receiver, packet.ssrc, sorted(self.nack.missing)))
            self._nacked_ns = time.time_ns()
        rtp = self._packet(packet, packet.sequence_number, repaired, 0)
        payload = packet.payload
        if codec is not self._name_of[0]:
            self._name_of = (codec, codec.name)  # a property that splits the MIME type
        name = self._name_of[1]
        start = vp8_frame_start(payload) if name == "VP8" else h264_frame_start(payload)
        try:
            data = (vp8_payload(payload) if name == "VP8" else depayload(codec, payload)) if payload else b""
        except ValueError:
            data, start = b"", False
        frames = self.assembler.add(seq, rtp, packet.marker == 1, data, start)
        if frames:  # at most one packet in six or so completes a frame
            self._emit(codec, frames)

    def _emit(self, codec: Any, frames: list[tuple[int, bytes]]) -> None:
        if self.queue is None:
            return
        tap = self.tap
        for ts, data in frames:
            if self.state.withhold is None or self._record_despite(ts, codec, data):
                self._offer((codec, JitterFrame(data, ts)), ts, self._video_duration(ts), codec, data)
            if tap is not None and tap.subscribers and codec is not None:
                tap.publish(codec.name, data, ts, time.time_ns())

    def on_audio(self, packet: RtpPacket) -> None:
        payload = packet.payload
        duration = opus_duration(payload)
        rtp = self._packet(packet, packet.sequence_number, False, duration)
        if self.queue is not None and payload:
            if self.state.withhold is None or self._record_despite(rtp, None, b""):
                self._offer(AudioItem(payload, rtp), rtp, duration, None, b"")
            if self.tap is not None and self.tap.subscribers:
                self.tap.publish("opus", payload, rtp, time.time_ns())

    def _offer(self, item: Any, rtp: int, duration: int, codec: Any, data: bytes) -> None:
        """Hand one frame to the pipeline thread; when its bounded queue is full the frame is dropped
        and the stretch of dropped frames becomes a `recorder_overload` gap (`recorder.overload`)."""
        q = self.queue
        assert q is not None
        ov = self.overload
        key = ov.dropping and codec is not None and self._keyframe(codec.name, data)
        d = ov.on_frame(rtp, duration, key, q.qsize() < q.limit)
        if d.put:
            q.defer(item)
        else:
            q.dropped += 1
        if d.want_keyframe:
            self.request_keyframe()
        if d.gap is not None:
            self._overload_gap(d.gap)

    def _record_despite(self, rtp: int, codec: Any, data: bytes) -> bool:
        """A consultation withholds this track: is this frame recorded again (and the gap closed)?"""
        w = self.state.withhold
        assert w is not None and self.queue is not None
        key = codec is None or self._keyframe(codec.name, data)
        record, span = w.on_frame(rtp, key, self.clock.wall_ns(rtp))
        if not record:
            if not w.cut_sent:
                w.cut_sent = True
                self.queue.defer(CUT)  # the open segment ends with the last frame before the consultation
            if self.kind == "video" and w.ended_ns is not None:
                now = time.time_ns()
                if now - w.keyframe_asked_ns > 300_000_000:  # resume on a keyframe as soon as possible
                    w.keyframe_asked_ns = now
                    self.request_keyframe()
            return False
        self.state.withhold = None
        assert span is not None
        self.on_gap(
            GapClosed(
                GapRecord(
                    source=self.source,
                    track=self.track,
                    reason="lawyer_consultation",
                    start_ns=span[0],
                    end_ns=span[1],
                    rtp_start=w.rtp_start,
                    rtp_end=rtp,
                    detail=consultation_detail(w),
                )
            )
        )
        return True

    @staticmethod
    def _keyframe(codec_name: str, data: bytes) -> bool:
        return (vp8_keyframe(data) if codec_name.upper() == "VP8" else h264_keyframe(data))[0]

    def _video_duration(self, rtp: int) -> int:
        last, duration = self._last_video
        if 0 < rtp - last <= self.clock_rate:
            duration = rtp - last
        self._last_video = (rtp, duration)
        return duration

    def _overload_gap(self, g: OverloadGap) -> None:
        start = self.clock.wall_ns(g.rtp_start)
        self.on_gap(
            GapClosed(
                GapRecord(
                    source=self.source,
                    track=self.track,
                    reason="recorder_overload",
                    start_ns=start,
                    end_ns=max(start, self.clock.wall_ns(g.rtp_end)),
                    rtp_start=g.rtp_start,
                    rtp_end=g.rtp_end,
                    detail=f"录像进程过载，丢弃 {g.frames} 帧 (recorder overloaded: {g.frames} frames dropped)",
                )
            )
        )

    def on_sender_report(self, ntp: int, rtp: int, ssrc: int) -> None:
        if self.media_ssrc is None or ssrc == self.media_ssrc:
            verdict = self.clock.on_sender_report(ntp, rtp)
            if verdict in ("rejected", "step"):
                self.log.warning("sender report %s (ntp %#x, rtp %d)", verdict, ntp, rtp)

    def _handle_gap(self, ev: GapClosed) -> None:
        self.on_gap(ev)
        if self.kind == "video" and ev.seq_resume is not None:
            # the hole is final: stop waiting for it, forget it in NACKs, ask for a keyframe
            resume = ev.seq_resume
            self.nack.missing = {s for s in self.nack.missing if not self._before(s, resume)}
            self._emit(self._codec_params, self.assembler.skip_to(resume))
            self.request_keyframe()

    def _before(self, seq16: int, resume64: int) -> bool:
        return ((resume64 - seq16) & 0xFFFF) < 0x8000 and (resume64 & 0xFFFF) != seq16

    def tick(self, now_ns: int) -> None:
        for ev in self.detector.tick(now_ns):
            self._handle_gap(ev)
        if (
            self.kind == "video"
            and self.nack.missing
            and self.media_ssrc is not None
            and now_ns - self._nacked_ns > 200_000_000
        ):
            self._nacked_ns = now_ns
            spawn(seam.send_nack(self.receiver, self.media_ssrc, sorted(self.nack.missing)))

    def flush_gaps(self, now_ns: int) -> None:
        for ev in self.detector.flush(now_ns):
            self.on_gap(ev)
        overload = self.overload.flush()
        if overload is not None:
            self._overload_gap(overload)

    def request_keyframe(self) -> None:
        if self.receiver is not None and self.media_ssrc is not None and self.kind == "video":
            spawn(seam.send_pli(self.receiver, self.media_ssrc))

    def _ended(self) -> None:
        self.ended.set()

    # -- pipeline thread side (recorder.pipeline) ----------------------------------------
    def run(self, q: seam.DropQueue) -> None:
        """aiortc's receiver thread (through the seam): hand this track to the process's pipeline
        thread and return (that thread ends; aiortc's stop() joins it at once)."""
        p = pipeline.shared()
        q.notify = p.wake
        self.lane = p.add(q, self)

    def step(self, item: Any) -> None:
        if item is CUT:
            self._seal(None)
            self.segmenter.reset()
            return
        if isinstance(item, AudioItem):
            self.codec = "opus"
            self._frame(item.payload, item.rtp, True, None, opus_duration(item.payload))
            return
        codec, frame = item
        if codec is not self._lower_of[0]:
            self._lower_of = (codec, codec.name.lower())
        name = self._lower_of[1]
        self.codec = name
        key, size = vp8_keyframe(frame.data) if name == "vp8" else h264_keyframe(frame.data)
        self._frame(frame.data, frame.timestamp, key, size, None)

    def finish(self) -> None:
        """End of stream (the peer closed): seal the open segment."""
        self._seal(None)
        self._signal_ended()

    def fail(self, exc: BaseException) -> None:
        self.error = f"{type(exc).__name__}: {exc}"
        self.log.error("pipeline failed", exc_info=exc)
        try:
            if self.writer is not None:
                self.writer.abort()
                self._seal_written(None)
        finally:
            self._signal_ended()

    def _signal_ended(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone (process shutting down)
            self.loop.call_soon_threadsafe(self._ended)

    def _frame(self, data: bytes, rtp: int, key: bool, size: tuple[int, int] | None, duration: int | None) -> None:
        d = self.segmenter.on_frame(rtp, key, size)
        if d.want_keyframe:
            self.loop.call_soon_threadsafe(self.request_keyframe)
        if d.drop:
            self.dropped_before_key += 1
            return
        if d.cut:
            self._seal(rtp)
            self._open(rtp, size)
        assert self.writer is not None
        self.writer.write(data, rtp, key, duration)
        self.frames += 1

    def _open(self, rtp: int, size: tuple[int, int] | None) -> None:
        assert self.codec is not None
        container = CONTAINER_FOR[self.codec]
        index = self.state.allocate()
        key = keys.segment_key(self.session, self.source, self.track, index, container)
        ext = keys.CONTAINER_EXT.get(container, container)
        path = self.ctx.spool.staging_path(f"{self.session}/{self.source}/{self.track}/{index:08d}.{ext}")
        self._record = {
            "source": self.source,
            "track": self.track,
            "media": self.kind,
            "codec": self.codec,
            "container": container,
            "index": index,
            "key": key,
            "rtp_first": rtp,
            "rtp_last": rtp,
            "clock_rate": self.clock_rate,
            "wall_first_ns": self.timeline.start_of(rtp, self.clock.wall_ns(rtp), self._floor()),
            "wall_last_ns": 0,
            "frames": 0,
            "bytes": 0,
            "sha256": "",
            "recovered": False,
        }
        # the sidecar lets a restarted recorder seal this file if we are killed while writing it.
        # Not fsynced (two fsyncs per segment on this thread): the file it describes is not fsynced
        # either until it is sealed, so after a power cut both are equally uncertain (the restart
        # gap then runs from the last sealed segment), and a killed process loses neither.
        write_atomic(
            path.with_name(path.name + SIDECAR),
            json.dumps({"session": self.session, "record": self._record}).encode(),
        )
        self.writer = self.writer_factory(path, self.codec, self.clock_rate, rtp, size)

    def _floor(self) -> int | None:
        """A new stretch never starts before the end of the track's earlier media."""
        with self.state.lock:
            return self.state.last_end_ns

    def _seal(self, next_rtp: int | None) -> None:
        if self.writer is None:
            return
        written = self.writer.finish(next_rtp)
        self._seal_written(written)

    def _seal_written(self, written: Any) -> None:
        writer, record = self.writer, self._record
        self.writer, self._record = None, None
        if writer is None or record is None:
            return
        rtp_end = written.rtp_end if written is not None else record["rtp_first"]
        frames = written.frames if written is not None else writer.frames
        # placed now, with the mapping as mature as it gets (recorder.clock: tiles, slews, steps)
        rtp_first = record["rtp_first"]
        span = self.timeline.place(
            rtp_first, rtp_end, self.clock.wall_ns(rtp_first), self.clock.wall_ns(rtp_end), self._floor()
        )
        record.update(rtp_last=rtp_end, wall_first_ns=span.wall_first_ns, wall_last_ns=span.wall_last_ns, frames=frames)
        if span.step is not None:
            self._clock_step(span.step, record["index"])
        with self.state.lock:
            self.state.last_end_ns = max(self.state.last_end_ns or 0, record["wall_last_ns"])
            self.state.last_rtp = rtp_end
        content_type = CONTENT_TYPE[record["container"]]
        if record["media"] == "audio":
            content_type = "audio/webm"
        path = writer.path

        def job() -> None:
            rec = seal_file(self.ctx, self.session, record, path, content_type, self.log.bind(segment=record["index"]))
            with self.state.lock:
                self.state.sealed += 1
            self.on_sealed(rec)

        self.ctx.submit(job)

    def _clock_step(self, step: ClockStep, index: int) -> None:
        ms = step.error_ns / 1e6
        if step.error_ns > 0:
            detail = f"时钟跳变：时间轴前移 {ms:.0f} ms (clock step: the timeline moved ahead {ms:.0f} ms)"
        else:
            detail = (
                f"时钟回退 {-ms:.0f} ms：片段 {index} 的墙钟跨度已缩短 "
                f"(clock stepped back {-ms:.0f} ms: wall span of segment {index} shortened)"
            )
        self.log.warning("clock step %+.0f ms after segment %d", ms, index)
        self.on_gap(
            GapClosed(
                GapRecord(
                    source=self.source,
                    track=self.track,
                    reason="clock_step",
                    start_ns=step.start_ns,
                    end_ns=step.end_ns,
                    rtp_start=step.rtp,
                    rtp_end=step.rtp,
                    packets_lost=0,
                    detail=detail,
                )
            )
        )

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "codec": self.codec,
            "frames": self.frames,
            "packets": self.detector.packets,
            "packets_lost": self.detector.lost,
            "packets_skipped": self.assembler.skipped_packets,
            "queue_dropped": self.queue.dropped if self.queue else 0,
            "waiting_for_keyframe_dropped": self.dropped_before_key,
            "clock_synced": self.clock.synced,
            "clock_steps": len(self.timeline.steps),
            "sender_reports_rejected": self.clock.sr_rejected,
            "error": self.error,
        }


def consultation_detail(w: Withhold) -> str:
    return (
        f"律师会见，依法不录制 (lawyer consultation {w.consultation_id}, not recorded by law, CPL art. 39; "
        f"ended by {w.ended_by or '-'})"
    )


def staged_sidecars(staging: Path, session: str) -> list[Path]:
    d = staging / session
    if not d.exists():
        return []
    return sorted(p for p in d.rglob("*" + SIDECAR))


def remove_empty(path: Path) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
