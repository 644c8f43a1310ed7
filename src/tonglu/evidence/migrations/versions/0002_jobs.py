"""The generic job queue (evidence/jobs.py `jobs`): working copies, exports, clips and reports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

Databases where `JobQueue` already created the table at start (before this revision existed) keep
it and its rows: the table and its indexes are created only where missing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _index(name: str, table: str, columns: list[str], **kw: Any) -> None:
    if name not in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, **kw)


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table("jobs"):
        op.create_table(
            "jobs",
            sa.Column("id", sa.String(length=32), nullable=False),
            sa.Column("kind", sa.String(length=40), nullable=False),
            sa.Column("session_id", sa.String(length=128), nullable=True),
            sa.Column("args", sa.JSON(), nullable=False),
            sa.Column("dedupe_key", sa.String(length=400), nullable=True),
            sa.Column("state", sa.String(length=16), nullable=False),
            sa.Column("progress", sa.Float(), nullable=False),
            sa.Column("eta_s", sa.Float(), nullable=True),
            sa.Column("owner", sa.String(length=200), nullable=True),
            sa.Column("lease_until_ns", sa.BigInteger(), nullable=True),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("max_attempts", sa.Integer(), nullable=False),
            sa.Column("result", sa.JSON(), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("created_by", sa.String(length=128), nullable=True),
            sa.Column("created_ns", sa.BigInteger(), nullable=False),
            sa.Column("started_ns", sa.BigInteger(), nullable=True),
            sa.Column("updated_ns", sa.BigInteger(), nullable=True),
            sa.Column("finished_ns", sa.BigInteger(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("dedupe_key"),
        )
    _index("ix_jobs_claim", "jobs", ["state", "created_ns"], unique=False)
    _index("ix_jobs_session", "jobs", ["session_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_session", table_name="jobs")
    op.drop_index("ix_jobs_claim", table_name="jobs")
    op.drop_table("jobs")
