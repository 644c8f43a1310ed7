"""Video frame assembly from RTP packets, sans I/O (replaces aiortc's video jitter buffer).

aiortc's buffer waits for a lost packet until 512 newer packets pushed it out (seconds of
stalled video after every unrepaired loss) and releases one frame per arriving packet. This one
releases every complete frame at once, in sequence order, and is told by the gap detector when a
hole is final (`skip_to`): it then drops the hole and resumes at the next frame start.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _P:
    ts: int
    marker: bool
    data: bytes
    start: bool


def vp8_frame_start(payload: bytes) -> bool:
    return bool(payload) and bool(payload[0] & 0x10) and (payload[0] & 0x07) == 0


def h264_frame_start(payload: bytes) -> bool:
    if not payload:
        return False
    nal = payload[0] & 0x1F
    if nal == 28:
        return len(payload) > 1 and bool(payload[1] & 0x80)
    return True


class FrameAssembler:
    def __init__(self, max_packets: int = 4096) -> None:
        self.max_packets = max_packets
        self._packets: dict[int, _P] = {}
        self._next: int | None = None
        self._scan = 0  # packets _next.._scan of the waiting frame are known contiguous, same ts, no marker
        self._need_start = True
        self.skipped_packets = 0

    @property
    def buffered(self) -> int:
        return len(self._packets)

    def add(self, seq: int, ts: int, marker: bool, data: bytes, start: bool) -> list[tuple[int, bytes]]:
        if self._next is None:
            self._next = seq
        if seq < self._next or seq in self._packets:
            return []
        self._packets[seq] = _P(ts, marker, data, start)
        out = self._drain()
        if len(self._packets) > self.max_packets:
            out += self.skip_to(min(self._packets))
        return out

    def skip_to(self, seq: int) -> list[tuple[int, bytes]]:
        """Give up every packet before `seq` (a hole declared lost) and resume at a frame start."""
        if self._next is None or seq <= self._next:
            return []
        for s in [s for s in self._packets if s < seq]:
            del self._packets[s]
        self.skipped_packets += seq - self._next
        self._next = seq
        self._scan = 0
        self._need_start = True
        return self._drain()

    def _drain(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        pk = self._packets
        assert self._next is not None
        while True:
            if self._need_start:
                while self._next in pk and not pk[self._next].start:
                    del pk[self._next]
                    self._next += 1
                if self._next not in pk:
                    return out
                self._need_start = False
            first = pk.get(self._next)
            if first is None:
                return out
            # resume the scan where the last call stopped: a frame of k packets costs O(k), not O(k^2)
            s = self._scan if self._scan > self._next else self._next
            end = None
            while True:
                p = pk[s]
                if p.marker:
                    end = s
                    break
                n = pk.get(s + 1)
                if n is None:
                    break
                if n.ts != first.ts:
                    end = s
                    break
                s += 1
            if end is None:
                self._scan = s
                return out
            data = b"".join(pk.pop(x).data for x in range(self._next, end + 1))
            out.append((first.ts, data))
            self._next = end + 1
