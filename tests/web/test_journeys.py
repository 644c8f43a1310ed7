"""The people's journeys in headless Debian Chromium against a real server, recorder and Whisper.

One recorded session carries every journey (2 cores: one session is what we can afford):
interviewer logs in, starts a session from the console, the room's capture page records both
cameras (speech from a LibriVox clip as the microphone), a marker and a break are added, a remote
participant joins two-way by invitation and is recorded, a supervisor watches live (the capture
page shows "being monitored"), a network drop is injected, the live transcript appears beside the
video, the interviewer stops and the final digest is shown large. Then a reviewer finds the
session by case number and by a word of its transcript, replays it, clicks a transcript line and
the video seeks there, sees the gap the drop caused, and downloads the export.
Screenshots of every page: test-artifacts/<test>/.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Browser, BrowserFactory
from tests.browser.test_capture_page import CAMERAS, open_capture, page_state, wait_recording
from tests.recorder.conftest import Server, make_settings, run_server
from tests.transcribe.conftest import LIBRIVOX
from tonglu.evidence.manifest import GAP_REASONS
from tonglu.transcribe.service import TranscriptService
from tonglu.transcribe.workers import start_workers

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.whisper]
PASSWORD = "journey-password-1"


def login(b: Browser, url: str, user: str) -> None:
    b.driver.get(url)
    b.wait_for("return document.getElementById('login-form') !== null", what="login page")
    b.driver.find_element("id", "username").send_keys(user)
    b.driver.find_element("id", "password").send_keys(PASSWORD)
    b.driver.find_element("id", "login-submit").click()
    b.wait_for("return document.getElementById('login-form') === null", what=f"{user} logged in")


def click(b: Browser, element_id: str) -> None:
    b.js(f"document.getElementById('{element_id}').click()")


def fill(b: Browser, element_id: str, value: str) -> None:
    b.js("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
         "e.dispatchEvent(new Event('input', {bubbles: true}));", element_id, value)


def accept_confirm(b: Browser) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            b.driver.switch_to.alert.accept()
            return
        except Exception:
            time.sleep(0.1)
    raise AssertionError("no confirmation dialog")


def playing(b: Browser, video_id: str, what: str) -> None:
    b.wait_for(f"const v = document.getElementById('{video_id}'); return v && v.videoWidth > 0 && v.readyState >= 2",
               timeout=40, what=what)


def party_playing(b: Browser, source: str, what: str) -> None:
    """The remote page's party view (party.js): the tile of `source` decodes picture and plays on."""
    b.wait_for(f"const f = document.querySelector('#party-grid figure[data-source=\"{source}\"]');"
               "const v = f && f.querySelector('video');"
               "return v && v.videoWidth > 0 && v.readyState >= 2 && v.currentTime > 1",
               timeout=40, what=what)


def test_journeys(tmp_path: Path, chromium: BrowserFactory) -> None:
    settings = make_settings(tmp_path, TONGLU_SEGMENT_SECONDS="2", TONGLU_WHISPER_MODEL="tiny.en",
                             TONGLU_WHISPER_LANGUAGE="en")
    servers: Generator[Server, None, None] = run_server(settings)  # type: ignore[assignment]
    server = next(servers)
    services = server.services
    services.transcripts = TranscriptService(settings, services.spool, services.ledger)
    workers = start_workers(settings, workers=1, model="tiny.en", lease_s=10, spool=services.spool,
                            ledger=services.ledger)
    try:
        for user, role in (("li", "interviewer"), ("zhao", "supervisor"), ("qian", "reviewer")):
            services.accounts.create_user(user, role, PASSWORD, display_name=f"{user} {role}")
        _journeys(server, services, chromium)
    finally:
        workers.stop()
        servers.close()


