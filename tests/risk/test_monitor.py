"""The server-side rule timer: alerts as manifest entries (once per episode), acknowledgement,
the facts routes, the report's counts, and the task's life with the app."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.web.conftest import Staff, start_session
from tonglu.evidence.errors import ManifestError
from tonglu.web.risk import RiskMonitor
from tonglu.web.services import Services

HOUR = 3600 * 10**9


def fired(events: list[dict]) -> set[str]:
    """Alert ids of the events, but the night rule's: these tests run at any hour of the real clock."""
    return {ev["alert"]["alert_id"] for ev in events} - {ev["alert"]["alert_id"] for ev in events
                                                         if ev["alert"]["rule_id"] == "night_questioning"}


def monitor(services: Services) -> RiskMonitor:
    assert services.risk is not None
    return services.risk


def kinds(services: Services, sid: str, kind: str) -> list[dict]:
    return [e.body for e in services.ledger.entries(sid) if e.kind == kind]


def test_a_tick_writes_one_alert_per_episode_and_acks_are_entries(
    services: Services, app: FastAPI, staff: Staff
) -> None:
    risk = monitor(services)
    sid = start_session(services, "s-risk-1")
    assert fired(risk.tick()) == set()
    risk.offset_ns = 12 * HOUR  # the engine's clock only: no waiting 12 hours
    assert "duration_limit.12h" in fired(risk.tick())
    assert risk.tick() == []  # deduplicated: the same episode never alerts twice
    [dur] = [a for a in kinds(services, sid, "alert") if a["alert_id"] == "duration_limit.12h"]
    assert dur["severity"] == "告警" and dur["legal_source"] == "刑事诉讼法第119条" and dur["rules_sha256"]
    # a fresh monitor (a restarted server) reads the written alerts back: still no duplicate
    fresh = RiskMonitor(services.ledger, services.audit, risk.ruleset, offset_ns=12 * HOUR)
    assert fresh.tick() == []

    client = TestClient(app)
    url = f"/api/sessions/{sid}/alerts/duration_limit.12h/ack"
    assert client.post(url, headers=staff.auth("reviewer")).status_code == 403
    r = client.post(url, json={"note": "已报告带班领导"}, headers=staff.auth("supervisor"))
    assert r.status_code == 201, r.text
    [ack] = kinds(services, sid, "alert_ack")
    assert ack["alert_id"] == "duration_limit.12h" and ack["by"] == "supervisor" and ack["role"] == "supervisor"
    assert client.post(url, headers=staff.auth("interviewer")).status_code == 409
    assert client.post(f"/api/sessions/{sid}/alerts/nope.x/ack", headers=staff.auth("admin")).status_code == 404

    listed = client.get(f"/api/sessions/{sid}/alerts", headers=staff.auth("reviewer")).json()
    assert listed["unacknowledged"] == len(listed["alerts"]) - 1
    report = client.get(f"/api/sessions/{sid}/report", headers=staff.auth("reviewer")).json()
    assert report["summary"]["alerts"] == len(listed["alerts"])
    assert report["summary"]["alerts_unacknowledged"] == len(listed["alerts"]) - 1
    [row] = [a for a in report["alerts"] if a["alert_id"] == "duration_limit.12h"]
    assert row["acknowledged_by"] == "supervisor"
    html = client.get(f"/api/sessions/{sid}/report?format=html", headers=staff.auth("reviewer")).text
    assert "风险告警 Risk alerts" in html and "讯问持续时间达到法定上限" in html and "刑事诉讼法第119条" in html


def test_an_interviewer_leaving_alerts_and_facts_silence_rules(services: Services, app: FastAPI,
                                                               staff: Staff) -> None:
    risk = monitor(services)
    sid = start_session(services, "s-risk-2", suspect_age=16)
    client = TestClient(app)
    assert fired(risk.tick()) == {"minor_without_adult.minor"}
    r = client.post(f"/api/sessions/{sid}/interviewers", json={"event": "left", "name": "王警官"},
                    headers=staff.auth("interviewer"))
    assert r.status_code == 201, r.text
    [presence] = fired(risk.tick())
    assert presence.startswith("interviewers_present.seq")
    assert client.post(f"/api/sessions/{sid}/interviewers", json={"event": "left", "name": "王警官"},
                       headers=staff.auth("interviewer")).status_code == 404
    # the serious-case extension needs an approver, then moves the limit to 24 h
    url = f"/api/sessions/{sid}/risk-facts"
    assert client.post(url, json={"name": "serious_case", "value": True},
                       headers=staff.auth("interviewer")).status_code == 422
    assert client.post(url, json={"name": "suspect_age", "value": "x"},
                       headers=staff.auth("interviewer")).status_code == 422
    assert client.post(url, json={"name": "colour", "value": "red"},
                       headers=staff.auth("interviewer")).status_code == 422
    r = client.post(url, json={"name": "serious_case", "value": True, "approver": "张局长"},
                    headers=staff.auth("interviewer"))
    assert r.status_code == 201, r.text
    risk.offset_ns = 12 * HOUR
    assert not any(a.startswith("duration_limit") for a in fired(risk.tick()))
    risk.offset_ns = 24 * HOUR
    assert "duration_limit.24h" in fired(risk.tick())


