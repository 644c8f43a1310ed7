"""TURN for rooms behind NAT: time-limited credentials (TURN REST, coturn `use-auth-secret`) handed
to signed-in browsers, invitations and the room computer; a real coturn relays a real Chromium's
published media to the recorder, and a forged or expired credential is refused by coturn itself."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import time
from typing import Any

import httpx
import pytest

from tests.browser.conftest import BrowserFactory
from tests.live.conftest import LiveServer
from tests.turn.conftest import Turn
from tonglu.config import Settings, SettingsError
from tonglu.web.turn import credential, ice_servers, split_urls


def test_credentials_follow_the_turn_rest_scheme() -> None:
    c = credential(("turn:t.example:3478",), "s3cret", 600, 1_800_000_000, "invitation:abc def")
    assert c.username == "1800000600:invitation_abc_def"  # expiry first; no colon in the holder
    want = base64.b64encode(hmac.new(b"s3cret", c.username.encode(), hashlib.sha1).digest()).decode()
    assert c.credential == want and c.expires_s == 1_800_000_600
    assert split_urls("turn:a:3478?transport=udp, turns:a:5349") == ("turn:a:3478?transport=udp", "turns:a:5349")
    with pytest.raises(ValueError):
        split_urls("stun:a:3478")


def test_settings_refuse_half_or_wrong_turn_configuration(tmp_path: Any) -> None:
    base = {"TONGLU_DATA_DIR": str(tmp_path)}
    with pytest.raises(SettingsError, match="together"):
        Settings.from_env({**base, "TONGLU_TURN_URL": "turn:a:3478"})
    with pytest.raises(SettingsError, match="turn: or turns:"):
        Settings.from_env({**base, "TONGLU_TURN_URL": "http://a:3478", "TONGLU_TURN_SECRET": "x" * 20})
    with pytest.raises(SettingsError, match="TTL"):
        Settings.from_env({**base, "TONGLU_TURN_URL": "turn:a", "TONGLU_TURN_SECRET": "x", "TONGLU_TURN_TTL_S": "5"})
    s = Settings.from_env({**base, "TONGLU_TURN_URL": "turn:a:3478", "TONGLU_TURN_SECRET": "x" * 20})
    assert ice_servers(s, 100, "u")[0]["username"] == f"{100 + s.turn_ttl_s}:u"
    assert ice_servers(Settings.from_env(base), 100, "u") == []  # no TURN: host candidates only


def _with_turn(srv: LiveServer, turn: Turn, ttl_s: int = 600) -> None:
    srv.services.settings = dataclasses.replace(srv.services.settings, turn_url=turn.url,
                                                turn_secret=turn.secret, turn_ttl_s=ttl_s)


def test_who_gets_credentials(live_server: LiveServer, coturn: Turn) -> None:
    srv = live_server
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        assert c.get("/api/ice-servers", headers=srv.auth("reviewer")).json()["ice_servers"] == []  # no TURN yet
        _with_turn(srv, coturn)
        s = srv.create_session()
        sid = s["id"]
        inv, _src = srv.invite(sid)
        t0 = int(time.time())
        as_invitation = {"Authorization": f"Bearer {inv}"}
        for who, headers in (("supervisor", srv.auth("supervisor")), ("invitation", as_invitation)):
            r = c.get("/api/ice-servers", headers=headers)
            assert r.status_code == 200 and r.headers["cache-control"] == "no-store", (who, r.text)
            [server] = r.json()["ice_servers"]
            assert server["urls"] == [coturn.url]
            expiry, holder = server["username"].split(":")
            assert t0 + 600 <= int(expiry) <= int(time.time()) + 600
            assert holder.startswith("supervisor" if who == "supervisor" else "invitation_")
        assert c.get("/api/ice-servers").status_code == 401  # nobody anonymous gets relay credentials
        assert c.get("/api/ice-servers", headers={"Authorization": "Bearer tlk_not-a-token"}).status_code == 401
        # the room computer: with its capture status, under a source token, and only with one
        main = s["sources"]["main"]
        st = c.get(f"/api/sessions/{sid}/capture-status", headers={"Authorization": f"Bearer {main['token']}"})
        assert st.status_code == 200 and st.json()["ice_servers"][0]["username"].endswith(f":room-{sid}")
        bad = c.get(f"/api/sessions/{sid}/capture-status", headers={"Authorization": "Bearer wrong"})
        assert bad.status_code in (401, 403) and "ice_servers" not in bad.text


PUBLISH_VIA_RELAY = """
const [sid, inv, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
(async () => {
  try {
    const auth = { Authorization: "Bearer " + inv };
    const ice = (await (await fetch("/api/ice-servers", { headers: auth })).json()).ice_servers;
    const j = await (await fetch(`/api/sessions/${sid}/participants`, { method: "POST", headers: auth })).json();
    const local = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240 }, audio: true });
    // relay only: the media can reach the recorder through coturn and no other way
    const pc = new RTCPeerConnection({ iceServers: ice, iceTransportPolicy: "relay" });
    local.getTracks().forEach((t) => pc.addTransceiver(t, { direction: "sendonly" }));
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => { if (pc.iceGatheringState === "complete") ok();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && ok());
      setTimeout(ok, 5000); });
    const sdp = pc.localDescription.sdp;
    const r = await fetch(j.whip_url, { method: "POST", body: sdp,
      headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + j.token } });
    if (r.status !== 201) { done({ error: r.status + " " + await r.text() }); return; }
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    window.pub = pc;
    done({ source: j.source, relay: sdp.split("\\r\\n").filter((l) => l.includes(" typ relay")).length,
           host: sdp.split("\\r\\n").filter((l) => l.includes(" typ host")).length });
  } catch (e) { done({ error: String(e) }); }
})();
"""

SELECTED_PAIR = """
const done = arguments[arguments.length - 1];
window.pub.getStats().then((stats) => {
  let out = null;
  stats.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) {
    const pair = stats.get(r.selectedCandidatePairId);
    const local = pair && stats.get(pair.localCandidateId);
    out = { state: window.pub.connectionState, local: local && local.candidateType, sent: pair && pair.bytesSent };
  } });
  done(out || { state: window.pub.connectionState });
});
"""

GATHER_WITH = """
const [servers, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const pc = new RTCPeerConnection({ iceServers: servers, iceTransportPolicy: "relay" });
  const errors = [];
  pc.addEventListener("icecandidateerror", (e) => errors.push(e.errorCode));
  pc.addTransceiver("audio", { direction: "sendonly" });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => {
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && ok());
    setTimeout(ok, 8000); });
  const relay = pc.localDescription.sdp.split("\\r\\n").filter((l) => l.includes(" typ relay")).length;
  pc.close();
  done({ relay, errors });
})();
"""


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_publishes_through_coturn_with_its_credentials_and_forged_ones_are_refused(
    live_server: LiveServer, coturn: Turn, chromium: BrowserFactory
) -> None:
    srv = live_server
    _with_turn(srv, coturn)
    s = srv.create_session()
    sid = s["id"]
    inv, source = srv.invite(sid, name="周律师")
    b = chromium(cameras=1)
    b.driver.get(srv.url + "/healthz")  # same origin
    got = b.driver.execute_async_script(PUBLISH_VIA_RELAY, sid, inv)
    assert "error" not in got, got
    assert got["source"] == source and got["relay"] >= 1 and got["host"] == 0, got  # relay candidates only
    pair: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pair = b.driver.execute_async_script(SELECTED_PAIR)
        if pair.get("state") == "connected" and (pair.get("sent") or 0) > 50_000:
            break
        time.sleep(0.5)
    assert pair and pair["state"] == "connected" and pair["local"] == "relay", pair
    # the recorder receives and records the relayed media
    deadline = time.monotonic() + 20
    tracks: dict[str, Any] = {}
    while time.monotonic() < deadline:
        peer = srv.status(sid)["sources"].get(source, {}).get("peer") or {}
        tracks = peer.get("tracks", {})
        if tracks.get("video", {}).get("frames", 0) > 30 and tracks.get("audio", {}).get("frames", 0) > 50:
            break
        time.sleep(0.5)
    assert tracks.get("video", {}).get("frames", 0) > 30 and tracks.get("audio", {}).get("frames", 0) > 50, tracks

    # coturn itself refuses a forged credential and an expired one (401: no relay candidate)
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        [good] = c.get("/api/ice-servers", headers={"Authorization": f"Bearer {inv}"}).json()["ice_servers"]
    forged = {**good, "credential": base64.b64encode(bytes(20)).decode()}
    expired_user = f"{int(time.time()) - 10}:{good['username'].split(':')[1]}"
    expired = {**good, "username": expired_user, "credential": base64.b64encode(
        hmac.new(coturn.secret.encode(), expired_user.encode(), hashlib.sha1).digest()).decode()}
    for name, server in (("forged", forged), ("expired", expired)):
        res = b.driver.execute_async_script(GATHER_WITH, [{k: server[k] for k in ("urls", "username", "credential")}])
        assert res["relay"] == 0 and 401 in res["errors"], (name, res)
    res = b.driver.execute_async_script(GATHER_WITH, [{k: good[k] for k in ("urls", "username", "credential")}])
    assert res["relay"] >= 1, res  # the genuine one still works
