"""Finding 1 (IDOR): an interviewer acted on any session (markers, invitations, stop...).

The matrix is built from the app's own routes: every route with a session id among its path
parameters (`rbac.session_id_from`), so a route added later is covered without editing this file.
An interviewer of another session gets 404 on each, the same answer as for a session that does not
exist; the session's own interviewer gets through the ownership check (2xx where a valid request is
known below, never 401/403/"no session" on routes its role may call).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from tests.live.media import offer_sdp
from tests.web.conftest import Staff, start_session
from tonglu.web.app import create_app
from tonglu.web.rbac import PUBLIC, TOKEN, no_session_detail, rule_for, session_id_from
from tonglu.web.routeindex import flatten
from tonglu.web.services import Services

OWN, FOREIGN, MISSING = "20260101-aaaaaaaaaaaa", "20260101-bbbbbbbbbbbb", "20260101-cccccccccccc"

# A valid request for the routes where one is known: the own interviewer must get a 2xx there.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/sessions/{}/markers"): {"note": "打点"},
    ("POST", "/api/sessions/{}/breaks"): {"action": "start", "reason_code": "rest"},
    ("POST", "/api/sessions/{}/record-times"): {"record_start_iso": "2026-01-01T00:00:00Z",
                                               "record_end_iso": "2026-01-01T01:00:00Z"},
    ("POST", "/api/sessions/{}/custody"): {"event": "out", "time_iso": "2026-01-01T00:00:00Z"},
    ("POST", "/api/sessions/{}/invitations"): {"name": "陈律师", "sub_role": "lawyer"},
    ("POST", "/api/sessions/{}/invitations/{}/revoke"): {},
    ("GET", "/api/sessions/{}/invitations"): {},
    ("GET", "/api/sessions/{}/events"): {},
    ("GET", "/api/sessions/{}"): {},
    ("GET", "/api/sessions/{}/monitoring"): {},
    ("POST", "/whep/{}/{}"): {},
    ("DELETE", "/whep/{}/{}/{}"): {},
    ("DELETE", "/api/sessions/{}/participants/{}"): {},
    ("POST", "/api/sessions/{}/stop"): {},
}
LAST = ("POST", "/api/sessions/{}/stop")  # ends the session: called last


def session_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(METHOD, template) of every route with a session id in its path, stop last."""
    out = []
    for info in flatten(app):
        if info.mount:
            continue
        names = re.findall(r"\{([^}:]*)", info.path)
        if session_id_from(dict.fromkeys(names, "x")) is None:
            continue
        out += [(m, info.path) for m in sorted(info.methods - {"HEAD"})]
    return sorted(out, key=lambda r: (r[0], re.sub(r"\{[^}]*\}", "{}", r[1])) == LAST)


def fill(path: str, sid: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1).split(":")[0]
        if session_id_from({name: "x"}) is not None:
            return sid
        return values.get(name, "x-none")

    return re.sub(r"\{([^}]*)\}", one, path)


@pytest.fixture
def offer() -> str:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(offer_sdp())
    finally:
        loop.close()


def _request(c: TestClient, method: str, url: str, headers: dict[str, str], body: Any, offer: str) -> Any:
    if url.startswith("/whep/") and method == "POST":
        return c.post(url, content=offer, headers={**headers, "Content-Type": "application/sdp"})
    if url.endswith(("/transcript/live", "/alerts/live")):  # endless event streams: only their refusal is called here
        return None
    if method in ("POST", "PUT", "PATCH"):
        return c.request(method, url, json=body, headers=headers)
    return c.request(method, url, headers=headers)


