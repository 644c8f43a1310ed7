"""Where to cut a track into segments, sans I/O: fed one frame at a time (RTP time, keyframe, size).

Video: a segment starts on a keyframe; it is cut on the first keyframe once it is at least
`segment_seconds - pli_lead_s` long, or at once on a keyframe with a new resolution. A PLI is
wanted `pli_lead_s` before the target length, repeated every second until a keyframe comes.
Frames before the first keyframe cannot be decoded and are not recorded (a PLI is sent at once).
Audio: any frame starts a segment; cut at the target length.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    cut: bool = False  # seal the open segment (if any) and start a new one with this frame
    drop: bool = False  # the frame cannot start a segment (video before a keyframe)
    want_keyframe: bool = False
    reason: str = ""


class Segmenter:
    def __init__(self, kind: str, clock_rate: int, segment_seconds: float, pli_lead_s: float = 0.5) -> None:
        self.kind = kind
        self.clock_rate = clock_rate
        self.target = int(segment_seconds * clock_rate)
        self.lead = int(min(pli_lead_s, segment_seconds / 2) * clock_rate)
        self.retry = clock_rate  # re-ask for a keyframe every second of media
        self.start: int | None = None
        self.size: tuple[int, int] | None = None
        self._asked_at: int | None = None

    @property
    def open(self) -> bool:
        return self.start is not None

    def reset(self) -> None:
        """The open segment was sealed from outside (peer gone, stop)."""
        self.start = None
        self.size = None
        self._asked_at = None

    def _ask(self, rtp: int) -> bool:
        if self._asked_at is None or rtp - self._asked_at >= self.retry or rtp < self._asked_at:
            self._asked_at = rtp
            return True
        return False

    def on_frame(self, rtp: int, keyframe: bool, size: tuple[int, int] | None = None) -> Decision:
        if self.kind == "audio":
            if self.start is None or rtp - self.start >= self.target or rtp < self.start:
                first = self.start is None
                self.start = rtp
                return Decision(cut=True, reason="first" if first else "length")
            return Decision()
        if self.start is None:
            if not keyframe:
                return Decision(drop=True, want_keyframe=self._ask(rtp), reason="waiting for keyframe")
            self.start, self.size, self._asked_at = rtp, size, None
            return Decision(cut=True, reason="first")
        age = rtp - self.start
        if keyframe:
            if size is not None and self.size is not None and size != self.size:
                self.start, self.size, self._asked_at = rtp, size, None
                return Decision(cut=True, reason="resolution")
            if age >= self.target - self.lead or age < 0:
                self.start, self.size, self._asked_at = rtp, size or self.size, None
                return Decision(cut=True, reason="length")
            return Decision()
        if age >= self.target - self.lead:
            return Decision(want_keyframe=self._ask(rtp))
        return Decision()
