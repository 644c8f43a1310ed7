"""Playback of a session from its master segments, without re-encoding: the plan (sans-I/O).

Decision (issue 13). The masters are WebM (VP8 video, Opus audio; one file per segment per track,
timestamps from 0 in each) and MPEG-TS for H.264 (`recorder/muxer.py`). hls.js cannot play WebM, and
re-encoding is what the review must not wait for. So:

- Per source and track the server serves a *playlist built from the manifest*: JSON for our own
  player (`PlaybackPlan.to_json`) and an HLS-style ``.m3u8`` (`PlaybackPlan.m3u8`) with
  ``EXT-X-PROGRAM-DATE-TIME`` on every segment and ``EXT-X-DISCONTINUITY`` at every gap, for external
  tools (ffmpeg/VLC read it; the H.264 playlist points at the original .ts, which is plain HLS).
- The review page plays with a small player of ours (`web/static/player.js`) on Media Source
  Extensions: Chromium plays WebM VP8/Opus in MSE natively. Whole segments are appended, each with
  ``timestampOffset`` = its manifest wall time minus the session start, so a gap stays a gap (the
  player shows a gap card there; nothing is closed up) and all sources share one clock.
- H.264 TS segments are remuxed on demand to fragmented MP4 by PyAV stream copy (no re-encode),
  because MSE takes fMP4, not TS.
- Every segment is re-hashed against its manifest entry (SHA-256 and size) before it leaves the
  server; a mismatch is refused (409 with the reason, audited) and the player shows an integrity
  error card instead of playing it.

This module only plans: from the manifest entries it lists per track the segments with their wall
times, the gaps (recorded gap entries, and any stretch of the session with no segment: both are
gaps to the reviewer), and the session's markers and breaks. Times in the JSON are milliseconds from
the session start (``t0``) plus ISO-8601 UTC for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tonglu.evidence.manifest import ManifestEntry
from tonglu.integrity.session import SessionView, build_view
from tonglu.integrity.timefmt import iso_utc

MS = 1_000_000
SEAM_TOLERANCE_NS = 250 * MS  # a hole shorter than this between segments is jitter, not a gap
MIME = {
    ("vp8", "webm"): 'video/webm; codecs="vp8"',
    ("opus", "webm"): 'audio/webm; codecs="opus"',
    ("h264", "mpegts"): 'video/mp4; codecs="avc1.42E01F"',  # served remuxed to fMP4 (stream copy)
}
SERVED_EXT = {"webm": "webm", "mpegts": "mp4"}  # what the player fetches per container
RAW_EXT = {"webm": "webm", "mpegts": "ts"}  # the master as stored (the .m3u8 points at these)


@dataclass(frozen=True)
class PlaySegment:
    seq: int  # manifest position: the segment's id in URLs
    index: int
    key: str
    start_ns: int
    end_ns: int
    sha256: str
    bytes: int
    codec: str
    container: str


@dataclass(frozen=True)
class PlayGap:
    start_ns: int
    end_ns: int
    reason: str  # a recorded gap's reason, or "no_media" for a stretch no segment covers
    detail: str = ""


@dataclass
class PlayTrack:
    source: str
    track: str
    media: str
    codec: str
    container: str
    segments: list[PlaySegment] = field(default_factory=list)
    gaps: list[PlayGap] = field(default_factory=list)

    @property
    def track_id(self) -> str:
        return f"{self.source}/{self.track}"

    @property
    def mime(self) -> str:
        return MIME.get((self.codec, self.container), f"{self.media}/{self.container}")


@dataclass(frozen=True)
class PlayMarker:
    time_ns: int
    note: str
    by: str


@dataclass(frozen=True)
class PlayBreak:
    start_ns: int
    end_ns: int | None
    reason_code: str
    text: str


@dataclass
class PlaybackPlan:
    session: str
    t0_ns: int
    t1_ns: int
    recording: bool
    entries: int
    tracks: list[PlayTrack]
    markers: list[PlayMarker]
    breaks: list[PlayBreak]
    problems: list[str]
    participants: list[dict[str, Any]] = field(default_factory=list)  # remote joined/left: at_ns, event, source, name
    _by_seq: dict[int, tuple[PlayTrack, PlaySegment]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for t in self.tracks:
            for s in t.segments:
                self._by_seq[s.seq] = (t, s)

    def segment(self, seq: int) -> tuple[PlayTrack, PlaySegment] | None:
        return self._by_seq.get(seq)

    def track(self, source: str, track: str) -> PlayTrack | None:
        return next((t for t in self.tracks if t.source == source and t.track == track), None)

    def sources(self) -> list[str]:
        return list(dict.fromkeys(t.source for t in self.tracks))

    def _ms(self, ns: int) -> float | int:
        ms = (ns - self.t0_ns) // MS
        return ms if (ns - self.t0_ns) % MS == 0 else round((ns - self.t0_ns) / MS, 3)

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The JSON playlist of every track. `base_url`: ``/api/sessions/<sid>/playback``."""
        tracks = []
        for t in self.tracks:
            ext = SERVED_EXT.get(t.container, t.container)
            tracks.append({
                "source": t.source,
                "track": t.track,
                "media": t.media,
                "codec": t.codec,
                "container": t.container,
                "mime": t.mime,
                "m3u8": f"{base_url}/hls/{t.source}/{t.track}.m3u8",
                # compact (a 24 h session has 43,200 segments per track): [seq, start_ms, end_ms];
                # the URL is url_pattern with {seq} filled in
                "url_pattern": f"{base_url}/segments/{{seq}}.{ext}",
                "segments": [[s.seq, self._ms(s.start_ns), self._ms(s.end_ns)] for s in t.segments],
                "segments_total": len(t.segments),  # all of the track's, also where `segments` is one window
                "gaps": [
                    {"start_ms": self._ms(g.start_ns), "end_ms": self._ms(g.end_ns), "start": iso_utc(g.start_ns),
                     "end": iso_utc(g.end_ns), "reason": g.reason, "detail": g.detail}
                    for g in t.gaps
                ],
            })
        return {
            "session": self.session,
            "t0_ns": str(self.t0_ns),
            "start": iso_utc(self.t0_ns),
            "end": iso_utc(self.t1_ns),
            "duration_ms": self._ms(self.t1_ns),
            "recording": self.recording,
            "entries": self.entries,
            "sources": self.sources(),
            "tracks": tracks,
            "markers": [{"at_ms": self._ms(m.time_ns), "time": iso_utc(m.time_ns), "note": m.note, "by": m.by}
                        for m in self.markers],
            "breaks": [
                {"start_ms": self._ms(b.start_ns), "end_ms": self._ms(b.end_ns if b.end_ns is not None else self.t1_ns),
                 "start": iso_utc(b.start_ns), "end": iso_utc(b.end_ns) if b.end_ns is not None else None,
                 "reason_code": b.reason_code, "text": b.text}
                for b in self.breaks
            ],
            "participants": [
                {"at_ms": self._ms(p["at_ns"]), "event": p["event"], "source": p["source"], "name": p["name"]}
                for p in self.participants
            ],
            "problems": self.problems,
        }

    def m3u8(self, source: str, track: str, base_url: str) -> str:
        """HLS-style media playlist of one track: the stored masters (re-hashed when served), their
        wall clock as EXT-X-PROGRAM-DATE-TIME, EXT-X-DISCONTINUITY wherever a gap lies between two."""
        t = self.track(source, track)
        if t is None:
            raise KeyError(f"{source}/{track}")
        rows = [(s.seq, s.start_ns, s.end_ns) for s in t.segments]
        return m3u8_text(self.session, self.recording, t, rows, base_url)


