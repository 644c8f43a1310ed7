"""The risk rules: small sans-I/O evaluators of one session's facts at an injected `now`.

Each rule type is a function `(params, facts, now_ns) -> list[Hit]`. A hit names its condition
episode with a `key` (stable over time: the same episode gives the same key on every tick), so the
engine writes one alert per rule per episode however often it evaluates. Parameters are declared
in `PARAMS` (name -> type, default, minimum); the rule file may set them, nothing else.

Boundaries: a limit is reached *at* its value (12:00:00 of questioning fires, 11:59:59 does not);
the night window is [start, end) in the configured time zone.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tonglu.integrity.risk.facts import SessionFacts
from tonglu.integrity.timefmt import local_text

NS = 1_000_000_000
MIN_NS = 60 * NS
HOUR_NS = 3600 * NS


@dataclass(frozen=True)
class Hit:
    key: str  # the condition episode: one alert per (rule, key)
    at_ns: int  # when the condition was met
    message: str  # Chinese first, English after
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Param:
    kind: type  # int, float, str, list (of str)
    default: Any
    minimum: float | None = None


Evaluator = Callable[[dict[str, Any], SessionFacts, int], list[Hit]]


def _hm(ns: int) -> str:
    s = ns // NS
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# -- questioning intervals -------------------------------------------------------------------------
def questioning_spans(facts: SessionFacts, now_ns: int) -> list[tuple[int, int]]:
    """Half-open [a, b) intervals of questioning: the session minus its breaks, up to and including
    `now` (b = now + 1 ns while recording)."""
    if facts.start_ns is None:
        return []
    end = facts.end_ns(now_ns) + (1 if facts.stop_ns is None or now_ns < facts.stop_ns else 0)
    spans: list[tuple[int, int]] = []
    cursor = facts.start_ns
    for b in facts.break_spans():
        b_end = b.end_ns if b.end_ns is not None else end
        if b.start_ns > cursor:
            spans.append((cursor, min(b.start_ns, end)))
        cursor = max(cursor, b_end)
        if cursor >= end:
            break
    if cursor < end:
        spans.append((cursor, end))
    return [(a, b) for a, b in spans if b > a]


# -- the rules -------------------------------------------------------------------------------------
def duration_limit(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """刑事诉讼法第119条: a summons/questioning lasts at most 12 h, 24 h when the case is
    particularly serious or complex (the session's `serious_case` flag)."""
    if f.start_ns is None:
        return []
    serious = f.fact_at("serious_case", now_ns) is True
    hours = p["serious_case_hours"] if serious else p["hours"]
    limit = int(hours * HOUR_NS)
    elapsed = f.end_ns(now_ns) - f.start_ns
    if elapsed < limit:
        return []
    return [Hit(f"{hours:g}h", f.start_ns + limit,
                f"讯问已持续 {hours:g} 小时{'（重大复杂案件）' if serious else ''} "
                f"(questioning has lasted {hours:g} h{', serious case' if serious else ''})",
                {"hours": hours, "serious_case": serious, "elapsed_ms": elapsed // 1_000_000})]


def continuous_questioning(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """Questioning without a break of at least `min_break_minutes` for `max_minutes` or longer.
    Shorter breaks do not reset the stretch; while on a break nothing fires."""
    if f.start_ns is None:
        return []
    limit = int(p["max_minutes"] * MIN_NS)
    min_break = int(p["min_break_minutes"] * MIN_NS)
    end = f.end_ns(now_ns)
    hits = []
    stretch = f.start_ns
    for b in f.break_spans():
        if b.start_ns >= end:
            break
        if b.start_ns - stretch >= limit:
            hits.append(stretch)
        if b.end_ns is None:
            return [_continuous_hit(s, limit) for s in hits]  # on a break now
        if b.end_ns - b.start_ns >= min_break:
            stretch = max(stretch, b.end_ns)
    if end - stretch >= limit:
        hits.append(stretch)
    return [_continuous_hit(s, limit) for s in hits]


def _continuous_hit(stretch: int, limit: int) -> Hit:
    return Hit(f"from{stretch}", stretch + limit,
               f"已连续讯问 {_hm(limit)} 未休息 (questioning for {_hm(limit)} without a break), "
               f"自 {local_text(stretch)} 起",
               {"stretch_start_ns": stretch, "limit_minutes": limit // MIN_NS})


def _clock(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


def night_questioning(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """Questioning between `start` and `end` (local time of `timezone`) without a recorded reason
    (`night_reason`, at session start or recorded before the first night-time question)."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(p["timezone"])
    w_start, w_end = _clock(p["start"]), _clock(p["end"])
    spans = questioning_spans(f, now_ns)
    if not spans:
        return []
    hits = []
    first_day = dt.datetime.fromtimestamp(spans[0][0] / NS, tz).date() - dt.timedelta(days=1)
    last_day = dt.datetime.fromtimestamp(spans[-1][1] / NS, tz).date()
    day = first_day
    while day <= last_day:
        ws = _ns(dt.datetime.combine(day, w_start, tz))
        end_day = day + dt.timedelta(days=1) if w_end <= w_start else day
        we = _ns(dt.datetime.combine(end_day, w_end, tz))
        first = next((max(a, ws) for a, b in spans if a < we and b > ws), None)
        if first is not None and f.fact_at("night_reason", first) is None:
            hits.append(Hit(f"night{day.isoformat()}", first,
                            f"夜间讯问（{p['start']}–{p['end']}）未记录理由 "
                            f"(questioning at night without a recorded reason), 自 {local_text(first)} 起",
                            {"night_of": day.isoformat()}))
        day += dt.timedelta(days=1)
    return hits


def _ns(d: dt.datetime) -> int:
    return int(d.timestamp()) * NS + d.microsecond * 1000


def detention_to_first_questioning(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """刑事诉讼法第86条/第94条: a detainee is questioned within 24 h. Detention time: the
    `detained_at_iso` fact, else the earliest 提押 (custody out) time of the session."""
    if f.start_ns is None:
        return []
    detained_iso = f.fact_at("detained_at_iso", f.start_ns)
    detained = None
    if isinstance(detained_iso, str):
        from tonglu.integrity.risk.facts import _iso_ns

        detained = _iso_ns(detained_iso)
    if detained is None and f.custody_out_ns:
        detained = min(f.custody_out_ns)
    if detained is None:
        return []
    limit = int(p["max_hours"] * HOUR_NS)
    if f.start_ns - detained < limit:
        return []
    return [Hit("first", f.start_ns,
                f"首次讯问距羁押/提押已超过 {p['max_hours']:g} 小时 (first questioning more than "
                f"{p['max_hours']:g} h after detention: {local_text(detained)})",
                {"detained_ns": detained, "delay_ms": (f.start_ns - detained) // 1_000_000})]


def interviewers_present(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """刑事诉讼法第118条: questioning by no fewer than `min_count` interviewers. One hit per
    episode below the minimum (the entry that caused it names the episode)."""
    if f.start_ns is None:
        return []
    need = int(p["min_count"])
    present = set(f.interviewers())
    hits = []
    below = len(present) < need
    if below:
        hits.append(_presence_hit("start", f.start_ns, present, need))
    for ev in f.presence:
        if ev.time_ns > now_ns:
            break
        if ev.event == "left":
            present.discard(ev.name)
        else:
            present.add(ev.name)
        now_below = len(present) < need
        if now_below and not below:
            hits.append(_presence_hit(f"seq{ev.seq}", ev.time_ns, present, need))
        below = now_below
    return hits


def _presence_hit(key: str, at_ns: int, present: set[str], need: int) -> Hit:
    names = "、".join(sorted(present)) or "无"
    return Hit(key, at_ns, f"在场讯问人员少于 {need} 人（{names}） (fewer than {need} interviewers present)",
               {"present": sorted(present)})


def source_not_publishing(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """An expected source (camera) without media for `grace_seconds` or longer: from the session
    start until its first segment, or between segments."""
    if f.start_ns is None:
        return []
    grace = int(p["grace_seconds"] * NS)
    end = f.end_ns(now_ns)
    hits = []
    for source in f.expected_sources():
        cursor = f.start_ns
        for first, last in f.media.get(source, []):
            if first - cursor >= grace:
                hits.append(_silence_hit(source, cursor, grace, first))
            cursor = max(cursor, last)
        if end - cursor >= grace:
            hits.append(_silence_hit(source, cursor, grace, None))
    return hits


def _silence_hit(source: str, since: int, grace: int, until: int | None) -> Hit:
    return Hit(f"{source}@{since}", since + grace,
               f"信号源 {source} 无画面/声音已超过 {grace // NS} 秒 (source {source!r} has not published "
               f"for {grace // NS} s), 自 {local_text(since)} 起",
               {"source": source, "since_ns": since, "until_ns": until})


def unexplained_gap(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """A recorder gap of at least `min_gap_ms` without an explanation `explain_within_seconds`
    after it was recorded (0: at once; every gap needs one, the threshold only spares the console
    a flood of tiny ones on a lossy link: the review report lists them all)."""
    wait = int(p["explain_within_seconds"] * NS)
    shortest = int(p["min_gap_ms"] * 1_000_000)
    hits = []
    for g in f.gaps:
        if g.finding_id in f.explained or now_ns - g.time_ns < wait or g.end_ns - g.start_ns < shortest:
            continue
        if g.reason == "lawyer_consultation":  # bounded by signed consultation entries (integrity report)
            continue
        hits.append(Hit(f"gap{g.seq}", g.time_ns + wait,
                        f"录像中断未说明：{g.source}/{g.track} {g.reason}，{local_text(g.start_ns)} 起 "
                        f"{(g.end_ns - g.start_ns) // 1_000_000} ms (unexplained gap)",
                        {"gap_seq": g.seq, "finding_id": g.finding_id, "source": g.source, "track": g.track,
                         "reason": g.reason, "start_ns": g.start_ns, "end_ns": g.end_ns}))
    return hits


def live_view_unauthorised(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """A live view (WHEP) by someone whose role is not in `authorised_roles` and who was not
    named an authorised viewer of the session before the view started."""
    allowed_roles = set(p["authorised_roles"])
    hits = []
    for v in sorted(f.live_views.values(), key=lambda v: (v.time_ns, v.viewer_id)):
        if v.time_ns > now_ns or v.role in allowed_roles or v.user in f.fact_values("authorised_viewer", v.time_ns):
            continue
        hits.append(Hit(f"view{v.viewer_id}", v.time_ns,
                        f"未经授权的实时观看：{v.user}（{v.role}）观看 {v.source} "
                        f"(live view without authorisation)",
                        {"viewer_id": v.viewer_id, "user": v.user, "role": v.role, "source": v.source}))
    return hits


def minor_without_adult(p: dict[str, Any], f: SessionFacts, now_ns: int) -> list[Hit]:
    """刑事诉讼法第281条: a suspect under `adult_age` is questioned with an appropriate adult
    (合适成年人) present, recorded within `grace_minutes` of the start."""
    if f.start_ns is None:
        return []
    age = f.fact_at("suspect_age", now_ns)
    if not isinstance(age, int) or age >= p["adult_age"]:
        return []
    due = f.start_ns + int(p["grace_minutes"] * MIN_NS)
    if now_ns < due:
        return []
    recorded = f.fact_first("appropriate_adult")
    if recorded is not None and recorded <= due:
        return []
    return [Hit("minor", due, f"未成年犯罪嫌疑人（{age} 岁）讯问未记录合适成年人到场 "
                              f"(minor suspect, age {age}: no appropriate adult recorded)", {"age": age})]


RULE_TYPES: dict[str, tuple[Evaluator, dict[str, Param]]] = {
    "duration_limit": (duration_limit, {
        "hours": Param(float, 12, 0.001), "serious_case_hours": Param(float, 24, 0.001)}),
    "continuous_questioning": (continuous_questioning, {
        "max_minutes": Param(float, 240, 0.01), "min_break_minutes": Param(float, 10, 0)}),
    "night_questioning": (night_questioning, {
        "start": Param(str, "22:00"), "end": Param(str, "06:00"), "timezone": Param(str, "Asia/Shanghai")}),
    "detention_to_first_questioning": (detention_to_first_questioning, {"max_hours": Param(float, 24, 0.001)}),
    "interviewers_present": (interviewers_present, {"min_count": Param(int, 2, 1)}),
    "source_not_publishing": (source_not_publishing, {"grace_seconds": Param(float, 30, 2)}),
    "unexplained_gap": (unexplained_gap, {
        "explain_within_seconds": Param(float, 0, 0), "min_gap_ms": Param(float, 0, 0)}),
    "live_view_unauthorised": (live_view_unauthorised, {
        "authorised_roles": Param(list, ["interviewer", "participant"])}),
    "minor_without_adult": (minor_without_adult, {"adult_age": Param(int, 18, 1), "grace_minutes": Param(float, 0, 0)}),
}
