"""The initial schema: every table of the index, the web area, the recorder's source tokens and, on
PostgreSQL, the transcription queue (`tq_*`).

Revision ID: 0001
Revises:
Create Date: 2026-12-04

Databases made by the code before migrations existed (tables created at start, no
`alembic_version`) are brought to this revision without touching their rows: every table and
index here is created only where it is missing. The definitions are a frozen copy; later changes
go into new revisions (tests/pg/test_migrations.py checks the result matches the live tables).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite: the FTS5 trigram index over search_text (evidence/index.py SEARCH_FTS_DDL at this revision)
SEARCH_FTS_DDL = (
    "CREATE VIRTUAL TABLE search_fts USING fts5(body, content='search_text', content_rowid='id', "
    "tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS search_text_ai AFTER INSERT ON search_text BEGIN "
    "INSERT INTO search_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_text_ad AFTER DELETE ON search_text BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_text_au AFTER UPDATE ON search_text BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO search_fts(rowid, body) VALUES (new.id, new.body); END",
)


def _table(name: str, *elements: Any) -> None:
    if not sa.inspect(op.get_bind()).has_table(name):
        op.create_table(name, *elements)


def _index(name: str, table: str, columns: list[str], **kw: Any) -> None:
    if name not in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, **kw)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    # -- the index (evidence/index.py) --
    _table('annotations',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('time_ns', sa.BigInteger(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('session_id', 'seq')
    )
    _index('annotations_kind', 'annotations', ['session_id', 'kind'], unique=False)
    _table('checkpoints',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('body_hash', sa.String(length=64), nullable=False),
    sa.Column('ordinal', sa.Integer(), nullable=True),
    sa.Column('tree_size', sa.BigInteger(), nullable=False),
    sa.Column('root', sa.String(length=64), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.Column('time_ns', sa.BigInteger(), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('final', sa.Boolean(), nullable=False),
    sa.Column('digest', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('session_id', 'body_hash')
    )
    _table('entries',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('time_ns', sa.BigInteger(), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('session_id', 'seq')
    )
    _table('gaps',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('track', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('start_ns', sa.BigInteger(), nullable=False),
    sa.Column('end_ns', sa.BigInteger(), nullable=False),
    sa.Column('body', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('session_id', 'seq')
    )
    _table('search_owners',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.PrimaryKeyConstraint('session_id', 'name')
    )
    _index('search_owners_name', 'search_owners', ['name'], unique=False)
    _table('search_text',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('field', sa.String(length=16), nullable=False),
    sa.Column('start_ns', sa.BigInteger(), nullable=True),
    sa.Column('speaker', sa.String(length=128), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    _index('search_text_meta', 'search_text', ['field', 'body', 'session_id'], unique=False,
           sqlite_where=sa.text("field != 'line'"), postgresql_where=sa.text("field != 'line'"))
    _index('search_text_session', 'search_text', ['session_id', 'field'], unique=False)
    _table('search_transcripts',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('session_id')
    )
    _table('segments',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('track', sa.String(length=64), nullable=False),
    sa.Column('media', sa.String(length=16), nullable=False),
    sa.Column('codec', sa.String(length=32), nullable=False),
    sa.Column('container', sa.String(length=32), nullable=False),
    sa.Column('idx', sa.BigInteger(), nullable=False),
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('wall_first_ns', sa.BigInteger(), nullable=False),
    sa.Column('wall_last_ns', sa.BigInteger(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('recovered', sa.Boolean(), nullable=False),
    sa.Column('uploaded', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('session_id', 'seq')
    )
    _index('segments_key', 'segments', ['key'], unique=False)
    _index('segments_track', 'segments', ['session_id', 'source', 'track', 'idx'], unique=False)
    _table('sessions',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('room', sa.String(length=128), nullable=True),
    sa.Column('case_number', sa.String(length=128), nullable=True),
    sa.Column('suspect', sa.String(length=256), nullable=True),
    sa.Column('interviewers', sa.JSON(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('custody_out_iso', sa.String(length=64), nullable=True),
    sa.Column('custody_in_iso', sa.String(length=64), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_ns', sa.BigInteger(), nullable=True),
    sa.Column('stopped_ns', sa.BigInteger(), nullable=True),
    sa.Column('stopped_by', sa.String(length=128), nullable=True),
    sa.Column('created_by', sa.String(length=128), nullable=True),
    sa.Column('entries', sa.Integer(), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=True),
    sa.Column('final_digest', sa.String(length=32), nullable=True),
    sa.Column('start_body', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    _index('sessions_case', 'sessions', ['case_number'], unique=False)
    _index('sessions_room', 'sessions', ['room'], unique=False)
    _index('sessions_started', 'sessions', ['started_ns'], unique=False)
    _table('sources',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=True),
    sa.Column('label', sa.String(length=256), nullable=True),
    sa.PrimaryKeyConstraint('session_id', 'name')
    )
    _table('uploaded_keys',
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('time_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    if dialect == "postgresql":
        _index('search_text_trgm_line', 'search_text', ['body'], unique=False, postgresql_using='gin',
               postgresql_ops={'body': 'gin_trgm_ops'}, postgresql_where=sa.text("field = 'line'"))
        _index('search_text_trgm_meta', 'search_text', ['body'], unique=False, postgresql_using='gin',
               postgresql_ops={'body': 'gin_trgm_ops'}, postgresql_where=sa.text("field != 'line'"))
    elif dialect == "sqlite":
        have = op.get_bind().exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'search_fts'").first()
        if have is None:
            for ddl in SEARCH_FTS_DDL:
                op.execute(ddl)
            op.execute("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")
    # -- the web area (web/tables.py) --
    _table('web_api_tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.Column('created_ns', sa.BigInteger(), nullable=False),
    sa.Column('expires_ns', sa.BigInteger(), nullable=True),
    sa.Column('revoked_ns', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    _index('ix_web_api_tokens_username', 'web_api_tokens', ['username'], unique=False)
    _table('web_audit',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('time_ns', sa.BigInteger(), nullable=False),
    sa.Column('user', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=512), nullable=False),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('prev', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('raw', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    _index('web_audit_object', 'web_audit', ['object'], unique=False)
    _index('web_audit_time', 'web_audit', ['time_ns'], unique=False)
    _table('web_invitations',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('sub_role', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_ns', sa.BigInteger(), nullable=False),
    sa.Column('expires_ns', sa.BigInteger(), nullable=False),
    sa.Column('revoked_ns', sa.BigInteger(), nullable=True),
    sa.Column('revoked_by', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    _index('ix_web_invitations_session_id', 'web_invitations', ['session_id'], unique=False)
    _table('web_page_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('invitation_id', sa.String(length=32), nullable=True),
    sa.Column('created_ns', sa.BigInteger(), nullable=False),
    sa.Column('expires_ns', sa.BigInteger(), nullable=False),
    sa.Column('hard_expires_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id_hash')
    )
    _index('ix_web_page_sessions_username', 'web_page_sessions', ['username'], unique=False)
    _table('web_users',
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('password_hash', sa.String(length=256), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_ns', sa.BigInteger(), nullable=False),
    sa.Column('updated_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('username')
    )
    # -- the recorder's source tokens (recorder/store.py) --
    _table('recorder_source_limits',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('not_after_ns', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('session_id', 'source')
    )
    _table('recorder_source_tokens',
    sa.Column('session_id', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('created_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('session_id', 'source')
    )
    # -- the transcription queue on the database (transcribe/queue.py PG_METADATA); on SQLite the
    # queue is its own file (data_dir/transcribe/queue.db) --
    if dialect == "postgresql":
        _table('tq_commits',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('job', sa.Text(), nullable=True),
        sa.Column('owner', sa.Text(), nullable=True),
        sa.Column('attempt', sa.Integer(), nullable=True),
        sa.Column('time_ns', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id')
        )
        _table('tq_final_jobs',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('sid', sa.Text(), nullable=True),
        sa.Column('source', sa.Text(), nullable=True),
        sa.Column('track', sa.Text(), nullable=True),
        sa.Column('first_idx', sa.BigInteger(), nullable=True),
        sa.Column('last_idx', sa.BigInteger(), nullable=True),
        sa.Column('state', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column('owner', sa.Text(), nullable=True),
        sa.Column('lease_until', sa.Double(), server_default=sa.text('0'), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('result', sa.Text(), nullable=True),
        sa.Column('done_ns', sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sid', 'source', 'track', 'first_idx')
        )
        _table('tq_live_lines',
        sa.Column('id', sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column('sid', sa.Text(), nullable=True),
        sa.Column('source', sa.Text(), nullable=True),
        sa.Column('track', sa.Text(), nullable=True),
        sa.Column('kind', sa.Text(), nullable=True),
        sa.Column('start_ns', sa.BigInteger(), nullable=True),
        sa.Column('end_ns', sa.BigInteger(), nullable=True),
        sa.Column('text', sa.Text(), nullable=True),
        sa.Column('confidence', sa.Double(), nullable=True),
        sa.Column('words', sa.Text(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('segment_key', sa.Text(), nullable=True),
        sa.Column('available_ns', sa.BigInteger(), nullable=True),
        sa.Column('level_db', sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('sid', 'source', 'track', 'kind', 'start_ns')
        )
        _index('tq_live_lines_sid', 'tq_live_lines', ['sid', 'id'], unique=False)
        _table('tq_participants',
        sa.Column('sid', sa.Text(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('sid', 'source')
        )
        _table('tq_segments',
        sa.Column('sid', sa.Text(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('track', sa.Text(), nullable=False),
        sa.Column('idx', sa.BigInteger(), nullable=False),
        sa.Column('key', sa.Text(), nullable=True),
        sa.Column('sha256', sa.Text(), nullable=True),
        sa.Column('wall_first_ns', sa.BigInteger(), nullable=True),
        sa.Column('wall_last_ns', sa.BigInteger(), nullable=True),
        sa.Column('sealed_ns', sa.BigInteger(), nullable=True),
        sa.Column('live_done', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.PrimaryKeyConstraint('sid', 'source', 'track', 'idx')
        )
        _table('tq_sessions',
        sa.Column('sid', sa.Text(), nullable=False),
        sa.Column('offset', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
        sa.Column('start_body', sa.Text(), nullable=True),
        sa.Column('stopped_ns', sa.BigInteger(), nullable=True),
        sa.Column('published', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.PrimaryKeyConstraint('sid')
        )
        _table('tq_tracks',
        sa.Column('sid', sa.Text(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('track', sa.Text(), nullable=False),
        sa.Column('carry_ns', sa.BigInteger(), nullable=True),
        sa.Column('flush', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('owner', sa.Text(), nullable=True),
        sa.Column('lease_until', sa.Double(), server_default=sa.text('0'), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.PrimaryKeyConstraint('sid', 'source', 'track')
        )


def downgrade() -> None:
    raise NotImplementedError("the initial schema has nothing to go back to")
