"""/livez, /readyz and /metrics: liveness and readiness apart, metrics only for staff
(the figures of a real recording: tests/recorder/test_metrics.py)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.web.conftest import Staff
from tonglu.web.routes.health import register_check


def _value(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} missing from:\n{text}"
    return float(m.group(1))


def test_livez_answers_while_readyz_names_the_part_that_is_down(client: TestClient) -> None:
    up = {"ok": True}
    register_check(client.app, "store", lambda: up["ok"])
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").json() == {"ok": True, "parts": {"store": True}}
    up["ok"] = False
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["parts"] == {"store": False}
    assert client.get("/livez").status_code == 200  # alive, not ready: do not restart it
    assert client.get("/healthz").status_code == 503


def test_metrics_need_a_staff_role(client: TestClient, staff: Staff) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=staff.auth("interviewer")).status_code == 403
    r = client.get("/metrics", headers=staff.auth("supervisor"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert _value(r.text, "tonglu_sessions_recording") == 0
    assert _value(r.text, "tonglu_metrics_errors") == 0
