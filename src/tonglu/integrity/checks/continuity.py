"""Continuity of each track: holes between consecutive segments, and clock steps.

For each pair of consecutive segments of a track two clocks are compared: the wall clock
(`wall_last_ns` of one to `wall_first_ns` of the next) and the media clock (RTP). When they
agree (within `clock_step_ms`) the media clock sizes the hole, because wall stamps carry arrival
jitter and RTP does not; a hole above the track's threshold (REQUIREMENTS §7) that the recorder
did not itself report becomes a `continuity` finding bounded by the two segments' wall times.
When they disagree, the wall clock stepped (or the sender's RTP jumped): a `clock_step` finding.
After a peer reconnect or a recorder restart RTP starts afresh; the wall clock alone sizes those
holes. Inside one segment, a wall span that differs from the media span is also a clock step.
"""

from __future__ import annotations

import itertools

from tonglu.integrity.checks.intervals import subtract
from tonglu.integrity.checks.tracks import (
    frame_ns,
    hole_threshold_ns,
    media_span_ns,
    recorder_gap_cover,
    rtp_reset_between,
    rtp_to_ns,
)
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.findings import CLOCK_STEP, CONTINUITY, CRITICAL, WARNING, Finding
from tonglu.integrity.session import Seg, SessionView


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.0f} ms"


def check_track(view: SessionView, segs: list[Seg], config: AnalysisConfig) -> list[Finding]:
    findings: list[Finding] = []
    step_ns = config.clock_step_ms * 1_000_000
    for seg in segs:
        rec = seg.rec
        wall_span = rec.wall_last_ns - rec.wall_first_ns
        media_span = media_span_ns(seg, config)
        if wall_span < 0 or abs(wall_span - media_span) > step_ns:
            lo, hi = sorted((rec.wall_first_ns, rec.wall_last_ns))
            findings.append(
                Finding(
                    CLOCK_STEP,
                    rec.source,
                    rec.track,
                    lo,
                    hi,
                    WARNING,
                    f"片段内墙钟跨度 {_ms(wall_span)} 与媒体时钟跨度 {_ms(media_span)} 不符 "
                    f"(wall span {_ms(wall_span)} vs RTP span {_ms(media_span)} inside segment {rec.index})",
                    objects=(rec.key,),
                )
            )
    for prev, nxt in itertools.pairwise(segs):
        p, n = prev.rec, nxt.rec
        fr = frame_ns(prev, config)
        threshold = hole_threshold_ns(prev, config)
        wall_gap = n.wall_first_ns - p.wall_last_ns
        reset = (
            n.rtp_first < p.rtp_last
            or n.clock_rate != p.clock_rate
            or rtp_reset_between(view, p.source, p.track, p.wall_last_ns, n.wall_first_ns, step_ns)
        )
        objects = (p.key, n.key)
        index_note = "" if n.index == p.index + 1 else f"; 序号 {p.index} → {n.index} (index jump)"
        if not reset:
            rtp_gap = rtp_to_ns(n.rtp_first - p.rtp_last, p.clock_rate) - fr
            if abs(wall_gap - rtp_gap) > step_ns:
                lo, hi = sorted((p.wall_last_ns, n.wall_first_ns))
                direction = "倒退 backwards" if wall_gap < 0 else "跳变 jump"
                findings.append(
                    Finding(
                        CLOCK_STEP,
                        p.source,
                        p.track,
                        lo,
                        hi,
                        WARNING,
                        f"墙钟{direction}：墙钟间隔 {_ms(wall_gap)}，媒体时钟间隔 {_ms(rtp_gap)} "
                        f"(wall clock gap {_ms(wall_gap)} vs RTP gap {_ms(rtp_gap)} between segments "
                        f"{p.index} and {n.index}){index_note}",
                        objects=objects,
                    )
                )
                continue
            hole = rtp_gap
        else:
            hole = wall_gap
        if hole <= threshold:
            continue
        start = p.wall_last_ns
        end = n.wall_first_ns if n.wall_first_ns > start else start + hole
        cover = recorder_gap_cover(view, p.source, p.track, tolerance_ns=threshold)
        for lo, hi in subtract((start, end), cover):
            if hi - lo <= threshold:
                continue
            findings.append(
                Finding(
                    CONTINUITY,
                    p.source,
                    p.track,
                    lo,
                    hi,
                    CRITICAL,
                    f"片段 {p.index} 与 {n.index} 之间缺少 {_ms(hi - lo)} 的媒体，录制端未记录该间断 "
                    f"({_ms(hi - lo)} of media missing between segments {p.index} and {n.index}, "
                    f"not reported by the recorder){index_note}",
                    objects=objects,
                )
            )
    return findings


def check(view: SessionView, config: AnalysisConfig) -> list[Finding]:
    out: list[Finding] = []
    for segs in view.tracks().values():
        out.extend(check_track(view, segs, config))
    return out