def _journeys(server: Any, services: Any, chromium: BrowserFactory) -> None:
    url = server.url
    case = f"A-{secrets.token_hex(3).upper()}"

    # -- interviewer: login, console, start a session -------------------------------------------
    iv = chromium()
    login(iv, url + "/console", "li")
    assert iv.driver.current_url == url + "/console"
    iv.screenshot("01-console")
    fill(iv, "f-room", "第三讯问室")
    fill(iv, "f-case", case)
    fill(iv, "f-suspect", "张三")
    fill(iv, "f-interviewers", "李警官")
    click(iv, "start-submit")
    iv.wait_for("return document.getElementById('start-result').textContent.includes('至少两名')",
                what="two interviewers required")
    fill(iv, "f-interviewers", "李警官\n王警官")
    fill(iv, "f-custody", "2025-03-01T08:40")
    click(iv, "start-submit")
    iv.wait_for("return location.pathname.startsWith('/console/')", what="session console opened")
    sid = iv.driver.current_url.rsplit("/", 1)[1]
    start = services.ledger.entries(sid)[0]
    assert start.body["case_number"] == case and start.body["interviewers"] == ["李警官", "王警官"]
    assert start.body["custody_out_iso"] == "2025-03-01T08:40:00+08:00" and start.body["created_by"] == "li"
    capture_url = iv.wait_for("return document.getElementById('capture-link').href", what="capture link")

    # -- the room computer: capture page with two cameras, speech as microphone ----------------
    room = chromium(cameras=3, extra_args=(f"--use-file-for-fake-audio-capture={LIBRIVOX[0]}",))
    open_capture(room, server, capture_url, cameras=CAMERAS)
    wait_recording(room, ("main", "panorama"), timeout=60)
    iv.wait_for("return document.getElementById('rec-indicator').dataset.state === 'recording' && "
                "document.getElementById('st-main').textContent.includes('已连接')", what="console: recording")
    t1 = iv.js("return document.getElementById('rec-duration').textContent")
    time.sleep(2.2)
    assert iv.js("return document.getElementById('rec-duration').textContent") != t1  # running
    iv.screenshot("02-session-recording")

    # -- marker and break ------------------------------------------------------------------------
    fill(iv, "marker-note", "嫌疑人开始供述")
    click(iv, "marker-submit")
    iv.wait_for("return document.getElementById('marker-result').textContent.includes('已记录')", what="marker")
    iv.js("document.getElementById('break-reason').value = 'meal'")
    fill(iv, "break-text", "午餐")
    fill(iv, "break-approver", "王队长")
    click(iv, "break-submit")
    iv.wait_for("return document.querySelector('.open-break .end-break')", what="open break listed")
    iv.screenshot("03-break-open")
    iv.js("document.querySelector('.open-break .end-break').click()")
    iv.wait_for("return document.querySelectorAll('.open-break').length === 0", what="break ended")

    # -- remote participant by invitation, two-way ----------------------------------------------
    fill(iv, "invite-name", "刘律师")
    iv.js("document.getElementById('invite-role').value = 'lawyer'")
    click(iv, "invite-submit")
    link = iv.wait_for("const t = document.getElementById('invite-result').textContent; "
                       "return t.startsWith('http') ? t : null", what="invitation link")
    remote = chromium(cameras=1)
    remote.driver.get(link)
    remote.wait_for(f"return location.pathname === '/remote/{sid}'", what="invitation redeemed")
    click(remote, "check")
    remote.wait_for("return document.getElementById('device-status').textContent.includes('设备正常')",
                    what="device check")
    click(remote, "join")
    remote.wait_for("return document.getElementById('state').textContent.includes('已加入')", timeout=40,
                    what="participant joined")
    party_playing(remote, "main", "participant sees the room's main camera")
    party_playing(remote, "panorama", "participant sees the panorama camera")
    remote.screenshot("04-remote-participant")
    source = next(e.body["source"] for e in services.ledger.entries(sid) if e.kind == "participant")
    iv.wait_for("return document.getElementById('remote-list').textContent.includes('刘律师 ●')",
                what="console lists the remote participant")
    with server.api() as c:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if c.get(f"/api/sessions/{sid}").json()["sources"].get(source, {}).get("connected"):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("the participant's source never connected")

    # -- supervisor live view; the room sees it --------------------------------------------------
    sup = chromium()
    login(sup, f"{url}/live/{sid}", "zhao")
    sup.wait_for("return document.getElementById('watch-state').textContent.includes('正在观看')", timeout=40,
                 what="supervisor watching")
    playing(sup, "v-main", "supervisor sees main")
    playing(sup, "v-panorama", "supervisor sees panorama")
    room.wait_for("return !document.getElementById('monitored').hidden", timeout=15, what="room shows monitoring")
    sup.screenshot("05-supervisor-live")
    room.screenshot("06-capture-monitored")
    sup.driver.get("about:blank")  # stop watching (frees CPU for the rest)
    remote.js("document.getElementById('leave').click()")
    accept_confirm(remote)
    remote.wait_for("return document.getElementById('state').textContent.includes('已退出')", timeout=90,
                    what="left")

    # -- a network drop on the main camera -------------------------------------------------------
    time.sleep(2.0)
    dropped = time.time_ns()
    room.js("tonglu.publishers.main.pc.close()")
    wait_recording(room, ("main", "panorama"), timeout=40)

    # -- the live transcript beside the video ------------------------------------------------------
    iv.wait_for("return document.querySelectorAll('#transcript .line').length > 0", timeout=90,
                what="a live transcript line in the console")
    iv.screenshot("07-live-transcript")
    fill(iv, "times-start", "2025-03-01T09:00:00")
    fill(iv, "times-end", "2025-03-01T11:30:00")
    click(iv, "times-submit")
    iv.wait_for("return document.getElementById('times-result').textContent.includes('已记录')", what="笔录 times")

    # -- stop with confirmation; the final digest, large -----------------------------------------
    click(iv, "stop-button")
    accept_confirm(iv)
    digest = iv.wait_for("const d = document.getElementById('final-digest').textContent;"
                         "return /^[0-9A-F]{5}(-[0-9A-F]{5}){3}$/.test(d) ? d : null", timeout=60,
                         what="final digest shown")
    assert digest == services.ledger.checkpoints(sid)[-1].digest
    iv.screenshot("08-final-digest")
    room.wait_for("return document.body.dataset.rec === 'stopped'", timeout=20, what="room page stopped")

    entries = services.ledger.entries(sid)
    kinds = [e.kind for e in entries]
    assert kinds.count("marker") == 1 and kinds.count("break") == 2 and "record_times" in kinds
    assert {e.body["event"] for e in entries if e.kind == "participant"} == {"joined", "left"}
    assert any(e.kind == "segment" and e.body["source"] == source for e in entries), "participant recorded"
    drop_gaps = [e.body for e in entries if e.kind == "gap" and e.body["source"] == "main"
                 and e.body["reason"] in GAP_REASONS and e.body["end_ns"] > dropped - 10**9]
    assert drop_gaps, [e.body for e in entries if e.kind == "gap"]

    # -- reviewer: find, replay, seek, gap, export -----------------------------------------------
    with server.api() as c:
        r = c.post(f"/api/sessions/{sid}/workcopy", params={"height": 180}, timeout=300)
        assert r.status_code == 202, r.text  # a background job
        job = r.json()
        deadline = time.monotonic() + 300
        while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
            job = c.get(job["url"]).json()
        assert job["state"] == "done", job
    lines = services.transcripts.current(sid)["lines"]
    words = sorted({w for ln in lines for w in re.findall(r"[A-Za-z]{5,}", ln["text"])}, key=len, reverse=True)
    assert words, lines
    rv = chromium()
    login(rv, url + "/review", "qian")
    fill(rv, "q-case", case)
    click(rv, "search-submit")
    rv.wait_for(f"return document.querySelector('#results tr.result[data-id=\"{sid}\"]')", what="found by case")
    rv.screenshot("09-review-by-case")
    fill(rv, "q-case", "")
    fill(rv, "q-text", words[0])
    click(rv, "search-submit")
    rv.wait_for(f"const rows = document.querySelectorAll('#results tr.result'); return rows.length === 1 && "
                f"rows[0].dataset.id === '{sid}'", what=f"found by transcript word {words[0]!r}")
    rv.screenshot("10-review-by-word")
    rv.js("document.querySelector('#results a.open-session').click()")
    rv.wait_for(f"return location.pathname === '/review/{sid}'", what="replay page")
    rv.wait_for("return document.getElementById('badge').textContent.includes('校验')&&"
                "!document.getElementById('badge').textContent.includes('verifying')", timeout=60, what="badge")
    rv.wait_for("return document.querySelectorAll('#transcript .line').length > 1", timeout=30, what="lines")
    rv.wait_for("const p = window.tongluPlayer; "
                "return p && p.lanes.length && p.lanes.some(l => l.media.readyState >= 1)",
                timeout=30, what="video loaded")
    assert rv.js("return document.querySelectorAll('#timeline .tl-gap').length") >= 1
    assert rv.js("return document.querySelectorAll('#timeline .tl-marker').length") == 1
    assert rv.js("return document.querySelectorAll('#timeline .tl-break').length") == 1
    assert rv.js("return document.querySelectorAll('#timeline .tl-remote').length") >= 1
    assert rv.js("return [...document.querySelectorAll('#gaps td')].some(td => td.textContent.includes('main/'))")
    target = rv.js("""const ls = document.querySelectorAll('#transcript .line'); const l = ls[ls.length - 1];
                      l.click(); return Date.parse(l.dataset.start);""")
    t0 = rv.js("return window.tongluPlayer.t0")
    expected = (target - t0) / 1000
    rv.wait_for(f"return Math.abs(window.tongluPlayer.pos / 1000 - {expected}) < 1.0",
                timeout=15, what="player seeks to the clicked line")
    rv.screenshot("11-replay")
    with server.api() as c:  # the report the page shows, kept beside the screenshots
        report = c.get(f"/api/sessions/{sid}/report").json()
    (rv.artifacts / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    export = rv.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {credentials: 'same-origin'}).then(async r => {
          const b = new Uint8Array(await r.arrayBuffer());
          done({status: r.status, type: r.headers.get('content-type'), head: String.fromCharCode(b[0], b[1]),
                size: b.length});
        }).catch(e => done({error: String(e)}));""", f"/api/sessions/{sid}/export.zip?workcopy=false")
    assert export.get("status") == 200 and export["head"] == "PK" and export["size"] > 10_000, export

    # -- every evidence access is in the audit trail -----------------------------------------------
    audit = services.audit
    # the reviewer replays from the masters: the playlist and every segment read are in the trail
    for user, action in (("qian", "search"), ("qian", "view"), ("qian", "playback"), ("qian", "playback_segment"),
                         ("qian", "export"),
                         ("zhao", "stream"), ("li", "marker"), ("li", "break"), ("li", "session_stop")):
        assert any(r["user"] == user and r["outcome"] == "ok" for r in audit.query(action=action)), (user, action)
    assert audit.verify().ok
    assert page_state(room)["label"] == "■ 录像已结束 STOPPED"
