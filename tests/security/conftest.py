"""Security tests: the web area's fixtures (real app, one user per role) plus the app on a real
uvicorn server built with `tonglu up`'s own settings (`web.server.uvicorn_config`), and the live
server with an in-process recorder (tests/live); worker processes come from tests/recorder/workerfix."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from tests.browser.conftest import chromium  # noqa: F401  (fixture)
from tests.live.conftest import live_server  # noqa: F401  (fixture)
from tests.web.conftest import app, client, make_services, staff, web_settings  # noqa: F401  (fixtures)
from tonglu.config import Settings
from tonglu.web.server import uvicorn_config
from tonglu.web.services import Services


@contextmanager
def serve(app: FastAPI, settings: Settings, **changes: Any) -> Iterator[str]:  # noqa: F811
    """Run `app` on a free loopback port with the uvicorn settings `tonglu up` uses; yield its URL."""
    config = uvicorn_config(app, replace(settings, http_host="127.0.0.1", **changes), port=0, lifespan="off")
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


@pytest.fixture
def services(web_settings: Settings) -> Services:  # noqa: F811
    """With the risk-rule timer: every route answers as in `tonglu up`, the alert routes included."""
    return make_services(web_settings, risk_rules=True)
