"""The RBAC matrix: for every route the app registers, who may call it and what it audits.

Keys are `(METHOD, path)` with path parameters written `{}` (their names do not matter), so
`/api/sessions/{sid}` and `/api/sessions/{session_id}` are one rule. A route missing from this
table fails `tests/web/test_rbac.py`, which walks `app.routes` and calls each one as every role.

Rule kinds:
- `PUBLIC`: no credentials (health, login, static files, API docs, the invitation landing page).
- roles: a principal with one of those roles (cookie or Bearer). `scoped=True` routes take a
  session id in the path; a participant may only reach the session its invitation is bound to.
- `TOKEN`: the route checks its own per-source token (WHIP); anonymous callers get 401.
`audit` names the audit action the guard middleware records for every call (allowed or not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import HTTPException

from tonglu.web.auth import ROLES, Principal

PUBLIC = "public"
TOKEN = "token"
ROLES_KIND = "roles"

ALL = ROLES
STAFF = ("admin", "interviewer", "supervisor", "reviewer", "auditor")
OPERATE = ("admin", "interviewer")
WATCH = ("admin", "interviewer", "supervisor")
REVIEW = ("admin", "reviewer")
READ_SESSION = ("admin", "interviewer", "supervisor", "reviewer")
KB = 1024


@dataclass(frozen=True)
class Rule:
    kind: str
    roles: tuple[str, ...] = ()
    scoped: bool = False  # participant principals must match the session id in the path
    audit: str | None = None  # audit action recorded for every call
    max_body: int = 64 * KB

    def allows(self, principal: Principal | None) -> bool:
        if self.kind == PUBLIC:
            return True
        if principal is None:
            return False
        if self.kind == TOKEN:
            return True
        return principal.role in self.roles

    def allows_role(self, role: str) -> bool:
        return self.kind == PUBLIC or (self.kind == ROLES_KIND and role in self.roles)


def roles(*names: str, scoped: bool = False, audit: str | None = None, max_body: int = 64 * KB) -> Rule:
    for n in names:
        if n not in ROLES:
            raise ValueError(f"unknown role {n!r}")
    return Rule(ROLES_KIND, tuple(names), scoped, audit, max_body)


def public(max_body: int = 16 * KB) -> Rule:
    return Rule(PUBLIC, max_body=max_body)


def token(audit: str | None = None, max_body: int = 64 * KB) -> Rule:
    return Rule(TOKEN, audit=audit, max_body=max_body)


P = "participant"
MATRIX: dict[tuple[str, str], Rule] = {
    # -- public ------------------------------------------------------------------------------
    ("GET", "/healthz"): public(),
    ("GET", "/livez"): public(),
    ("GET", "/readyz"): public(),
    ("GET", "/metrics"): roles("admin", "supervisor", "auditor"),  # not audited: scraped every few seconds
    ("GET", "/"): public(),
    ("GET", "/login"): public(),
    ("POST", "/login"): public(),
    ("POST", "/logout"): public(),
    ("POST", "/api/auth/login"): public(),
    ("POST", "/api/auth/logout"): public(),
    ("GET", "/join/{}"): public(),
    ("GET", "/openapi.json"): public(),
    ("GET", "/docs"): public(),
    ("GET", "/docs/oauth2-redirect"): public(),
    ("GET", "/redoc"): public(),
    # -- own account ---------------------------------------------------------------------------
    ("GET", "/api/auth/me"): roles(*ALL),
    ("POST", "/api/auth/password"): roles(*STAFF, audit="password_change"),
    ("GET", "/api/auth/tokens"): roles(*STAFF),
    ("POST", "/api/auth/tokens"): roles(*STAFF, audit="token_issue"),
    ("DELETE", "/api/auth/tokens/{}"): roles(*STAFF, audit="token_revoke"),
    # -- user administration -------------------------------------------------------------------
    ("GET", "/api/users"): roles("admin"),
    ("POST", "/api/users"): roles("admin"),  # audited by the route (user_create)
    ("PATCH", "/api/users/{}"): roles("admin"),  # audited by the route (role_change, ...)
    ("POST", "/api/users/{}/password"): roles("admin", audit="password_reset"),
    ("GET", "/admin/users"): roles("admin"),
    # -- audit trail (auditors only: separation of duties, admins are audited too) -------------
    ("GET", "/audit"): roles("auditor", audit="audit_view"),
    ("GET", "/api/audit"): roles("auditor", audit="audit_view"),
    ("GET", "/api/audit.csv"): roles("auditor", audit="audit_export"),
    ("GET", "/api/audit/verify"): roles("auditor", audit="audit_verify"),
    # -- sessions, WHIP and the capture page (recorder) ----------------------------------------
    ("POST", "/api/sessions"): roles(*OPERATE),  # audited by the route (session_start)
    ("GET", "/api/sessions"): roles(*READ_SESSION),
    ("GET", "/api/sessions/{}"): roles(*READ_SESSION),
    ("POST", "/api/sessions/{}/stop"): roles(*OPERATE, audit="session_stop"),
    ("POST", "/whip/{}/{}"): token(audit="publish"),  # Bearer source token
    ("DELETE", "/whip/{}/{}/{}"): token(),
    ("OPTIONS", "/whip/{}/{}"): public(),  # capability answer only
    ("PATCH", "/whip/{}/{}/{}"): public(),  # always 405: no trickle ICE
    ("GET", "/capture/{}"): public(),  # the page holds no secret: source tokens come in the URL fragment
    ("GET", "/capture-static/capture.js"): public(),
    ("GET", "/api/sessions/{}/capture-status"): token(),  # the room computer's source token
    ("GET", "/api/sessions/{}/monitoring"): token(),
    # -- live viewing (WHEP) and remote participants -------------------------------------------
    ("POST", "/whep/{}/{}"): roles("admin", "interviewer", "supervisor", P, scoped=True, audit="stream"),
    ("DELETE", "/whep/{}/{}/{}"): roles("admin", "interviewer", "supervisor", P, scoped=True),  # audits watch_stop
    ("OPTIONS", "/whep/{}/{}"): public(),
    ("PATCH", "/whep/{}/{}/{}"): public(),  # always 405
    ("POST", "/api/sessions/{}/participants"): roles(P, scoped=True, audit="participant_join"),
    ("DELETE", "/api/sessions/{}/participants/{}"): roles(*OPERATE, P, scoped=True, audit="participant_leave"),
    # -- evidence annotations and invitations (this area) --------------------------------------
    ("GET", "/api/sessions/{}/events"): roles(*READ_SESSION, P, scoped=True),
    ("GET", "/api/search"): roles(*READ_SESSION, audit="search"),
    ("POST", "/api/sessions/{}/markers"): roles(*OPERATE, audit="marker"),
    ("POST", "/api/sessions/{}/breaks"): roles(*OPERATE, audit="break"),
    ("POST", "/api/sessions/{}/record-times"): roles(*OPERATE, audit="record_times"),
    ("POST", "/api/sessions/{}/custody"): roles(*OPERATE, audit="custody"),
    ("GET", "/api/sessions/{}/invitations"): roles(*OPERATE, "supervisor"),
    ("POST", "/api/sessions/{}/invitations"): roles(*OPERATE, audit="invitation_create"),
    ("POST", "/api/sessions/{}/invitations/{}/revoke"): roles(*OPERATE, audit="invitation_revoke"),
    # -- integrity review (report, gaps, explanations, working copy, export) --------------------
    ("GET", "/api/sessions/{}/report"): roles(*READ_SESSION, audit="view"),
    ("GET", "/api/sessions/{}/gaps"): roles(*READ_SESSION, audit="view"),
    ("POST", "/api/sessions/{}/gaps/{}/explanations"): roles(*WATCH, audit="explanation"),
    ("POST", "/api/sessions/{}/workcopy"): roles(*READ_SESSION, audit="workcopy_build"),
    ("GET", "/api/sessions/{}/workcopy.mp4"): roles(*READ_SESSION, audit="stream"),
    ("GET", "/api/sessions/{}/workcopy.json"): roles(*READ_SESSION, audit="view"),
    ("GET", "/api/sessions/{}/export.zip"): roles("admin", "supervisor", "reviewer", audit="export"),
    # -- transcripts -----------------------------------------------------------------------------
    ("GET", "/api/sessions/{}/transcript"): roles(*READ_SESSION, audit="view"),
    ("GET", "/api/sessions/{}/transcript/versions"): roles(*READ_SESSION, audit="view"),
    ("GET", "/api/sessions/{}/transcript.vtt"): roles(*READ_SESSION, audit="download"),
    ("GET", "/api/sessions/{}/transcript.srt"): roles(*READ_SESSION, audit="download"),
    ("GET", "/api/sessions/{}/transcript.docx"): roles(*READ_SESSION, audit="download"),
    ("GET", "/api/sessions/{}/transcript/live"): roles(*READ_SESSION, audit="stream"),
    ("POST", "/api/sessions/{}/transcript/corrections"): roles(*OPERATE, audit="transcript_correction",
                                                              max_body=8 * 1024 * KB),
    # -- legal hold and retention (web/routes/holds.py; each step audited by the route) ---------
    ("GET", "/api/sessions/{}/legal-hold"): roles(*READ_SESSION, "auditor", audit="view"),
    ("POST", "/api/sessions/{}/legal-hold"): roles("admin", "supervisor"),
    ("POST", "/api/sessions/{}/legal-hold/lift-requests"): roles("admin", "supervisor"),
    ("POST", "/api/sessions/{}/legal-hold/lift-requests/{}/approve"): roles("admin", "supervisor"),
    ("POST", "/api/sessions/{}/legal-hold/sync"): roles("admin", "supervisor"),
    ("POST", "/api/sessions/{}/retention"): roles("admin", "supervisor"),
    ("GET", "/api/retention/report"): roles("admin", "supervisor", "auditor", audit="view"),
    ("GET", "/admin/holds"): roles("admin", "supervisor", "auditor", audit="view"),
    # -- 笔录 (signed written record): import, comparison with the recording -------------------
    ("POST", "/api/sessions/{}/record-document"): roles(*OPERATE, audit="record_import",
                                                         max_body=5 * 1024 * KB + 256 * KB),
    ("GET", "/api/sessions/{}/record-document/comparison"): roles(*READ_SESSION, audit="view"),
    # -- risk rules and alerts (web/routes/alerts.py) --------------------------------------------
    ("GET", "/api/risk/rules"): roles(*READ_SESSION),
    ("GET", "/api/sessions/{}/alerts"): roles(*READ_SESSION, audit="view"),
    ("GET", "/api/sessions/{}/alerts/live"): roles(*WATCH, audit="stream"),
    ("GET", "/api/risk/live"): roles(*WATCH, audit="stream"),
    ("POST", "/api/sessions/{}/alerts/{}/ack"): roles(*WATCH, audit="alert_ack"),
    ("POST", "/api/sessions/{}/risk-facts"): roles(*WATCH, audit="risk_fact"),
    ("POST", "/api/sessions/{}/interviewers"): roles(*OPERATE, audit="interviewer_presence"),
    ("GET", "/supervise"): roles("admin", "supervisor", audit="view"),
    # -- pages ---------------------------------------------------------------------------------
    ("GET", "/console"): roles(*WATCH),
    ("GET", "/console/{}"): roles(*WATCH, audit="view"),
    ("GET", "/live/{}"): roles("admin", "supervisor", audit="stream"),
    ("GET", "/remote/{}"): roles(P, scoped=True, audit="view"),
    ("GET", "/review"): roles(*REVIEW, "supervisor"),
    ("GET", "/review/{}"): roles(*REVIEW, "supervisor", audit="view"),
    ("GET", "/account"): roles(*STAFF),
}

_PARAM = re.compile(r"\{[^}]*\}")


def normalize(path: str) -> str:
    return _PARAM.sub("{}", path)


def rule_for(method: str, path_template: str) -> Rule | None:
    return MATRIX.get((method.upper(), normalize(path_template)))


def session_id_from(path_params: dict[str, str]) -> str | None:
    """The session id among a route's path parameters (named sid, session, session_id or id)."""
    for name in ("sid", "session_id", "session", "id"):
        if name in path_params:
            return str(path_params[name])
    return None


