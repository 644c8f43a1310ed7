"""RTP time to wall-clock time (UTC ns), sans I/O: a timeline you can testify to.

Three layers, each a small state machine fed packets, sender reports and `now`:

1. **Target mapping** (`SourceClock` + `TrackClock.wall_ns`): our best current estimate of the
   wall-clock instant of an RTP timestamp.
   - Before a track's first RTCP sender report (SR) the track is anchored on its least-delayed
     packet: `min(arrival - media time since the first packet)`.
   - With an SR, RTP maps to the sender's NTP clock (`s = ntp_sr + (rtp - rtp_sr) / rate`) and
     the sender's clock is brought onto ours with one offset per *source*, shared by its audio and
     video (lip sync): `E = min(arrival - s)` over the current and previous 10 s window (the
     least-delayed packet; bursts of extra delay shorter than a window do not move it; a slow
     drift between the two clocks is followed window by window).
   - The first SR of a track *seeds* `E` from the track's anchor (the minimum over every packet
     seen so far), so switching from the anchor to the SR mapping does not step.
   - A sender report that disagrees with the track's current SR mapping by more than
     `SR_TOLERANCE_NS` is held back as a candidate; it is adopted only if the next SR agrees with
     it (the sender's clock really stepped: then the source's offset windows restart). A single
     wild SR is therefore ignored.

2. **Committed timeline** (`Timeline`, one per track): the wall bounds written into segment
   entries. A segment contiguous with the previous one (same RTP instant) starts *exactly* where
   the previous one ended, so a gap-free stretch tiles (`next.wall_first_ns ==
   prev.wall_last_ns`). Its end is `start + media duration`, corrected towards the target by at
   most `SLEW_NS_PER_S` (2 ms) per second of media, NTP-style: noise of the estimate never becomes
   steps, a real drift (50 ppm = 180 ms/h) is followed smoothly. The first segment of a stretch is
   placed when it is sealed, with the mapping as mature as it gets (convergence at start), and
   never before the end of the track's previous media (monotone across peers/restarts).

3. **Steps** (`ClockStep`): when the timeline and the target disagree by more than `STEP_NS`
   (200 ms, REQUIREMENTS §12) slewing would take too long, so the timeline is corrected at once
   and the correction is *recorded* (the caller writes a `clock_step` gap entry):
   - forward (our clock or the path moved ahead): the segment keeps its media span, the next
     segment starts at the target; the gap entry spans the skipped wall time;
   - backward: wall bounds may never overlap, so the segment's wall span is shortened to end at
     the target (not before its start); the gap entry is zero-length at that instant and its
     detail states the size of the correction (the shortened segment also shows as a wall/RTP
     span mismatch in the integrity report).
   Gap entries of the gap detector use the target mapping; after convergence it is within a few
   ms of the committed timeline.
"""

from __future__ import annotations

from dataclasses import dataclass

NTP_UNIX_OFFSET_S = 2208988800
WINDOW_NS = 10_000_000_000
SR_TOLERANCE_NS = 50_000_000  # an SR further than this from the current mapping is suspect
SLEW_NS_PER_S = 2_000_000  # the committed timeline moves at most 2 ms per second of media
STEP_NS = 200_000_000  # larger corrections are applied at once and recorded (clock_step)


class Unwrapper:
    """Unwrap a 16- or 32-bit counter into a monotonic-ish 64-bit one."""

    def __init__(self, bits: int) -> None:
        self.mod = 1 << bits
        self.half = 1 << (bits - 1)
        self.last: int | None = None

    def unwrap(self, value: int) -> int:
        if self.last is None:
            self.last = value
            return value
        delta = (value - self.last) % self.mod
        if delta >= self.half:
            delta -= self.mod
        self.last = self.last + delta
        return self.last


def ntp_to_unix_ns(ntp: int) -> int:
    seconds = ntp >> 32
    frac = ntp & 0xFFFFFFFF
    return (seconds - NTP_UNIX_OFFSET_S) * 1_000_000_000 + (frac * 1_000_000_000 >> 32)


class SourceClock:
    """Offset between one sender's NTP clock and ours (shared by the tracks of one source)."""

    def __init__(self, window_ns: int = WINDOW_NS) -> None:
        self.window_ns = window_ns
        self._cur: int | None = None
        self._prev: int | None = None
        self._window_start: int | None = None
        self.resets = 0

    def observe(self, delay_ns: int, now_ns: int) -> None:
        if self._window_start is None or now_ns - self._window_start > self.window_ns:
            self._prev = self._cur
            self._cur = None
            self._window_start = now_ns
        if self._cur is None or delay_ns < self._cur:
            self._cur = delay_ns

    def reset(self) -> None:
        """The sender's clock stepped: estimates made against the old one are void."""
        self._cur = self._prev = self._window_start = None
        self.resets += 1

    @property
    def offset_ns(self) -> int | None:
        vals = [v for v in (self._cur, self._prev) if v is not None]
        return min(vals) if vals else None


