"""The index database's schema, by Alembic migrations (evidence/migrations/versions/).

    prepare_database(settings.db_url)   # `tonglu up`, `tonglu db upgrade`: check, then upgrade to head
    ensure_schema(engine)               # every part opening the database (index, web tables, tokens)

One schema for SQLite and PostgreSQL: the index tables, the web area's `web_*` tables, the
recorder's source tokens and, on PostgreSQL, the transcription queue (`tq_*`). A database made
before migrations existed (no `alembic_version`) is brought to the first revision without losing a
row (that revision creates only what is missing) and then upgraded like any other.

Several processes may open a new database at once (`tonglu up` and its workers): the upgrade runs
under a lock, a PostgreSQL advisory lock (held by the migrating transaction) or, for a SQLite file,
an exclusive `flock` on `<database>.migrate.lock` beside it.

`check_database` turns what goes wrong with a wrong `TONGLU_DATABASE_URL` (unsupported scheme,
server unreachable, database missing, password refused) into one `DatabaseUnavailable` line that
`tonglu up` prints instead of a traceback.
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from tonglu.evidence.db import normalize_url, open_engine
from tonglu.evidence.errors import DatabaseUnavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SUPPORTED_SCHEMES = ("sqlite", "postgresql+psycopg")
PG_LOCK_KEY = 0x746F6E676C75  # "tonglu": the advisory lock the upgrade holds
_local_lock = threading.Lock()


def _config(connection: Connection | None = None) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def head_revision() -> str:
    """The newest revision shipped with this version."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()  # type: ignore[arg-type]
    assert head is not None, "no migration revisions found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated, new or made before migrations)."""
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def safe_url(url: str) -> str:
    """`url` with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


@contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Upgrade to `revision` under the lock; returns (revision before, revision after)."""
    from alembic import command
    from alembic.migration import MigrationContext

    with _local_lock, _file_lock(engine), engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(_config(conn), revision)  # type: ignore[arg-type]
        after = MigrationContext.configure(conn).get_current_revision()
    return before, after


def ensure_schema(engine: Engine) -> None:
    """Bring the database to the head revision unless it is there already (one query when it is)."""
    if current_revision(engine) != head_revision():
        upgrade(engine)


def check_url(url: str) -> str:
    """The normalized URL, or DatabaseUnavailable for one this version cannot use."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseUnavailable(f"数据库地址无效 invalid TONGLU_DATABASE_URL: {exc}") from None
    if parsed.drivername not in SUPPORTED_SCHEMES:
        raise DatabaseUnavailable(
            f"不支持的数据库 unsupported database URL scheme '{parsed.drivername}' in TONGLU_DATABASE_URL "
            "(use sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        )
    return url


def _reason(exc: BaseException, url: str) -> str:
    parsed = make_url(url)
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    detail = str(getattr(exc, "orig", None) or exc).strip()
    low = detail.lower()
    first = detail.splitlines()[0] if detail else type(exc).__name__
    if parsed.drivername.startswith("sqlite"):
        return f"无法打开数据库 cannot open the SQLite database {parsed.database}: {first}"
    if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
        return f"数据库拒绝登录 the database server at {where} refused user '{parsed.username}' (wrong password?)"
    if "does not exist" in low and "database" in low:
        return f"数据库不存在 database '{parsed.database}' does not exist on the server at {where}"
    if "role" in low and "does not exist" in low:
        return f"数据库用户不存在 user '{parsed.username}' does not exist on the server at {where}"
    if any(s in low for s in ("connection refused", "could not translate host", "name or service not known",
                              "timeout", "timed out", "no route to host", "network is unreachable",
                              "failed to resolve", "nodename nor servname")):
        return f"无法连接数据库 cannot reach the database server at {where}: {first}"
    return f"数据库不可用 the database at {where} cannot be used: {first}"


def check_database(url: str) -> Engine:
    """The engine for `url` after one successful round trip; DatabaseUnavailable (one line) if not."""
    url = check_url(url)
    try:
        engine = open_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DatabaseUnavailable(f"数据库驱动缺失 no driver for {safe_url(url)}: {exc}") from None
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseUnavailable(_reason(exc, url) + f" [{safe_url(url)}]") from None
    return engine


def prepare_database(url: str) -> tuple[str | None, str | None]:
    """Start-up: check the database, then upgrade it to the head revision. (before, after)."""
    engine = check_database(url)
    try:
        return upgrade(engine)
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(f"数据库迁移失败 migrating {safe_url(url)} failed: {first}") from None
