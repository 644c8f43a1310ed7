"""A remote participant joins two-way: publishes as `remote-<id>` (recorded by the same rules) and
watches the room's camera through WHEP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.live.conftest import LiveServer
from tests.live.media import WhepViewer, packet_publisher
from tests.recorder.evidence import decodes, ffprobe, gaps, segments, spooled_files, verify_chain
from tests.recorder.peers import WhipPublisher

pytestmark = pytest.mark.slow


async def call(server: LiveServer, method: str, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        return await c.request(method, path, headers=headers, **kw)


def test_remote_participant_is_recorded_as_its_own_source_and_watches_the_room(live_server: LiveServer) -> None:
    srv = live_server
    s = srv.create_session()
    sid, main = s["id"], s["sources"]["main"]
    other = srv.create_session()["id"]
    inv_token, source = srv.invite(sid, name="陈律师", sub_role="lawyer")
    as_participant = {"Authorization": f"Bearer {inv_token}"}
    room_pub, _sent = packet_publisher(main["whip_url"], main["token"], "VP8")
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        await room_pub.start()
        await room_pub.wait_connected()
        r = await call(srv, "POST", f"/api/sessions/{other}/participants", as_participant)
        assert r.status_code == 404  # another session: as if it did not exist
        r = await call(srv, "POST", f"/api/sessions/{sid}/participants", srv.auth("interviewer"))
        assert r.status_code == 404  # an interviewer not on this session
        r = await call(srv, "POST", f"/api/sessions/{sid}/participants", as_participant)
        assert r.status_code == 201, r.text
        joined = r.json()
        assert joined["source"] == source and source.startswith("remote-")
        assert joined["whip_url"].endswith(f"/whip/{sid}/{source}")
        # its token publishes only its own source
        wrong = WhipPublisher(main["whip_url"], joined["token"])
        await wrong.start(expect=403)
        await wrong.close()
        me = WhipPublisher(joined["whip_url"], joined["token"], fps=15)
        await me.start()
        await me.wait_connected()
        viewer = WhepViewer(joined["watch"]["main"], as_participant)
        await viewer.start()
        await viewer.wait_frames("video", 15)
        await viewer.wait_frames("audio", 30)
        await asyncio.sleep(1.5)
        seen["status"] = (await call(srv, "GET", f"/api/sessions/{sid}", srv.auth("supervisor"))).json()
        cap = await call(
            srv, "GET", f"/api/sessions/{sid}/capture-status", {"Authorization": f"Bearer {main['token']}"}
        )
        seen["capture"] = cap.json()
        # a reloaded participant page joins again: new token, same source, no second "joined"
        again = await call(srv, "POST", f"/api/sessions/{sid}/participants", as_participant)
        assert again.status_code == 201 and again.json()["source"] == source
        assert again.json()["token"] != joined["token"]
        # leaving ends its publisher; a participant cannot remove someone else
        r = await call(srv, "DELETE", f"/api/sessions/{sid}/participants/remote-someoneelse", as_participant)
        assert r.status_code == 403
        r = await call(srv, "DELETE", f"/api/sessions/{sid}/participants/{source}", as_participant)
        assert r.status_code == 200, r.text
        r = await call(srv, "DELETE", f"/api/sessions/{sid}/participants/{source}", as_participant)
        assert r.status_code == 404
        seen["after_leave"] = (await call(srv, "GET", f"/api/sessions/{sid}", srv.auth("admin"))).json()
        # stopping the session ends live viewing too
        r = await call(srv, "POST", f"/api/sessions/{sid}/stop", srv.auth("admin"), json={"reason": "结束"})
        assert r.status_code == 200
        seen["viewers_after_stop"] = srv.recorder.whep.status(sid)
        seen["viewer"] = viewer
        await viewer.close()
        await me.close()
        await room_pub.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()

    st = seen["status"]
    remote = {p["source"]: p for p in st["remote_participants"]}
    assert remote[source]["name"] == "陈律师" and remote[source]["role"] == "lawyer"
    assert remote[source]["connected"] is True and remote[source]["present"] is True
    assert st["sources"][source]["connected"] is True and st["sources"][source]["kind"] == "remote"
    assert [(v["role"], v["source"]) for v in st["viewers"]] == [("participant", "main")]
    assert st["monitored"] is True  # every viewer shows in the room, a participant too
    assert seen["capture"]["participants"] == [{"name": "陈律师", "role": "lawyer"}]
    assert seen["capture"]["monitored"] is True
    assert [(w["name"], w["role"]) for w in seen["capture"]["watchers"]] == [("陈律师", "participant")]
    after = {p["source"]: p for p in seen["after_leave"]["remote_participants"]}
    assert after[source]["present"] is False and after[source]["connected"] is False
    assert seen["viewers_after_stop"] == []
    assert seen["viewer"].received["video"].decode_errors == 0

    entries = verify_chain(srv.services, sid)
    events = [
        (e.body["source"], e.body["event"], e.body["name"], e.body["role"]) for e in entries if e.kind == "participant"
    ]
    assert events == [(source, "joined", "陈律师", "lawyer"), (source, "left", "陈律师", "lawyer")]
    files = spooled_files(srv.services)
    for track, codec in (("video", "vp8"), ("audio", "opus")):
        segs = segments(entries, source, track)
        assert len(segs) >= 2, (track, len(segs))
        assert [b["index"] for b in segs] == list(range(len(segs)))
        for b in segs:
            assert ffprobe(files[b["key"]])["streams"][0]["codec_name"] == codec
            assert decodes(files[b["key"]])
    # the reload replaced the first connection (issue 12): its source is silent from then until it
    # left, one gap per track saying so; nothing else (leaving itself is explained by "left")
    replaced = [(g["source"], g["track"], g["reason"]) for g in gaps(entries) if g["source"] in (source, "main")]
    assert sorted(replaced) == [(source, "audio", "peer_disconnect"), (source, "video", "peer_disconnect")]
    assert all("replaced" in g["detail"] for g in gaps(entries) if g["source"] == source)
    actions = srv.audit_actions()
    assert any(a == "participant_join" and o == "ok" for a, _u, o, _d in actions)
    assert any(a == "participant_leave" and o == "ok" for a, _u, o, _d in actions)
    stops = [d for a, _u, _o, d in actions if a == "watch_stop"]
    # the reload (second join) replaced the first connection, its viewing included (issue 12)
    assert [d["reason"] for d in stops] == ["participant_replaced"]
