"""`tonglu hold place|request-lift|approve-lift|status|sync` and `tonglu retention set-category|report`.

Changes need a named person: `--user NAME` with that account's password (prompted, or one line on
stdin with `--password-stdin`); the account must be an admin or supervisor, and a lift request is
approved by a different account than the one that made it (two-person rule). Every step is audited
like one made through the web (address "cli") and written into the session's manifest.
Exit codes: 0 done, 1 refused or failed (the message names the cause), 2 usage error.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tonglu.commands.common import fail, load_settings

if TYPE_CHECKING:
    from tonglu.config import Settings
    from tonglu.evidence.holds import Holds
    from tonglu.web.audit import AuditLog
    from tonglu.web.auth import Principal

User = Annotated[str, typer.Option("--user", "-u", help="your account (admin or supervisor)")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="read the password from one line of stdin")]






def _holds(settings: Settings, with_store: bool = True) -> Holds:
    from tonglu.evidence.errors import StorageError
    from tonglu.evidence.holds import Holds
    from tonglu.evidence.ledger import Ledger
    from tonglu.evidence.objectstore import ObjectStore
    from tonglu.evidence.retention import RetentionPolicy
    from tonglu.evidence.signing import SiteKey
    from tonglu.evidence.spool import Spool

    try:
        spool = Spool(settings.spool_dir)
        ledger = Ledger(settings.ledger_dir, spool, SiteKey.load(settings.keys_dir))
        store = ObjectStore.from_settings(settings) if with_store else None
        return Holds(ledger, store, RetentionPolicy.from_settings(settings))
    except StorageError as exc:
        fail(f"{type(exc).__name__}: {exc}")


def _audit_log(settings: Settings) -> AuditLog:
    from tonglu.evidence.spool import Spool
    from tonglu.web.audit import AuditLog

    return AuditLog.from_settings(settings, Spool(settings.spool_dir))


def _login(settings: Settings, user: str, password_stdin: bool, audit: AuditLog, action: str,
           sid: str) -> Principal:
    from tonglu.web.accounts import Accounts
    from tonglu.web.auth import Principal
    from tonglu.web.routes.holds import HOLD_ROLES

    password = sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass(f"{user} 的密码 Password: ")
    account = Accounts.from_url(settings.db_url).authenticate(user, password)
    if account is None:
        audit.record(Principal(user=user, role="-"), None, action, f"session:{sid}", "denied",
                     {"reason": "wrong user name or password"})
        fail("用户名或密码错误 (wrong user name or password)")
    principal = account.principal()
    if principal.role not in HOLD_ROLES:
        audit.record(principal, None, action, f"session:{sid}", "denied", {"reason": f"role {principal.role}"})
        fail(f"角色 {principal.role} 无权操作法律保全 (needs one of: {', '.join(HOLD_ROLES)})")
    return principal


def _step(action: str, sid: str, user: str, password_stdin: bool, detail: dict[str, Any], fn: Any) -> Any:
    """Authenticate, run `fn(holds, principal)`, audit the outcome, print the result as JSON."""
    from tonglu.evidence.errors import StorageError

    settings = load_settings()
    audit = _audit_log(settings)
    principal = _login(settings, user, password_stdin, audit, action, sid)
    holds = _holds(settings)
    try:
        result, ok = fn(holds, principal)
    except StorageError as exc:
        from tonglu.web.routes.holds import _status

        outcome = "denied" if _status(exc) in (403, 409, 422) else "failed"
        audit.record(principal, None, action, f"session:{sid}", outcome, {**detail, "reason": str(exc)[:500]})
        fail(f"{type(exc).__name__}: {exc}")
    audit.record(principal, None, action, f"session:{sid}", "ok" if ok else "failed", {**detail, **result})
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))
    if not ok:
        fail(f"对象存储未全部完成，请重试 `tonglu hold sync {sid}` (store incomplete; retry sync)")


def register(app: typer.Typer) -> None:
    hold_app = typer.Typer(help="法律保全 Legal hold: place, request a lift, approve it (two-person rule).",
                           no_args_is_help=True)
    retention_app = typer.Typer(help="保存期限 Retention by case category; what expires when.", no_args_is_help=True)
    app.add_typer(hold_app, name="hold")
    app.add_typer(retention_app, name="retention")

    @hold_app.command("place")
    def place(
        session: Annotated[str, typer.Argument(help="session id")],
        reason: Annotated[str, typer.Option(help="e.g. 排除非法证据申请 / 上诉 / 申诉")],
        case_ref: Annotated[str, typer.Option("--case-ref", help="the motion's, appeal's or complaint's reference")],
        user: User,
        password_stdin: PasswordStdin = False,
    ) -> None:
        """Place a legal hold on every stored object of the session (and every later one)."""

        def fn(holds: Holds, p: Principal) -> tuple[dict[str, Any], bool]:
            hold, new, report = holds.place(session, reason=reason, case_reference=case_ref, by=p.user, role=p.role)
            return {"hold": hold.to_json(), "new": new, "store": report.to_json()}, report.complete

        _step("legal_hold_place", session, user, password_stdin, {"reason": reason, "case_reference": case_ref}, fn)

    @hold_app.command("request-lift")
    def request_lift(
        session: Annotated[str, typer.Argument(help="session id")],
        reason: Annotated[str, typer.Option(help="why the hold may end")],
        user: User,
        hold_id: Annotated[str | None, typer.Option("--hold-id", help="which hold (if several)")] = None,
        password_stdin: PasswordStdin = False,
    ) -> None:
        """Ask to lift a hold; another person approves it with `approve-lift`."""

        def fn(holds: Holds, p: Principal) -> tuple[dict[str, Any], bool]:
            req = holds.request_lift(session, hold_id=hold_id, reason=reason, by=p.user, role=p.role)
            return {"request": req.to_json()}, True

        _step("legal_hold_lift_request", session, user, password_stdin, {"reason": reason, "hold_id": hold_id}, fn)

    @hold_app.command("approve-lift")
    def approve_lift(
        session: Annotated[str, typer.Argument(help="session id")],
        request_id: Annotated[str, typer.Argument(help="the lift request's id")],
        user: User,
        password_stdin: PasswordStdin = False,
    ) -> None:
        """Approve a lift request (not your own). Objects are released when no hold is left."""

        def fn(holds: Holds, p: Principal) -> tuple[dict[str, Any], bool]:
            req, still_held, report = holds.approve_lift(session, request_id, by=p.user, role=p.role)
            store = report.to_json() if report is not None else None
            return ({"request": req.to_json(), "held": still_held, "store": store},
                    report is None or report.complete)

        _step("legal_hold_lift_approve", session, user, password_stdin, {"request_id": request_id}, fn)

    @hold_app.command("sync")
    def sync(
        session: Annotated[str, typer.Argument(help="session id")],
        user: User,
        password_stdin: PasswordStdin = False,
    ) -> None:
        """Apply the manifest's hold state and retention to the stored objects again."""

        def fn(holds: Holds, _p: Principal) -> tuple[dict[str, Any], bool]:
            st, held, ret = holds.sync(session)
            return ({"held": st.held, "hold": held.to_json(), "retention": ret.to_json()},
                    held.complete and ret.complete)

        _step("legal_hold_sync", session, user, password_stdin, {}, fn)

    @hold_app.command("status")
    def status(
        session: Annotated[str, typer.Argument(help="session id")],
        objects: Annotated[bool, typer.Option("--objects", help="also count the stored objects and their holds")]
        = False,
    ) -> None:
        """The session's holds, lift requests, category and hold history (JSON)."""
        from tonglu.evidence.errors import StorageError

        holds = _holds(load_settings(), with_store=objects)
        try:
            st = holds.state(session)
            out: dict[str, Any] = {"session": session, **st.to_json()}
            rule = holds.policy.effective(st.category)
            out.update(retention=rule.describe(), permanent=rule.permanent)
            if objects:
                out["store"] = holds.objects(session).to_json()
        except StorageError as exc:
            fail(f"{type(exc).__name__}: {exc}")
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))

    @retention_app.command("set-category")
    def set_category(
        session: Annotated[str, typer.Argument(help="session id")],
        category: Annotated[str, typer.Argument(help="general | serious | homicide | evidence | configured")],
        user: User,
        reason: Annotated[str, typer.Option(help="why")] = "",
        password_stdin: PasswordStdin = False,
    ) -> None:
        """Set or change the case category; retention is extended on the stored objects, never shortened."""

        def fn(holds: Holds, p: Principal) -> tuple[dict[str, Any], bool]:
            report = holds.set_category(session, category, by=p.user, role=p.role, reason=reason)
            rule = holds.policy.rule(category)
            return ({"category": rule.name, "retention": rule.describe(), "store": report.to_json()},
                    report.complete)

        _step("retention_category", session, user, password_stdin, {"category": category, "reason": reason}, fn)

    @retention_app.command("report")
    def report(
        no_store: Annotated[bool, typer.Option("--no-store", help="do not read each object's retention")] = False,
        fmt: Annotated[str, typer.Option("--format", "-f", help="table | json")] = "table",
    ) -> None:
        """What expires when: per session category, retention, hold, objects, earliest retain-until."""
        from tonglu.evidence.errors import StorageError

        if fmt not in ("table", "json"):
            fail(f"--format must be table or json, not {fmt!r}", 2)
        holds = _holds(load_settings(), with_store=not no_store)
        try:
            rows = holds.report(with_store=not no_store)
        except StorageError as exc:
            fail(f"{type(exc).__name__}: {exc}")
        if fmt == "json":
            typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        typer.echo(f"{'session':32} {'category':10} {'retention':28} {'held':5} {'objects':>7}  earliest expiry (UTC)")
        for r in rows:
            objects = str(r.get("objects", "?"))
            typer.echo(f"{r['session']:32} {r['category']:10} {r['retention']:28} {'HOLD' if r['held'] else '-':5} "
                       f"{objects:>7}  {r.get('earliest_retain_until') or '-'}")
