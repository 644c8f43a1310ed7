"""`tonglu db upgrade|current`: the index database's schema (Alembic migrations, evidence/migrate.py).

`tonglu up` upgrades on its own at start; these are for operators who migrate before a rolling
start, or check which revision a database is at. A wrong `TONGLU_DATABASE_URL` exits 1 with one line.
"""

from __future__ import annotations

import typer

from tonglu.commands.common import fail, load_settings

db_app = typer.Typer(help="Index database: schema migrations (SQLite or PostgreSQL).", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade_cmd() -> None:
    """升级数据库结构 Upgrade the database of TONGLU_DATABASE_URL (default: data dir SQLite) to the newest schema."""
    from tonglu.evidence.errors import DatabaseUnavailable
    from tonglu.evidence.migrate import prepare_database, safe_url

    settings = load_settings()
    try:
        before, after = prepare_database(settings.db_url)
    except DatabaseUnavailable as exc:
        fail(str(exc))
    state = "已是最新 already current" if before == after else f"{before or '(none)'} → {after}"
    typer.echo(f"==> 数据库 database {safe_url(settings.db_url)}: {state} (revision {after})")


@db_app.command("current")
def current_cmd() -> None:
    """当前版本 The revision the database is at, and the newest this version ships."""
    from tonglu.evidence.errors import DatabaseUnavailable
    from tonglu.evidence.migrate import check_database, current_revision, head_revision

    settings = load_settings()
    try:
        rev = current_revision(check_database(settings.db_url))
    except DatabaseUnavailable as exc:
        fail(str(exc))
    typer.echo(f"current {rev or '(none)'} head {head_revision()}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
