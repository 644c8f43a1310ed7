"""`tonglu user ...` and `tonglu audit ...`: accounts and the audit trail from the shell.

Every change made here is audited like one made through the web (address "cli").
Exit codes: 0 done, 1 refused or failed (the message names the cause), 2 usage error.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tonglu.web.accounts import Accounts
    from tonglu.web.audit import AuditLog
    from tonglu.web.auth import Principal


def _open() -> tuple[Accounts, AuditLog]:
    from tonglu.config import Settings
    from tonglu.web.accounts import Accounts
    from tonglu.web.audit import AuditLog

    settings = Settings.from_env()
    from tonglu.evidence.errors import SpoolError
    from tonglu.evidence.spool import Spool

    spool: Spool | None
    try:
        spool = Spool(settings.spool_dir)
    except SpoolError:  # an unwritable spool must not stop account administration
        spool = None
    accounts = Accounts.from_url(settings.db_url)
    accounts.api_token_ttl_s = settings.api_token_ttl_days * 86400
    return accounts, AuditLog.from_settings(settings, spool)


def _reviewer_store() -> object | None:
    """The object store holding the audit trail's WORM batches (read-only identity of the embedded
    store), or None when none is configured here. An unreachable one is reported by verify()."""
    from tonglu.config import Settings
    from tonglu.evidence.errors import ConfigError
    from tonglu.evidence.objectstore import ObjectStore

    settings = Settings.from_env()
    try:
        return ObjectStore.from_settings(settings, role="reviewer" if settings.embedded_store else "recorder")
    except ConfigError:
        return None


def _cli_principal() -> Principal:
    from tonglu.web.auth import Principal

    try:
        who = getpass.getuser()
    except Exception:
        who = "unknown"
    return Principal(user=f"cli:{who}", role="admin", display_name="命令行 CLI")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("密码 Password: ")
    if getpass.getpass("再次输入 Repeat: ") != first:
        _fail("两次输入的密码不一致 (passwords differ)")
    return first


def register(app: typer.Typer) -> None:
    user_app = typer.Typer(help="用户账号 User accounts (admin, interviewer, supervisor, reviewer, auditor).",
                           no_args_is_help=True)
    audit_app = typer.Typer(help="审计日志 Audit trail: verify the hash chain, export CSV.",
                            no_args_is_help=True)
    app.add_typer(user_app, name="user")
    app.add_typer(audit_app, name="audit")

    @user_app.command("add")
    def user_add(
        username: str,
        role: Annotated[str, typer.Option(help="admin | interviewer | supervisor | reviewer | auditor")],
        display_name: Annotated[str, typer.Option("--name", help="姓名 shown in the pages")] = "",
        password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    ) -> None:
        """Create a user (the first admin too)."""
        from tonglu.web.errors import WebError

        accounts, audit = _open()
        password = _read_password(password_stdin)
        try:
            user = accounts.create_user(username, role, password, display_name)
        except WebError as exc:
            audit.record(_cli_principal(), None, "user_create", f"user:{username}", "failed",
                         {"role": role, "reason": str(exc)})
            _fail(str(exc))
        audit.record(_cli_principal(), None, "user_create", f"user:{username}", "ok", {"role": role})
        typer.echo(f"created {user.username} ({user.role})")

    @user_app.command("list")
    def user_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List users."""
        accounts, _audit = _open()
        users = accounts.list_users()
        if as_json:
            typer.echo(json.dumps([u.__dict__ for u in users], ensure_ascii=False))
            return
        for u in users:
            state = "disabled" if u.disabled else "active"
            typer.echo(f"{u.username:20} {u.role:12} {state:8} {u.display_name}")

    @user_app.command("passwd")
    def user_passwd(
        username: str,
        password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
    ) -> None:
        """Set a user's password (ends their page sessions and revokes their API tokens)."""
        from tonglu.web.errors import WebError

        accounts, audit = _open()
        password = _read_password(password_stdin)
        try:
            revoked = accounts.set_password(username, password)
        except WebError as exc:
            _fail(str(exc))
        audit.record(_cli_principal(), None, "password_reset", f"user:{username}", "ok",
                     {"tokens_revoked": revoked})
        typer.echo(f"password of {username} changed; {revoked} API token(s) revoked")

    @user_app.command("role")
    def user_role(username: str, role: str) -> None:
        """Change a user's role (audited as role_change)."""
        from tonglu.web.errors import WebError

        accounts, audit = _open()
        try:
            old, new = accounts.set_role(username, role)
        except WebError as exc:
            audit.record(_cli_principal(), None, "role_change", f"user:{username}", "failed",
                         {"to": role, "reason": str(exc)})
            _fail(str(exc))
        audit.record(_cli_principal(), None, "role_change", f"user:{username}", "ok",
                     {"from": old, "to": new})
        typer.echo(f"{username}: {old} -> {new}")

    @user_app.command("disable")
    def user_disable(username: str, enable: Annotated[bool, typer.Option("--enable")] = False) -> None:
        """Disable (or --enable) a user; disabling ends their sessions and tokens at once."""
        from tonglu.web.errors import WebError

        accounts, audit = _open()
        try:
            accounts.set_disabled(username, not enable)
        except WebError as exc:
            _fail(str(exc))
        audit.record(_cli_principal(), None, "user_enable" if enable else "user_disable",
                     f"user:{username}")
        typer.echo(f"{username}: {'enabled' if enable else 'disabled'}")

    @user_app.command("token")
    def user_token(
        username: str,
        label: Annotated[str, typer.Option(help="what the token is for")] = "",
        ttl_days: Annotated[int, typer.Option(help="0 = TONGLU_API_TOKEN_TTL_DAYS (default 90)")] = 0,
    ) -> None:
        """Issue an API (Bearer) token acting as USERNAME; printed once."""
        from tonglu.web.errors import WebError

        accounts, audit = _open()
        try:
            rec, token = accounts.issue_api_token(username, label, ttl_days * 86400 or None)
        except WebError as exc:
            _fail(str(exc))
        audit.record(_cli_principal(), None, "token_issue", f"user:{username}", "ok", {"token_id": rec.id})
        typer.echo(token)

    @audit_app.command("verify")
    def audit_verify(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Check the audit trail: the hash chain in the log file and the database, and that both
        reproduce the signed WORM batches in the object store (and the spool); exit 1 if broken."""
        _accounts, audit = _open()
        check = audit.verify(store=_reviewer_store())
        if as_json:
            typer.echo(json.dumps({"ok": check.ok, "count": check.count, "head": check.head,
                                   "problems": check.problems, "worm_records": check.worm_records,
                                   "notes": check.notes}, ensure_ascii=False))
        else:
            if check.ok:
                typer.echo(f"审计日志完整 audit trail intact: {check.count} records, head {check.head}")
            else:
                for p in check.problems:
                    typer.echo(f"BROKEN: {p}")
            typer.echo(f"已签名 WORM 批次覆盖 records covered by signed WORM batches: {check.worm_records}")
            for n in check.notes:
                typer.echo(f"note: {n}")
        if not check.ok:
            raise typer.Exit(1)

    @audit_app.command("export")
    def audit_export(
        output: Annotated[Path, typer.Option("-o", "--output", help="CSV file to write ('-' for stdout)")],
    ) -> None:
        """Export the audit trail as CSV (UTF-8 with BOM)."""
        _accounts, audit = _open()
        text = audit.csv_text()
        audit.record(_cli_principal(), None, "audit_export", "audit", "ok", {"to": str(output)})
        if str(output) == "-":
            sys.stdout.write(text)
            return
        try:
            output.write_text("\ufeff" + text, encoding="utf-8")
        except OSError as exc:
            _fail(f"cannot write {output}: {exc}")
        typer.echo(f"wrote {output}")
