"""The whole spine, as a user runs it: `tonglu up`, start a session, publish, stop, verify.

Everything is real: the `tonglu up` process with its embedded SeaweedFS, recorder and
transcription workers; aiortc publishers over WHIP; `tonglu verify --session` re-hashing what
landed in the locked bucket.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.recorder.peers import WhipPublisher

TOKEN = "spine-admin-token-0123456789abcdef"
TONGLU = str(Path(sys.executable).with_name("tonglu"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGLU_")}
    env.update(
        TONGLU_DATA_DIR=str(data_dir),
        TONGLU_HTTP_PORT=str(port),
        TONGLU_ADMIN_TOKEN=TOKEN,
        TONGLU_RETENTION_SECONDS="120",
        TONGLU_RECORDER_WORKERS="1",
        TONGLU_TRANSCRIBE_WORKERS="1",
        TONGLU_WHISPER_MODEL="tiny.en",
        PYTHONUNBUFFERED="1",
    )
    return env


class Running:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.env = _env(data_dir, self.port)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / "up.log", "wb")
        self.proc = subprocess.Popen([TONGLU, "up"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_healthy(self, limit_s: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + limit_s
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"tonglu up exited early: {self.logtext()}"
            try:
                r = httpx.get(f"{self.base}/healthz", timeout=2)
                last = r.json()
                if r.status_code == 200:
                    return r.json()  # type: ignore[no-any-return,unused-ignore]
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.3)
        raise AssertionError(f"not healthy in {limit_s}s: {last}\n{self.logtext()}")

    def logtext(self) -> str:
        self.log.flush()
        return (self.data_dir.parent / "up.log").read_text(errors="replace")[-4000:]

    def api(self, method: str, path: str, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return httpx.request(method, self.base + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        finally:
            self.log.close()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[[str], Running]]:
    """Start `tonglu up` instances, each with its own data dir and port; kill leftovers after."""
    started: list[Running] = []

    def _start(name: str) -> Running:
        data = tmp_path / name / "data"
        data.mkdir(parents=True)
        started.append(Running(data))
        return started[-1]

    yield _start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait(10)


def _spool_empty(data_dir: Path) -> bool:
    return not any((data_dir / "spool" / "ready").glob("*.meta.json"))


async def _publish(sources: dict[str, dict[str, str]], seconds: float) -> None:
    pubs = [WhipPublisher(s["whip_url"], s["token"]) for s in sources.values()]
    try:
        for p in pubs:
            await p.start()
        for p in pubs:
            await p.wait_connected()
        await asyncio.sleep(seconds)
        for p in pubs:
            assert await p.delete() == 200
    finally:
        for p in pubs:
            await p.close()


@pytest.mark.slow
def test_up_session_publish_stop_verify(start: Callable[[str], Running]) -> None:
    running, second = start("a"), start("b")  # two instances side by side
    health = running.wait_healthy()
    assert health["ok"] is True
    assert second.wait_healthy()["ok"] is True
    ports = [json.loads((r.data_dir / "store" / "endpoint.json").read_text()) for r in (running, second)]
    assert ports[0] != ports[1]
    assert second.stop() == 0, second.logtext()
    assert {"store", "uploader", "recorder", "transcription"} <= set(health["parts"])

    created = running.api(
        "POST",
        "/api/sessions",
        json={
            "room": "讯问室1",
            "case_number": "A2026-0001",
            "suspect": "张三",
            "interviewers": ["李警官", "王警官"],
            "reason": "讯问 interrogation",
            "custody_out": "2026-11-27T01:00:00Z",
        },
    )
    assert created.status_code == 201, created.text
    session = created.json()
    sid = session["id"]
    assert set(session["sources"]) >= {"main", "panorama"}

    asyncio.run(_publish(session["sources"], seconds=6))

    status = running.api("GET", f"/api/sessions/{sid}").json()
    assert status["state"] == "recording"  # a dropped peer never stops a session

    stopped = running.api("POST", f"/api/sessions/{sid}/stop")
    assert stopped.status_code == 200, stopped.text
    digest = stopped.json()["digest"]

    deadline = time.monotonic() + 60
    while not _spool_empty(running.data_dir):
        assert time.monotonic() < deadline, "spool did not drain into the object store"
        time.sleep(0.5)

    verify = subprocess.run(
        [TONGLU, "verify", "--session", sid, "--json", "--digest", digest],
        env=running.env, capture_output=True, text=True, timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    result = json.loads(verify.stdout)
    assert result["ok"] is True
    assert result["sessions"][0]["segments"] >= 4, result["sessions"][0]

    report = running.api("GET", f"/api/sessions/{sid}/report")
    assert report.status_code == 200, report.text
    assert report.json()["verified"] is True

    assert running.stop() == 0, running.logtext()
    # Every child (SeaweedFS, workers) went with it.
    leftovers = subprocess.run(["pgrep", "-f", str(running.data_dir)], capture_output=True, text=True).stdout
    assert leftovers.strip() == "", leftovers
