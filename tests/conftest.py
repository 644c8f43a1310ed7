"""Shared fixtures. Area fixtures live in tests/<area>/conftest.py.

Database engine: tests run on SQLite unless `--db=pg` (or TONGLU_TEST_DB=pg) is given; then every
`Settings.from_env` of a test (and every subprocess, through TONGLU_DATABASE_URL) points at a fresh
PostgreSQL database of the `postgres` fixture's server. URLs a test names itself (`sqlite:///...`)
stay as they are. tests/pg runs a set of tests on both engines in every run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tonglu.config import Settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db", choices=("sqlite", "pg"), default=os.environ.get("TONGLU_TEST_DB", "sqlite"),
        help="the index database engine of settings made by the tests (default: sqlite; TONGLU_TEST_DB)",
    )


@pytest.fixture(autouse=True)
def _main_thread_event_loop() -> Iterator[None]:
    """Each test starts with a current event loop in the main thread, as a fresh interpreter has:
    aiortc objects built outside a running loop call `asyncio.get_event_loop()`, which raises once
    an earlier test's `asyncio.run` left the policy with no loop (so results depended on order)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture(autouse=True)
def _database_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--db=pg`: the test's settings use a PostgreSQL database of its own (see the module docstring)."""
    if (request.config.getoption("--db") != "pg" or "pg_url" in request.fixturenames
            or request.node.get_closest_marker("sqlite_only")):
        return
    url = request.getfixturevalue("pg_url")
    plain = Settings.from_env.__func__  # type: ignore[attr-defined]

    def from_env(cls: type[Settings], env: Any = None) -> Settings:
        values = dict(os.environ if env is None else env)
        values.setdefault("TONGLU_DATABASE_URL", url)
        return plain(cls, values)  # type: ignore[no-any-return]

    monkeypatch.setattr(Settings, "from_env", classmethod(from_env))
    monkeypatch.setenv("TONGLU_DATABASE_URL", url)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_RETENTION_SECONDS": "60"})


# -- SeaweedFS (object store) fixtures: owned by the storage_io area -------------------------------
# `seaweed` (session scope) runs one real `weed mini` on free loopback ports with a generated
# identities config (admin / recorder / reviewer). `store_settings` gives each test its own data
# dir and its own freshly bootstrapped evidence (locked) + work buckets on that server.


@dataclass
class SeaweedServer:
    store: Any  # storage.seaweed.EmbeddedStore
    endpoint: str  # "http://127.0.0.1:<port>"
    credentials: dict[str, tuple[str, str]]  # role ("admin"|"recorder"|"reviewer") -> (access, secret)

    def settings(
        self,
        data_dir: Path,
        *,
        role: str = "recorder",
        retention_seconds: int = 60,
        bootstrap: bool = True,
        env: dict[str, str] | None = None,
    ) -> Settings:
        """Settings pointing at this server (as an external endpoint) with fresh, unique buckets."""
        access, secret = self.credentials[role]
        tag = uuid.uuid4().hex[:10]
        values = {
            "TONGLU_DATA_DIR": str(data_dir),
            "TONGLU_S3_ENDPOINT": self.endpoint,
            "TONGLU_S3_ACCESS_KEY": access,
            "TONGLU_S3_SECRET_KEY": secret,
            "TONGLU_EVIDENCE_BUCKET": f"ev-{tag}",
            "TONGLU_WORK_BUCKET": f"wk-{tag}",
            "TONGLU_RETENTION_SECONDS": str(retention_seconds),
            **(env or {}),
        }
        s = Settings.from_env(values)
        if bootstrap:
            from tonglu.evidence.bootstrap import bootstrap as do_bootstrap
            from tonglu.evidence.signing import SiteKey

            do_bootstrap(self.object_store(s, "admin"), s, SiteKey.load_or_create(s.keys_dir))
        return s

    def object_store(self, settings: Settings, role: str = "recorder") -> Any:
        from tonglu.evidence.objectstore import ObjectStore

        access, secret = self.credentials[role]
        return ObjectStore(
            self.endpoint,
            access,
            secret,
            evidence_bucket=settings.evidence_bucket,
            work_bucket=settings.work_bucket,
            region=settings.s3_region,
        )


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    from tonglu.evidence.seaweed import EmbeddedStore

    # One volume per bucket that holds data; weed mini's automatic limit (77 here) would run out
    # after ~38 tests' bucket pairs and then fail PUTs with InternalError 500.
    store = EmbeddedStore(tmp_path_factory.mktemp("seaweed") / "store", extra_args=["-volume.max=2000"])
    ep = store.start()
    try:
        creds = {role: (i.access_key, i.secret_key) for role, i in store.identities.items()}
        yield SeaweedServer(store=store, endpoint=ep.s3_url, credentials=creds)
    finally:
        store.stop()


@pytest.fixture
def store_settings(seaweed: SeaweedServer, tmp_path: Path) -> Settings:
    """Settings (recorder identity) on the shared SeaweedFS, with this test's own buckets."""
    return seaweed.settings(tmp_path / "data")


# -- PostgreSQL fixtures -------------------------------------------------------------------------
# `postgres` (session scope) runs one real PostgreSQL server (Debian binaries) on a free loopback
# port; `pg_url` gives each test its own fresh database on it.


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    from tonglu.evidence.pgserver import LocalPostgres

    # not under pytest's basetemp: pytest resets its root to 0700 whenever another pytest run
    # starts, which would lock the `postgres` user (root runs the server as it) out of its data
    base = Path(tempfile.mkdtemp(prefix="tonglu-test-pg-"))
    pg = LocalPostgres(base / "pg")
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty database for this test (dropped after it)."""
    import re

    from tonglu.evidence.db import close_engine

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    url = str(postgres.url(name))
    yield url
    close_engine(url)
    postgres.drop_database(name)
