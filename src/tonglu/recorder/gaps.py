"""Gap detection for one track of one peer, sans I/O: fed (sequence, RTP time, arrival time).

Rules (documented for the integrity report and the court):
- **Sequence holes** (`rtp_loss`): a hole is declared once `repair_window_ns` passed without the
  missing packets arriving (video: NACK/RTX window, 1 s; audio: reordering window, 120 ms - aiortc
  does not NACK audio). One event per contiguous hole, bounds from the end of the last packet
  before it to the first packet after it (RTP time mapped to wall clock), with the number of
  packets still missing: every unrepaired hole is a gap, however short. A hole during which
  nothing at all arrived for over `outage_ns` (1 s: a network outage) is reported once, as
  `no_packets`. `silence_ns` (video `video_gap_frames` frame intervals, audio `audio_gap_ms`) is
  the silence after which the status shows an open gap while it lasts.
- **Stalls with a contiguous sequence**: audio - Opus DTX sends no packets during silence without
  skipping sequence numbers, so this is *not* a gap (nothing was lost). Video - senders drop their
  frame rate to ~1 fps for static pictures and encoders skip frames under load, so a contiguous
  stall is a gap (`no_packets`) only when longer than `stall_ns` (1 s by default).
- **Timestamp jumps** (`timestamp_jump`): with a contiguous sequence, media time moving more than
  `jump_ns` beyond (or behind) the arrival time.
Peer disconnects and recorder restarts span peers; the session layer writes those.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tonglu.evidence.manifest import GapRecord
from tonglu.recorder.clock import TrackClock, Unwrapper
from tonglu.recorder.events import GapClosed, GapOpened

MAX_HOLE = 30000  # a larger sequence jump is a stream reset, not a hole


@dataclass(frozen=True)
class GapPolicy:
    repair_window_ns: int
    silence_ns: int
    stall_ns: int | None
    jump_ns: int = 2_000_000_000
    outage_ns: int = 1_000_000_000
    merge_ns: int = 300_000_000  # holes this close after an outage belong to it

    @classmethod
    def video(
        cls, frame_interval_ns: int = 33_333_333, gap_frames: float = 2.0, stall_ns: int = 1_000_000_000
    ) -> GapPolicy:
        return cls(repair_window_ns=1_000_000_000, silence_ns=int(frame_interval_ns * gap_frames), stall_ns=stall_ns)

    @classmethod
    def audio(cls, gap_ms: int = 60) -> GapPolicy:
        return cls(repair_window_ns=120_000_000, silence_ns=gap_ms * 1_000_000, stall_ns=None)


@dataclass
class _Pkt:
    seq: int
    rtp: int
    arrival_ns: int
    duration: int


@dataclass
class _Hole:
    first: int
    last: int
    missing: set[int]
    before: _Pkt
    after: _Pkt
    detected_ns: int
    silent: bool
    start_ns: int = 0
    end_ns: int = 0


@dataclass
class GapDetector:
    source: str
    track: str
    clock: TrackClock
    policy: GapPolicy
    _seq: Unwrapper = field(default_factory=lambda: Unwrapper(16))
    _last: _Pkt | None = None
    _holes: list[_Hole] = field(default_factory=list)
    packets: int = 0
    lost: int = 0

    @property
    def last_packet(self) -> _Pkt | None:
        return self._last

    def _end_of(self, pkt: _Pkt) -> int:
        return self.clock.wall_ns(pkt.rtp + pkt.duration)

    def on_packet(
        self, seq: int, rtp: int, now_ns: int, *, repaired: bool = False, duration: int = 0
    ) -> list[GapClosed]:
        last = self._last
        if (
            last is not None
            and not self._holes
            and not repaired
            and rtp == last.rtp
            and seq == (last.seq + 1) & 0xFFFF
            and self._seq.last == last.seq
            and (self.policy.stall_ns is None or now_ns - last.arrival_ns <= self.policy.stall_ns)
        ):
            # the next packet of the same frame, nothing missing (most video packets): no check can
            # fire (same RTP time: no jump; no hole; no stall), and the clock's anchor and delay
            # minimum cannot move (same RTP time, later arrival). No hole refers to `last`.
            last.seq += 1
            last.arrival_ns = now_ns
            self._seq.last = last.seq
            self.clock.last_arrival_ns = now_ns
            self.packets += 1
            return []
        s = self._seq.unwrap(seq)
        if not repaired:
            self.clock.on_packet(rtp, now_ns)
        pkt = _Pkt(s, rtp, now_ns, duration)
        events: list[GapClosed] = []
        if last is None:
            self._last = pkt
            self.packets += 1
            return events
        if s > last.seq:
            self.packets += 1
            silence = now_ns - last.arrival_ns
            if s - last.seq > MAX_HOLE:
                events.append(
                    self._close("timestamp_jump", last, pkt, None, f"sequence jumped by {s - last.seq}: stream reset")
                )
            elif s > last.seq + 1:
                hole = _Hole(
                    last.seq + 1,
                    s - 1,
                    set(range(last.seq + 1, s)),
                    last,
                    pkt,
                    now_ns,
                    silence > self.policy.outage_ns,
                )
                hole.start_ns = self._end_of(last)
                hole.end_ns = self.clock.wall_ns(rtp)
                self._holes.append(hole)
            elif self.policy.stall_ns is not None and silence > self.policy.stall_ns:
                events.append(
                    self._close("no_packets", last, pkt, None, f"sender sent nothing for {silence // 1_000_000} ms")
                )
            else:
                media_ns = (rtp - last.rtp) * 1_000_000_000 // self.clock.clock_rate
                if media_ns - silence > self.policy.jump_ns or media_ns < -self.policy.jump_ns:
                    start = self._end_of(last)
                    events.append(
                        GapClosed(
                            GapRecord(
                                source=self.source,
                                track=self.track,
                                reason="timestamp_jump",
                                start_ns=start,
                                end_ns=start + max(0, silence),
                                rtp_start=last.rtp,
                                rtp_end=rtp,
                                packets_lost=0,
                                detail=f"RTP time moved {media_ns // 1_000_000} ms in {silence // 1_000_000} ms",
                            )
                        )
                    )
            self._last = pkt
        else:
            for hole in self._holes:
                if hole.first <= s <= hole.last:
                    hole.missing.discard(s)
        if self._holes:  # nothing to decide without an open hole (the common case, per packet)
            events.extend(self.decide(now_ns))
        return events

    def _close(
        self,
        reason: str,
        before: _Pkt,
        after: _Pkt,
        lost: int | None,
        detail: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        resume: int | None = None,
    ) -> GapClosed:
        start = self._end_of(before) if start_ns is None else start_ns
        end = self.clock.wall_ns(after.rtp) if end_ns is None else end_ns
        end = max(end, start)
        return GapClosed(
            GapRecord(
                source=self.source,
                track=self.track,
                reason=reason,
                start_ns=start,
                end_ns=end,
                rtp_start=before.rtp + before.duration,
                rtp_end=after.rtp,
                packets_lost=lost,
                detail=detail,
            ),
            resume,
        )

    def decide(self, now_ns: int, *, flush: bool = False) -> list[GapClosed]:
        events = []
        keep = []
        holes = self._holes
        pending_outage_end: int | None = None
        i = 0
        while i < len(holes):
            hole = holes[i]
            i += 1
            if not hole.missing:
                continue  # repaired in time
            wait = self.policy.repair_window_ns + (self.policy.merge_ns if hole.silent else 0)
            held = (
                pending_outage_end is not None
                and not flush
                and hole.start_ns - pending_outage_end <= self.policy.merge_ns
            )
            if held or not (flush or now_ns - hole.detected_ns >= wait):
                keep.append(hole)
                if hole.silent or held:
                    pending_outage_end = hole.end_ns
                continue
            n = len(hole.missing)
            last, after, end_ns = hole.last, hole.after, hole.end_ns
            if hole.silent:
                # senders stumble right after an outage (a packet or two never sent): one interruption,
                # one gap
                while i < len(holes) and holes[i].start_ns - end_ns <= self.policy.merge_ns:
                    n += len(holes[i].missing)
                    last, after, end_ns = holes[i].last, holes[i].after, holes[i].end_ns
                    i += 1
            self.lost += n
            reason = "no_packets" if hole.silent else "rtp_loss"
            events.append(
                self._close(
                    reason,
                    hole.before,
                    after,
                    n,
                    f"{n} packet(s) lost (seq {hole.first & 0xFFFF}..{last & 0xFFFF}), not repaired",
                    hole.start_ns,
                    end_ns,
                    last + 1,
                )
            )
        self._holes = keep
        return events

    def tick(self, now_ns: int) -> list[GapClosed]:
        return self.decide(now_ns)

    def flush(self, now_ns: int) -> list[GapClosed]:
        """The peer ended: every hole still open is final."""
        return self.decide(now_ns, flush=True)

    def open_gap(self, now_ns: int) -> GapOpened | None:
        """The silence going on right now, if longer than the threshold (for status pages)."""
        last = self._last
        if last is None or now_ns - last.arrival_ns <= self.policy.silence_ns:
            return None
        return GapOpened(self.source, self.track, "no_packets", self._end_of(last), last.rtp + last.duration)
