"""Write encoded frames into one segment file with PyAV, without decoding (runs in a worker thread).

Containers: VP8 -> WebM, Opus -> WebM (audio only), H.264 -> MPEG-TS. WebM is written with
`flush_packets=1` and `cluster_time_limit=1000` so a kill -9 loses at most about a second.
Timestamps start at 0 in each segment, are strictly increasing in the container's time base, and
every packet carries its duration (video: up to the next frame; audio: from the Opus TOC), so a
segment's duration is exactly the media it holds and consecutive segments tile.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from pathlib import Path

import av

CONTAINER_FOR = {"vp8": "webm", "h264": "mpegts", "opus": "webm"}
CONTENT_TYPE = {"webm": "video/webm", "mpegts": "video/mp2t"}
_MS = fractions.Fraction(1, 1000)
_90K = fractions.Fraction(1, 90000)


@dataclass(frozen=True)
class WrittenSegment:
    path: Path
    rtp_first: int
    rtp_end: int  # RTP time of the end of the last frame
    frames: int


class SegmentWriter:
    def __init__(
        self, path: Path, codec: str, clock_rate: int, rtp_first: int, size: tuple[int, int] | None = None
    ) -> None:
        self.path = path
        self.codec = codec
        self.container_name = CONTAINER_FOR[codec]
        self.clock_rate = clock_rate
        self.rtp_first = rtp_first
        self.frames = 0
        self._tb = _90K if self.container_name == "mpegts" else _MS
        self._ticks = self._tb.denominator
        options = {"flush_packets": "1"}
        if self.container_name == "webm":
            options["cluster_time_limit"] = "1000"
        self._out = av.open(str(path), "w", format=self.container_name, options=options)
        if codec == "opus":
            self._stream = self._out.add_mux_stream("opus", rate=clock_rate)
        else:
            kwargs = {}
            if size:
                kwargs = {"width": size[0], "height": size[1]}
            self._stream = self._out.add_mux_stream(codec, **kwargs)
        self._stream.time_base = self._tb
        self._last_pts = -1
        self._pending: tuple[bytes, int, bool] | None = None
        self._last_duration = clock_rate // 30 if codec != "opus" else 960
        self._end = rtp_first

    def _ts(self, rtp: int) -> int:
        return (rtp - self.rtp_first) * self._ticks // self.clock_rate

    def _mux(self, data: bytes, rtp: int, keyframe: bool, duration: int) -> None:
        pts = self._ts(rtp)
        if pts <= self._last_pts:
            pts = self._last_pts + 1  # strictly increasing (Chromium repeats timestamps at 1 ms)
        dur = max(1, self._ts(rtp + duration) - self._ts(rtp))
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = self._tb
        packet.pts = packet.dts = pts
        packet.duration = dur
        packet.is_keyframe = keyframe
        self._out.mux(packet)
        self._last_pts = pts
        self.frames += 1
        self._end = max(self._end, rtp + duration)

    def write(self, data: bytes, rtp: int, keyframe: bool, duration: int | None = None) -> None:
        """Audio passes its duration; video frames are held until the next one gives theirs."""
        if duration is not None:
            self._mux(data, rtp, keyframe, duration)
            return
        if self._pending is not None:
            pdata, prtp, pkey = self._pending
            d = rtp - prtp
            if 0 < d <= self.clock_rate:
                self._last_duration = d
            else:
                d = self._last_duration
            self._mux(pdata, prtp, pkey, d)
        self._pending = (data, rtp, keyframe)

    def finish(self, next_rtp: int | None = None) -> WrittenSegment:
        if self._pending is not None:
            pdata, prtp, pkey = self._pending
            d = (next_rtp - prtp) if next_rtp is not None else 0
            if not 0 < d <= self.clock_rate:
                d = self._last_duration
            self._mux(pdata, prtp, pkey, d)
            self._pending = None
        self._out.close()
        return WrittenSegment(self.path, self.rtp_first, self._end, self.frames)

    def abort(self) -> None:
        try:
            self._out.close()
        except Exception:  # closing a broken container must not hide the first error
            pass
