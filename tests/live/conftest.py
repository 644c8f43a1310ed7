"""Live relay fixtures: a real app (uvicorn on a free port) with an in-process recorder, accounts
(one user and API token per role), the hash-chained audit trail, and invitation helpers."""

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
from argon2 import PasswordHasher

from tonglu.config import Settings
from tonglu.recorder.local import LocalRecorder
from tonglu.recorder.router import RecorderRouter
from tonglu.web.accounts import USER_ROLES, Accounts
from tonglu.web.app import create_app
from tonglu.web.audit import AuditLog
from tonglu.web.services import Services

ADMIN = "live-admin-token-" + "x" * 24
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@dataclass
class LiveServer:
    url: str
    services: Services
    recorder: LocalRecorder
    loop: asyncio.AbstractEventLoop
    tokens: dict[str, str]  # role -> Bearer API token of a user with that role

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's event loop (where the recorder's objects live)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN if role == 'admin-token' else self.tokens[role]}"}

    def client(self, role: str | None = "admin-token") -> httpx.Client:
        headers = self.auth(role) if role else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def create_session(self) -> dict[str, Any]:
        body = {
            "room": "第二审讯室",
            "case_number": "L-2024-007",
            "suspect": "赵六",
            "interviewers": ["李四", "王五"],
            "reason": "远程讯问",
        }
        with self.client() as c:
            r = c.post("/api/sessions", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def invite(self, sid: str, name: str = "陈律师", sub_role: str = "lawyer") -> tuple[str, str]:
        """An invitation bound to `sid`: (its Bearer token, its source remote-<id>)."""
        inv, token = self.services.accounts.create_invitation(sid, name, sub_role, "interviewer", 3600)
        return token, inv.source

    def status(self, sid: str) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(f"/api/sessions/{sid}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def audit_actions(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        import json

        return [
            (r["action"], r["user"], r["outcome"], json.loads(r["detail"]))
            for r in self.services.audit.query(limit=10_000)
        ]


def live_settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "TONGLU_DATA_DIR": str(tmp_path / "data"),
            "TONGLU_RETENTION_SECONDS": "60",
            "TONGLU_ADMIN_TOKEN": ADMIN,
            "TONGLU_SEGMENT_SECONDS": "1",
        }
    )


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = live_settings(tmp_path)
    services = Services.local(settings)
    services.accounts = Accounts.from_url(settings.db_url, hasher=FAST_HASHER)
    services.audit = AuditLog.from_settings(settings, services.spool)
    tokens = {}
    for role in USER_ROLES:
        services.accounts.create_user(role, role, f"pw-{role}-0123456789", display_name=f"{role} 测试")
        tokens[role] = services.accounts.issue_api_token(role, "live tests")[1]
    recorder = LocalRecorder.from_services(services)
    services.recorder = RecorderRouter([recorder])
    app = create_app(services)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
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
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", services, recorder, holder["loop"], tokens)
    finally:
        srv.should_exit = True
        th.join(30)


# headless Debian Chromium (owned by the browser tests), for the whep.js test
from tests.browser.conftest import chromium  # noqa: E402, F401
