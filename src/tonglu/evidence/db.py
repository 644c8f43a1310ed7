"""The one way to open the index database (SQLite by default, PostgreSQL by URL).

Every part of a process that opens `Settings.db_url` (index, accounts, audit, session tokens) gets
the same engine from `open_engine`: one connection pool per URL and process, SQLite in WAL mode
with a busy timeout (writers from several threads and processes wait instead of failing),
PostgreSQL with a checked pool. `postgresql://` and `postgres://` URLs get the psycopg 3 driver
(the only one installed).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

SQLITE_BUSY_TIMEOUT_MS = 30_000
POOL_SIZE = 5
POOL_MAX_OVERFLOW = 10
POOL_RECYCLE_S = 1800
PG_CONNECT_TIMEOUT_S = 10  # an unreachable server fails start-up in seconds, not minutes

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def normalize_url(url: str) -> str:
    """`postgresql://` / `postgres://` → `postgresql+psycopg://`; anything else unchanged."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain):]
    return url


def is_postgres(url: str) -> bool:
    return normalize_url(url).startswith("postgresql+")


def open_engine(url: str) -> Engine:
    """The process's engine for `url` (created on first use)."""
    url = normalize_url(url)
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create(url)
        return engine


def _create(url: str) -> Engine:
    kwargs: dict[str, Any] = {}
    is_sqlite = url.startswith("sqlite")
    if is_sqlite:
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    else:
        kwargs.update(pool_size=POOL_SIZE, max_overflow=POOL_MAX_OVERFLOW, pool_recycle=POOL_RECYCLE_S,
                      pool_pre_ping=True)
        if "connect_timeout" not in make_url(url).query:
            kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    engine = create_engine(url, **kwargs)
    if is_sqlite:

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def close_engine(url: str) -> None:
    """Dispose of the process's engine for `url` (its pooled connections closed), if there is one."""
    with _lock:
        engine = _engines.pop(normalize_url(url), None)
    if engine is not None:
        engine.dispose()