def test_interviewer_of_another_session_gets_404_on_every_session_route(
    app: FastAPI, services: Services, staff: Staff, offer: str
) -> None:
    services.accounts.create_user("officer-b", "interviewer", "pw-officer-b-0123456789", display_name="赵警官")
    other = {"Authorization": f"Bearer {services.accounts.issue_api_token('officer-b', 't')[1]}"}
    own = staff.auth("interviewer")
    start_session(services, OWN, created_by="admin", interviewers=["interviewer", "李警官"])  # listed by name
    start_session(services, FOREIGN, created_by="officer-b", interviewers=["赵警官", "钱警官"])
    routes = session_routes(app)
    assert len(routes) >= 30 and routes[-1][0] == "POST" and routes[-1][1].endswith("/stop")
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    # a participant who joined the own session (so that removing one can succeed)
    inv, inv_token = services.accounts.create_invitation(OWN, "孙检察官", "prosecutor", "interviewer", 3600)
    r = client.post(f"/api/sessions/{OWN}/participants", headers={"Authorization": f"Bearer {inv_token}"})
    assert r.status_code == 201, r.text
    values = {"source": "main", "inv_id": "x-none", "viewer_id": "x-none", "finding_id": "x-none"}
    wrong: list[str] = []
    own_ok = 0
    for method, path in routes:
        key = (method, re.sub(r"\{[^}]*\}", "{}", path))
        rule = rule_for(method, path)
        if rule is not None and rule.kind == PUBLIC:
            continue  # no credentials at all: the page / capability answer knows no caller
        body = BODIES.get(key, {})
        # 1. the interviewer of another session: 404, byte for byte what a missing session answers
        for sid in (OWN,):
            r = _request(client, method, fill(path, sid, values), other, body, offer)
            missing = _request(client, method, fill(path, MISSING, values), other, body, offer)
            if r is None:
                continue
            if r.status_code != 404 or r.json() != {"detail": no_session_detail(sid)}:
                wrong.append(f"other interviewer {method} {path}: {r.status_code} {r.text[:100]}")
            if missing.status_code != 404 or missing.json() != {"detail": no_session_detail(MISSING)}:
                wrong.append(f"missing session {method} {path}: {missing.status_code} {missing.text[:100]}")
        # 2. the session's own interviewer passes the ownership check
        if rule is not None and rule.kind == TOKEN and key != ("GET", "/api/sessions/{}/monitoring"):
            continue  # a source-token route: an API token is not a source token
        if key == ("DELETE", "/api/sessions/{}/participants/{}"):
            values["source"] = inv.source
        r = _request(client, method, fill(path, OWN, values), own, body, offer)
        values["source"] = "main"
        if r is None:
            continue
        allowed = rule is None or rule.kind == TOKEN or rule.allows_role("interviewer")
        if not allowed:
            if r.status_code != 403:
                wrong.append(f"own interviewer, role not allowed {method} {path}: {r.status_code}")
            continue
        if r.status_code in (401, 403) or (r.status_code == 404 and r.json() == {"detail": no_session_detail(OWN)}):
            wrong.append(f"own interviewer {method} {path}: {r.status_code} {r.text[:100]}")
        elif key in BODIES:
            if not 200 <= r.status_code < 300:
                wrong.append(f"own interviewer {method} {path}: {r.status_code} {r.text[:160]}")
            own_ok += 1
        if key == ("POST", "/api/sessions/{}/invitations"):
            values["inv_id"] = r.json()["id"]
        if key == ("POST", "/whep/{}/{}"):
            values["viewer_id"] = r.headers["location"].rsplit("/", 1)[1]
    assert wrong == [], "\n" + "\n".join(wrong)
    assert own_ok == len(BODIES)
    # the lists do not reveal the other session either
    assert [s["id"] for s in client.get("/api/sessions", headers=other).json()] == [FOREIGN]
    assert [s["id"] for s in client.get("/api/search", headers=other).json()["results"]] == [FOREIGN]
    assert OWN in [s["id"] for s in client.get("/api/sessions", headers=own).json()]
    # supervisors (no units yet: site-wide) and admins still reach every session
    for role in ("supervisor", "admin"):
        assert client.get(f"/api/sessions/{FOREIGN}/events", headers=staff.auth(role)).status_code == 200


def test_a_new_session_route_is_covered_without_a_rule(services: Services, staff: Staff) -> None:
    """A route added later, even one nobody wrote an RBAC rule for, is bound to the session's people."""
    app = create_app(services)

    @app.post("/api/sessions/{sid}/brand-new")
    def brand_new(sid: str, request: Request) -> dict[str, str]:
        return {"sid": sid}

    services.accounts.create_user("officer-b", "interviewer", "pw-officer-b-0123456789", display_name="赵警官")
    other = {"Authorization": f"Bearer {services.accounts.issue_api_token('officer-b', 't')[1]}"}
    start_session(services, OWN, created_by="interviewer")
    with TestClient(app) as c:
        assert ("POST", "/api/sessions/{sid}/brand-new") in session_routes(app)
        r = c.post(f"/api/sessions/{OWN}/brand-new", headers=other)
        assert r.status_code == 404 and r.json() == {"detail": no_session_detail(OWN)}
        assert c.post(f"/api/sessions/{OWN}/brand-new", headers=staff.auth("interviewer")).status_code == 200
