"""Findings: what the integrity review reports, with stable ids.

A finding id is the first 16 hex digits of SHA-256 over ``kind|source|track|start_ns|end_ns``
(see the shared manifest conventions), so an explanation written today still names the same
finding tomorrow. Findings are computed, never stored: nothing can edit or delete one; people can
only append explanations (``explanation`` manifest entries) that reference its id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from tonglu.integrity.session import ExplanationRec
from tonglu.integrity.timefmt import iso_utc

# Kinds of findings.
RECORDER_GAP = "recorder_gap"  # a gap event the recorder wrote (reason in `reason`)
CONTINUITY = "continuity"  # a hole between consecutive segments of a track
SEGMENT_MISSING = "segment_missing"  # in the manifest, in neither store nor spool
SEGMENT_UNCONFIRMED = "segment_unconfirmed"  # still only in the local spool
COVERAGE = "coverage"  # session start/stop not covered by a track's media
NEVER_PUBLISHED = "never_published"  # an expected source (or its audio) never sent media
RECORD_TIME_OUTSIDE = "record_time_outside"  # the 笔录 start/end lies outside the recording
AV_DRIFT = "av_drift"  # audio/video offset beyond +45/-125 ms
CLOCK_STEP = "clock_step"  # wall clock stepped against the media (RTP) clock
VERIFIER_FAILURE = "verifier_failure"  # the verifier found the evidence altered/incomplete

KINDS = (
    RECORDER_GAP,
    CONTINUITY,
    SEGMENT_MISSING,
    SEGMENT_UNCONFIRMED,
    COVERAGE,
    NEVER_PUBLISHED,
    RECORD_TIME_OUTSIDE,
    AV_DRIFT,
    CLOCK_STEP,
    VERIFIER_FAILURE,
)

KIND_LABELS = {
    RECORDER_GAP: "录制中断（录制端记录）recorder gap event",
    CONTINUITY: "片段不连续 continuity break",
    SEGMENT_MISSING: "片段缺失 segment missing",
    SEGMENT_UNCONFIRMED: "片段尚未入库 segment not yet in store",
    COVERAGE: "录像未覆盖 coverage hole",
    NEVER_PUBLISHED: "信号源未推流 source never published",
    RECORD_TIME_OUTSIDE: "笔录时间超出录像 record time outside recording",
    AV_DRIFT: "音画不同步 audio/video drift",
    CLOCK_STEP: "时钟跳变 clock step",
    VERIFIER_FAILURE: "校验失败 verification failure",
}

CRITICAL = "critical"  # evidence missing, altered or unverifiable
WARNING = "warning"  # timing or quality problem; the media itself is present
INFO = "info"  # expected to resolve by itself (e.g. upload pending)
SEVERITIES = (CRITICAL, WARNING, INFO)
SEVERITY_LABELS = {CRITICAL: "严重 critical", WARNING: "警告 warning", INFO: "提示 info"}

REASON_CODES = ("rest", "meal", "equipment_fault", "lawyer_consultation", "network", "other")
REASON_LABELS = {
    "rest": "休息 rest",
    "meal": "就餐 meal",
    "equipment_fault": "设备故障 equipment fault",
    "lawyer_consultation": "律师会见 lawyer consultation",
    "network": "网络故障 network",
    "other": "其他 other",
    "adjournment": "休庭 adjournment",
}


def finding_id(kind: str, source: str, track: str, start_ns: int, end_ns: int) -> str:
    return hashlib.sha256(f"{kind}|{source}|{track}|{start_ns}|{end_ns}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Finding:
    kind: str
    source: str
    track: str  # "video", "audio", "video+audio", or "*" (whole source / session)
    start_ns: int
    end_ns: int
    severity: str
    detail: str
    reason: str | None = None  # recorder gap reason / verifier problem code
    objects: tuple[str, ...] = ()  # evidence keys involved
    explanations: tuple[ExplanationRec, ...] = field(default=())

    @property
    def id(self) -> str:
        return finding_id(self.kind, self.source, self.track, self.start_ns, self.end_ns)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def explained(self) -> bool:
        return bool(self.explanations)

    def with_explanations(self, explanations: list[ExplanationRec]) -> Finding:
        return replace(self, explanations=tuple(explanations))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "track": self.track,
            "kind": self.kind,
            "kind_label": KIND_LABELS.get(self.kind, self.kind),
            "reason": self.reason,
            "start": iso_utc(self.start_ns),
            "end": iso_utc(self.end_ns),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "duration_ms": self.duration_ns // 1_000_000,
            "severity": self.severity,
            "detail": self.detail,
            "objects": list(self.objects),
            "explained": self.explained,
            "explanations": [e.to_json() for e in self.explanations],
        }
