"""RTP time to wall-clock time (UTC ns), sans I/O.

Each track maps its (unwrapped) RTP timestamps to the sender's NTP clock using the latest RTCP
sender report; the sender's NTP clock is brought onto ours with one offset per *source* (shared
by its audio and video, which keeps them in sync), estimated as the windowed minimum of
`arrival - sender_time` (the least-delayed packet). Before the first sender report the track is
anchored on its least-delayed packet (windowless minimum of arrival minus RTP time).
"""

from __future__ import annotations

NTP_UNIX_OFFSET_S = 2208988800
_WINDOW_NS = 10_000_000_000


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

    def __init__(self) -> None:
        self._cur: int | None = None
        self._prev: int | None = None
        self._window_start: int | None = None

    def observe(self, delay_ns: int, now_ns: int) -> None:
        if self._window_start is None or now_ns - self._window_start > _WINDOW_NS:
            self._prev = self._cur
            self._cur = None
            self._window_start = now_ns
        if self._cur is None or delay_ns < self._cur:
            self._cur = delay_ns

    @property
    def offset_ns(self) -> int | None:
        vals = [v for v in (self._cur, self._prev) if v is not None]
        return min(vals) if vals else None


class TrackClock:
    def __init__(self, clock_rate: int, source: SourceClock | None = None) -> None:
        self.clock_rate = clock_rate
        self.source = source or SourceClock()
        self._anchor: tuple[int, int] | None = None  # (rtp64, wall ns) from the first packet
        self._sr: tuple[int, int] | None = None  # (rtp64, sender ns)
        self.last_rtp: int | None = None

    def on_packet(self, rtp64: int, arrival_ns: int) -> None:
        # arrival anchor: the least-delayed packet so far defines RTP time 0 on our clock
        if self._anchor is None or arrival_ns - self._since_anchor(rtp64) < self._anchor[1]:
            self._anchor = (
                self._anchor[0] if self._anchor else rtp64,
                arrival_ns - self._since_anchor(rtp64),
            )
        self.last_rtp = rtp64
        if self._sr is not None:
            self.source.observe(arrival_ns - self._sender_ns(rtp64), arrival_ns)

    def on_sender_report(self, ntp: int, rtp32: int) -> None:
        if self.last_rtp is None:
            return
        # unwrap the report's timestamp next to the latest packet's
        base = self.last_rtp
        delta = (rtp32 - base) % (1 << 32)
        if delta >= 1 << 31:
            delta -= 1 << 32
        self._sr = (base + delta, ntp_to_unix_ns(ntp))

    def _since_anchor(self, rtp64: int) -> int:
        if self._anchor is None:
            return 0
        return (rtp64 - self._anchor[0]) * 1_000_000_000 // self.clock_rate

    def _sender_ns(self, rtp64: int) -> int:
        assert self._sr is not None
        return self._sr[1] + (rtp64 - self._sr[0]) * 1_000_000_000 // self.clock_rate

    @property
    def synced(self) -> bool:
        return self._sr is not None and self.source.offset_ns is not None

    def wall_ns(self, rtp64: int) -> int:
        offset = self.source.offset_ns
        if self._sr is not None and offset is not None:
            return self._sender_ns(rtp64) + offset
        if self._anchor is None:
            raise ValueError("no packet seen yet")
        return self._anchor[1] + (rtp64 - self._anchor[0]) * 1_000_000_000 // self.clock_rate
