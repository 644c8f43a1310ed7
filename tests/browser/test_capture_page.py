"""The in-room capture page in headless Chromium: publish both cameras, reconnect, H.264, refusals."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import BackgroundLoop, Browser, BrowserFactory
from tests.live.conftest import LiveServer, live_server  # noqa: F401  (the app with accounts and audit)
from tests.recorder.conftest import Server
from tests.recorder.evidence import ffprobe, gaps, laid_out, segments, spooled_files, verify_chain

pytestmark = [pytest.mark.slow, pytest.mark.browser]
SMALL_VIDEO = "640x360@15"  # keeps two publishing cameras affordable on 2 shared cores


def page_url(server: Server | LiveServer, capture_url: str, query: str = "") -> str:
    """The API's capture_url (tokens in the fragment), pointed at the test server, plus a query."""
    parts = urlsplit(capture_url)
    return f"{server.url}{parts.path}{'?' + query if query else ''}#{parts.fragment}"


def page_state(b: Browser) -> dict[str, Any]:
    return b.js(
        """
        const app = window.tonglu; const out = {rec: document.body.dataset.rec || null, pubs: {}};
        if (!app) return out;
        for (const [name, p] of Object.entries(app.publishers)) {
          out.pubs[name] = {state: p.state, reconnects: p.reconnects, resource: p.resource, codec: p.codec || null,
                            camera: p.stream ? p.stream.getVideoTracks()[0].label : null,
                            conn: document.querySelector('#source-' + name + ' .conn')?.textContent || null};
        }
        out.label = document.getElementById('rec-label').textContent;
        out.duration = document.getElementById('rec-duration').textContent;
        out.monitored = !document.getElementById('monitored').hidden;
        out.caseNumber = document.getElementById('case-number').textContent;
        out.room = document.getElementById('room').textContent;
        out.error = document.getElementById('error').hidden ? null : document.getElementById('error').textContent;
        return out;
        """
    )


# Chromium's fake cameras: fake_device_1 is a depth camera (Y16) that WebRTC does not encode, so
# tests publish fake_device_0 (main) and fake_device_2 (panorama) unless they test that very case.
CAMERAS = {"main": "fake_device_0", "panorama": "fake_device_2"}


def open_capture(
    b: Browser,
    server: Server | LiveServer,
    capture_url: str,
    query: str = f"video={SMALL_VIDEO}",
    cameras: dict[str, str] | None = None,
) -> None:
    """Open the capture page; `cameras` are remembered choices (by label) put in localStorage first,
    as a previous visit of the room computer would have left them."""
    if cameras:
        b.driver.get(server.url + "/healthz")  # same origin, to reach its localStorage
        prefs = {src: {"camera": {"id": "from-another-browser", "label": label}} for src, label in cameras.items()}
        b.js("localStorage.setItem('tonglu.capture.devices', JSON.stringify(arguments[0]))", prefs)
    b.driver.get(page_url(server, capture_url, query))


def wait_recording(b: Browser, sources: tuple[str, ...], timeout: float = 40) -> dict[str, Any]:
    names = ",".join(f"'{s}'" for s in sources)
    b.wait_for(
        f"""const app = window.tonglu; if (!app || document.body.dataset.rec !== 'on') return false;
            return [{names}].every(s => app.publishers[s] && app.publishers[s].state === 'connected')
                && app.status && [{names}].every(s => app.status.sources[s].connected);""",
        timeout=timeout,
        what="recording indicator on and all sources connected",
    )
    return page_state(b)


def stop(server: Server, sid: str) -> dict[str, Any]:
    with server.api() as c:
        r = c.post(f"/api/sessions/{sid}/stop", json={"reason": "讯问结束"})
    assert r.status_code == 200, r.text
    return dict(r.json())


def decodes_fully(path: Path) -> bool:
    """Every packet decodes to a frame, without a decoder error. (Not `ffmpeg -f null`: its muxer
    complains about two of Chromium's frames that fall into one tick of its guessed frame rate.)"""
    r = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_frames,nb_read_packets",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 or r.stderr.strip():
        return False
    stream = json.loads(r.stdout)["streams"][0]
    return int(stream["nb_read_packets"]) > 0 and stream["nb_read_frames"] == stream["nb_read_packets"]


