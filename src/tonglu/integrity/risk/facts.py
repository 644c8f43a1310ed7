"""What the risk rules look at: one session's facts folded from its manifest entries, plus live views.

Sans-I/O and incremental: `SessionFacts.feed(entries)` takes the manifest entries in order (any
number at a time), so the web process's timer can keep one per running session and feed it only
the entries appended since the last tick. Live views (WHEP `watch_start` records of the audit
trail) are added with `add_live_view`.

Facts that can change during a session (a reason for night questioning, the appropriate adult of
a minor, the serious-case extension, an authorised viewer) are `note` entries with
``{"topic": "risk_fact", "name", "value", ...}``; the `session_start` facts count as recorded at
the session start. Interviewer presence changes are `participant` entries with
``{"role": "interviewer", "event": "joined" | "left", "name"}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tonglu.evidence.manifest import ManifestEntry
from tonglu.integrity.findings import RECORDER_GAP, finding_id
from tonglu.integrity.timefmt import parse_iso

RISK_FACT_TOPIC = "risk_fact"
# Changeable facts and the type of their value.
FACT_TYPES: dict[str, type] = {
    "night_reason": str,
    "appropriate_adult": str,
    "serious_case": bool,
    "suspect_age": int,
    "authorised_viewer": str,
    "detained_at_iso": str,
}
# Media intervals of one source closer than this are merged (a segment boundary is not silence).
MERGE_NS = 1_000_000_000


@dataclass(frozen=True)
class BreakSpan:
    break_id: str
    start_ns: int
    end_ns: int | None  # None: still on break


@dataclass(frozen=True)
class GapFact:
    seq: int
    time_ns: int  # when the gap entry was written
    source: str
    track: str
    reason: str
    start_ns: int
    end_ns: int
    finding_id: str


@dataclass(frozen=True)
class PresenceEvent:
    seq: int
    time_ns: int
    event: str  # "joined" | "left"
    name: str


@dataclass(frozen=True)
class LiveView:
    viewer_id: str
    user: str
    role: str
    source: str
    time_ns: int


@dataclass
class SessionFacts:
    session: str
    start_ns: int | None = None
    stop_ns: int | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # the session_start body
    changes: list[tuple[int, str, Any]] = field(default_factory=list)  # (time_ns, name, value)
    breaks: dict[str, BreakSpan] = field(default_factory=dict)
    gaps: list[GapFact] = field(default_factory=list)
    explained: set[str] = field(default_factory=set)  # finding ids with an explanation
    custody_out_ns: list[int] = field(default_factory=list)
    presence: list[PresenceEvent] = field(default_factory=list)
    media: dict[str, list[list[int]]] = field(default_factory=dict)  # source -> merged [first, last]
    live_views: dict[str, LiveView] = field(default_factory=dict)
    alert_ids: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)
    entries_seen: int = 0

    # -- folding --------------------------------------------------------------------------------
    def feed(self, entries: Iterable[ManifestEntry]) -> SessionFacts:
        for e in entries:
            self.entries_seen += 1
            self._fold(e)
        return self

    def _fold(self, e: ManifestEntry) -> None:
        b = e.body
        if e.kind == "session_start":
            if self.start_ns is None:
                self.start_ns = e.time_ns
                self.facts = dict(b)
                for name in FACT_TYPES:
                    if name in b and b[name] not in (None, ""):
                        self.changes.append((e.time_ns, name, b[name]))
                for viewer in b.get("authorised_viewers") or []:
                    self.changes.append((e.time_ns, "authorised_viewer", viewer))
                out = _iso_ns(b.get("custody_out_iso"))
                if out is not None:
                    self.custody_out_ns.append(out)
        elif e.kind == "session_stop":
            self.stop_ns = e.time_ns
        elif e.kind == "segment":
            self._media(str(b.get("source", "")), b.get("wall_first_ns"), b.get("wall_last_ns"))
        elif e.kind == "gap":
            self._gap(e)
        elif e.kind == "explanation":
            fid = b.get("finding_id")
            if isinstance(fid, str):
                self.explained.add(fid)
        elif e.kind == "break":
            self._break(e)
        elif e.kind == "custody":
            at = _iso_ns(b.get("time_iso"))
            if b.get("event") == "out" and at is not None:
                self.custody_out_ns.append(at)
        elif e.kind == "participant":
            if b.get("role") == "interviewer" and b.get("event") in ("joined", "left") and isinstance(
                b.get("name"), str
            ):
                self.presence.append(PresenceEvent(e.seq, e.time_ns, str(b["event"]), str(b["name"])))
        elif e.kind == "note":
            fact = b.get("name")
            if b.get("topic") == RISK_FACT_TOPIC and isinstance(fact, str) and fact in FACT_TYPES:
                self.changes.append((e.time_ns, fact, b.get("value")))
        elif e.kind == "alert":
            if isinstance(b.get("alert_id"), str):
                self.alert_ids.add(b["alert_id"])
        elif e.kind == "alert_ack":
            if isinstance(b.get("alert_id"), str):
                self.acked.add(b["alert_id"])

    def _media(self, source: str, first: Any, last: Any) -> None:
        if not source or not isinstance(first, int) or not isinstance(last, int):
            return
        spans = self.media.setdefault(source, [])
        # Segments arrive in wall-clock order per track; tracks interleave: merge into the
        # newest span that overlaps or nearly touches, else keep the list sorted.
        for span in reversed(spans[-4:]):
            if first <= span[1] + MERGE_NS and last >= span[0] - MERGE_NS:
                span[0] = min(span[0], first)
                span[1] = max(span[1], last)
                return
        spans.append([first, last])
        spans.sort()

    def _gap(self, e: ManifestEntry) -> None:
        b = e.body
        try:
            source, track, reason = str(b["source"]), str(b.get("track") or "*"), str(b["reason"])
            start, end = int(b["start_ns"]), int(b["end_ns"])
        except (KeyError, TypeError, ValueError):
            return
        fid = finding_id(RECORDER_GAP, source, track, start, end)
        self.gaps.append(GapFact(e.seq, e.time_ns, source, track, reason, start, end, fid))

    def _break(self, e: ManifestEntry) -> None:
        b = e.body
        bid = b.get("break_id")
        start = b.get("start_ns")
        if not isinstance(bid, str) or not isinstance(start, int):
            return
        end = b.get("end_ns")
        self.breaks[bid] = BreakSpan(bid, start, end if isinstance(end, int) else None)

    def add_live_view(self, view: LiveView) -> None:
        self.live_views.setdefault(view.viewer_id, view)

    # -- queries ----------------------------------------------------------------------------------
    @property
    def recording(self) -> bool:
        return self.start_ns is not None and self.stop_ns is None

    def end_ns(self, now_ns: int) -> int:
        """The last instant the rules consider: now while recording, the stop afterwards."""
        return now_ns if self.stop_ns is None else min(now_ns, self.stop_ns)

    def interviewers(self) -> list[str]:
        raw = self.facts.get("interviewers") or []
        return list(dict.fromkeys(str(i) for i in raw if isinstance(i, str)))

    def expected_sources(self) -> list[str]:
        sources = self.facts.get("sources")
        return [str(s) for s in sources] if isinstance(sources, dict) else []

    def fact_first(self, name: str, accept: Any = None) -> int | None:
        """When fact `name` was first recorded with a usable value (`accept(value)` true), or None."""
        for t, n, v in self.changes:
            if n == name and _usable(name, v) and (accept is None or accept(v)):
                return t
        return None

    def fact_at(self, name: str, at_ns: int) -> Any:
        """The newest usable value of fact `name` recorded at or before `at_ns`, or None."""
        value = None
        for t, n, v in self.changes:
            if n == name and t <= at_ns and _usable(name, v):
                value = v
        return value

    def fact_values(self, name: str, at_ns: int) -> set[Any]:
        return {v for t, n, v in self.changes if n == name and t <= at_ns and _usable(name, v)}

    def break_spans(self) -> list[BreakSpan]:
        return sorted(self.breaks.values(), key=lambda b: (b.start_ns, b.break_id))


def _usable(name: str, value: Any) -> bool:
    kind = FACT_TYPES[name]
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str) and bool(value.strip())


def _iso_ns(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_iso(value)
    except ValueError:
        return None


def build_facts(session: str, entries: Iterable[ManifestEntry], live_views: Iterable[LiveView] = ()) -> SessionFacts:
    facts = SessionFacts(session).feed(entries)
    for v in live_views:
        facts.add_live_view(v)
    return facts
