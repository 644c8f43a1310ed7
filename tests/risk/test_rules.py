"""Each risk rule fires at its boundary and not one second before (pure, `now` injected)."""

from __future__ import annotations

from tests.risk.builder import HOUR, MIN, NS, T0, Session
from tonglu.evidence.manifest import GapRecord
from tonglu.integrity.findings import RECORDER_GAP, finding_id
from tonglu.integrity.risk.engine import Alert, evaluate, pending
from tonglu.integrity.risk.facts import LiveView
from tonglu.integrity.risk.ruleset import load_rules
from tonglu.integrity.timefmt import parse_iso

RULES = load_rules()


def fired(s: Session, rule_id: str, now_ns: int) -> list[Alert]:
    return [a for a in evaluate(RULES, s.facts(), now_ns) if a.rule.id == rule_id]


# -- duration ---------------------------------------------------------------------------------------
def test_duration_fires_at_12_hours_not_at_11_59_59() -> None:
    s = Session()
    assert fired(s, "duration_limit", T0 + 12 * HOUR - NS) == []
    [a] = fired(s, "duration_limit", T0 + 12 * HOUR)
    assert a.at_ns == T0 + 12 * HOUR and a.rule.severity == "告警" and a.rule.legal_source == "刑事诉讼法第119条"


def test_the_shipped_notice_an_hour_before_the_limit_is_the_same_rule_type() -> None:
    s = Session()
    assert fired(s, "duration_notice", T0 + 11 * HOUR - NS) == []
    [a] = fired(s, "duration_notice", T0 + 11 * HOUR)
    assert a.rule.type == "duration_limit" and a.rule.severity == "提示" and a.alert_id == "duration_notice.11h"


def test_duration_with_the_serious_case_flag_fires_at_24_hours() -> None:
    s = Session(serious_case=True)
    assert fired(s, "duration_limit", T0 + 12 * HOUR) == []
    assert fired(s, "duration_limit", T0 + 24 * HOUR - NS) == []
    [a] = fired(s, "duration_limit", T0 + 24 * HOUR)
    assert a.detail["serious_case"] is True and a.alert_id == "duration_limit.24h"


def test_duration_stops_counting_at_session_stop() -> None:
    s = Session()
    s.add("session_stop", {"stopped_by": "x"}, T0 + 11 * HOUR)
    assert fired(s, "duration_limit", T0 + 30 * HOUR) == []


# -- continuous questioning ------------------------------------------------------------------------
def test_continuous_questioning_fires_at_240_minutes_without_a_break() -> None:
    s = Session()
    assert fired(s, "continuous_questioning", T0 + 240 * MIN - NS) == []
    [a] = fired(s, "continuous_questioning", T0 + 240 * MIN)
    assert a.at_ns == T0 + 240 * MIN


def test_a_break_of_10_minutes_resets_the_stretch_9_59_does_not() -> None:
    ok = Session()
    ok.brk(T0 + 60 * MIN, T0 + 70 * MIN)
    assert fired(ok, "continuous_questioning", T0 + 70 * MIN + 240 * MIN - NS) == []
    assert len(fired(ok, "continuous_questioning", T0 + 70 * MIN + 240 * MIN)) == 1
    short = Session()
    short.brk(T0 + 60 * MIN, T0 + 70 * MIN - NS)
    assert len(fired(short, "continuous_questioning", T0 + 240 * MIN)) == 1


def test_no_continuous_alert_while_on_a_break() -> None:
    s = Session()
    s.brk(T0 + 239 * MIN, None)
    assert fired(s, "continuous_questioning", T0 + 300 * MIN) == []


# -- night -----------------------------------------------------------------------------------------
def test_night_questioning_fires_at_22_00_not_at_21_59_59() -> None:
    s = Session()
    night = parse_iso("2026-12-04T22:00:00+08:00")
    assert fired(s, "night_questioning", night - NS) == []
    [a] = fired(s, "night_questioning", night)
    assert a.at_ns == night and a.alert_id == "night_questioning.night2026-12-04"


def test_night_ends_at_06_00() -> None:
    early = Session(start_ns=parse_iso("2026-12-05T05:59:59+08:00"))
    assert len(fired(early, "night_questioning", parse_iso("2026-12-05T07:00:00+08:00"))) == 1
    morning = Session(start_ns=parse_iso("2026-12-05T06:00:00+08:00"))
    assert fired(morning, "night_questioning", parse_iso("2026-12-05T21:59:59+08:00")) == []


