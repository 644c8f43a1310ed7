"""Finding 2 (covert live viewing): an interviewer not on the session, and a participant whose
invitation never joined, watched over WHEP while the room screen said "not monitored, 0 viewers".

Every role tries to watch a publishing room. Whoever gets in is listed on the room screen (the
capture page's status, read with the room's source token) by name and role and is audited; the
others are refused without a trace on the screen.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.live.conftest import LiveServer
from tests.live.media import WhepViewer, packet_publisher


def room_screen(srv: LiveServer, sid: str, source_token: str) -> dict[str, Any]:
    """What the room's capture page shows (it polls this with its source token)."""
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        r = c.get(f"/api/sessions/{sid}/capture-status", headers={"Authorization": f"Bearer {source_token}"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def user(srv: LiveServer, username: str, role: str, name: str) -> dict[str, str]:
    srv.services.accounts.create_user(username, role, f"pw-{username}-0123456789", display_name=name)
    return {"Authorization": f"Bearer {srv.services.accounts.issue_api_token(username, 't')[1]}"}


def test_every_viewer_of_any_role_is_on_the_room_screen_and_covert_attempts_fail(live_server: LiveServer) -> None:
    srv = live_server
    s = srv.create_session()  # interviewers 李四, 王五
    sid, main = s["id"], s["sources"]["main"]
    other = srv.create_session()["id"]
    on_session = user(srv, "li4", "interviewer", "李四")  # listed on the session by name
    own_token, _source = srv.invite(sid, name="陈律师", sub_role="lawyer")
    foreign_token, _ = srv.invite(other, name="孙检察官", sub_role="prosecutor")
    own = {"Authorization": f"Bearer {own_token}"}
    url = f"{srv.url}/whep/{sid}/main"
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        pub, _sent = packet_publisher(main["whip_url"], main["token"], "VP8")  # inside the loop it runs on
        await pub.start()
        await pub.wait_connected()
        # -- covert attempts: refused, and nothing appears on the room screen
        refused = {
            "anonymous": ({}, 401),
            "reviewer": (srv.auth("reviewer"), 403),
            "auditor": (srv.auth("auditor"), 403),
            "interviewer not on the session": (srv.auth("interviewer"), 404),
            "another session's participant": ({"Authorization": f"Bearer {foreign_token}"}, 404),
            "participant that never joined": (own, 403),
        }
        for what, (headers, status) in refused.items():
            v = WhepViewer(url, headers)
            r = await v.start(expect=status)
            seen[f"refused:{what}"] = r.json()
            await v.close()
        seen["screen_after_refusals"] = await asyncio.to_thread(room_screen, srv, sid, main["token"])
        # -- everyone who may watch does, and is listed by name and role
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            assert (await c.post(f"/api/sessions/{sid}/participants", headers=own)).status_code == 201
        viewers = []
        for headers in (srv.auth("admin"), srv.auth("supervisor"), on_session, own):
            v = WhepViewer(url, headers)
            await v.start()
            await v.wait_frames("video", 5)
            viewers.append(v)
        seen["screen"] = await asyncio.to_thread(room_screen, srv, sid, main["token"])
        for v in viewers:
            assert await v.delete() == 200
            await v.close()
        seen["screen_after"] = await asyncio.to_thread(room_screen, srv, sid, main["token"])
        await pub.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()

    assert "须先加入" in seen["refused:participant that never joined"]["detail"]
    quiet = seen["screen_after_refusals"]
    assert quiet["monitored"] is False and quiet["viewers"] == 0 and quiet["watchers"] == []
    screen = seen["screen"]
    assert screen["monitored"] is True and screen["viewers"] == 4
    assert sorted((w["name"], w["role"]) for w in screen["watchers"]) == sorted([
        ("admin 测试", "admin"), ("supervisor 测试", "supervisor"), ("李四", "interviewer"), ("陈律师", "participant"),
    ])
    assert all(w["role_label"] and w["source"] == "main" for w in screen["watchers"])
    assert seen["screen_after"]["monitored"] is False and seen["screen_after"]["watchers"] == []
    # every viewer is audited by who it was; every attempt is in the trail, refused ones too
    actions = srv.audit_actions()
    started = {(u, d.get("role")) for a, u, o, d in actions if a == "watch_start" and o == "ok"}
    assert started == {("admin", "admin"), ("supervisor", "supervisor"), ("li4", "interviewer"),
                       (f"invitation:{_invitation_id(srv, sid)}", "participant")}
    attempts = [(u, o) for a, u, o, _d in actions if a == "stream"]
    for who in ("reviewer", "auditor", "interviewer"):
        assert (who, "denied") in attempts, who  # the interviewer's 404 too: a refusal, not a miss


def _invitation_id(srv: LiveServer, sid: str) -> str:
    return str(srv.services.accounts.list_invitations(sid)[0].id)
