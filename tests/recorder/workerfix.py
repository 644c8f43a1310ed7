"""A real web app (uvicorn on a free port) routing to real recorder worker processes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from tests.recorder.conftest import Server
from tonglu.config import Settings
from tonglu.recorder.router import build_router, owner_index
from tonglu.recorder.workers import WorkersHandle, start_workers
from tonglu.web.app import create_app
from tonglu.web.services import Services


@contextlib.contextmanager
def web_app(services: Services) -> Iterator[Server]:
    app = create_app(services)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(srv.serve())
        loop.run_until_complete(services.recorder.close())
        loop.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "web app did not start"
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(f"http://127.0.0.1:{port}", services, services.recorder, holder["loop"])
    finally:
        srv.should_exit = True
        th.join(30)


@contextlib.contextmanager
def cluster(settings: Settings, n: int = 1) -> Iterator[tuple[Server, WorkersHandle]]:
    """`n` worker processes + the web app routing to them (as `tonglu up` wires them)."""
    handle = start_workers(settings, n)
    try:
        services = Services.local(settings)
        services.recorder = build_router(settings, services, worker_urls=handle.urls, secret=handle.secret)
        with web_app(services) as server:
            yield server, handle
    finally:
        handle.stop()


def session_for_worker(server: Server, index: int, n: int, tries: int = 64) -> dict[str, Any]:
    """Create sessions until one is routed to worker `index` of `n` (ids are random)."""
    for _ in range(tries):
        s = server.create_session()
        if owner_index(s["id"], n) == index:
            return s
    raise AssertionError(f"no session routed to worker {index} in {tries} tries")


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def staged_files(settings: Settings) -> list[str]:
    staging = settings.spool_dir / "staging"
    return sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file()) if staging.exists() else []