def test_a_recorded_night_reason_or_a_break_over_the_night_silences_it() -> None:
    night = parse_iso("2026-12-04T22:00:00+08:00")
    reasoned = Session()
    reasoned.fact("night_reason", "现场指认需连续讯问，经负责人批准", night - MIN)
    assert fired(reasoned, "night_questioning", night + HOUR) == []
    late_reason = Session()
    late_reason.fact("night_reason", "补记", night + MIN)
    assert len(fired(late_reason, "night_questioning", night + HOUR)) == 1
    resting = Session()
    resting.brk(night - MIN, parse_iso("2026-12-05T06:00:00+08:00"))
    assert fired(resting, "night_questioning", parse_iso("2026-12-05T07:00:00+08:00")) == []


# -- detention to first questioning ----------------------------------------------------------------
def test_first_questioning_24_hours_after_custody_out_fires_23_59_59_does_not() -> None:
    late = Session(custody_out_iso="2026-12-03T10:00:00+08:00")
    [a] = fired(late, "detention_to_first_questioning", T0)
    assert a.detail["delay_ms"] == 24 * 3600 * 1000
    ok = Session(custody_out_iso="2026-12-03T10:00:01+08:00")
    assert fired(ok, "detention_to_first_questioning", T0 + HOUR) == []


def test_custody_entries_and_the_detention_fact_count() -> None:
    s = Session()
    s.add("custody", {"event": "out", "time_iso": "2026-12-03T09:00:00+08:00", "by": "x"}, T0 + MIN)
    assert len(fired(s, "detention_to_first_questioning", T0 + MIN)) == 1
    d = Session(detained_at_iso="2026-12-03T10:00:01+08:00", custody_out_iso="2026-12-01T10:00:00+08:00")
    assert fired(d, "detention_to_first_questioning", T0) == []
    assert fired(Session(), "detention_to_first_questioning", T0) == []  # no detention time known


# -- interviewers ----------------------------------------------------------------------------------
def test_an_interviewer_leaving_fires_one_alert_per_episode() -> None:
    s = Session()
    assert fired(s, "interviewers_present", T0 + HOUR) == []
    left = s.add("participant", {"role": "interviewer", "event": "left", "name": "王五", "time_ns": T0 + MIN},
                 T0 + MIN)
    [a] = fired(s, "interviewers_present", T0 + MIN)
    assert a.key == f"seq{left.seq}" and a.detail["present"] == ["李四"]
    s.add("participant", {"role": "interviewer", "event": "joined", "name": "赵六"}, T0 + 2 * MIN)
    assert len(fired(s, "interviewers_present", T0 + HOUR)) == 1  # the episode ended; still one
    s.add("participant", {"role": "interviewer", "event": "left", "name": "赵六"}, T0 + 3 * MIN)
    assert len(fired(s, "interviewers_present", T0 + HOUR)) == 2  # a second episode


def test_a_remote_participant_leaving_is_not_an_interviewer() -> None:
    s = Session()
    s.add("participant", {"source": "remote-a", "event": "left", "name": "王五", "role": "lawyer"}, T0 + MIN)
    assert fired(s, "interviewers_present", T0 + HOUR) == []


# -- sources ---------------------------------------------------------------------------------------
def test_a_source_that_never_published_fires_after_30_s_not_29_999() -> None:
    s = Session()
    s.segment("main", T0 + NS, T0 + 10 * NS)
    assert fired(s, "source_not_publishing", T0 + 30 * NS - 1) == []
    [a] = fired(s, "source_not_publishing", T0 + 30 * NS)
    assert a.detail["source"] == "panorama"


def test_a_source_silent_between_segments_fires_once_per_silence() -> None:
    s = Session()
    for src in ("main", "panorama"):
        s.segment(src, T0, T0 + 60 * NS)
    s.segment("main", T0 + 60 * NS + 29 * NS, T0 + 120 * NS, 1)  # 29 s silence: fine
    s.segment("panorama", T0 + 60 * NS + 30 * NS, T0 + 120 * NS, 1)  # 30 s silence: fires
    [a] = fired(s, "source_not_publishing", T0 + 125 * NS)
    assert a.detail == {"source": "panorama", "since_ns": T0 + 60 * NS, "until_ns": T0 + 90 * NS}


