"""Bad input around remote parties: a second join with the same invitation replaces the first
(its peer and viewers end; decided: a reloaded page or a second device must not leave two live
connections), participants beyond TONGLU_MAX_PARTICIPANTS are refused with 429 and a reason, a
revoked judge is cut off (publisher and party viewer) within 2 s and audited, a staff principal
cannot use the party view, a wrong room token gets 403, a hearing needs no second interviewer."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import httpx
import pytest

from tests.hearing.peers import PartyViewer
from tests.hearing.test_hearing_e2e import call, create_hearing
from tests.live.conftest import LiveServer
from tests.live.media import packet_publisher

pytestmark = pytest.mark.slow


def test_rejoin_replaces_limit_refuses_and_revocation_cuts_off(live_server: LiveServer) -> None:
    srv = live_server
    srv.recorder.settings = dataclasses.replace(srv.recorder.settings, max_participants=2)
    s = create_hearing(srv)
    sid = s["id"]
    judge_tok, judge_src = srv.invite(sid, "周审判员", "judge")
    law_tok, _law_src = srv.invite(sid, "郑律师", "lawyer")
    third_tok, _ = srv.invite(sid, "吴公诉人", "prosecutor")
    judge = {"Authorization": f"Bearer {judge_tok}"}
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        r = await call(srv, "POST", f"/api/sessions/{sid}/participants", judge)
        assert r.status_code == 201
        pub, _ = packet_publisher(r.json()["whip_url"], r.json()["token"], "VP8", fps=10)
        await pub.start()
        await pub.wait_connected()
        view = PartyViewer(srv.url, sid, judge, 3)
        await view.start()
        # a second join with the same invitation: the first connection and its view end
        r2 = await call(srv, "POST", f"/api/sessions/{sid}/participants", judge)
        assert r2.status_code == 201 and r2.json()["source"] == judge_src
        deadline = time.time() + 5
        while (pub.pc.connectionState == "connected"  # noqa: ASYNC110
               or view.pc.connectionState == "connected") and time.time() < deadline:
            await asyncio.sleep(0.05)
        seen["first_ended"] = (srv.recorder.live[sid].peers.get(judge_src) is None,
                               srv.recorder.whep.session_viewers(sid) == [])
        pub2, _ = packet_publisher(r2.json()["whip_url"], r2.json()["token"], "VP8", fps=10)
        await pub2.start()  # the new token publishes at once (no 409: the old peer is gone)
        await pub2.wait_connected()
        stale, _ = packet_publisher(r.json()["whip_url"], r.json()["token"], "VP8", fps=10)
        await stale.start(expect=403)  # the first token no longer works
        await stale.close()
        # the participant limit (2 here)
        r = await call(srv, "POST", f"/api/sessions/{sid}/participants", {"Authorization": f"Bearer {law_tok}"})
        assert r.status_code == 201
        r = await call(srv, "POST", f"/api/sessions/{sid}/participants", {"Authorization": f"Bearer {third_tok}"})
        seen["over_limit"] = (r.status_code, r.json())
        # staff do not watch as a party; a wrong token is refused
        v = PartyViewer(srv.url, sid, srv.auth("supervisor"), 1)
        await v.start(expect=403)
        await v.close()
        v = PartyViewer(srv.url, sid, {"Authorization": "Bearer not-a-room-token"}, 1)
        await v.start(expect=403)
        await v.close()
        # revoking the judge's invitation cuts its publisher and its party view within 2 s
        view2 = PartyViewer(srv.url, sid, judge, 3)
        await view2.start()
        t0 = time.time()
        invs = srv.services.accounts.list_invitations(sid)
        inv_id = next(i.id for i in invs if i.source == judge_src)
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            r = await c.post(f"/api/sessions/{sid}/invitations/{inv_id}/revoke", headers=srv.auth("admin"))
        assert r.status_code in (200, 201), r.text
        while (view2.pc.connectionState == "connected"  # noqa: ASYNC110
               or pub2.pc.connectionState == "connected") and time.time() - t0 < 5:
            await asyncio.sleep(0.05)
        seen["cut_s"] = time.time() - t0
        seen["viewers_after"] = [v["party"] for v in srv.recorder.whep.status(sid)]
        for peer in (pub, pub2, view, view2):
            await peer.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert seen["first_ended"] == (True, True)
    status, body = seen["over_limit"]
    assert status == 429 and "TONGLU_MAX_PARTICIPANTS=2" in body["detail"]
    assert seen["cut_s"] < 2.0
    assert judge_src not in seen["viewers_after"]
    actions = [(a, o) for a, _u, o, _d in srv.audit_actions()]
    assert ("invitation_revoke", "ok") in actions