class TrackClock:
    def __init__(self, clock_rate: int, source: SourceClock | None = None) -> None:
        self.clock_rate = clock_rate
        self.source = source or SourceClock()
        self._anchor: tuple[int, int] | None = None  # (rtp64 of the first packet, its wall ns)
        self._sr: tuple[int, int] | None = None  # (rtp64, sender ns) of the adopted SR
        self._candidate: tuple[int, int] | None = None  # a disagreeing SR waiting for confirmation
        self.last_rtp: int | None = None
        self.last_arrival_ns: int | None = None
        self.sr_rejected = 0
        self.sr_steps = 0

    def _ns(self, ticks: int) -> int:
        return ticks * 1_000_000_000 // self.clock_rate

    def on_packet(self, rtp64: int, arrival_ns: int) -> None:
        # arrival anchor: the least-delayed packet so far defines RTP time 0 on our clock
        if self._anchor is None:
            self._anchor = (rtp64, arrival_ns)
        else:
            cand = arrival_ns - self._ns(rtp64 - self._anchor[0])
            if cand < self._anchor[1]:
                self._anchor = (self._anchor[0], cand)
        self.last_rtp = rtp64
        self.last_arrival_ns = arrival_ns
        if self._sr is not None:
            self.source.observe(arrival_ns - self._sender_ns(rtp64), arrival_ns)

    def on_sender_report(self, ntp: int, rtp32: int) -> str:
        """Feed one SR; returns what was done with it: first, accepted, rejected, step, ignored."""
        if self.last_rtp is None:
            return "ignored"
        # unwrap the report's timestamp next to the latest packet's
        delta = (rtp32 - self.last_rtp) % (1 << 32)
        if delta >= 1 << 31:
            delta -= 1 << 32
        sr = (self.last_rtp + delta, ntp_to_unix_ns(ntp))
        if self._sr is None:
            self._sr = sr
            self._seed()
            return "first"
        if abs(sr[1] - self._sender_ns(sr[0])) <= SR_TOLERANCE_NS:
            self._sr, self._candidate = sr, None
            return "accepted"
        cand = self._candidate
        if cand is not None and abs(sr[1] - (cand[1] + self._ns(sr[0] - cand[0]))) <= SR_TOLERANCE_NS:
            # two reports agree with each other and not with us: the sender's clock stepped
            self._sr, self._candidate = sr, None
            self.sr_steps += 1
            self.source.reset()
            return "step"
        self._candidate = sr
        self.sr_rejected += 1
        return "rejected"

    def _seed(self) -> None:
        """Carry the anchor's minimum (over every packet so far) into the source offset."""
        if self._anchor is not None and self.last_arrival_ns is not None:
            rtp0, wall0 = self._anchor
            self.source.observe(wall0 - self._sender_ns(rtp0), self.last_arrival_ns)

    def _sender_ns(self, rtp64: int) -> int:
        assert self._sr is not None
        return self._sr[1] + self._ns(rtp64 - self._sr[0])

    @property
    def synced(self) -> bool:
        return self._sr is not None and self.source.offset_ns is not None

    def wall_ns(self, rtp64: int) -> int:
        """The target mapping (see the module docstring)."""
        offset = self.source.offset_ns
        if self._sr is not None and offset is not None:
            return self._sender_ns(rtp64) + offset
        if self._anchor is None:
            raise ValueError("no packet seen yet")
        return self._anchor[1] + self._ns(rtp64 - self._anchor[0])


@dataclass(frozen=True)
class ClockStep:
    """A correction too large to slew, applied at once: the caller records a `clock_step` gap
    with these bounds (forward: the skipped wall time; backward: zero-length where the shortened
    segment ends)."""

    rtp: int  # RTP instant of the correction (the end of the segment it follows)
    error_ns: int  # target minus where the timeline would have put this instant (signed)
    start_ns: int
    end_ns: int


@dataclass(frozen=True)
class Span:
    wall_first_ns: int
    wall_last_ns: int
    step: ClockStep | None = None


class Timeline:
    """The committed wall bounds of one track's segments (see the module docstring)."""

    def __init__(self, clock_rate: int, slew_ns_per_s: int = SLEW_NS_PER_S, step_ns: int = STEP_NS) -> None:
        self.clock_rate = clock_rate
        self.slew_ns_per_s = slew_ns_per_s
        self.step_ns = step_ns
        self.chain: tuple[int, int] | None = None  # (rtp, wall ns) where the next segment starts
        self.steps: list[ClockStep] = []

    def start_of(self, rtp_first: int, target_first: int, floor_ns: int | None = None) -> int:
        """Where a segment starting at `rtp_first` starts (provisional until `place`)."""
        if self.chain is not None and self.chain[0] == rtp_first:
            return self.chain[1]
        return target_first if floor_ns is None else max(floor_ns, target_first)

    def place(
        self,
        rtp_first: int,
        rtp_last: int,
        target_first: int,
        target_last: int,
        floor_ns: int | None = None,
    ) -> Span:
        """Wall bounds of a sealed segment; `target_*` are the mapping's current values."""
        first = self.start_of(rtp_first, target_first, floor_ns)
        media = (rtp_last - rtp_first) * 1_000_000_000 // self.clock_rate
        ideal = first + media
        err = target_last - ideal
        step: ClockStep | None = None
        if err > self.step_ns:
            last = ideal
            step = ClockStep(rtp_last, err, last, target_last)
            nxt = target_last
        elif err < -self.step_ns:
            last = max(first, target_last)
            step = ClockStep(rtp_last, err, last, last)
            nxt = last
        else:
            limit = media * self.slew_ns_per_s // 1_000_000_000
            last = max(first, ideal + max(-limit, min(limit, err)))
            nxt = last
        if step is not None:
            self.steps.append(step)
        self.chain = (rtp_last, nxt)
        return Span(first, last, step)
