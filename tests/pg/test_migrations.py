"""Alembic migrations: the initial revision makes exactly the live tables on both engines, a
database made by the code before migrations is brought up without losing a row, and `tonglu db
upgrade` / `tonglu up` run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, insert, inspect, select

from tonglu.evidence import index as index_mod
from tonglu.evidence.index import Index, SessionSearch
from tonglu.evidence.jobs import JOBS_METADATA
from tonglu.evidence.migrate import current_revision, ensure_schema, head_revision, prepare_database
from tonglu.recorder import store as recorder_store
from tonglu.transcribe import queue as queue_mod
from tonglu.web import tables as web_tables
from tonglu.web.accounts import Accounts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "pg"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "pg":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'index.db'}"


def live_metadata(dialect: str) -> MetaData:
    merged = MetaData()
    sources = [index_mod.metadata, web_tables.metadata, recorder_store._metadata, JOBS_METADATA]
    if dialect == "postgresql":
        sources.append(queue_mod.PG_METADATA)
    for md in sources:
        for table in md.tables.values():
            table.to_metadata(merged)
    return merged


def _only_ours(dialect: str) -> Any:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and (name == "alembic_version" or (name or "").startswith("search_fts")):
            return False  # alembic's own, and SQLite's FTS5 table with its shadow tables
        # the trigram GIN indexes are made on PostgreSQL only (`ddl_if`)
        return not (type_ == "index" and (name or "").startswith("search_text_trgm") and dialect != "postgresql")

    return include


def test_the_migrations_make_the_live_tables(db_url: str) -> None:
    engine = create_engine(db_url)
    prepare_database(db_url)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": _only_ours(conn.dialect.name), "compare_type": True}
        )
        diff = compare_metadata(ctx, live_metadata(conn.dialect.name))
    assert diff == []
    if engine.dialect.name == "postgresql":
        names = {ix["name"] for ix in inspect(engine).get_indexes("search_text")}
        assert {"search_text_trgm_meta", "search_text_trgm_line"} <= names
    engine.dispose()


def _old_database(path: Path) -> None:
    """What the code before migrations left: tables made by create_all at start, FTS5, rows."""
    engine = create_engine(f"sqlite:///{path}")
    for md in (index_mod.metadata, web_tables.metadata, recorder_store._metadata):
        md.create_all(engine)
    body = {"room": "审讯室1", "case_number": "A-2025-009", "suspect": "张三", "interviewers": ["李警官"],
            "created_by": "li", "sources": {}}
    with engine.begin() as conn:
        for ddl in index_mod.SEARCH_FTS_DDL:
            conn.exec_driver_sql(ddl)
        conn.execute(insert(index_mod.sessions).values(id="OLD-1", room="审讯室1", case_number="A-2025-009",
                                                       suspect="张三", interviewers=["李警官"], state="stopped",
                                                       started_ns=1, entries=2, start_body=body))
        conn.execute(insert(index_mod.search_text).values(session_id="OLD-1", field="line", start_ns=1,
                                                          body="仓库的钥匙在我这里"))
        conn.execute(insert(web_tables.users).values(username="li", display_name="李警官", role="interviewer",
                                                     password_hash="$argon2id$x", disabled=False,
                                                     created_ns=1, updated_ns=1))
        conn.execute(insert(web_tables.audit_records).values(seq=0, time_ns=1, user="li", role="interviewer",
                                                             address="127.0.0.1", action="login", object="/",
                                                             outcome="ok", detail="{}", prev="0" * 64,
                                                             hash="1" * 64, raw=json.dumps({"seq": 0})))
        conn.exec_driver_sql("DROP TABLE recorder_source_limits")  # an older version still: a table missing
        conn.exec_driver_sql("DROP INDEX search_text_meta")
    engine.dispose()


def test_a_database_from_before_migrations_is_upgraded_without_loss(tmp_path: Path) -> None:
    db = tmp_path / "index.db"
    _old_database(db)
    url = f"sqlite:///{db}"
    engine = create_engine(url)
    assert current_revision(engine) is None
    assert prepare_database(url) == (None, head_revision())
    assert current_revision(engine) == head_revision()
    tables = set(inspect(engine).get_table_names())
    assert "recorder_source_limits" in tables  # the missing table was made
    assert "search_text_meta" in {ix["name"] for ix in inspect(engine).get_indexes("search_text")}
    with engine.connect() as conn:
        assert conn.execute(select(web_tables.users.c.display_name)).scalar_one() == "李警官"
        assert conn.execute(select(web_tables.audit_records.c.action)).scalar_one() == "login"
    index = Index(url)
    (hit,) = index.search(SessionSearch(text="仓库的钥"))  # the FTS index made by the old code still answers
    assert hit.session.id == "OLD-1" and hit.session.interviewers == ["李警官"]
    assert Accounts.from_url(url).get_user("li").display_name == "李警官"
    assert prepare_database(url) == (head_revision(), head_revision())  # a second run changes nothing
    engine.dispose()


def test_every_part_opening_a_new_database_migrates_it(db_url: str) -> None:
    engine = create_engine(db_url)
    assert current_revision(engine) is None
    Accounts.from_url(db_url)  # the web tables' engine_for, not the index, comes first here
    assert current_revision(engine) == head_revision()
    ensure_schema(engine)  # at head: nothing to do
    engine.dispose()


def _tonglu(env_extra: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "HOME": str(Path.home()), **env_extra}
    return subprocess.run([sys.executable, "-m", "tonglu.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_tonglu_db_upgrade_and_current(db_url: str, tmp_path: Path) -> None:
    env = {"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_DATABASE_URL": db_url}
    before = _tonglu(env, "db", "current")
    assert before.returncode == 0 and before.stdout.startswith("current (none)"), before.stderr
    up = _tonglu(env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert f"(none) → {head_revision()}" in up.stdout
    again = _tonglu(env, "db", "upgrade")
    assert again.returncode == 0 and "already current" in again.stdout