def stretches(segs: list[dict[str, Any]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    """Split a track's segments (index order) at the given wall-clock instants (gap starts)."""
    out: list[list[dict[str, Any]]] = [[]]
    pending = sorted(cuts)
    for b in segs:
        while pending and b["wall_first_ns"] >= pending[0]:
            pending.pop(0)
            if out[-1]:
                out.append([])
        out[-1].append(b)
    return [s for s in out if s]


def check_media(
    server: Server, entries: list[Any], source: str, cuts: list[int], codecs: dict[str, tuple[str, str]]
) -> dict[str, float]:
    """Every segment decodes; per gap-free stretch the segment durations add up to its wall-clock
    length within one frame interval. Returns the recorded seconds per track."""
    files = spooled_files(server.services)
    recorded = {}
    for track, (codec, fmt) in codecs.items():
        segs = segments(entries, source, track)
        assert len(segs) >= 2, (source, track, len(segs))
        assert [b["index"] for b in segs] == list(range(len(segs)))
        total_recorded = 0.0
        for stretch in stretches(segs, cuts):
            total = 0.0
            for b in stretch:
                p = files[b["key"]]
                info = ffprobe(p)
                assert info["streams"][0]["codec_name"] == codec, (b["key"], info)
                assert fmt in info["format"]["format_name"], (b["key"], info)
                assert decodes_fully(p), b["key"]
                total += float(info["format"]["duration"])
            wall = (stretch[-1]["wall_last_ns"] - stretch[0]["wall_first_ns"]) / 1e9
            frames = sum(b["frames"] for b in stretch)
            interval = wall / frames if track == "video" else 0.02
            # MPEG-TS stores no packet durations: ffprobe guesses each segment's last frame from the
            # frame rate, so there the sum may be off by a (variable) frame interval per segment.
            slack = interval * (len(stretch) if fmt == "mpegts" else 1) + 0.002
            assert abs(total - wall) <= slack, (source, track, total, wall, interval, len(stretch))
            total_recorded += wall
        recorded[track] = total_recorded
    return recorded


def verify_laid_out(server: Server, sid: str, digest: str, dest: Path) -> None:
    """The standalone verifier over the session laid out as in the bucket, anchored on the site key."""
    result = laid_out(server.services, sid, dest, [digest])
    assert result.ok, [f"{p.code}: {p.message}" for p in result.errors]


VP8_OPUS = {"video": ("vp8", "webm"), "audio": ("opus", "webm")}


def test_capture_page_publishes_both_cameras(capture_server: Server, chromium: BrowserFactory, tmp_path: Path) -> None:
    server = capture_server
    created = server.create_session()
    sid = created["id"]
    b = chromium(cameras=3)
    open_capture(b, server, created["capture_url"], cameras=CAMERAS)
    state = wait_recording(b, ("main", "panorama"))
    t_connected = time.time_ns()
    # the tokens left the address bar, the two sources use the two (fake) cameras
    assert "#" not in b.driver.current_url and created["sources"]["main"]["token"] not in b.driver.current_url
    assert {k: v["camera"] for k, v in state["pubs"].items()} == CAMERAS, state
    assert state["label"] == "● 正在录像 REC"
    assert state["caseNumber"] == "A-2024-001" and state["room"] == "第一审讯室"
    assert all(p["conn"] == "已连接 connected" for p in state["pubs"].values()), state
    assert not state["monitored"]
    remembered = b.js("return JSON.parse(localStorage.getItem('tonglu.capture.devices'))")
    assert remembered["main"]["camera"]["label"] == "fake_device_0"
    assert remembered["panorama"]["camera"]["label"] == "fake_device_2"
    assert remembered["panorama"]["camera"]["id"] != "from-another-browser"  # re-bound to this browser's id
    assert remembered["main"]["microphone"]["label"] != remembered["panorama"]["microphone"]["label"]
    time.sleep(9.0)
    state = page_state(b)
    # the running duration counts from the session's start (created before the page opened)
    h, m, s = (int(x) for x in state["duration"].split(":"))
    started_ns = server.call(server.recorder.status(sid))["started_ns"]
    elapsed = (time.time_ns() - started_ns) / 1e9
    assert abs((h * 3600 + m * 60 + s) - elapsed) <= 2.0, (state["duration"], elapsed)
    assert (h * 3600 + m * 60 + s) >= (time.time_ns() - t_connected) / 1e9
    b.screenshot("01-recording")
    result = stop(server, sid)
    b.wait_for("return document.body.dataset.rec === 'stopped'", timeout=15, what="page shows stopped")
    b.wait_for(
        "return Object.values(tonglu.publishers).every(p => p.stream.getTracks().every(t => t.readyState === 'ended'))",
        timeout=5,
        what="devices released",
    )
    assert page_state(b)["label"] == "■ 录像已结束 STOPPED"
    b.screenshot("02-stopped")

    entries = verify_chain(server.services, sid)
    g = gaps(entries)
    assert not [
        x
        for x in g
        if x["reason"] in ("peer_disconnect", "not_connected", "recorder_restart", "ice_failure", "dtls_failure")
    ], g
    for source in ("main", "panorama"):
        recorded = check_media(server, entries, source, [], VP8_OPUS)
        assert recorded["video"] >= 8.0 and recorded["audio"] >= 8.0, (source, recorded)
    verify_laid_out(server, sid, result["digest"], tmp_path / "evidence")


def test_capture_page_reconnects_with_the_same_token(
    capture_server: Server, chromium: BrowserFactory, tmp_path: Path
) -> None:
    """The page's peer connections are killed; it re-publishes with the same tokens on its own and
    the session has exactly one peer_disconnect gap per track, bounded by the drop and the return.
    Then the tab leaves and reopens the page: one more gap per track, and publishing resumes."""
    server = capture_server
    created = server.create_session()
    sid = created["id"]
    b = chromium(cameras=3)
    open_capture(b, server, created["capture_url"], cameras=CAMERAS)
    before = wait_recording(b, ("main", "panorama"))
    time.sleep(3.0)
    killed = time.time_ns()
    b.js("for (const p of Object.values(tonglu.publishers)) p.pc.close();")
    b.wait_for(
        "return Object.values(tonglu.publishers).every(p => p.state === 'reconnecting')",
        timeout=5,
        what="both cameras shown as reconnecting",
    )
    b.screenshot("01-reconnecting")
    assert page_state(b)["pubs"]["main"]["conn"] == "重连中 reconnecting"
    after = wait_recording(b, ("main", "panorama"), timeout=30)
    back = time.time_ns()
    for source in ("main", "panorama"):
        assert after["pubs"][source]["reconnects"] == 1, after
        assert after["pubs"][source]["resource"] != before["pubs"][source]["resource"]  # a new WHIP peer
    time.sleep(3.0)
    b.screenshot("02-reconnected")
    # the tab leaves the page (pagehide: WHIP DELETE) and comes back without the fragment: the
    # tokens come from this tab's sessionStorage and the same sources are published again
    left = time.time_ns()
    b.driver.get(server.url + "/healthz")
    time.sleep(1.0)
    b.driver.get(f"{server.url}/capture/{sid}?video={SMALL_VIDEO}")
    wait_recording(b, ("main", "panorama"), timeout=30)
    returned = time.time_ns()
    time.sleep(3.0)
    result = stop(server, sid)

    entries = verify_chain(server.services, sid)
    g = gaps(entries)
    expected = [(src, track, "peer_disconnect") for src in ("main", "panorama") for track in ("audio", "video")]
    assert sorted((x["source"], x["track"], x["reason"]) for x in g) == sorted(expected * 2), g
    for source in ("main", "panorama"):
        for track in ("video", "audio"):
            first, second = sorted(
                (x for x in g if (x["source"], x["track"]) == (source, track)), key=lambda x: x["start_ns"]
            )
            # each gap starts where the last frame before the drop ended and ends with the first frame after
            assert killed - 500_000_000 <= first["start_ns"] <= killed + 100_000_000, (first, killed)
            assert killed < first["end_ns"] <= back + 100_000_000, (first, killed, back)
            assert left - 500_000_000 <= second["start_ns"] <= left + 1_000_000_000, (second, left)
            assert left + 1_000_000_000 < second["end_ns"] <= returned + 100_000_000, (second, left, returned)
            segs = segments(entries, source, track)
            assert any(s["wall_first_ns"] >= returned - 1_000_000_000 for s in segs), (source, track)
        cuts = [x["start_ns"] for x in g if x["source"] == source]
        check_media(server, entries, source, cuts, VP8_OPUS)
    verify_laid_out(server, sid, result["digest"], tmp_path / "evidence")


def test_capture_page_prefers_h264_when_asked(capture_server: Server, chromium: BrowserFactory) -> None:
    """?codec=h264: Chromium sends H.264 (packetization-mode 1), recorded as MPEG-TS."""
    server = capture_server
    created = server.create_session()
    sid, token = created["id"], created["sources"]["main"]["token"]
    b = chromium(cameras=3)
    # only the main camera's token: the page publishes what it holds tokens for
    b.driver.get(f"{server.url}/capture/{sid}?codec=h264&video={SMALL_VIDEO}#main={token}")
    state = wait_recording(b, ("main",))
    assert list(state["pubs"]) == ["main"]
    time.sleep(5.0)
    assert b.wait_for("return tonglu.publishers.main.codec", timeout=5, what="codec stats") == "video/H264"
    stop(server, sid)
    entries = verify_chain(server.services, sid)
    check_media(server, entries, "main", [], {"video": ("h264", "mpegts"), "audio": ("opus", "webm")})
    assert {(x["source"], x["reason"]) for x in gaps(entries)} == {("panorama", "not_connected")}


def test_camera_without_picture_is_flagged_and_can_be_swapped_live(
    capture_server: Server, chromium: BrowserFactory
) -> None:
    """By default the sources take the first cameras in order; Chromium's second fake camera is a
    depth camera that WebRTC does not encode: the page says so, and choosing another camera in the
    panel swaps the track without a new WHIP peer (no gap)."""
    server = capture_server
    created = server.create_session()
    sid = created["id"]
    b = chromium(cameras=3)
    open_capture(b, server, created["capture_url"])
    state = wait_recording(b, ("main", "panorama"))
    assert {k: v["camera"] for k, v in state["pubs"].items()} == {"main": "fake_device_0", "panorama": "fake_device_1"}
    b.wait_for(
        "return tonglu.publishers.panorama.noPicture && !document.getElementById('alarm').hidden",
        timeout=15,
        what="no-picture warning",
    )
    assert "无画面" in b.js("return document.querySelector('#source-panorama .detail').textContent")
    assert not b.js("return tonglu.publishers.main.noPicture")
    b.screenshot("01-no-picture")
    from selenium.webdriver.support.ui import Select

    Select(b.driver.find_element("css selector", "#source-panorama select.camera")).select_by_visible_text(
        "fake_device_2"
    )
    b.wait_for(
        "return tonglu.publishers.panorama.stream.getVideoTracks()[0].label === 'fake_device_2'"
        " && !tonglu.publishers.panorama.noPicture",
        timeout=15,
        what="picture after the swap",
    )
    swapped = time.time_ns()
    time.sleep(3.0)
    b.screenshot("02-swapped")
    state = page_state(b)
    assert state["pubs"]["panorama"]["reconnects"] == 0 and state["pubs"]["panorama"]["state"] == "connected"
    assert (
        b.js("return JSON.parse(localStorage.getItem('tonglu.capture.devices')).panorama.camera.label")
        == "fake_device_2"
    )
    stop(server, sid)
    entries = verify_chain(server.services, sid)
    pano = segments(entries, "panorama", "video")
    assert pano and pano[0]["wall_first_ns"] <= swapped + 100_000_000
    assert sum(x["frames"] for x in pano) >= 20
    assert not [x for x in gaps(entries) if x["reason"] == "peer_disconnect"]


def test_capture_page_waits_while_the_source_is_still_connected(
    capture_server: Server, chromium: BrowserFactory, peers_loop: BackgroundLoop
) -> None:
    """Another peer still publishes `main` (409 "already being published"): the page shows it is
    waiting, keeps retrying without disturbing that recording, and takes over once the peer is gone."""
    from tests.recorder.peers import WhipPublisher

    server = capture_server
    created = server.create_session()
    sid, main = created["id"], created["sources"]["main"]
    other = peers_loop.make(lambda: WhipPublisher(main["whip_url"], main["token"]))
    peers_loop.run(other.start())
    peers_loop.run(other.wait_connected())
    b = chromium(cameras=3)
    open_capture(b, server, created["capture_url"], cameras=CAMERAS)
    b.wait_for(
        "return tonglu.publishers.main.state === 'reconnecting' && tonglu.publishers.panorama.state === 'connected'"
        " && document.querySelector('#source-main .detail').textContent.includes('上一连接尚未断开')",
        timeout=30,
        what="main waits for the other peer",
    )
    time.sleep(6.0)  # several retries later, the other peer still holds main
    assert b.js("return tonglu.publishers.main.state") == "reconnecting"
    peer_id = server.call(server.recorder.status(sid))["sources"]["main"]["peer"]["peer_id"]
    assert other.location and other.location.endswith(peer_id)  # still the first peer recording
    b.screenshot("01-busy")
    closed = time.time_ns()
    peers_loop.run(other.close())
    wait_recording(b, ("main", "panorama"), timeout=30)
    back = time.time_ns()
    b.screenshot("02-taken-over")
    stop(server, sid)
    entries = verify_chain(server.services, sid)
    # main: the first peer's segments, then the page's, numbered on; one gap for the handover
    # (the synthetic aiortc publisher shares this process with the recorder and may stall under
    # load: its no_packets gaps and clock_step corrections are not what this test is about)
    g = [x for x in gaps(entries) if x["source"] == "main" and x["reason"] not in ("no_packets", "clock_step")]
    assert sorted((x["track"], x["reason"]) for x in g) == [("audio", "peer_disconnect"), ("video", "peer_disconnect")]
    for x in g:  # from the first peer's last frame (it may have stalled before) to the page's first
        assert x["start_ns"] <= closed + 100_000_000 and closed <= x["end_ns"] <= back + 100_000_000, (x, closed, back)


def test_room_screen_shows_monitoring_and_remote_participants(
    live_server: LiveServer,  # noqa: F811  (the fixture imported above)
    chromium: BrowserFactory,
    peers_loop: BackgroundLoop,
) -> None:
    """A supervisor watching live (WHEP) shows 「正在被监看」 on the room screen, and goes away when
    the supervisor stops; a remote participant who joined is listed by name and role."""
    from tests.live.media import WhepViewer
    from tests.recorder.peers import WhipPublisher

    srv = live_server
    created = srv.create_session()
    sid = created["id"]
    b = chromium(cameras=3)
    open_capture(b, srv, created["capture_url"], cameras=CAMERAS)
    wait_recording(b, ("main", "panorama"))
    assert page_state(b)["monitored"] is False
    inv_token, _source = srv.invite(sid, name="陈律师", sub_role="lawyer")
    with srv.client(None) as c:
        r = c.post(f"/api/sessions/{sid}/participants", headers={"Authorization": f"Bearer {inv_token}"})
    assert r.status_code == 201, r.text
    joined = r.json()
    remote = peers_loop.make(lambda: WhipPublisher(joined["whip_url"], joined["token"], fps=10))
    peers_loop.run(remote.start())
    peers_loop.run(remote.wait_connected())
    text = b.wait_for(
        "return !document.getElementById('participants').hidden"
        " && document.getElementById('participant-list').textContent",
        timeout=15,
        what="remote participant listed",
    )
    assert text == "陈律师 (辩护律师)"
    assert page_state(b)["monitored"] is False  # a participant is not a monitor
    viewer = peers_loop.make(lambda: WhepViewer(f"{srv.url}/whep/{sid}/main", srv.auth("supervisor")))
    peers_loop.run(viewer.start())
    peers_loop.run(viewer.wait_frames("video", 5))
    b.wait_for("return !document.getElementById('monitored').hidden", timeout=15, what="being monitored")
    assert "正在被监看" in b.js("return document.getElementById('monitored').textContent")
    # who watches, by name and role (nobody watches covertly)
    assert "supervisor 测试 (监督 supervisor)" in b.js("return document.getElementById('monitored').textContent")
    b.screenshot("01-monitored")
    assert peers_loop.run(viewer.delete()) == 200
    peers_loop.run(viewer.close())
    b.wait_for("return document.getElementById('monitored').hidden", timeout=15, what="monitoring ended")
    peers_loop.run(remote.close())
    b.wait_for("return document.getElementById('participants').hidden", timeout=15, what="participant gone")
    b.screenshot("02-not-monitored")
    with srv.client() as c:
        assert c.post(f"/api/sessions/{sid}/stop").status_code == 200


def test_capture_page_without_tokens_says_how_to_open_it(capture_server: Server, chromium: BrowserFactory) -> None:
    server = capture_server
    sid = server.create_session()["id"]
    b = chromium()
    b.driver.get(f"{server.url}/capture/{sid}")
    text = b.wait_for(
        "return !document.getElementById('error').hidden && document.getElementById('error').textContent",
        timeout=10,
        what="error banner",
    )
    assert "缺少信号源令牌" in text
    assert b.js("return Object.keys(tonglu.publishers).length") == 0
    # the page's small pure helpers
    helpers = b.js(
        """const h = window.tongluCapture;
        return {b0: h.backoffMs(0), b1: h.backoffMs(1), b9: h.backoffMs(9), d: h.formatDuration(3723999),
                d0: h.formatDuration(-5), t: h.parseTokens('#main=a%2Bb&panorama=c&bad%20key=x&empty='),
                v: h.parseVideo('1280x720@30'), v0: h.parseVideo('junk'),
                s: h.sortedSources({remote: 1, panorama: 1, extra: 1, main: 1})};"""
    )
    assert helpers["b0"] == 0 and 400 <= helpers["b1"] <= 600 and 6400 <= helpers["b9"] <= 9600, helpers
    assert helpers["d"] == "01:02:03" and helpers["d0"] == "00:00:00"
    assert helpers["t"] == {"main": "a+b", "panorama": "c"}
    assert helpers["v"] == {"width": 1280, "height": 720, "fps": 30}
    assert helpers["v0"] == {"width": 1920, "height": 1080, "fps": 25}
    assert helpers["s"] == ["main", "panorama", "extra", "remote"]
    b.screenshot("no-tokens")
    # a wrong token: refused by the recorder, shown, and not retried in a loop
    b.driver.get(f"{server.url}/capture/{sid}?video={SMALL_VIDEO}#main=not-the-token")
    text = b.wait_for(
        "return !document.getElementById('error').hidden && document.getElementById('error').textContent",
        timeout=20,
        what="refusal banner",
    )
    assert "403" in text, text
    assert b.js("return tonglu.publishers.main.fatal.status") == 403
    # a stopped session: the page says so and opens no camera, publishes nothing
    done = server.create_session()
    with server.api() as c:
        assert c.post(f"/api/sessions/{done['id']}/stop").status_code == 200
    b.driver.get(page_url(server, done["capture_url"], f"video={SMALL_VIDEO}"))
    b.wait_for("return document.body.dataset.rec === 'stopped'", timeout=15, what="stopped session shown")
    time.sleep(2.0)
    assert b.js(
        "return Object.values(tonglu.publishers).every(p => !p.pc && !p.resource"
        " && (!p.stream || p.stream.getTracks().every(t => t.readyState === 'ended')))"
    )
    assert page_state(b)["label"] == "■ 录像已结束 STOPPED"