# -- session ownership ---------------------------------------------------------------------------
# Who may act on one session (every route with a session id in its path; the guard enforces it):
# - a participant: only the session its invitation is bound to;
# - an interviewer: only sessions it created or is listed on as an interviewer (`session_start`'s
#   "interviewers" names, matched against the user name or the display name; display names are set
#   by admins only, never by the user);
# - admin, supervisor, reviewer, auditor: every session. Accounts have no unit (department) yet, so
#   supervisors oversee the whole site; when units exist, supervisors are to be bound by unit here.
#   Reviewers and auditors work across sessions by office and cannot act on a live session.
# - the room: its computer holds the session's source tokens, valid for that session only (WHIP,
#   capture status); no user account is bound to a room, so a room grants no person access.
# Everyone else gets the same 404 as for a session that does not exist: no existence oracle.
SITE_WIDE = ("admin", "supervisor", "reviewer", "auditor")


def no_session(session_id: str) -> HTTPException:
    return HTTPException(status_code=404, detail=no_session_detail(session_id))


def no_session_detail(session_id: str) -> str:
    return f"讯问记录不存在 (no session {session_id[:80]!r})"


def session_bound(principal: Principal) -> bool:
    """True when `principal` may only reach some sessions (its own): interviewers, participants."""
    return principal.session_scope is not None or principal.role not in SITE_WIDE


