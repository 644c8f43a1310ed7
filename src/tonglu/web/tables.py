"""The web area's own tables in the index DB (users, tokens, page sessions, invitations, audit).

They live beside the index tables in the same database (`settings.db_url`) but in their own
`MetaData`, all prefixed `web_`, so `tonglu reindex` never touches them: accounts and the audit
trail are not derived from the object store. The migrations (evidence/migrations) create them; a
change here needs a new revision there (tests/pg/test_migrations.py compares the two).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

from tonglu.evidence.db import open_engine
from tonglu.evidence.migrate import ensure_schema

metadata = MetaData()

users = Table(
    "web_users",
    metadata,
    Column("username", String(64), primary_key=True),
    Column("display_name", String(128), nullable=False, default=""),
    Column("role", String(32), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("updated_ns", BigInteger, nullable=False),
)

api_tokens = Table(
    "web_api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("username", String(64), nullable=False, index=True),
    Column("label", String(128), nullable=False, default=""),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=True),
    Column("revoked_ns", BigInteger, nullable=True),
)

page_sessions = Table(
    "web_page_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("username", String(64), nullable=True, index=True),
    Column("invitation_id", String(32), nullable=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
    Column("hard_expires_ns", BigInteger, nullable=False),
)

invitations = Table(
    "web_invitations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("session_id", String(128), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("sub_role", String(32), nullable=False),
    Column("source", String(64), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
    Column("revoked_ns", BigInteger, nullable=True),
    Column("revoked_by", String(64), nullable=True),
)

audit_records = Table(
    "web_audit",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("user", String(128), nullable=False),
    Column("role", String(32), nullable=False),
    Column("address", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("object", String(512), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("prev", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("raw", Text, nullable=False),
)
Index("web_audit_time", audit_records.c.time_ns)
Index("web_audit_object", audit_records.c.object)

def engine_for(url: str) -> Engine:
    """The process's engine for `url` (evidence.db.open_engine) with the schema at the newest
    migration (evidence/migrations creates these tables; one query when it is there already)."""
    engine = open_engine(url)
    ensure_schema(engine)
    return engine
