"""The playback plan from the ledger's entry index (issue 13: a 24 h session's first playlist fast).

`plan_playback` (playback_plan.py) parses every manifest entry: 172,800 of them for a 24 h
two-camera session, seconds before the first frame. Here the same plan is made from the entry
index (`evidence/entryindex.py`: one fixed-size record per entry, read as a numpy array): segment
rows come from the index (seq, index, wall times, track), only the other entries (session start and
stop, gaps, markers, breaks, participants: a handful) and one segment per track (its codec and
container) are parsed from the ledger's own lines. The result is the same playlist as
`plan_playback` (a test compares them); `window_json` gives the segments and gaps of one time
window, which is what the page's player fetches around the playhead.

A served segment's key, size and SHA-256 are always read from its ledger line (`segment`), never
from the index; the index only says where that line is, and the seq in the line must match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tonglu.evidence import entryindex
from tonglu.evidence.errors import ManifestError
from tonglu.evidence.manifest import ManifestEntry, SegmentRecord
from tonglu.integrity.playback_plan import (
    MS,
    SEAM_TOLERANCE_NS,
    PlaybackPlan,
    PlayGap,
    PlaySegment,
    PlayTrack,
    m3u8_text,
    merge_gaps,
    playlist_annotations,
    session_bounds,
)
from tonglu.integrity.session import build_view
from tonglu.integrity.timefmt import iso_utc

DTYPE = np.dtype([
    ("seq", "<u8"), ("offset", "<u8"), ("length", "<u4"), ("kind", "u1"), ("pad", "V3"),
    ("index", "<i8"), ("start_ns", "<i8"), ("end_ns", "<i8"), ("track", "S48"),
])
assert DTYPE.itemsize == entryindex.SIZE

I64 = npt.NDArray[np.int64]


class IndexOutOfStep(ManifestError):
    """The entry index does not describe the ledger it sits beside (rebuild it and plan again)."""


@dataclass
class _Lane:
    meta: PlayTrack  # source, track, media, codec, container, gaps (segments left empty)
    seq: I64
    start_ns: I64
    end_ns: I64


@dataclass
class IndexedPlan:
    ledger_dir: Path
    records: npt.NDArray[Any]
    skeleton: PlaybackPlan  # everything but the segment rows
    lanes: list[_Lane] = field(default_factory=list)

    @property
    def entries(self) -> int:
        return self.skeleton.entries

    @property
    def t0_ns(self) -> int:
        return self.skeleton.t0_ns

    def _rows(self, lane: _Lane, lo_ns: int | None = None, hi_ns: int | None = None) -> list[list[Any]]:
        seq, a, b = lane.seq, lane.start_ns, lane.end_ns
        if lo_ns is not None and hi_ns is not None:
            keep = (b > lo_ns) & (a < hi_ns)
            seq, a, b = seq[keep], a[keep], b[keep]
        da, db = a - self.t0_ns, b - self.t0_ns
        if not (np.any(da % MS) or np.any(db % MS)):
            return np.stack([seq, da // MS, db // MS], axis=1).tolist()
        return [[q, _ms(x), _ms(y)] for q, x, y in zip(seq.tolist(), da.tolist(), db.tolist(), strict=True)]

    def to_json(self, base_url: str, from_ms: int | None = None, to_ms: int | None = None) -> dict[str, Any]:
        """`PlaybackPlan.to_json`; with a window, each track's segments only those overlapping
        [from_ms, to_ms) (the gaps, markers and breaks stay the whole session's: the timeline)."""
        doc = self.skeleton.to_json(base_url)
        lo, hi = self._window_ns(from_ms, to_ms)
        for t, lane in zip(doc["tracks"], self.lanes, strict=True):
            t["segments"] = self._rows(lane, lo, hi)
            t["segments_total"] = len(lane.seq)
        if from_ms is not None and to_ms is not None:
            doc["window"] = {"from_ms": from_ms, "to_ms": to_ms}
        return doc

    def window_json(self, from_ms: int, to_ms: int) -> dict[str, Any]:
        """The segments and gaps of every track overlapping [from_ms, to_ms) (ms from the session start)."""
        lo, hi = self._window_ns(from_ms, to_ms)
        assert lo is not None and hi is not None
        tracks = []
        for lane in self.lanes:
            t = lane.meta
            tracks.append({
                "source": t.source,
                "track": t.track,
                "segments": self._rows(lane, lo, hi),
                "gaps": [
                    {"start_ms": self.skeleton._ms(g.start_ns), "end_ms": self.skeleton._ms(g.end_ns),
                     "start": iso_utc(g.start_ns), "end": iso_utc(g.end_ns), "reason": g.reason, "detail": g.detail}
                    for g in t.gaps if g.end_ns > lo and g.start_ns < hi
                ],
            })
        return {"session": self.skeleton.session, "entries": self.entries, "recording": self.skeleton.recording,
                "duration_ms": self.skeleton._ms(self.skeleton.t1_ns), "from_ms": from_ms, "to_ms": to_ms,
                "tracks": tracks}

    def _window_ns(self, from_ms: int | None, to_ms: int | None) -> tuple[int | None, int | None]:
        if from_ms is None or to_ms is None:
            return None, None
        return self.t0_ns + from_ms * MS, self.t0_ns + to_ms * MS

    def m3u8(self, source: str, track: str, base_url: str) -> str:
        lane = next((ln for ln in self.lanes if ln.meta.source == source and ln.meta.track == track), None)
        if lane is None:
            raise KeyError(f"{source}/{track}")
        rows = list(zip(lane.seq.tolist(), lane.start_ns.tolist(), lane.end_ns.tolist(), strict=True))
        return m3u8_text(self.skeleton.session, self.skeleton.recording, lane.meta, rows, base_url)

    def entry(self, seq: int) -> ManifestEntry | None:
        """Entry `seq`, parsed from the ledger line the index points at (its seq checked)."""
        if not 0 <= seq < len(self.records):
            return None
        r = self.records[seq]
        try:
            return entryindex.entry_at(self.ledger_dir, seq, int(r["offset"]), int(r["length"]))
        except ManifestError as exc:
            raise IndexOutOfStep(str(exc)) from exc

    def segment(self, seq: int) -> PlaySegment | None:
        """The segment entry `seq` as served: key, size and SHA-256 from its ledger line."""
        e = self.entry(seq)
        if e is None or e.kind != "segment":
            return None
        try:
            r = SegmentRecord.from_body(dict(e.body))
        except ManifestError:
            return None
        return PlaySegment(seq, r.index, r.key, r.wall_first_ns, r.wall_last_ns, r.sha256, r.bytes, r.codec,
                           r.container)


def _ms(d: int) -> float | int:
    return d // MS if d % MS == 0 else round(d / MS, 3)


def load_records(data: bytes) -> npt.NDArray[Any]:
    """The index bytes as a record array; `IndexOutOfStep` unless record i is entry i, in file order."""
    records = np.frombuffer(data, dtype=DTYPE)
    n = len(records)
    if n and (np.any(records["seq"] != np.arange(n, dtype=np.uint64))
              or np.any(np.diff(records["offset"].astype(np.int64)) <= 0)):
        raise IndexOutOfStep("entry index records are out of order")
    return records


def plan_from_index(session: str, ledger_dir: Path, data: bytes) -> IndexedPlan:
    """The playback plan of `session` from its entry index bytes (`Ledger.entry_index`)."""
    records = load_records(data)
    n = len(records)
    is_seg = records["kind"] == entryindex.SEGMENT
    other_rows = np.flatnonzero(~is_seg)
    plan = IndexedPlan(ledger_dir, records, PlaybackPlan(session, 0, 0, True, n, [], [], [], []))
    others = [plan.entry(int(i)) for i in other_rows]
    view = build_view(session, [e for e in others if e is not None])
    view.entries_count = n

    # segment rows per track: from the index, plus segments the index left to the ledger (long names)
    column = records["track"]  # a view: no copy of 10^5 labels
    per_track: dict[str, list[I64]] = {}
    rest = is_seg.copy()
    while rest.any():  # one pass per distinct track (a handful): no sort of 10^5 strings
        label = column[int(np.argmax(rest))]
        same = (column == label) & is_seg
        rows = np.flatnonzero(same)
        rest &= ~same
        per_track[bytes(label).decode("utf-8")] = [
            rows.astype(np.int64), records["index"][rows], records["start_ns"][rows], records["end_ns"][rows]
        ]
    for s in view.segments:
        extra = [np.array([v], dtype=np.int64) for v in (s.seq, s.rec.index, s.rec.wall_first_ns, s.rec.wall_last_ns)]
        have = per_track.get(s.track_id)
        per_track[s.track_id] = extra if have is None else [np.concatenate([a, b]) for a, b in zip(have, extra,
                                                                                                      strict=True)]
    for name, (seq, index, a, b) in per_track.items():
        order = np.lexsort((seq, index))
        per_track[name] = [seq[order], index[order], a[order], b[order]]

    bounds = None
    if per_track:
        bounds = (min(int(v[2].min()) for v in per_track.values()), max(int(v[3].max()) for v in per_track.values()))
    t0, t1 = session_bounds(view, bounds, None)

    # sources: the expected ones, then others in the order their first segment (or gap) was recorded
    sources = list(view.expected_sources)
    first_seq: dict[str, int] = {}
    for name, v in per_track.items():
        src = name.split("/", 1)[0]
        first_seq[src] = min(first_seq.get(src, n), int(v[0].min()))
    sources += [s for s in sorted(first_seq, key=lambda s: first_seq[s]) if s not in sources]
    sources += [g.rec.source for g in view.gaps if g.rec.source not in sources]
    sources = list(dict.fromkeys(sources))

    recorded: dict[str, list[PlayGap]] = {}
    for g in view.gaps:
        recorded.setdefault(f"{g.rec.source}/{g.rec.track}", []).append(
            PlayGap(g.rec.start_ns, g.rec.end_ns, g.rec.reason, g.rec.detail)
        )
    names = sorted(per_track) + [k for k in recorded if k not in per_track]
    order_of = {s: i for i, s in enumerate(sources)}
    names.sort(key=lambda k: (order_of.get(k.split("/", 1)[0], 1_000), k.split("/", 1)[1] != "video", k))
    tracks: list[PlayTrack] = []
    for name in names:
        source, track = name.split("/", 1)
        empty = np.zeros(0, dtype=np.int64)
        seq, _index, a, b = per_track.get(name, [empty, empty, empty, empty])
        first = _record(plan, int(seq[0])) if len(seq) else None
        media = first.media if first else ("audio" if track == "audio" else "video")
        pt = PlayTrack(source, track, media, first.codec if first else "", first.container if first else "")
        holes: list[PlayGap] = []
        if len(seq):
            # cursor before segment i: the furthest end so far (from t0); a jump past it is a hole
            cursor = np.maximum.accumulate(np.concatenate([np.array([t0], dtype=np.int64), b]))
            for i in np.flatnonzero(a - cursor[:-1] > SEAM_TOLERANCE_NS).tolist():
                holes.append(PlayGap(int(cursor[i]), int(a[i]), "no_media"))
            last = int(cursor[-1])
        else:
            last = t0
        if t1 - last > SEAM_TOLERANCE_NS:
            holes.append(PlayGap(last, t1, "no_media"))
        pt.gaps = merge_gaps(holes + [g for g in recorded.get(name, []) if g.end_ns > g.start_ns])
        tracks.append(pt)
        plan.lanes.append(_Lane(pt, seq, a, b))
    markers, breaks, participants = playlist_annotations(view)
    plan.skeleton = PlaybackPlan(session, t0, t1, view.recording, n, tracks, markers, breaks, list(view.problems),
                                 participants)
    return plan


def _record(plan: IndexedPlan, seq: int) -> SegmentRecord:
    e = plan.entry(seq)
    if e is None or e.kind != "segment":
        raise IndexOutOfStep(f"entry {seq} is not the segment the entry index says")
    return SegmentRecord.from_body(dict(e.body))