def test_a_stopped_session_gets_no_alert_after_its_final_digest(services: Services) -> None:
    risk = monitor(services)
    sid = start_session(services, "s-risk-3")
    risk.tick()
    services.ledger.append(sid, "session_stop", {"stopped_by": "t"})
    digest = services.ledger.checkpoint(sid, final=True).body_hash
    risk.offset_ns = 30 * HOUR
    assert risk.tick() == []
    assert services.ledger.checkpoints(sid)[-1].body_hash == digest
    with pytest.raises(ManifestError):
        services.ledger.append(sid, "alert", {"alert_id": "x"}, while_recording=True)


def test_the_timer_runs_with_the_app_and_pushes_live(services: Services, app: FastAPI, staff: Staff) -> None:
    risk = monitor(services)
    assert not risk.running
    with TestClient(app) as client:
        assert risk.running
        info = client.get("/api/risk/rules", headers=staff.auth("reviewer")).json()
        assert info["running"] and len(info["rules"]) == 10
        sid = start_session(services, "s-risk-4")
        deadline = time.monotonic() + 10
        while risk.ticks < 2:
            assert time.monotonic() < deadline, "the timer does not tick"
            time.sleep(0.05)
        assert sid in risk.active_sessions()
        t0 = time.monotonic()
        risk.offset_ns = 12 * HOUR
        while not any(a["alert_id"] == "duration_limit.12h" for a in kinds(services, sid, "alert")):
            assert time.monotonic() - t0 < 5, "no alert from the running timer"
            time.sleep(0.05)
    assert not risk.running


def test_session_start_keeps_the_risk_facts_given_and_refuses_bad_ones() -> None:
    from tonglu.recorder.errors import BadRequest
    from tonglu.recorder.store import validate_request

    base = {"room": "r", "case_number": "c", "suspect": "s", "interviewers": ["a", "b"]}
    plain = validate_request(base)
    assert not {"suspect_age", "serious_case", "appropriate_adult", "detained_at_iso"} & set(plain)
    body = validate_request({**base, "suspect_age": 16, "appropriate_adult": "社区 王某", "serious_case": True,
                             "night_reason": "经批准", "detained_at": "2026-12-03T10:00:00+08:00",
                             "authorised_viewers": ["sup"]})
    assert body["suspect_age"] == 16 and body["serious_case"] is True and body["authorised_viewers"] == ["sup"]
    assert body["detained_at_iso"] == "2026-12-03T10:00:00+08:00"
    for bad in ({"suspect_age": "16"}, {"suspect_age": 200}, {"serious_case": "yes"}, {"detained_at": "yesterday"},
                {"authorised_viewers": "sup"}):
        with pytest.raises(BadRequest):
            validate_request({**base, **bad})


def test_live_views_are_read_from_the_audit_trail(services: Services, app: FastAPI, staff: Staff) -> None:
    risk = monitor(services)
    sid = start_session(services, "s-risk-5")
    risk.tick()

    def watch(user: str, role: str, viewer: str, outcome: str = "ok", session: str = sid) -> None:
        services.audit.append(user=user, role=role, address="127.0.0.1", action="watch_start",
                              obj=f"/whep/{session}/main", outcome=outcome,
                              detail={"session": session, "source": "main", "viewer": viewer})

    watch("li", "interviewer", "v-own-preview")
    watch("sup", "supervisor", "v-refused", outcome="failed")
    start_session(services, "s-risk-5b")
    watch("sup", "supervisor", "v-other", session="s-risk-5b")
    views = [(ev["alert"]["session"], ev["alert"]["alert_id"]) for ev in risk.tick()
             if ev["alert"]["rule_id"] == "live_view_unauthorised"]
    assert views == [("s-risk-5b", "live_view_unauthorised.viewv-other")]  # the other session's, not ours
    watch("sup", "supervisor", "v-sup")
    assert [a for a in fired(risk.tick()) if a.startswith("live_view")] == ["live_view_unauthorised.viewv-sup"]
    client = TestClient(app)
    r = client.post(f"/api/sessions/{sid}/risk-facts", headers=staff.auth("supervisor"),
                    json={"name": "authorised_viewer", "value": "sup2", "approver": "王局长", "text": "督察"})
    assert r.status_code == 201, r.text
    watch("sup2", "supervisor", "v-sup2")
    assert not any(a.startswith("live_view") for a in fired(risk.tick()))


def test_an_unreadable_session_does_not_stop_the_others_alarms(services: Services,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    risk = monitor(services)
    broken = services.settings.ledger_dir / "s-broken"
    broken.mkdir(parents=True)
    (broken / "entries.log").write_bytes(b"not an entry\n")
    sid = start_session(services, "s-risk-6")
    risk.offset_ns = 12 * HOUR
    assert "duration_limit.12h" in fired([ev for ev in risk.tick() if ev["alert"]["session"] == sid])
    risk.tick()
    assert sum("s-broken" in r.getMessage() for r in caplog.records) == 1  # logged once, not every tick
