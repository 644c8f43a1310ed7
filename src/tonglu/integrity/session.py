"""A session as the integrity review sees it: its manifest entries sorted into typed facts.

Sans-I/O: built from `ManifestEntry` objects only. Malformed annotation bodies are kept out of the
typed views (and reported by `problems`) rather than crashing the review of a whole session.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tonglu.evidence.errors import ManifestError
from tonglu.evidence.manifest import GapRecord, ManifestEntry, SegmentRecord


@dataclass(frozen=True)
class Seg:
    """A segment entry with its manifest position."""

    seq: int
    rec: SegmentRecord

    @property
    def track_id(self) -> str:
        return self.rec.track_id


@dataclass(frozen=True)
class Gap:
    seq: int
    rec: GapRecord


@dataclass(frozen=True)
class Annotation:
    seq: int
    kind: str
    time_ns: int
    body: dict[str, Any]


@dataclass(frozen=True)
class Break:
    break_id: str
    reason_code: str
    start_ns: int
    end_ns: int | None
    text: str
    approver: str
    by: str


@dataclass(frozen=True)
class ExplanationRec:
    seq: int
    time_ns: int
    finding_id: str
    reason_code: str
    text: str
    approver: str
    by: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time_ns": self.time_ns,
            "finding_id": self.finding_id,
            "reason_code": self.reason_code,
            "text": self.text,
            "approver": self.approver,
            "by": self.by,
        }


@dataclass
class SessionView:
    session: str
    entries_count: int
    start_ns: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    stop_ns: int | None = None
    stop: dict[str, Any] | None = None
    segments: list[Seg] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    breaks: list[Break] = field(default_factory=list)
    markers: list[Annotation] = field(default_factory=list)
    participants: list[Annotation] = field(default_factory=list)
    consultations: list[Annotation] = field(default_factory=list)  # lawyer consultation started/ended
    custody: list[Annotation] = field(default_factory=list)
    record_times: Annotation | None = None
    explanations: list[ExplanationRec] = field(default_factory=list)
    transcripts: list[Annotation] = field(default_factory=list)
    alerts: list[Annotation] = field(default_factory=list)  # risk rule alerts (integrity.risk)
    alert_acks: list[Annotation] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def recording(self) -> bool:
        return self.stop_ns is None

    @property
    def expected_sources(self) -> dict[str, dict[str, Any]]:
        sources = self.facts.get("sources")
        if isinstance(sources, dict):
            return {str(k): (v if isinstance(v, dict) else {}) for k, v in sources.items()}
        return {}

    def tracks(self) -> dict[str, list[Seg]]:
        """Segments per `source/track`, in index order."""
        out: dict[str, list[Seg]] = defaultdict(list)
        for seg in self.segments:
            out[seg.track_id].append(seg)
        for segs in out.values():
            segs.sort(key=lambda s: (s.rec.index, s.seq))
        return dict(sorted(out.items()))

    def sources(self) -> list[str]:
        """Expected sources first (in declared order), then any other source that sent media."""
        names = list(self.expected_sources)
        for seg in self.segments:
            if seg.rec.source not in names:
                names.append(seg.rec.source)
        for gap in self.gaps:
            if gap.rec.source not in names:
                names.append(gap.rec.source)
        return names

    def media_bounds(self) -> tuple[int, int] | None:
        if not self.segments:
            return None
        return (
            min(s.rec.wall_first_ns for s in self.segments),
            max(s.rec.wall_last_ns for s in self.segments),
        )

    def explanations_for(self, finding_id: str) -> list[ExplanationRec]:
        return [e for e in self.explanations if e.finding_id == finding_id]

    def by_key(self) -> dict[str, Seg]:
        return {s.rec.key: s for s in self.segments}


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""


def build_view(session: str, entries: Sequence[ManifestEntry]) -> SessionView:
    view = SessionView(session=session, entries_count=len(entries))
    open_breaks: dict[str, dict[str, Any]] = {}
    closed: dict[str, int | None] = {}
    for e in entries:
        body = e.body
        try:
            if e.kind == "session_start":
                if view.start_ns is None:
                    view.start_ns = e.time_ns
                    view.facts = dict(body)
            elif e.kind == "session_stop":
                view.stop_ns = e.time_ns
                view.stop = dict(body)
            elif e.kind == "segment":
                view.segments.append(Seg(e.seq, SegmentRecord.from_body(dict(body))))
            elif e.kind == "gap":
                view.gaps.append(Gap(e.seq, GapRecord.from_body(dict(body))))
            elif e.kind == "marker":
                view.markers.append(Annotation(e.seq, e.kind, e.time_ns, dict(body)))
            elif e.kind == "participant":
                view.participants.append(Annotation(e.seq, e.kind, e.time_ns, dict(body)))
            elif e.kind == "consultation":
                view.consultations.append(Annotation(e.seq, e.kind, e.time_ns, dict(body)))
            elif e.kind == "custody":
                view.custody.append(Annotation(e.seq, e.kind, e.time_ns, dict(body)))
            elif e.kind == "record_times":
                view.record_times = Annotation(e.seq, e.kind, e.time_ns, dict(body))
            elif e.kind == "transcript":
                view.transcripts.append(Annotation(e.seq, e.kind, e.time_ns, dict(body)))
            elif e.kind == "alert":
                view.alerts.append(Annotation(e.seq, e.kind, e.time_ns, dict(body)))
            elif e.kind == "alert_ack":
                view.alert_acks.append(Annotation(e.seq, e.kind, e.time_ns, dict(body)))
            elif e.kind == "explanation":
                view.explanations.append(
                    ExplanationRec(
                        e.seq,
                        e.time_ns,
                        _str(body, "finding_id"),
                        _str(body, "reason_code"),
                        _str(body, "text"),
                        _str(body, "approver"),
                        _str(body, "by"),
                    )
                )
            elif e.kind == "break":
                bid = _str(body, "break_id") or f"seq{e.seq}"
                if bid in open_breaks:
                    closed[bid] = body.get("end_ns") if isinstance(body.get("end_ns"), int) else None
                else:
                    open_breaks[bid] = dict(body)
                    if isinstance(body.get("end_ns"), int):
                        closed[bid] = body["end_ns"]
        except ManifestError as exc:
            view.problems.append(f"entry {e.seq} ({e.kind}): {exc}")
    for bid, body in open_breaks.items():
        start = body.get("start_ns")
        view.breaks.append(
            Break(
                break_id=bid,
                reason_code=_str(body, "reason_code"),
                start_ns=start if isinstance(start, int) else 0,
                end_ns=closed.get(bid),
                text=_str(body, "text"),
                approver=_str(body, "approver"),
                by=_str(body, "by"),
            )
        )
    return view
