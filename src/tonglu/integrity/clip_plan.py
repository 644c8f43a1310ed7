"""Which evidence a clip of [from, to) holds: pure selection over a session's manifest.

Times on the command line and in the API (`parse_time`):
- ISO-8601 wall time: ``2024-05-01T14:10:00+08:00``, ``2024-05-01T06:10:00Z``; without an offset it
  is Beijing time (Asia/Shanghai, UTC+8), the time people read on screen and in the picture;
- an offset from the session start (its ``session_start`` entry, i.e. position 0 of the working
  copy): ``[+]H:MM:SS[.fff]`` (``02:10:00`` = 2 h 10 min in). ``02:10`` alone is refused as
  ambiguous (2 h 10 min or 2 min 10 s?): a court's "minutes 02:10-02:25" must not be misread.

The plan (`plan_clip`) holds every segment of the chosen sources' tracks that overlaps the range
(whole segments), every entry from the first such segment's to the last one's (hash-chained, so no
gap recorded meanwhile can be left out), the ``session_start`` entry (case, room), and every gap of
those tracks that overlaps the range. All of them must be covered by the checkpoint the proofs use:
the latest one (the final one once the session is stopped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.manifest import GapRecord, ManifestEntry, SegmentRecord
from tonglu.evidence.verify_core import CLIP_SEAM_TOLERANCE_NS
from tonglu.integrity.errors import ClipNotSigned, InvalidClipRange
from tonglu.integrity.timefmt import NS, iso_utc, local_text

BEIJING = timezone(timedelta(hours=8))
_OFFSET = re.compile(r"^\+?(\d{1,3}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?$")
_AMBIGUOUS = re.compile(r"^\+?\d{1,3}:\d{2}(?:\.\d+)?$")


def parse_time(text: str, session_start_ns: int) -> int:
    """UTC nanoseconds of an ISO-8601 wall time or an offset from the session start."""
    value = text.strip()
    m = _OFFSET.match(value)
    if m:
        hours, minutes, seconds, frac = m.groups()
        if int(seconds) >= 60 or int(minutes) >= 60:
            raise InvalidClipRange(f"时间偏移无效 bad offset {text!r}: minutes and seconds must be below 60")
        whole = int(hours) * 3600 + int(minutes) * 60 + int(seconds)
        return session_start_ns + whole * NS + int((frac or "0").ljust(9, "0"))
    if _AMBIGUOUS.match(value):
        raise InvalidClipRange(
            f"时间偏移有歧义 ambiguous offset {text!r}: write hours, minutes and seconds — 02:10:00 for 2 h 10 min, "
            "00:02:10 for 2 min 10 s"
        )
    iso = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError as exc:
        raise InvalidClipRange(
            f"时间格式无效 bad time {text!r}: use ISO-8601 (2024-05-01T14:10:00+08:00; without an offset it is "
            "Beijing time) or an offset from the session start (02:10:00)"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=BEIJING)
    return int(dt.replace(microsecond=0).timestamp()) * NS + dt.microsecond * 1000


@dataclass(frozen=True)
class ClipSegment:
    seq: int
    rec: SegmentRecord


@dataclass(frozen=True)
class ClipPlan:
    session: str
    from_ns: int
    to_ns: int
    sources: list[str]
    tracks: list[str]  # "source/track", sorted
    segments: list[ClipSegment]  # in (track, index) order
    gaps: list[tuple[int, GapRecord]]
    entry_seqs: list[int]  # every entry the clip holds, sorted
    checkpoint_ordinal: int
    checkpoint: Checkpoint


def _holes(lo: int, hi: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    cursor = lo
    for first, last in sorted(spans):
        if first > cursor + CLIP_SEAM_TOLERANCE_NS:
            out.append((cursor, first))
        cursor = max(cursor, last)
    if cursor + CLIP_SEAM_TOLERANCE_NS < hi:
        out.append((cursor, hi))
    return out


def _covered(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return not _holes(start, end, spans)


def plan_clip(
    session: str,
    entries: list[ManifestEntry],
    checkpoints: list[Checkpoint],
    from_ns: int,
    to_ns: int,
    sources: list[str] | None = None,
) -> ClipPlan:
    if to_ns <= from_ns:
        raise InvalidClipRange(f"时间段为空 the range ends ({iso_utc(to_ns)}) before it starts ({iso_utc(from_ns)})")
    # Only the segments of the range are parsed into records: a 24 h session has ~10^5 entries.
    gaps: list[tuple[int, GapRecord]] = []
    start_seq: int | None = None
    known: dict[str, None] = {}
    seg_entries: list[ManifestEntry] = []
    seg_sources: set[str] = set()
    for e in entries:
        if e.kind == "segment":
            seg_entries.append(e)
            known.setdefault(str(e.body.get("source")))
            seg_sources.add(str(e.body.get("source")))
        elif e.kind == "session_start" and start_seq is None:
            start_seq = e.seq
        elif e.kind == "gap":
            gaps.append((e.seq, GapRecord.from_body(dict(e.body))))
    # A source that never sent media in the range but has a gap there (e.g. a camera that never
    # connected: `not_connected`) is part of the clip too: its tracks are claimed, covered by the gap.
    gap_tracks = {f"{g.source}/{g.track}" for _, g in gaps if g.start_ns < to_ns and g.end_ns > from_ns}
    for _, g in gaps:
        known.setdefault(g.source)
    in_range = {t.split("/", 1)[0] for t in gap_tracks}
    chosen = list(dict.fromkeys(sources)) if sources else [s for s in known if s in in_range or s in seg_sources]
    unknown = [s for s in chosen if s not in known]
    if unknown:
        raise InvalidClipRange(
            f"会话中没有这些信号源 no media from source(s) {', '.join(unknown)} in {session} "
            f"(sources: {', '.join(known) or 'none'})"
        )
    if not chosen:
        raise InvalidClipRange(f"会话 {session} 没有任何录像 the session has no segments")
    if not sources and not seg_sources & set(chosen):
        raise InvalidClipRange(f"会话 {session} 在此时间段没有任何录像 no media at all in the range")
    wanted = set(chosen)
    tracks_set: set[str] = set()
    picked: list[ClipSegment] = []
    for e in seg_entries:
        b = e.body
        if b.get("source") not in wanted:
            continue
        tracks_set.add(f"{b.get('source')}/{b.get('track')}")
        first, last = b.get("wall_first_ns"), b.get("wall_last_ns")
        if isinstance(first, int) and isinstance(last, int) and first < to_ns and last > from_ns:
            picked.append(ClipSegment(e.seq, SegmentRecord.from_body(dict(b))))
    tracks_set |= {t for t in gap_tracks if t.split("/", 1)[0] in wanted}
    tracks = sorted(tracks_set)
    picked.sort(key=lambda s: (s.rec.track_id, s.rec.index, s.seq))
    in_gaps = [
        (seq, g) for seq, g in gaps if f"{g.source}/{g.track}" in tracks and g.start_ns < to_ns and g.end_ns > from_ns
    ]
    for track in tracks:
        spans = [(s.rec.wall_first_ns, s.rec.wall_last_ns) for s in picked if s.rec.track_id == track]
        gap_spans = [(g.start_ns, g.end_ns) for _, g in in_gaps if f"{g.source}/{g.track}" == track]
        for a, z in _holes(from_ns, to_ns, spans):
            if not _covered(a, z, gap_spans):
                raise InvalidClipRange(
                    f"轨道 {track} 在 {local_text(a)} 至 {local_text(z)}（北京时间）没有录像，也没有间断记录："
                    f"请选择录制范围内的时间段 (track {track} has no media from {iso_utc(a)} to {iso_utc(z)} and "
                    "no gap entry covers it: choose a range inside the recording)"
                )
    if not checkpoints:
        raise ClipNotSigned(f"会话 {session} 还没有签名检查点 no signed checkpoint yet; try again in a few minutes")
    ordinal = len(checkpoints) - 1
    cp = checkpoints[ordinal]
    seqs = {s.seq for s in picked} | {seq for seq, _ in in_gaps}
    if start_seq is not None:
        seqs.add(start_seq)
    if picked:
        seqs |= set(range(min(s.seq for s in picked), max(s.seq for s in picked) + 1))
    unsigned = sorted(s for s in seqs if s >= cp.tree_size)
    if unsigned:
        raise ClipNotSigned(
            f"时间段末尾尚未被签名检查点覆盖，请在下一个检查点后重试 (entries from {unsigned[0]} on are not yet "
            "covered "
            f"by a signed checkpoint, which covers {cp.tree_size}; try again after the next checkpoint)"
        )
    return ClipPlan(session, from_ns, to_ns, chosen, tracks, picked, in_gaps, sorted(seqs), ordinal, cp)
