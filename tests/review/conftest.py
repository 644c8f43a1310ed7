"""Review tests: the browser fixture, an app on a real uvicorn server, and a stored 30-minute session."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import uvicorn
from fastapi import FastAPI

from tests.browser.conftest import chromium  # noqa: F401  (fixture)
from tonglu.config import Settings
from tonglu.web.server import uvicorn_config


@contextmanager
def serve(app: FastAPI, settings: Settings) -> Iterator[str]:
    """Run `app` on a free loopback port with the uvicorn settings `tonglu up` uses; yield its URL."""
    config = uvicorn_config(app, replace(settings, http_host="127.0.0.1"), port=0, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def with_admin(settings: Settings, token: str) -> Settings:
    return dataclasses.replace(settings, admin_token=token)

