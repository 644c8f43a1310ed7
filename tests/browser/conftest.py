"""Headless Debian Chromium for browser tests (reusable by every area), and a recording app server.

    def test_x(chromium: BrowserFactory, capture_server: Server) -> None:
        b = chromium()                      # a fresh Chromium (own profile dir), quit at teardown
        b.driver.get(capture_server.url + "/...")
        b.wait_for("return document.title", timeout=10)
        b.screenshot("my-page")             # test-artifacts/<test name>/my-page.png

Chromium is Debian's `/usr/bin/chromium` driven by `/usr/bin/chromedriver` (Selenium), never a
downloaded browser. Fake media: `--use-fake-device-for-media-stream=device-count=2` gives two
cameras (`fake_device_0`, `fake_device_1`: a moving pattern with a frame counter) and fake
microphones (a beep); `--use-fake-ui-for-media-stream` grants camera/microphone without a prompt.
`chromium(video_file=...)` feeds a .y4m file to every camera instead (a deterministic picture).
127.0.0.1 is a secure context, so getUserMedia works on the test server's plain http URL.

The app runs in a real uvicorn server on a free 127.0.0.1 port in a thread (see
`tests/recorder/conftest.py`), so the browser reaches it like the room computer would.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.recorder.conftest import Server, make_settings, run_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1400,1000",
    "--disable-dev-shm-usage",
)


@dataclass
class Browser:
    driver: Any  # selenium.webdriver.Chrome
    artifacts: Path
    profile: Path
    logs: list[dict[str, Any]] = field(default_factory=list)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def wait_for(self, script: str, timeout: float = 20, interval: float = 0.2, what: str = "") -> Any:
        """Poll `script` (a JS function body returning a value) until it is truthy; return it."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = self.js(script)
            if last:
                return last
            time.sleep(interval)
        self.screenshot("timeout-" + re.sub(r"\W+", "-", what or "wait")[:40])
        raise AssertionError(
            f"timed out after {timeout} s waiting for {what or script!r}; last value {last!r}; "
            f"console: {self.console()[-15:]}"
        )

    def sign_in(self, base: str, user: str, password: str, lands_on: str) -> None:
        """The login form, as a person fills it; waits until the page for the role (`lands_on`) opens."""
        self.driver.get(f"{base}/login")
        self.js("document.querySelector('input[name=username]').value = arguments[0];"
                "document.querySelector('input[name=password]').value = arguments[1];"
                "document.querySelector('form').submit();", user, password)
        self.wait_for(f"return location.pathname === {lands_on!r}", what="logged in")

    def screenshot(self, name: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console(self) -> list[str]:
        """Browser console lines so far (kept across calls: the driver hands each line out once)."""
        try:
            self.logs.extend(self.driver.get_log("browser"))
        except Exception:  # the driver is gone
            pass
        return [str(e.get("message", "")) for e in self.logs]


BrowserFactory = Callable[..., Browser]


@pytest.fixture
def chromium(request: pytest.FixtureRequest) -> Iterator[BrowserFactory]:
    """A factory of fresh headless Chromium instances; each is quit (and its profile removed) at teardown."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists():
            pytest.fail(f"{exe} is missing: install Debian's chromium and chromium-driver (scripts/setup)")
    started: list[Browser] = []
    test_dir = ARTIFACTS / re.sub(r"[^\w.-]+", "_", request.node.name)

    def make(video_file: Path | None = None, cameras: int = 2, extra_args: tuple[str, ...] = ()) -> Browser:
        profile = Path(tempfile.mkdtemp(prefix="tonglu-chromium-"))
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in (
            *CHROMIUM_ARGS,
            f"--use-fake-device-for-media-stream=device-count={cameras}",
            f"--user-data-dir={profile}",
            *extra_args,
        ):
            opts.add_argument(arg)
        if video_file is not None:
            opts.add_argument(f"--use-file-for-fake-video-capture={video_file}")
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        driver.set_script_timeout(30)
        b = Browser(driver, test_dir, profile)
        started.append(b)
        return b

    try:
        yield make
    finally:
        for b in started:
            try:
                b.console()
                if b.logs:
                    test_dir.mkdir(parents=True, exist_ok=True)
                    (test_dir / "console.log").write_text(
                        "\n".join(str(e.get("message", "")) for e in b.logs), encoding="utf-8"
                    )
                b.driver.quit()
            finally:
                shutil.rmtree(b.profile, ignore_errors=True)


class BackgroundLoop:
    """An asyncio loop in its own thread, for aiortc peers (publishers, WHEP viewers) that must keep
    sending and receiving while the test thread drives the browser synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def make(self, factory: Callable[[], Any]) -> Any:
        """Build an aiortc object on the loop (its futures and queues belong to the loop that made it)."""

        async def build() -> Any:
            return factory()

        return self.run(build())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def peers_loop() -> Iterator[BackgroundLoop]:
    bg = BackgroundLoop()
    try:
        yield bg
    finally:
        bg.close()


@pytest.fixture
def capture_server(tmp_path: Path) -> Iterator[Server]:
    """The app with an in-process recorder on a real uvicorn server; 2 s segments."""
    yield from run_server(make_settings(tmp_path, TONGLU_SEGMENT_SECONDS="2"))
