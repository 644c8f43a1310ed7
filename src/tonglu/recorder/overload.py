"""Recorder overload, sans I/O: what to do with a frame when the track's bounded queue is full.

The event loop hands each assembled frame to the track's pipeline thread through a bounded queue
(`seam.DropQueue`). When the pipeline falls behind (slow disk, saturated core) the queue fills up
and frames must be dropped: the network delivered them, we lost them. Each such stretch is one
`recorder_overload` gap with exact bounds:

- audio: the frames that did not fit are dropped; the gap runs from the first dropped frame to the
  next frame that fits (every Opus frame decodes on its own);
- video: once a frame was dropped, every later frame depends on it, so frames keep being dropped
  until a keyframe arrives *and* fits; a keyframe is wanted at once and again every second of
  media while it does not come. The gap runs from the first dropped frame to that keyframe, so
  the recording holds no frame that cannot be decoded.

Fed RTP times (unwrapped); the adapter maps them to wall clock and writes the gap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OverloadGap:
    rtp_start: int  # first dropped frame
    rtp_end: int  # the frame that resumed recording (or the end of the last dropped one)
    frames: int  # frames dropped


@dataclass(frozen=True)
class OverloadDecision:
    put: bool  # hand the frame to the pipeline
    want_keyframe: bool = False
    gap: OverloadGap | None = None  # a stretch of dropped frames just ended


_PUT = OverloadDecision(put=True)  # the common case, allocated once (the decision is immutable)


class OverloadTracker:
    def __init__(self, kind: str, clock_rate: int) -> None:
        self.kind = kind
        self.retry = clock_rate  # re-ask for a keyframe every second of media
        self.dropped = 0  # total frames dropped, all stretches
        self._first: int | None = None
        self._end = 0
        self._count = 0
        self._asked_at = 0

    @property
    def dropping(self) -> bool:
        return self._first is not None

    def on_frame(self, rtp: int, duration: int, keyframe: bool, room: bool) -> OverloadDecision:
        """`room`: the queue can take one more item now."""
        if self._first is None:
            if room:
                return _PUT
            self._first, self._count, self._end, self._asked_at = rtp, 0, rtp, rtp
            return self._drop(rtp, duration, want=self.kind == "video")
        if room and (self.kind != "video" or keyframe):
            gap = OverloadGap(self._first, max(rtp, self._first), self._count)
            self._first = None
            return OverloadDecision(put=True, gap=gap)
        want = self.kind == "video" and (rtp - self._asked_at >= self.retry or rtp < self._asked_at)
        if want:
            self._asked_at = rtp
        return self._drop(rtp, duration, want)

    def _drop(self, rtp: int, duration: int, want: bool) -> OverloadDecision:
        self._count += 1
        self.dropped += 1
        self._end = max(self._end, rtp + duration)
        return OverloadDecision(put=False, want_keyframe=want)

    def flush(self) -> OverloadGap | None:
        """The track ends while frames are being dropped: the gap ends after the last dropped one."""
        if self._first is None:
            return None
        gap = OverloadGap(self._first, max(self._end, self._first), self._count)
        self._first = None
        return gap
