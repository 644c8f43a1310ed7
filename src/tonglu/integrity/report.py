"""The exclusion-review report (非法证据排除审查报告) as JSON: the single source for the HTML and PDF.

`gaps` lists every critical or warning finding as ``{id, source, track, kind, start, end,
explained, ...}`` (ISO-8601 UTC); `findings` lists all of them, info included (e.g. segments still
waiting for upload). `verified` is the verifier's verdict over the session's evidence.
"""

from __future__ import annotations

import time
from typing import Any

from tonglu.integrity.analysis import Analysis
from tonglu.integrity.findings import CRITICAL, INFO, KIND_LABELS, REASON_LABELS, WARNING
from tonglu.integrity.session import SessionView
from tonglu.integrity.timefmt import iso_utc, local_text

REPORT_VERSION = 1
RECORDING_TEXT = "录制进行中 recording in progress"
STOPPED_TEXT = "录制已结束 recording stopped"


def _iso_or_none(ns: int | None) -> str | None:
    return iso_utc(ns) if ns is not None else None


def facts(view: SessionView) -> dict[str, Any]:
    f = view.facts
    bounds = view.media_bounds()
    end = view.stop_ns
    return {
        "room": f.get("room"),
        "case_number": f.get("case_number"),
        "suspect": f.get("suspect"),
        "interviewers": f.get("interviewers") or [],
        "reason": f.get("reason"),
        "created_by": f.get("created_by"),
        "recorder_version": f.get("recorder_version"),
        "custody_out_iso": f.get("custody_out_iso"),
        "sources": view.expected_sources,
        "start": _iso_or_none(view.start_ns),
        "stop": _iso_or_none(end),
        "stopped_by": (view.stop or {}).get("stopped_by"),
        "stop_reason": (view.stop or {}).get("reason"),
        "duration_ms": (end - view.start_ns) // 1_000_000
        if end is not None and view.start_ns is not None
        else None,
        "media_first": _iso_or_none(bounds[0]) if bounds else None,
        "media_last": _iso_or_none(bounds[1]) if bounds else None,
        "entries": view.entries_count,
    }


def custody_trail(view: SessionView) -> list[dict[str, Any]]:
    trail: list[dict[str, Any]] = []
    out_iso = view.facts.get("custody_out_iso")
    if isinstance(out_iso, str) and out_iso:
        trail.append(
            {
                "event": "out",
                "label": "提押 taken out of custody",
                "time": out_iso,
                "by": view.facts.get("created_by"),
                "seq": 0,
                "origin": "session_start",
            }
        )
    for a in view.custody:
        event = a.body.get("event")
        trail.append(
            {
                "event": event,
                "label": "提押 taken out of custody" if event == "out" else "还押 returned to custody",
                "time": a.body.get("time_iso"),
                "by": a.body.get("by"),
                "seq": a.seq,
                "origin": "custody",
            }
        )
    return trail


def alert_list(view: SessionView) -> list[dict[str, Any]]:
    """Risk-rule alerts (风险告警) in manifest order, each with its acknowledgement or None."""
    acks = {a.body.get("alert_id"): a for a in view.alert_acks}
    out = []
    for a in view.alerts:
        ack = acks.get(a.body.get("alert_id"))
        out.append({"time": iso_utc(a.time_ns), "seq": a.seq, **{k: a.body.get(k) for k in (
            "alert_id", "rule_id", "severity", "level", "title", "legal_source", "message")},
            "acknowledged_by": ack.body.get("by") if ack else None,
            "acknowledged": iso_utc(ack.time_ns) if ack else None})
    return out


def alert_counts(view: SessionView) -> dict[str, Any]:
    acked = {a.body.get("alert_id") for a in view.alert_acks}
    by_level: dict[str, int] = {}
    for a in view.alerts:
        level = str(a.body.get("severity"))
        by_level[level] = by_level.get(level, 0) + 1
    return {"alerts": len(view.alerts),
            "alerts_unacknowledged": sum(1 for a in view.alerts if a.body.get("alert_id") not in acked),
            "alerts_by_severity": by_level}


def build(
    analysis: Analysis, *, generated_ns: int | None = None, record_comparison: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`record_comparison`: the 笔录 vs transcript comparison (`bilu_store.RecordStore.report_section`)."""
    view = analysis.view
    generated_ns = generated_ns if generated_ns is not None else time.time_ns()
    findings = [f.to_json() for f in analysis.findings]
    gaps = [f for f in findings if f["severity"] in (CRITICAL, WARNING)]
    v = analysis.verification
    verification = (
        v.to_json()
        if v is not None
        else {
            "ok": False,
            "source": None,
            "problems": [],
            "checkpoints": [],
            "final_digest": None,
            "not_run": True,
        }
    )
    for cp in verification.get("checkpoints", []):
        cp["time"] = iso_utc(cp["time_ns"])
    breaks = [
        {
            "break_id": b.break_id,
            "reason_code": b.reason_code,
            "reason_label": REASON_LABELS.get(b.reason_code, b.reason_code),
            "start": iso_utc(b.start_ns),
            "end": _iso_or_none(b.end_ns),
            "text": b.text,
            "approver": b.approver,
            "by": b.by,
        }
        for b in view.breaks
    ]
    rt = view.record_times.body if view.record_times is not None else None
    return {
        "report_version": REPORT_VERSION,
        "session": view.session,
        "generated": iso_utc(generated_ns),
        "state": "recording" if view.recording else "stopped",
        "recording_in_progress": view.recording,
        "status_text": RECORDING_TEXT if view.recording else STOPPED_TEXT,
        "as_of": _iso_or_none(analysis.now_ns) if view.recording else None,
        "verified": analysis.verified,
        "facts": facts(view),
        "summary": {
            "findings": len(findings),
            "gaps": len(gaps),
            "unexplained": sum(1 for g in gaps if not g["explained"]),
            "critical_unexplained": sum(1 for g in gaps if g["severity"] == CRITICAL and not g["explained"]),
            "info": sum(1 for f in findings if f["severity"] == INFO),
            **alert_counts(view),
        },
        "gaps": gaps,
        "findings": findings,
        "coverage": {
            "session_start": _iso_or_none(view.start_ns),
            "session_end": _iso_or_none(view.stop_ns),
            "tracks": [
                {
                    "source": c.source,
                    "track": c.track,
                    "segments": c.segments,
                    "first": iso_utc(c.first_ns),
                    "last": iso_utc(c.last_ns),
                    "covered_ms": c.media_ns // 1_000_000,
                    "bytes": c.bytes,
                }
                for c in analysis.coverage
            ],
        },
        "verification": verification,
        "custody": custody_trail(view),
        "record_times": rt,
        "breaks": breaks,
        "markers": [
            {
                "time": iso_utc(int(m.body.get("time_ns", m.time_ns))),
                "note": m.body.get("note"),
                "by": m.body.get("by"),
            }
            for m in view.markers
        ],
        "participants": [
            {"time": iso_utc(int(p.body.get("time_ns", p.time_ns))), **p.body} for p in view.participants
        ],
        "transcripts": [t.body for t in view.transcripts],
        "record_comparison": record_comparison,
        "alerts": alert_list(view),
        "orphan_explanations": [e.to_json() for e in analysis.orphan_explanations],
        "manifest_problems": view.problems,
        "labels": {"kinds": KIND_LABELS},
        "display_timezone": "Asia/Shanghai (UTC+8)",
        "display_start": local_text(view.start_ns) if view.start_ns is not None else None,
    }