# -- gaps ------------------------------------------------------------------------------------------
def gap(s: Session, at_ns: int) -> GapRecord:
    g = GapRecord("main", "video", "no_packets", at_ns - 5 * NS, at_ns)
    s.add("gap", g.to_body(), at_ns)
    return g


def test_an_unexplained_gap_fires_an_explained_one_does_not() -> None:
    s = Session()
    g = gap(s, T0 + MIN)
    assert fired(s, "unexplained_gap", T0 + MIN - 1) == []
    [a] = fired(s, "unexplained_gap", T0 + MIN)
    fid = finding_id(RECORDER_GAP, "main", "video", g.start_ns, g.end_ns)
    assert a.detail["finding_id"] == fid
    s.add("explanation", {"finding_id": fid, "reason_code": "network", "text": "断网", "approver": "甲", "by": "乙"},
          T0 + MIN + 1)
    assert fired(s, "unexplained_gap", T0 + HOUR) == []


def test_a_site_may_spare_the_console_gaps_shorter_than_min_gap_ms() -> None:
    from tonglu.integrity.risk.ruleset import parse_rules

    rules = parse_rules("version: 1\nrules:\n  - id: unexplained_gap\n    legal_source: x\n    severity: 提示\n"
                        "    title: t\n    params: {min_gap_ms: 5000}\n")
    s = Session()
    gap(s, T0 + MIN)  # 5 s: reported
    s.add("gap", GapRecord("main", "audio", "rtp_loss", T0 + MIN, T0 + MIN + 4_999_000_000).to_body(), T0 + 2 * MIN)
    assert [a.detail["track"] for a in evaluate(rules, s.facts(), T0 + HOUR)] == ["video"]


# -- live views ------------------------------------------------------------------------------------
def test_a_live_view_by_an_unauthorised_supervisor_fires_an_authorised_one_does_not() -> None:
    s = Session()
    s.views.append(LiveView("v1", "interviewer1", "interviewer", "main", T0 + MIN))
    s.views.append(LiveView("v2", "sup", "supervisor", "main", T0 + 2 * MIN))
    [a] = fired(s, "live_view_unauthorised", T0 + HOUR)
    assert a.detail["user"] == "sup"
    s.fact("authorised_viewer", "sup", T0 + 2 * MIN)  # recorded by the time the view started
    assert fired(s, "live_view_unauthorised", T0 + HOUR) == []
    named = Session(authorised_viewers=["sup"])
    named.views.append(LiveView("v3", "sup", "supervisor", "main", T0 + MIN))
    assert fired(named, "live_view_unauthorised", T0 + HOUR) == []


# -- minors ----------------------------------------------------------------------------------------
def test_a_17_year_old_without_appropriate_adult_fires_18_does_not() -> None:
    assert len(fired(Session(suspect_age=17), "minor_without_adult", T0)) == 1
    assert fired(Session(suspect_age=18), "minor_without_adult", T0) == []
    assert fired(Session(suspect_age=17, appropriate_adult="张某（社区）"), "minor_without_adult", T0) == []
    late = Session()
    late.fact("suspect_age", 16, T0 + MIN)
    assert len(fired(late, "minor_without_adult", T0 + MIN)) == 1


# -- the engine ------------------------------------------------------------------------------------
def test_written_alerts_are_not_pending_again() -> None:
    s = Session()
    now = T0 + 12 * HOUR
    [a] = [x for x in pending(RULES, s.facts(), now) if x.rule.id == "duration_limit"]
    s.add("alert", a.body(RULES, now), now)
    assert [x for x in pending(RULES, s.facts(), now + HOUR) if x.rule.id == "duration_limit"] == []


def test_evaluating_a_long_session_is_fast() -> None:
    import time

    s = Session()
    for i in range(5000):
        for src in ("main", "panorama"):
            s.segment(src, T0 + i * 4 * NS, T0 + (i + 1) * 4 * NS - 30_000_000, i)
    facts = s.facts()
    t = time.perf_counter()
    for _ in range(10):
        evaluate(RULES, facts, T0 + 6 * HOUR)
    assert (time.perf_counter() - t) / 10 < 0.01
