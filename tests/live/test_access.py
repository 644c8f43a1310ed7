"""Who may watch, and precise answers to bad WHEP requests (no media needed: offers only)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.live.conftest import LiveServer
from tests.live.media import offer_sdp


@pytest.fixture(scope="module")
def offers() -> dict[str, str]:
    loop = asyncio.new_event_loop()
    try:
        return {
            "recvonly": loop.run_until_complete(offer_sdp()),
            "video_only": loop.run_until_complete(offer_sdp(audio=False)),
            "sendonly": loop.run_until_complete(offer_sdp(direction="sendonly")),
        }
    finally:
        loop.close()


def post(c: httpx.Client, path: str, sdp: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return c.post(path, content=sdp, headers={"Content-Type": "application/sdp", **(headers or {})})


def test_only_admin_supervisor_and_the_sessions_own_people_may_watch(
    live_server: LiveServer, offers: dict[str, str]
) -> None:
    srv = live_server
    sid = srv.create_session()["id"]
    other = srv.create_session()["id"]
    own_token, _ = srv.invite(sid)
    foreign_token, _ = srv.invite(other, name="孙检察官", sub_role="prosecutor")
    path = f"/whep/{sid}/main"
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        assert post(c, path, offers["recvonly"]).status_code == 401
        assert post(c, path, offers["recvonly"], {"Authorization": "Bearer tlk_not-a-token"}).status_code == 401
        for role in ("reviewer", "auditor"):
            r = post(c, path, offers["recvonly"], srv.auth(role))
            assert r.status_code == 403, (role, r.status_code, r.text)
        # another session's participant, and an interviewer not on this session: as if it did not exist
        r = post(c, path, offers["recvonly"], {"Authorization": f"Bearer {foreign_token}"})
        assert r.status_code == 404 and "不存在" in r.json()["detail"]
        r = post(c, path, offers["recvonly"], srv.auth("interviewer"))
        assert r.status_code == 404 and "不存在" in r.json()["detail"]
        # the session's own participant only once it has joined (the room then lists it)
        own = {"Authorization": f"Bearer {own_token}"}
        r = post(c, path, offers["recvonly"], own)
        assert r.status_code == 403 and r.json()["error"] == "NotJoined"
        assert c.post(f"/api/sessions/{sid}/participants", headers=own).status_code == 201
        # the session's own participant, a supervisor and an admin may
        created = []
        for headers in ({"Authorization": f"Bearer {own_token}"}, srv.auth("supervisor"), srv.auth("admin")):
            r = post(c, path, offers["recvonly"], headers)
            assert r.status_code == 201, r.text
            assert r.headers["content-type"].startswith("application/sdp")
            assert r.headers["location"].startswith(f"/whep/{sid}/main/") and r.headers["etag"]
            assert "goog-remb" not in r.text and "abs-send-time" not in r.text
            created.append((r.headers["location"], headers))
        st = srv.status(sid)
        assert sorted(v["role"] for v in st["viewers"]) == ["admin", "participant", "supervisor"]
        # a participant cannot end someone else's viewer; each can end its own
        loc_sup = created[1][0]
        assert c.delete(loc_sup, headers=created[0][1]).status_code == 404
        assert c.delete(loc_sup.replace(sid, other), headers=srv.auth("supervisor")).status_code == 404
        for loc, headers in created:
            assert c.delete(loc, headers=headers).status_code == 200
        assert c.delete(created[0][0], headers=created[0][1]).status_code == 404  # already gone
        assert srv.status(sid)["viewers"] == []
        # a participant may not read another session's monitoring either
        r = c.get(f"/api/sessions/{other}/monitoring", headers={"Authorization": f"Bearer {own_token}"})
        assert r.status_code == 404


def test_bad_whep_requests_get_precise_answers(live_server: LiveServer, offers: dict[str, str]) -> None:
    srv = live_server
    s = srv.create_session()
    sid = s["id"]
    sup = srv.auth("supervisor")
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.post(f"/whep/{sid}/main", content=offers["recvonly"], headers={"Content-Type": "text/plain", **sup})
        assert r.status_code == 415
        assert post(c, f"/whep/{sid}/main", "", sup).status_code == 400
        assert post(c, f"/whep/{sid}/main", "v=0\r\nnonsense\r\n", sup).status_code == 400
        r = post(c, f"/whep/{sid}/main", offers["sendonly"], sup)
        assert r.status_code == 422 and "recvonly" in r.json()["detail"]
        no_codec = offers["video_only"].replace("VP8/90000", "AV1X/90000").replace("H264/90000", "AV1X/90000")
        r = post(c, f"/whep/{sid}/main", no_codec, sup)
        assert r.status_code == 422 and "VP8" in r.json()["detail"]
        assert post(c, f"/whep/{sid}/main", "v=0\r\n" + "a=x\r\n" * 20000, sup).status_code == 413
        r = post(c, f"/whep/{sid}/nosuchsource", offers["recvonly"], sup)
        assert r.status_code == 404 and "nosuchsource" in r.json()["detail"]
        assert post(c, "/whep/20240101-000000000000/main", offers["recvonly"], sup).status_code == 404
        assert c.options(f"/whep/{sid}/main").headers["accept-post"] == "application/sdp"
        assert c.patch(f"/whep/{sid}/main/abc").status_code == 405
        assert c.delete(f"/whep/{sid}/main/nosuchviewer", headers=sup).status_code == 404
        # a video-only viewer gets video only
        r = post(c, f"/whep/{sid}/main", offers["video_only"], sup)
        assert r.status_code == 201 and "m=audio" not in r.text
        assert c.delete(r.headers["location"], headers=sup).status_code == 200
        # nothing to watch once the session is stopped
        assert c.post(f"/api/sessions/{sid}/stop", headers=srv.auth("admin-token")).status_code == 200
        r = post(c, f"/whep/{sid}/main", offers["recvonly"], sup)
        assert r.status_code == 409
    # refused attempts are in the audit trail too
    outcomes = {(a, u, o) for a, u, o, _d in srv.audit_actions()}
    assert ("watch_start", "supervisor", "failed") in outcomes
