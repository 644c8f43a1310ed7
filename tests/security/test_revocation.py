"""Finding 3 (revocation did not cut media): after an invitation was revoked the participant's viewer
stayed connected and its WHIP source token still published (201).

Revocation, expiry and account disable now end the peer, the viewers and the source token within
CUT_OFF_S; a new WHIP publish with the old token is refused (403) with the reason. Checked with the
recorder in this process and in a worker process behind the router (the internal API).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from tests.live.conftest import FAST_HASHER, LiveServer
from tests.live.media import WhepViewer, packet_publisher
from tests.recorder.conftest import ADMIN, make_settings
from tests.recorder.peers import WhipPublisher
from tests.recorder.workerfix import cluster, run
from tonglu.web import tables
from tonglu.web.accounts import Accounts

CUT_OFF_S = 2.0


async def until(check: Callable[[], Any], limit_s: float) -> float:
    """Seconds until `check()` (sync, may do HTTP: run in a thread) is true; fails after `limit_s`."""
    t0 = time.monotonic()
    while not await asyncio.to_thread(check):
        if time.monotonic() - t0 > limit_s:
            raise AssertionError(f"not within {limit_s} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def session_status(url: str, sid: str, auth: dict[str, str]) -> dict[str, Any]:
    with httpx.Client(base_url=url, headers=auth, timeout=30) as c:
        r = c.get(f"/api/sessions/{sid}")
    assert r.status_code == 200, r.text
    return dict(r.json())


class Participant:
    """A remote participant that joined, publishes its camera and watches the room's main camera."""

    def __init__(self, base: str, sid: str, inv_token: str) -> None:
        self.base, self.sid = base, sid
        self.auth = {"Authorization": f"Bearer {inv_token}"}

    async def start(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as c:
            r = await c.post(f"/api/sessions/{self.sid}/participants", headers=self.auth)
        assert r.status_code == 201, r.text
        self.joined = r.json()
        self.pub = WhipPublisher(self.joined["whip_url"], self.joined["token"], fps=15)
        await self.pub.start()
        await self.pub.wait_connected()
        self.viewer = WhepViewer(self.joined["watch"]["main"], self.auth)
        await self.viewer.start()
        await self.viewer.wait_frames("video", 5)

    def cut(self, status: dict[str, Any]) -> bool:
        """The recorder no longer has its viewer nor its peer."""
        source = self.joined["source"]
        viewing = any(v.get("participant_source") == source or v["role"] == "participant" for v in status["viewers"])
        return not viewing and not status["sources"][source]["connected"] and status["sources"][source]["peer"] is None

    async def media_stopped(self, quiet_s: float = 1.0) -> bool:
        """No frame reaches its viewer any more."""
        before = self.viewer.received["video"].decoded
        await asyncio.sleep(quiet_s)
        return self.viewer.received["video"].decoded == before

    async def republish(self) -> httpx.Response:
        again = WhipPublisher(self.joined["whip_url"], self.joined["token"])
        r = await again.start(expect=403)
        await again.close()
        return r

    async def close(self) -> None:
        for peer in ("viewer", "pub"):
            if hasattr(self, peer):
                await getattr(self, peer).close()


def scenario_revoke(base: str, sid: str, main: dict[str, str], inv_id: str, inv_token: str,
                    staff: dict[str, str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def go() -> None:
        room, _sent = packet_publisher(main["whip_url"], main["token"], "VP8")  # inside the loop it runs on
        await room.start()
        p = Participant(base, sid, inv_token)
        try:
            await room.wait_connected()
            await p.start()
            assert not p.cut(await asyncio.to_thread(session_status, base, sid, staff))
            t0 = time.monotonic()
            async with httpx.AsyncClient(base_url=base, headers=staff, timeout=30) as c:
                r = await c.post(f"/api/sessions/{sid}/invitations/{inv_id}/revoke")
            assert r.status_code == 200, r.text
            seen["revoke"] = r.json()
            await until(lambda: p.cut(session_status(base, sid, staff)), CUT_OFF_S)
            seen["cut_s"] = time.monotonic() - t0
            seen["media_stopped"] = await p.media_stopped()
            seen["republish"] = (await p.republish()).json()
            async with httpx.AsyncClient(base_url=base, timeout=30) as c:  # and it cannot come back in
                seen["rewatch"] = (await c.post(f"/whep/{sid}/main", content="v=0", headers={
                    **p.auth, "Content-Type": "application/sdp"})).status_code
        finally:  # a failing check must not leave peers behind (the server would wait for them)
            await p.close()
            await room.close()

    run(go())
    return seen


def check_revoked(seen: dict[str, Any]) -> None:
    print(f"revocation cut-off after {seen['cut_s']:.3f} s")
    assert seen["cut_s"] <= CUT_OFF_S, seen["cut_s"]
    cut = seen["revoke"]["cut_off"]
    assert seen["revoke"]["state"] == "revoked" and cut["viewers_ended"] == 1 and cut["peer_ended"] is True
    assert seen["media_stopped"]
    assert seen["republish"]["error"] == "TokenRevoked" and "撤销" in seen["republish"]["detail"]
    assert seen["rewatch"] == 401


def test_revoking_an_invitation_cuts_its_peer_viewer_and_token(live_server: LiveServer) -> None:
    srv = live_server
    s = srv.create_session()
    sid = s["id"]
    inv, token = srv.services.accounts.create_invitation(sid, "陈律师", "lawyer", "admin", 3600)
    seen = scenario_revoke(srv.url, sid, s["sources"]["main"], inv.id, token, srv.auth("admin-token"))
    check_revoked(seen)
    # the manifest says why the participant's source is silent from now on; the trail has the cut viewer
    left = [e.body for e in srv.services.ledger.entries(sid) if e.kind == "participant" and e.body["event"] == "left"]
    assert [(b["source"], b["reason"]) for b in left] == [(inv.source, "invitation_revoked")]
    stops = [d for a, _u, _o, d in srv.audit_actions() if a == "watch_stop"]
    assert [d["reason"] for d in stops] == ["invitation_revoked"]


@pytest.mark.slow
def test_revocation_cuts_off_through_a_recorder_worker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with cluster(settings, 1) as (server, _handle):
        server.services.accounts = Accounts.from_url(settings.db_url, hasher=FAST_HASHER)
        s = server.create_session()
        sid = s["id"]
        inv, token = server.services.accounts.create_invitation(sid, "陈律师", "lawyer", "admin", 3600)
        seen = scenario_revoke(server.url, sid, s["sources"]["main"], inv.id, token,
                               {"Authorization": f"Bearer {ADMIN}"})
    check_revoked(seen)


def test_an_expiring_invitation_is_cut_off_when_it_expires(live_server: LiveServer) -> None:
    srv = live_server
    s = srv.create_session()
    sid, main = s["id"], s["sources"]["main"]
    inv, token = srv.services.accounts.create_invitation(sid, "钱法官", "judge", "admin", 60)
    staff = srv.auth("admin-token")
    seen: dict[str, Any] = {}

    async def go() -> None:
        room, _sent = packet_publisher(main["whip_url"], main["token"], "VP8")  # inside the loop it runs on
        await room.start()
        p = Participant(srv.url, sid, token)
        try:
            await room.wait_connected()
            # the shortest invitation lasts a minute: bring its end closer (before it joins)
            expires_ns = time.time_ns() + 6 * 10**9
            with srv.services.accounts.engine.begin() as conn:
                conn.execute(update(tables.invitations).where(tables.invitations.c.id == inv.id)
                             .values(expires_ns=expires_ns))
            await p.start()
            assert time.time_ns() < expires_ns, "setup took too long for this test"
            await until(lambda: time.time_ns() >= expires_ns, 10)
            await until(lambda: p.cut(session_status(srv.url, sid, staff)), CUT_OFF_S)
            seen["late_s"] = (time.time_ns() - expires_ns) / 1e9
            seen["media_stopped"] = await p.media_stopped()
            seen["republish"] = (await p.republish()).json()
        finally:
            await p.close()
            await room.close()

    run(go())
    print(f"expiry cut-off {seen['late_s']:.3f} s after the invitation expired")
    assert seen["late_s"] <= CUT_OFF_S and seen["media_stopped"]
    assert seen["republish"]["error"] == "TokenRevoked" and "过期" in seen["republish"]["detail"]
    left = [e.body for e in srv.services.ledger.entries(sid) if e.kind == "participant" and e.body["event"] == "left"]
    assert [(b["source"], b["reason"]) for b in left] == [(inv.source, "invitation_expired")]


def test_disabling_an_account_cuts_its_live_viewers(live_server: LiveServer) -> None:
    srv = live_server
    s = srv.create_session()
    sid, main = s["id"], s["sources"]["main"]
    staff = srv.auth("admin-token")
    seen: dict[str, Any] = {}

    async def go() -> None:
        room, _sent = packet_publisher(main["whip_url"], main["token"], "VP8")  # inside the loop it runs on
        await room.start()
        viewer = WhepViewer(f"{srv.url}/whep/{sid}/main", srv.auth("supervisor"))
        admin = WhepViewer(f"{srv.url}/whep/{sid}/main", srv.auth("admin"))  # someone else keeps watching
        try:
            await room.wait_connected()
            await viewer.start()
            await viewer.wait_frames("video", 5)
            await admin.start()
            t0 = time.monotonic()
            async with httpx.AsyncClient(base_url=srv.url, headers=staff, timeout=30) as c:
                r = await c.patch("/api/users/supervisor", json={"disabled": True})
            assert r.status_code == 200 and r.json()["disabled"] is True

            def gone() -> bool:
                return [v["user"] for v in session_status(srv.url, sid, staff)["viewers"]] == ["admin"]

            await until(gone, CUT_OFF_S)
            seen["cut_s"] = time.monotonic() - t0
            before = viewer.received["video"].decoded
            await asyncio.sleep(1.0)
            seen["stopped"] = viewer.received["video"].decoded == before
            # a role change ends what the old role was watching too
            async with httpx.AsyncClient(base_url=srv.url, headers=staff, timeout=30) as c:
                r = await c.patch("/api/users/admin", json={"role": "reviewer"})
            assert r.status_code == 200 and r.json()["role"] == "reviewer"
            seen["role_cut_s"] = await until(lambda: session_status(srv.url, sid, staff)["viewers"] == [], CUT_OFF_S)
        finally:
            await viewer.close()
            await admin.close()
            await room.close()

    run(go())
    print(f"account-disable cut-off after {seen['cut_s']:.3f} s")
    assert seen["cut_s"] <= CUT_OFF_S and seen["stopped"]
    stops = [(u, d["reason"]) for a, u, _o, d in srv.audit_actions() if a == "watch_stop"]
    assert ("supervisor", "account_disabled") in stops and ("admin", "role_changed") in stops
