"""The PostgreSQL fixture is a real server: a table written through one engine is read through another."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def test_real_server_roundtrip(pg_url: str) -> None:
    a = create_engine(pg_url)
    with a.begin() as conn:
        conn.execute(text("CREATE TABLE t(x int)"))
        conn.execute(text("INSERT INTO t VALUES (42)"))
    b = create_engine(pg_url)
    with b.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar() == 42
        assert "PostgreSQL" in str(conn.execute(text("SELECT version()")).scalar())
    a.dispose()
    b.dispose()
