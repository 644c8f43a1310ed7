"""Fixtures for the web area: a real app on a temp data dir, one user per role, clients."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.browser.conftest import chromium  # noqa: F401  (the browser fixture, for test_journeys)
from tonglu.config import Settings
from tonglu.web.accounts import USER_ROLES, Accounts
from tonglu.web.app import create_app
from tonglu.web.services import Services

ADMIN_TOKEN = "test-admin-token-" + "x" * 24
PASSWORDS = {role: f"pw-{role}-0123456789" for role in USER_ROLES}


@pytest.fixture
def web_settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "TONGLU_DATA_DIR": str(tmp_path / "data"),
            "TONGLU_RETENTION_SECONDS": "60",
            "TONGLU_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    )


# Real argon2id, with cheaper parameters than production so the suite stays fast on 2 cores.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


def make_services(web_settings: Settings, *, risk_rules: bool) -> Services:
    services = Services.local(web_settings)
    services.accounts = Accounts.from_url(web_settings.db_url, hasher=FAST_HASHER)
    from tonglu.transcribe.service import TranscriptService

    services.transcripts = TranscriptService(web_settings, services.spool, services.ledger)
    if not risk_rules and services.risk is not None:  # the routes answer as usual; no rule ever fires
        services.risk.ruleset = dataclasses.replace(services.risk.ruleset, rules=())
    return services


@pytest.fixture
def services(web_settings: Settings) -> Services:
    """With no risk rules: these tests count a session's entries, and a rule firing (the night rule
    at night in Beijing time, say) would add alert entries to them. tests/risk and tests/security
    run with the shipped rules."""
    return make_services(web_settings, risk_rules=False)


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as c:
        yield c


@dataclass
class Staff:
    tokens: dict[str, str]  # role -> Bearer API token of that role's user

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture
def staff(services: Services) -> Staff:
    """One user per role (named after it) with an API token."""
    tokens = {}
    for role in USER_ROLES:
        services.accounts.create_user(role, role, PASSWORDS[role], display_name=f"{role} 测试")
        _rec, token = services.accounts.issue_api_token(role, "tests")
        tokens[role] = token
    return Staff(tokens)


def start_session(services: Services, sid: str, **extra: Any) -> str:
    """A session as the recorder starts it: a `session_start` entry in the real ledger."""
    body = {
        "room": "room-1",
        "case_number": f"CASE-{sid}",
        "suspect": "张三",
        "interviewers": ["李警官", "王警官"],
        "reason": "测试",
        "custody_out_iso": None,
        "sources": {
            "main": {"kind": "camera", "label": "近景 close-up"},
            "panorama": {"kind": "camera", "label": "全景 panorama"},
        },
        "created_by": "interviewer",  # the `staff` interviewer: its own session (rbac.may_access_session)
        "recorder_version": "test",
    }
    body.update(extra)
    services.ledger.append(sid, "session_start", body, now_ns=time.time_ns())
    return sid


def login(client: TestClient, role: str) -> TestClient:
    r = client.post("/api/auth/login", json={"username": role, "password": PASSWORDS[role]})
    assert r.status_code == 200, r.text
    return client
