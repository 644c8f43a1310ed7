"""Real headless Chromium with fake devices: the room's capture page publishes the room (two fake
cameras and microphones) and plays the remote participant; a second Chromium is the remote
lawyer (publishes its fake camera, watches the room through party.js and hears every room
microphone). A third viewer (a supervisor, aiortc) watches `main`; the consultation pause stops
forwarding to it and yields exactly one explained interruption per withheld track; resume
restores it."""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import BackgroundLoop, BrowserFactory
from tests.browser.test_capture_page import CAMERAS, open_capture
from tests.hearing.test_hearing_e2e import create_hearing
from tests.live.conftest import LiveServer
from tests.live.media import WhepViewer
from tonglu.integrity.service import Review

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REMOTE = """
const [sid, inv, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
function load(src) { return new Promise((ok) => { const s = document.createElement("script"); s.src = src;
  s.onload = ok; document.head.appendChild(s); }); }
(async () => {
  try {
    await load("/static/party.js");
    const grid = document.createElement("div"); document.body.appendChild(grid);
    const auth = { Authorization: "Bearer " + inv };
    const j = await (await fetch(`/api/sessions/${sid}/participants`, { method: "POST", headers: auth })).json();
    const local = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 },
                                                              audio: { echoCancellation: true } });
    const pc = new RTCPeerConnection({ iceServers: [] });
    local.getTracks().forEach((t) => pc.addTransceiver(t, { direction: "sendonly" }));
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => setTimeout(r, 500));
    const r = await fetch(j.whip_url, { method: "POST", body: pc.localDescription.sdp,
      headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + j.token } });
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    window.pub = pc;
    window.party = await TongluParty.watch({ sid, token: inv, pairs: 2, grid, label: (s) => ({ text: s }) });
    done("ok");
  } catch (e) { done("error " + e.message); }
})();
"""

ROOM_HEARS = """
const t = window.party && window.party.tiles[arguments[0]];
return t ? [t.frames(), t.video.currentTime, t.level(), t.stream.getAudioTracks().length] : null;
"""

CAPTURE_SEES = """
const h = window.tonglu && window.tonglu.party;
const t = h && h.tiles[arguments[0]];
return t ? [t.frames(), t.video.currentTime, t.level(), t.figure.textContent] : null;
"""


def test_room_and_remote_see_and_hear_each_other_and_the_pause_is_private(
    live_server: LiveServer, chromium: BrowserFactory, peers_loop: BackgroundLoop
) -> None:
    srv = live_server
    s = create_hearing(srv)
    sid = s["id"]
    inv, lawyer_src = srv.invite(sid, "郑律师", "lawyer")
    # Chromium's fake_device_1 is a depth camera WebRTC does not encode: the room uses 0 and 2
    room = chromium(cameras=3)
    open_capture(room, srv, s["capture_url"], cameras=CAMERAS)
    room.wait_for("return document.body.dataset.rec === 'on'", timeout=40, what="room recording")
    remote = chromium(cameras=1)
    remote.driver.get(srv.url + "/healthz")
    assert remote.driver.execute_async_script(REMOTE, sid, inv) == "ok"
    # the remote side: the room's picture decodes, and both room microphones are heard (two tracks)
    for src in ("main", "panorama"):
        remote.wait_for(f"const v = (function() {{ {ROOM_HEARS} }}).apply(null, ['{src}']);"
                        "return v && v[0] > 10 && v[1] > 1;", timeout=40, what=f"remote sees {src}")
        remote.wait_for(f"const v = (function() {{ {ROOM_HEARS} }}).apply(null, ['{src}']);"
                        "return v && v[3] === 1 && v[2] > 0.001;", timeout=20, what=f"remote hears {src}")
    # the room: the lawyer's picture and voice, captioned by role
    got = room.wait_for(f"const v = (function() {{ {CAPTURE_SEES} }}).apply(null, ['{lawyer_src}']);"
                        "return v && v[0] > 10 && v[1] > 1 && v[2] > 0.001 ? v : null;",
                        timeout=40, what="room sees and hears the lawyer")
    assert "辩护律师" in got[3] and "郑律师" in got[3]

    sup = peers_loop.make(lambda: WhepViewer(f"{srv.url}/whep/{sid}/main", srv.auth("supervisor")))
    peers_loop.run(sup.start())
    peers_loop.run(sup.wait_frames("video", 10, 30))

    def n() -> int:
        return len(sup.received["video"].digests) + len(sup.received["audio"].digests)

    import httpx

    with httpx.Client(base_url=srv.url, headers=srv.auth("admin"), timeout=30) as c:
        assert c.post(f"/api/sessions/{sid}/consultation", json={"action": "start"}).status_code == 201
        time.sleep(0.5)
        before, lawyer_before = n(), remote.js("return window.party.tiles['main'].frames()")
        time.sleep(3)
        during = n() - before
        # the two parties still see each other
        assert remote.js("return window.party.tiles['main'].frames()") > lawyer_before + 10
        assert c.post(f"/api/sessions/{sid}/consultation", json={"action": "end"}).status_code == 200
        resumed_from = n()
        deadline = time.time() + 15
        while n() < resumed_from + 40 and time.time() < deadline:
            time.sleep(0.2)
        resumed = n() - resumed_from
        time.sleep(2)
        assert c.post(f"/api/sessions/{sid}/stop", json={"reason": "结束"}).status_code == 200
    peers_loop.run(sup.close())
    assert during == 0 and resumed >= 40, (during, resumed)
    analysis = Review.from_services(srv.services).analyse(sid)
    consult = [f for f in analysis.findings if f.reason == "lawyer_consultation"]
    tracks = sorted((f.source, f.track) for f in consult)
    assert tracks == sorted((src, t) for src in ("main", "panorama", lawyer_src) for t in ("audio", "video"))
    assert all(f.explained for f in consult)

