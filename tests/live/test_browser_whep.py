"""Headless Debian Chromium watches a session through web/static/whep.js (the plain-JS client the
pages use): the picture plays, the supervisor shows in the session status, stop() ends it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import BrowserFactory
from tests.live.conftest import LiveServer
from tests.live.media import packet_publisher

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def background_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in its own thread, for aiortc publishers while Selenium blocks the test."""
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        th.join(10)
        loop.close()


WATCH = """
const [url, token, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const s = document.createElement("script");
s.src = "/static/whep.js";
s.onload = async () => {
  let v = document.getElementById("live");
  if (!v) {
    v = document.createElement("video");
    v.id = "live"; v.muted = true; v.autoplay = true; v.playsInline = true; v.width = 320;
    document.body.appendChild(v);
  }
  window.states = [];
  try {
    window.handle = await TongluWhep.watch(url, token, v, { onstate: (st) => window.states.push(st) });
    done("ok");
  } catch (e) { done("error " + e.status + " " + e.message); }
};
document.head.appendChild(s);
"""


def test_chromium_watches_through_whep_js(
    live_server: LiveServer, chromium: BrowserFactory, background_loop: asyncio.AbstractEventLoop
) -> None:
    srv = live_server
    s = srv.create_session()
    sid, main = s["id"], s["sources"]["main"]
    pub, _sent = packet_publisher(main["whip_url"], main["token"], "VP8")

    def on_bg(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, background_loop).result(30)

    async def start() -> None:
        await pub.start()
        await pub.wait_connected()

    on_bg(start())
    try:
        b = chromium(cameras=1)
        b.driver.get(srv.url + "/healthz")
        sup = srv.tokens["supervisor"]
        # a refused viewer gets the server's reason
        assert b.driver.execute_async_script(WATCH, f"/whep/{sid}/main", srv.tokens["reviewer"]).startswith("error 403")
        assert b.driver.execute_async_script(WATCH, f"/whep/{sid}/main", sup) == "ok"
        b.wait_for(
            "const v = document.getElementById('live'); return v && v.videoWidth === 320 && v.currentTime > 1;",
            timeout=30,
            what="live video playing",
        )
        stats = b.driver.execute_async_script(
            """const done = arguments[arguments.length - 1];
            window.handle.pc.getStats().then((r) => { let n = 0; r.forEach((x) => {
              if (x.type === "inbound-rtp" && x.kind === "video") n = x.framesDecoded; }); done(n); });"""
        )
        assert stats > 10
        assert "connected" in b.js("return window.states")
        b.screenshot("whep-live")
        st = srv.status(sid)
        assert [(v["user"], v["role"], v["source"], v["state"]) for v in st["viewers"]] == [
            ("supervisor", "supervisor", "main", "connected")
        ]
        assert st["monitored"] is True
        b.driver.execute_async_script(
            "const d = arguments[arguments.length - 1]; window.handle.stop().then(() => d(1));"
        )
        deadline = time.time() + 10
        while srv.status(sid)["viewers"] and time.time() < deadline:
            time.sleep(0.1)
        assert srv.status(sid)["viewers"] == [] and b.js("return window.handle.state") == "stopped"
    finally:
        on_bg(pub.close())
