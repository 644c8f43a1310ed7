"""The all-sessions alert stream (`/api/risk/live`) shows an interviewer only the sessions it
belongs to: another session's alerts (case number, room, message) never reach it; supervisors see all."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.web.conftest import Staff, start_session
from tonglu.web.services import Services

HOUR = 3600 * 10**9


def _snapshot(client: TestClient, headers: dict[str, str]) -> set[str]:
    """Sessions of the alerts in the stream's first `snapshot` event."""
    with client.stream("GET", "/api/risk/live", headers=headers) as r:
        assert r.status_code == 200, r.read()
        event = ""
        for line in r.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event == "snapshot":
                return {a["session"] for a in json.loads(line.split(":", 1)[1])["alerts"]}
    raise AssertionError("no snapshot event")


def test_an_interviewer_sees_only_its_own_sessions_alerts(services: Services, app: FastAPI, staff: Staff) -> None:
    risk = services.risk
    assert risk is not None
    own = start_session(services, "s-own", created_by="interviewer")
    other = start_session(services, "s-other", created_by="someone-else", interviewers=["赵警官", "钱警官"])
    risk.offset_ns = 12 * HOUR  # both sessions pass the 12 h limit at once: an alert in each
    risk.tick()
    client = TestClient(app)
    assert _snapshot(client, staff.auth("supervisor")) >= {own, other}
    assert _snapshot(client, staff.auth("interviewer")) == {own}
