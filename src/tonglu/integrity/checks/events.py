"""Findings that come from other parties: the recorder's gap events, the store listing
(segments missing or not yet confirmed) and the verifier's problems."""

from __future__ import annotations

from collections.abc import Mapping

from tonglu.integrity.findings import (
    CRITICAL,
    INFO,
    RECORDER_GAP,
    SEGMENT_MISSING,
    SEGMENT_UNCONFIRMED,
    VERIFIER_FAILURE,
    WARNING,
    Finding,
)
from tonglu.integrity.session import ExplanationRec, SessionView
from tonglu.integrity.verification import VerificationSummary

GAP_REASON_LABELS = {
    "rtp_loss": "网络丢包未能修复 RTP loss not repaired",
    "timestamp_jump": "时间戳跳变 timestamp jump",
    "no_packets": "无数据包 no packets",
    "peer_disconnect": "推流端断开 peer disconnected",
    "ice_failure": "网络连接失败 ICE failure",
    "dtls_failure": "加密握手失败 DTLS failure",
    "recorder_restart": "录制服务重启 recorder restart",
    "not_connected": "信号源未连接 source not connected",
    "upload_missing": "上传缺失 upload missing",
    "hash_mismatch": "哈希不符 hash mismatch",
    "clock_step": "时钟跳变 clock step",
    "recorder_overload": "录制服务过载丢帧 recorder overload",
    "lawyer_consultation": "律师会见，依法不录制 lawyer consultation (CPL art. 39)",
}
CONSULTATION_REASON = "lawyer_consultation"
CONSULTATION_LATE_END_NS = 5_000_000_000  # a track records again within this of the end (next keyframe)

# Verifier findings that are normal while a session records (no final checkpoint yet, newest
# entries not yet signed).
EXPECTED_WHILE_RECORDING = frozenset({"unsigned_tail", "checkpoint_final_missing"})

# Where a segment is: "store" (confirmed in the WORM bucket), "spool" (local, upload pending),
# or anything else / absent key = missing.
STORE = "store"
SPOOL = "spool"
UNKNOWN = "unknown"  # the store could not be asked: no finding on that ground


def recorder_gaps(view: SessionView) -> list[Finding]:
    out = []
    for g in view.gaps:
        r = g.rec
        label = GAP_REASON_LABELS.get(r.reason, r.reason)
        extra = f"; {r.detail}" if r.detail else ""
        lost = f"; 丢失 {r.packets_lost} 个包 ({r.packets_lost} packets lost)" if r.packets_lost else ""
        out.append(
            Finding(
                RECORDER_GAP,
                r.source,
                r.track or "*",
                r.start_ns,
                r.end_ns,
                CRITICAL,
                f"录制端记录的中断：{label}{lost}{extra}",
                reason=r.reason,
            )
        )
    return out


def availability(view: SessionView, where: Mapping[str, str]) -> list[Finding]:
    out = []
    for seg in view.segments:
        r = seg.rec
        state = where.get(r.key)
        if state in (STORE, UNKNOWN):
            continue
        if state == SPOOL:
            out.append(
                Finding(
                    SEGMENT_UNCONFIRMED,
                    r.source,
                    r.track,
                    r.wall_first_ns,
                    r.wall_last_ns,
                    INFO,
                    f"片段 {r.index} 仍在本地缓冲，尚未确认写入对象存储 (segment still in the local spool)",
                    objects=(r.key,),
                )
            )
        else:
            out.append(
                Finding(
                    SEGMENT_MISSING,
                    r.source,
                    r.track,
                    r.wall_first_ns,
                    r.wall_last_ns,
                    CRITICAL,
                    f"清单记载的片段 {r.index} 在对象存储和本地缓冲中都不存在 "
                    f"(segment in the manifest but in neither store nor spool)",
                    objects=(r.key,),
                )
            )
    return out


def verifier_failures(
    view: SessionView, summary: VerificationSummary, skip_missing: set[str]
) -> list[Finding]:
    by_key = view.by_key()
    bounds = view.media_bounds()
    lo = view.start_ns if view.start_ns is not None else (bounds[0] if bounds else 0)
    hi = view.stop_ns if view.stop_ns is not None else (bounds[1] if bounds else lo)
    out = []
    for p in summary.problems:
        if p.code == "segment_missing" and p.object in skip_missing:
            continue
        seg = by_key.get(p.object)
        severity = WARNING if p.severity == "warning" else CRITICAL
        if view.recording and p.code in EXPECTED_WHILE_RECORDING:
            severity = INFO
        if seg is not None:
            r = seg.rec
            out.append(
                Finding(
                    VERIFIER_FAILURE,
                    r.source,
                    r.track,
                    r.wall_first_ns,
                    r.wall_last_ns,
                    severity,
                    p.message,
                    reason=p.code,
                    objects=(p.object,),
                )
            )
        else:
            out.append(
                Finding(
                    VERIFIER_FAILURE,
                    "*",
                    "*",
                    lo,
                    max(lo, hi),
                    severity,
                    p.message,
                    reason=p.code,
                    objects=(p.object,) if p.object else (),
                )
            )
    return out


def consultation_explanations(view: SessionView, f: Finding) -> list[ExplanationRec]:
    """A `lawyer_consultation` gap is explained by the signed `consultation` entries that bound it:
    a `started` entry naming its source, at exactly the gap's start, and the matching `ended` entry
    at or before the gap's end (by at most CONSULTATION_LATE_END_NS: the track's next keyframe).
    A gap with that reason and no such pair stays unexplained."""
    if f.kind != RECORDER_GAP or f.reason != CONSULTATION_REASON:
        return []
    started = {
        a.body.get("consultation_id"): a
        for a in view.consultations
        if a.body.get("event") == "started" and f.source in (a.body.get("sources") or ())
        and a.body.get("time_ns") == f.start_ns
    }
    out = []
    for a in view.consultations:
        s = started.get(a.body.get("consultation_id"))
        end = a.body.get("time_ns")
        if a.body.get("event") != "ended" or s is None or not isinstance(end, int):
            continue
        if not (f.start_ns <= end <= f.end_ns <= end + CONSULTATION_LATE_END_NS):
            continue
        by, ended_by = str(s.body.get("by", "")), str(a.body.get("by", ""))
        text = (f"律师会见（刑事诉讼法第三十九条），依法不监听、不录制；{by} 开始（清单第 {s.seq} 条），"
                f"{ended_by} 结束（清单第 {a.seq} 条）(lawyer consultation {a.body.get('consultation_id')}, "
                f"not recorded by law; started by {by}, ended by {ended_by})")
        out.append(ExplanationRec(a.seq, end, f.id, CONSULTATION_REASON, text, ended_by, by))
    return out
