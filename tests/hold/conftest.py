"""Fixtures for legal hold and retention: the real web app on a real SeaweedFS (recorder identity),
named people (two supervisors, an admin, a reviewer, an auditor) and a recorded session uploaded
by the real Uploader."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.verify.session_builder import BuiltSession, build_session
from tests.web.conftest import ADMIN_TOKEN, FAST_HASHER, start_session
from tonglu.config import Settings
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.uploader import Uploader
from tonglu.web.accounts import Accounts
from tonglu.web.app import create_app
from tonglu.web.services import Services

PEOPLE = {"sup1": "supervisor", "sup2": "supervisor", "adm1": "admin", "rev1": "reviewer", "aud1": "auditor",
          "int1": "interviewer"}
PASSWORD = "pw-hold-0123456789"
RETENTION_S = 2  # short COMPLIANCE retention, waited out in the tests


@dataclass
class HoldEnv:
    settings: Settings
    services: Services
    client: TestClient
    tokens: dict[str, str]
    store: ObjectStore  # recorder identity (what the web app uses)
    admin_store: ObjectStore  # the store's admin identity
    seaweed: Any

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def upload(self) -> None:
        up = Uploader(self.services.spool, self.store, self.settings, ledger=self.services.ledger, threads=4)
        try:
            report = up.drain(max_wait_s=30)
        finally:
            up.close()
        assert report.pending_left == 0 and not report.errors, report

    def session(self, sid: str = "S-hold-1") -> BuiltSession:
        built = build_session(self.settings.data_dir, sid)
        self.upload()
        return built

    def bare_session(self, sid: str, **extra: Any) -> str:
        start_session(self.services, sid, **extra)
        self.upload()
        return sid

    def versions(self, sid: str) -> list[Any]:
        return [v for v in self.store.versions(f"sessions/{sid}/") if not v.delete_marker]


def make_env(seaweed: Any, data_dir: Path, env: dict[str, str] | None = None) -> Iterator[HoldEnv]:
    settings = seaweed.settings(data_dir, retention_seconds=RETENTION_S,
                                env={"TONGLU_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})})
    services = Services.local(settings)
    services.accounts = Accounts.from_url(settings.db_url, hasher=FAST_HASHER)
    store = seaweed.object_store(settings, "recorder")
    services.store = store
    services.risk = None  # these tests count a session's objects: no risk-rule timer adding alert entries
    tokens = {}
    for user, role in PEOPLE.items():
        services.accounts.create_user(user, role, PASSWORD, display_name=f"{user} 测试")
        tokens[user] = services.accounts.issue_api_token(user, "tests")[1]
    with TestClient(create_app(services), follow_redirects=False) as client:
        yield HoldEnv(settings, services, client, tokens, store, seaweed.object_store(settings, "admin"), seaweed)


@pytest.fixture
def hold_env(seaweed: Any, tmp_path: Path) -> Iterator[HoldEnv]:
    yield from make_env(seaweed, tmp_path / "data")