def may_access_session(principal: Principal, session_id: str, start_body: dict[str, object] | None) -> bool:
    """The ownership rule above. `start_body` is the session's `session_start` body (None: unknown
    session, which only site-wide roles pass, so the route answers its own 404)."""
    if principal.session_scope is not None:
        return principal.session_scope == session_id and start_body is not None
    if principal.role in SITE_WIDE:
        return True
    if start_body is None:
        return False
    if start_body.get("created_by") == principal.user:
        return True
    listed = start_body.get("interviewers")
    names = {n.strip() for n in listed if isinstance(n, str) and n.strip()} if isinstance(listed, list) else set()
    return principal.user in names or (bool(principal.display_name) and principal.display_name in names)


def require_session_access(principal: Principal, session_id: str) -> None:
    """Refuse a session-scoped principal (an invitation) that reaches another session (404, as for
    a session that does not exist). Staff ownership is checked by the guard with the ledger."""
    if principal.session_scope is not None and principal.session_scope != session_id:
        raise no_session(session_id)


def unruled_routes(app: object) -> list[str]:
    """Routes the app registers that have no rule in MATRIX ("METHOD /path")."""
    from tonglu.web.routeindex import flatten

    missing = []
    for info in flatten(app):
        if info.mount:
            if info.path not in ("/static",) and ("MOUNT", normalize(info.path)) not in MATRIX:
                missing.append(f"MOUNT {info.path}")
            continue
        for method in sorted(info.methods - {"HEAD"}):
            if rule_for(method, info.path) is None:
                missing.append(f"{method} {info.path}")
    return missing
