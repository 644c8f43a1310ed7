"""Recorder fixtures: a real HTTP server (uvicorn on a free port) with a LocalRecorder."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tonglu.config import Settings
from tonglu.recorder.local import LocalRecorder
from tonglu.recorder.router import RecorderRouter
from tonglu.web.app import create_app
from tonglu.web.services import Services

ADMIN = "test-admin-token"


@dataclass
class Server:
    url: str
    services: Services
    recorder: LocalRecorder
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)

    def create_session(self, **extra: Any) -> dict[str, Any]:
        body = {
            "room": "第一审讯室",
            "case_number": "A-2024-001",
            "suspect": "张三",
            "interviewers": ["李四", "王五"],
            "reason": "讯问",
            "custody_out": "2024-05-01T09:00:00+08:00",
            **extra,
        }
        with self.api() as c:
            r = c.post("/api/sessions", json=body)
        assert r.status_code == 201, r.text
        return r.json()


def make_settings(tmp_path: Path, **env: str) -> Settings:
    base = {
        "TONGLU_DATA_DIR": str(tmp_path / "data"),
        "TONGLU_RETENTION_SECONDS": "60",
        "TONGLU_ADMIN_TOKEN": ADMIN,
        "TONGLU_SEGMENT_SECONDS": "2",
        **env,
    }
    return Settings.from_env(base)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    yield from run_server(make_settings(tmp_path))


def run_server(settings: Settings) -> Iterator[Server]:
    services = Services.local(settings)
    recorder = LocalRecorder.from_services(services)
    services.recorder = RecorderRouter([recorder])
    app = create_app(services)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.serve())
        loop.run_until_complete(recorder.close())
        loop.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    s = Server(f"http://127.0.0.1:{port}", services, recorder, holder["loop"])
    try:
        yield s
    finally:
        srv.should_exit = True
        th.join(30)
