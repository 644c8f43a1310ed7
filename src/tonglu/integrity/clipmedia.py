"""The playable MP4 of a clip, one per source, made with PyAV from the master segments.

- Audio (Opus, AAC) and H.264 video are stream-copied: the packets are the masters' own, only
  re-timed. Copied video starts at the keyframe that opens the first segment of the range (segments
  are cut at keyframes), so it may begin up to one segment before `from`; it ends at `to`.
- Video that MP4 cannot carry as is (VP8) is decoded and re-encoded to H.264 (libx264, preset
  ultrafast: a viewing copy, made fast), exactly from `from` to `to`; the clip's README says so.
- Every packet sits at its wall-clock position (`wall_first_ns` of its segment plus its offset inside
  the segment), relative to the MP4's origin: a gap stays as long as it was (the picture holds), it
  is never closed up, and the tracks stay in sync.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from tonglu.integrity.errors import ToolError

NS = 1_000_000_000
COPY_VIDEO = frozenset({"h264"})
VIDEO_TB = Fraction(1, 90_000)
ENCODE_TB = Fraction(1, 1000)
AUDIO_TB = Fraction(1, 48_000)
X264_PRESET = "ultrafast"


@dataclass(frozen=True)
class SegFile:
    path: Path
    wall_first_ns: int
    wall_last_ns: int
    codec: str
    fetched: Future[Path] | None = None  # still being fetched: `file()` waits for it

    def file(self) -> str:
        return str(self.fetched.result() if self.fetched is not None else self.path)


@dataclass(frozen=True)
class MediaResult:
    name: str
    path: Path
    source: str
    video: str  # "copy" | "h264 (re-encoded from vp8)" | "none"
    audio_tracks: int
    origin_ns: int  # wall clock of the MP4's position 0
    duration_ns: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "video": self.video,
            "audio_tracks": self.audio_tracks,
            "origin_ns": self.origin_ns,
            "duration_ns": self.duration_ns,
        }


def _tdiv(a: int, b: int) -> int:
    """int(Fraction(a, b)) for b > 0 (truncated toward zero), without building a Fraction: the
    per-packet arithmetic of a 10-minute clip is ~10^5 of these."""
    q = abs(a) // b
    return q if a >= 0 else -q


def _ns(ticks: int, tb: Fraction) -> int:
    """int(ticks * tb * NS): a duration in time-base ticks as nanoseconds."""
    return _tdiv(ticks * tb.numerator * NS, tb.denominator)


def _packets(seg: SegFile, kind: str) -> Iterator[tuple[int, int, av.Packet]]:
    """(wall pts ns, wall dts ns, packet) of the first stream of `kind` in one segment file."""
    with av.open(seg.file()) as c:
        streams = [s for s in c.streams if s.type == kind]
        if not streams:
            return
        st = streams[0]
        tb = st.time_base or Fraction(1, 1000)
        base: int | None = None
        for pkt in c.demux(st):
            if pkt.size == 0 or pkt.pts is None:
                continue
            if base is None:
                base = pkt.pts
            dts = pkt.dts if pkt.dts is not None else pkt.pts
            yield seg.wall_first_ns + _ns(pkt.pts - base, tb), seg.wall_first_ns + _ns(dts - base, tb), pkt


def _frames(segs: list[SegFile], lo: int, hi: int) -> Iterator[tuple[int, av.VideoFrame]]:
    for seg in segs:
        with av.open(seg.file()) as c:
            if not c.streams.video:
                continue
            st = c.streams.video[0]
            tb = st.time_base or Fraction(1, 1000)
            base: int | None = None
            for frame in c.decode(st):
                if frame.pts is None:
                    continue
                if base is None:
                    base = frame.pts
                wall = seg.wall_first_ns + _ns(frame.pts - base, tb)
                if lo <= wall < hi:
                    yield wall, frame


def build_mp4(
    out: Path, source: str, video: list[SegFile], audios: list[list[SegFile]], from_ns: int, to_ns: int,
    *, threads: int = 0,
) -> MediaResult:
    """`threads`: x264's threads for a re-encode (0: as many as it likes; 1 when several sources are
    made at once)."""
    copy_video = bool(video) and all(s.codec in COPY_VIDEO for s in video)
    origin = min(from_ns, video[0].wall_first_ns) if copy_video else from_ns
    try:
        return _mux(out, source, video, audios, from_ns, to_ns, origin, copy_video, threads)
    except (av.FFmpegError, ValueError) as exc:
        out.unlink(missing_ok=True)
        raise ToolError(f"生成片段 MP4 失败 (PyAV could not build {out.name}: {exc})") from exc


def _mux(
    out: Path,
    source: str,
    video: list[SegFile],
    audios: list[list[SegFile]],
    from_ns: int,
    to_ns: int,
    origin: int,
    copy_video: bool,
    threads: int = 0,
) -> MediaResult:
    out.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"})
    streams: list[Any] = []
    gens: list[Iterator[tuple[int, int, Any]]] = []
    video_desc = "none"
    end = origin
    try:
        if video:
            with av.open(video[0].file()) as probe:
                template = probe.streams.video[0]
                if copy_video:
                    vs = container.add_stream_from_template(template)
                    vs.time_base = VIDEO_TB
                    video_desc = "copy"
                else:
                    ctx = template.codec_context
                    vs = container.add_stream("libx264", rate=25)
                    vs.width, vs.height = ctx.width - ctx.width % 2, ctx.height - ctx.height % 2
                    vs.pix_fmt = "yuv420p"
                    vs.codec_context.time_base = ENCODE_TB
                    vs.time_base = ENCODE_TB
                    # ultrafast: the copy is for viewing (the masters are the evidence); 3-4x the
                    # speed of veryfast at this size, a larger file
                    vs.options = {"preset": X264_PRESET, "crf": "23", "threads": str(threads)}
                    video_desc = f"h264 (re-encoded from {video[0].codec})"
            streams.append(vs)
            gens.append(
                _copy_gen(video, vs, origin, to_ns, 0) if copy_video else _encode_gen(video, vs, from_ns, to_ns)
            )
        for i, segs in enumerate(audios):
            if not segs:
                continue
            with av.open(segs[0].file()) as probe:
                aus = container.add_stream_from_template(probe.streams.audio[0])
            aus.time_base = AUDIO_TB
            streams.append(aus)
            gens.append(_copy_gen(segs, aus, origin, to_ns, i + 1))
        last_dts: dict[int, int] = {}
        for _, _, (pkt, stream, pts, dts, dur_end, tb) in heapq.merge(*gens, key=lambda x: (x[0], x[1])):
            key = id(stream)
            if dts is not None:
                if key in last_dts and dts <= last_dts[key]:
                    dts = last_dts[key] + 1
                    pts = max(pts, dts)
                last_dts[key] = dts
                pkt.dts = dts
            pkt.pts = pts
            pkt.time_base = tb
            pkt.stream = stream
            container.mux(pkt)
            end = max(end, dur_end)
        if video and not copy_video:
            for pkt in streams[0].encode(None):
                container.mux(pkt)
    finally:
        container.close()
    with av.open(str(out)) as check:
        duration = int((check.duration or 0) * NS / av.time_base)
    return MediaResult(
        out.name, out, source, video_desc, sum(1 for a in audios if a), origin, duration or max(0, end - origin)
    )


def _copy_gen(
    segs: list[SegFile], stream: Any, origin: int, to_ns: int, order: int
) -> Iterator[tuple[int, int, tuple[Any, Any, int, int | None, int, Fraction]]]:
    kind = "video" if order == 0 else "audio"
    tb = VIDEO_TB if kind == "video" else AUDIO_TB
    for seg in segs:
        for wall_pts, wall_dts, pkt in _packets(seg, kind):
            if wall_pts >= to_ns:
                return
            if wall_pts < origin:
                continue
            pts = _tdiv((wall_pts - origin) * tb.denominator, NS * tb.numerator)
            dts = _tdiv((wall_dts - origin) * tb.denominator, NS * tb.numerator)
            dur = _ns(pkt.duration, pkt.time_base) if pkt.duration and pkt.time_base else 0
            yield wall_dts, order, (pkt, stream, pts, dts, wall_pts + dur, tb)


def _encode_gen(
    segs: list[SegFile], stream: Any, from_ns: int, to_ns: int
) -> Iterator[tuple[int, int, tuple[Any, Any, int, int | None, int, Fraction]]]:
    w, h = stream.width, stream.height
    last = -1
    for wall, frame in _frames(segs, from_ns, to_ns):
        pts = (wall - from_ns) // 1_000_000
        if pts <= last:
            continue
        last = pts
        f = frame.reformat(width=w, height=h, format="yuv420p")
        f.pts = pts
        f.time_base = ENCODE_TB
        for pkt in stream.encode(f):
            p_dts = pkt.dts if pkt.dts is not None else pkt.pts
            wall_dts = from_ns + int(p_dts * ENCODE_TB * NS)
            yield wall_dts, 0, (pkt, stream, pkt.pts, pkt.dts, wall + 40_000_000, ENCODE_TB)
