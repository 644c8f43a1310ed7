"""The gap analysis: one sans-I/O function over a session's manifest (plus the verifier's verdict,
where each segment is, and `now` for a session still recording) returning findings.

    view = build_view(sid, entries)
    result = analyse(view, AnalysisConfig(), verification=summary, where={key: "store"}, now_ns=now)

Findings with the same id (same kind, source, track and bounds) are merged. Explanations from the
manifest are attached by id; a finding is `explained` once it has at least one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tonglu.integrity.checks import continuity, coverage, drift, events
from tonglu.integrity.checks.intervals import merge
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.findings import CRITICAL, KINDS, SEVERITIES, Finding
from tonglu.integrity.session import SessionView
from tonglu.integrity.verification import VerificationSummary


@dataclass(frozen=True)
class TrackCoverage:
    source: str
    track: str
    segments: int
    first_ns: int
    last_ns: int
    media_ns: int  # wall time covered by segments (union)
    bytes: int


@dataclass
class Analysis:
    view: SessionView
    findings: list[Finding]
    coverage: list[TrackCoverage]
    verification: VerificationSummary | None
    now_ns: int | None
    orphan_explanations: list[Any] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.ok

    @property
    def unexplained(self) -> list[Finding]:
        return [f for f in self.findings if not f.explained]

    def find(self, finding_id: str) -> Finding | None:
        return next((f for f in self.findings if f.id == finding_id), None)


def _merge_same_id(findings: list[Finding]) -> list[Finding]:
    by_id: dict[str, Finding] = {}
    for f in findings:
        old = by_id.get(f.id)
        if old is None:
            by_id[f.id] = f
            continue
        severity = min(old.severity, f.severity, key=SEVERITIES.index)
        reason = (
            old.reason
            if old.reason == f.reason
            else ",".join(filter(None, {old.reason or "", f.reason or ""}))
        )
        by_id[f.id] = replace(
            old,
            severity=severity,
            detail=old.detail if f.detail in old.detail else f"{old.detail}; {f.detail}",
            reason=reason or None,
            objects=tuple(dict.fromkeys((*old.objects, *f.objects))),
        )
    return list(by_id.values())


def track_coverage(view: SessionView) -> list[TrackCoverage]:
    out = []
    for tid, segs in view.tracks().items():
        source, track = tid.split("/", 1)
        spans = merge((s.rec.wall_first_ns, s.rec.wall_last_ns) for s in segs)
        out.append(
            TrackCoverage(
                source,
                track,
                len(segs),
                min(s.rec.wall_first_ns for s in segs),
                max(s.rec.wall_last_ns for s in segs),
                sum(b - a for a, b in spans),
                sum(s.rec.bytes for s in segs),
            )
        )
    return out


def analyse(
    view: SessionView,
    config: AnalysisConfig | None = None,
    *,
    verification: VerificationSummary | None = None,
    where: Mapping[str, str] | None = None,
    now_ns: int | None = None,
) -> Analysis:
    config = config or AnalysisConfig()
    found: list[Finding] = []
    found += events.recorder_gaps(view)
    found += continuity.check(view, config)
    found += coverage.check(view, config, now_ns)
    found += drift.check(view, config)
    missing: set[str] = set()
    if where is not None:
        avail = events.availability(view, where)
        missing = {o for f in avail if f.kind == "segment_missing" for o in f.objects}
        found += avail
    if verification is not None:
        found += events.verifier_failures(view, verification, missing)
    found = _merge_same_id(found)
    ids = {f.id for f in found}
    found = [f.with_explanations(view.explanations_for(f.id) + events.consultation_explanations(view, f))
             for f in found]
    found.sort(key=lambda f: (f.start_ns, KINDS.index(f.kind) if f.kind in KINDS else 99, f.source, f.track))
    orphans = [e for e in view.explanations if e.finding_id not in ids]
    return Analysis(view, found, track_coverage(view), verification, now_ns, orphans)


def critical_unexplained(analysis: Analysis) -> list[Finding]:
    return [f for f in analysis.findings if f.severity == CRITICAL and not f.explained]
