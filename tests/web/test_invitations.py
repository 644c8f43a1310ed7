"""Invitations: bound to one session, revocable, expiring; by link (cookie) and by Bearer."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.web.conftest import Staff, start_session
from tonglu.web.services import Services

S1, S2 = "s-inv-1", "s-inv-2"


def _invite(client: TestClient, staff: Staff, sid: str, ttl_s: int = 3600) -> dict[str, str]:
    r = client.post(
        f"/api/sessions/{sid}/invitations",
        json={"name": "刘律师", "sub_role": "lawyer", "ttl_s": ttl_s},
        headers=staff.auth("interviewer"),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["url"].endswith(f"/join/{body['token']}") and body["source"] == f"remote-{body['id']}"
    return body


def test_invitation_link_is_bound_to_its_session(
    client: TestClient, staff: Staff, services: Services
) -> None:
    start_session(services, S1)
    start_session(services, S2)
    inv = _invite(client, staff, S1)
    r = client.get(f"/join/{inv['token']}")
    assert r.status_code == 303 and r.headers["location"] == f"/remote/{S1}"
    me = client.get("/api/auth/me").json()
    assert me == {
        "user": f"invitation:{inv['id']}",
        "role": "participant",
        "display_name": "刘律师",
        "session_scope": S1,
        "sub_role": "lawyer",
    }
    assert client.get(f"/api/sessions/{S1}/events").status_code == 200
    r = client.get(f"/api/sessions/{S2}/events")
    assert r.status_code == 404 and "不存在" in r.json()["detail"]  # as if it did not exist
    assert client.get("/api/sessions").status_code == 403
    assert client.post(f"/api/sessions/{S1}/markers", json={"note": "x"}).status_code == 403
    # the same holds for the invitation token used as a Bearer token
    bearer = {"Authorization": f"Bearer {inv['token']}"}
    client.cookies.clear()
    assert client.get(f"/api/sessions/{S1}/events", headers=bearer).status_code == 200
    assert client.get(f"/api/sessions/{S2}/events", headers=bearer).status_code == 404
    assert any(r["action"] == "invitation_redeem" and r["outcome"] == "ok" for r in services.audit.query())


def test_revoked_invitation_stops_working_at_once(
    client: TestClient, staff: Staff, services: Services
) -> None:
    start_session(services, S1)
    inv = _invite(client, staff, S1)
    assert client.get(f"/join/{inv['token']}").status_code == 303
    assert client.get(f"/api/sessions/{S1}/events").status_code == 200
    r = client.post(f"/api/sessions/{S1}/invitations/{inv['id']}/revoke", headers=staff.auth("interviewer"))
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert client.get(f"/api/sessions/{S1}/events").status_code == 401  # the open page session ended
    client.cookies.clear()
    r = client.get(f"/join/{inv['token']}")
    assert r.status_code == 410 and "撤销" in r.text
    bearer = {"Authorization": f"Bearer {inv['token']}"}
    assert client.get(f"/api/sessions/{S1}/events", headers=bearer).status_code == 401
    listed = client.get(f"/api/sessions/{S1}/invitations", headers=staff.auth("supervisor")).json()
    assert [i["state"] for i in listed] == ["revoked"]
    audit = services.audit.query(action="invitation_revoke")
    assert audit and audit[-1]["user"] == "interviewer" and audit[-1]["outcome"] == "ok"


def test_expired_invitation_is_refused(client: TestClient, staff: Staff, services: Services) -> None:
    start_session(services, S1)
    inv = _invite(client, staff, S1, ttl_s=60)
    assert client.get(f"/join/{inv['token']}").status_code == 303
    real_clock = services.accounts.clock
    services.accounts.clock = lambda: real_clock() + 61 * 10**9
    try:
        assert client.get(f"/api/sessions/{S1}/events").status_code == 401
        client.cookies.clear()
        r = client.get(f"/join/{inv['token']}")
        assert r.status_code == 410 and "过期" in r.text
        bearer = {"Authorization": f"Bearer {inv['token']}"}
        assert client.get(f"/api/sessions/{S1}/events", headers=bearer).status_code == 401
    finally:
        services.accounts.clock = real_clock


def test_invitation_errors(client: TestClient, staff: Staff, services: Services) -> None:
    start_session(services, S1)
    h = staff.auth("interviewer")
    assert client.get("/join/tli_unknown").status_code == 404
    r = client.post(f"/api/sessions/{S1}/invitations", json={"name": "x", "sub_role": "king"}, headers=h)
    assert r.status_code == 422
    r = client.post("/api/sessions/no-such/invitations", json={"name": "x", "sub_role": "judge"}, headers=h)
    assert r.status_code == 404
    assert client.post(f"/api/sessions/{S1}/invitations/ffffffff/revoke", headers=h).status_code == 404
    start_session(services, S2)
    inv = _invite(client, staff, S2)
    # an invitation of another session cannot be revoked through this one
    assert client.post(f"/api/sessions/{S1}/invitations/{inv['id']}/revoke", headers=h).status_code == 404
    assert client.get(f"/api/sessions/{S1}/invitations", headers=staff.auth("reviewer")).status_code == 403