def m3u8_text(session: str, recording: bool, t: PlayTrack, rows: Sequence[tuple[int, int, int]],
              base_url: str) -> str:
    """The ``.m3u8`` of track `t` from its segments' (seq, start_ns, end_ns) rows, in order."""
    longest = max((b - a for _, a, b in rows), default=0)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{max(1, -(-longest // 1_000_000_000))}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:" + ("EVENT" if recording else "VOD"),
        "#EXT-X-DISCONTINUITY-SEQUENCE:0",
        f"## tonglu session={session} track={t.track_id} codec={t.codec} container={t.container}",
    ]
    prev_end: int | None = None
    ext = RAW_EXT.get(t.container, t.container)
    for seq, start_ns, end_ns in rows:
        if prev_end is not None:
            # every master restarts its timestamps at 0, so each boundary is a discontinuity; at
            # a gap the wall clock jumps too (EXT-X-PROGRAM-DATE-TIME says by how much)
            if start_ns - prev_end > SEAM_TOLERANCE_NS:
                lines.append(f"## gap {iso_utc(prev_end)} .. {iso_utc(start_ns)}")
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(start_ns)}")
        lines.append(f"#EXTINF:{(end_ns - start_ns) / 1e9:.3f},")
        lines.append(f"{base_url}/segments/{seq}.{ext}")
        prev_end = end_ns
    if not recording:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _pdt(ns: int) -> str:
    text = iso_utc(ns)
    return text if "." in text else text.replace("Z", ".000Z")


def merge_gaps(gaps: list[PlayGap]) -> list[PlayGap]:
    """Overlapping gaps as one (a recorded reason wins over "no_media")."""
    out: list[PlayGap] = []
    for g in sorted(gaps, key=lambda g: (g.start_ns, g.end_ns)):
        if out and g.start_ns <= out[-1].end_ns:
            last = out[-1]
            if g.end_ns > last.end_ns:
                reason = last.reason if last.reason != "no_media" else g.reason
                out[-1] = PlayGap(last.start_ns, g.end_ns, reason, last.detail or g.detail)
            elif last.reason == "no_media" and g.reason != "no_media":
                out[-1] = PlayGap(last.start_ns, last.end_ns, g.reason, g.detail)
            continue
        out.append(g)
    return out


def plan_from_view(view: SessionView, *, now_ns: int | None = None) -> PlaybackPlan:
    t0, t1 = session_bounds(view, view.media_bounds(), now_ns)
    tracks: list[PlayTrack] = []
    by_track = view.tracks()
    recorded: dict[str, list[PlayGap]] = {}
    for g in view.gaps:
        recorded.setdefault(f"{g.rec.source}/{g.rec.track}", []).append(
            PlayGap(g.rec.start_ns, g.rec.end_ns, g.rec.reason, g.rec.detail)
        )
    names = list(by_track) + [k for k in recorded if k not in by_track]
    order = {s: i for i, s in enumerate(view.sources())}
    names.sort(key=lambda k: (order.get(k.split("/", 1)[0], 1_000), k.split("/", 1)[1] != "video", k))
    for name in names:
        source, track = name.split("/", 1)
        segs = by_track.get(name, [])
        first = segs[0].rec if segs else None
        media = first.media if first else ("audio" if track == "audio" else "video")
        pt = PlayTrack(source, track, media, first.codec if first else "", first.container if first else "")
        cursor = t0
        holes: list[PlayGap] = []
        for s in segs:
            r = s.rec
            pt.segments.append(PlaySegment(s.seq, r.index, r.key, r.wall_first_ns, r.wall_last_ns, r.sha256, r.bytes,
                                           r.codec, r.container))
            if r.wall_first_ns - cursor > SEAM_TOLERANCE_NS:
                holes.append(PlayGap(cursor, r.wall_first_ns, "no_media"))
            cursor = max(cursor, r.wall_last_ns)
        if t1 - cursor > SEAM_TOLERANCE_NS:
            holes.append(PlayGap(cursor, t1, "no_media"))
        pt.gaps = merge_gaps(holes + [g for g in recorded.get(name, []) if g.end_ns > g.start_ns])
        tracks.append(pt)
    markers, breaks, participants = playlist_annotations(view)
    return PlaybackPlan(view.session, t0, t1, view.recording, view.entries_count, tracks, markers, breaks,
                        list(view.problems), participants)


def playlist_annotations(view: SessionView) -> tuple[list[PlayMarker], list[PlayBreak], list[dict[str, Any]]]:
    """The session's markers, breaks and remote participants' joins/leaves, for the playlist."""
    markers = [
        PlayMarker(m.body["time_ns"] if isinstance(m.body.get("time_ns"), int) else m.time_ns,
                   str(m.body.get("note") or ""), str(m.body.get("by") or ""))
        for m in view.markers
    ]
    breaks = [PlayBreak(b.start_ns, b.end_ns, b.reason_code, b.text) for b in view.breaks]
    participants = [
        {"at_ns": p.body["time_ns"] if isinstance(p.body.get("time_ns"), int) else p.time_ns,
         "event": str(p.body.get("event") or ""), "source": str(p.body.get("source") or ""),
         "name": str(p.body.get("name") or "")}
        for p in view.participants
    ]
    return markers, breaks, participants


def session_bounds(view: SessionView, bounds: tuple[int, int] | None, now_ns: int | None) -> tuple[int, int]:
    """t0, t1 of the playlist: session start/stop widened to the media (`bounds`: first/last wall ns)."""
    t0 = view.start_ns if view.start_ns is not None else (bounds[0] if bounds else 0)
    if view.stop_ns is not None:
        t1 = view.stop_ns
    elif bounds is not None:
        t1 = bounds[1]
    else:
        t1 = now_ns if now_ns is not None else t0
    if bounds is not None:
        t0, t1 = min(t0, bounds[0]), max(t1, bounds[1])
    return t0, t1


def plan_playback(session: str, entries: Sequence[ManifestEntry], *, now_ns: int | None = None) -> PlaybackPlan:
    return plan_from_view(build_view(session, entries), now_ns=now_ns)
