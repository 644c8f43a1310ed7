"""Login, logout, own account, API tokens and user administration.

`setup(app)` wires the web area into the app: it creates `services.accounts` and
`services.audit` when the caller did not, installs the guard middleware (RBAC matrix, body
limits, audit of evidence access) and maps the web area's errors to HTTP answers.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tonglu.web.accounts import SESSION_COOKIE, USER_ROLES, User
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services
from tonglu.web.errors import AccountError, AuditError, InvitationError, UnknownUser, UserExists
from tonglu.web.guard import Guard
from tonglu.web.rbac import STAFF
from tonglu.web.templating import render
from tonglu.web.throttle import LoginThrottle

router = APIRouter(tags=["auth"])


# -- wiring ------------------------------------------------------------------------------------
def setup(app: FastAPI) -> None:
    services = app.state.services
    services.accounts.api_token_ttl_s = services.settings.api_token_ttl_days * 86400
    app.state.login_guard = LoginGuard()
    app.add_middleware(Guard, fastapi_app=app)

    @app.exception_handler(UnknownUser)
    async def _unknown_user(_r: Request, exc: UnknownUser) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(UserExists)
    async def _user_exists(_r: Request, exc: UserExists) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(AccountError)
    async def _account_error(_r: Request, exc: AccountError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(InvitationError)
    async def _invitation_error(_r: Request, exc: InvitationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(AuditError)
    async def _audit_error(_r: Request, exc: AuditError) -> JSONResponse:
        return JSONResponse({"detail": f"审计日志不可用 (audit trail unavailable: {exc})"}, status_code=503)


class LoginGuard:
    """Throttles per user+address (5 failures), per user name from any address (10 failures: an
    attacker spreading guesses over many addresses still meets a lock) and per address (30
    failures), thread-safe. Addresses are the socket's unless a trusted proxy forwarded them
    (`TONGLU_TRUSTED_PROXIES`, applied by uvicorn, see `web/server.py`)."""

    def __init__(self) -> None:
        self.per_user = LoginThrottle(max_failures=5)
        self.per_name = LoginThrottle(max_failures=10)
        self.per_address = LoginThrottle(max_failures=30)
        self._lock = threading.Lock()

    def retry_after(self, username: str, address: str, now_s: float) -> float:
        with self._lock:
            return max(self.per_user.retry_after(f"{username}|{address}", now_s),
                       self.per_name.retry_after(username, now_s),
                       self.per_address.retry_after(address, now_s))

    def failure(self, username: str, address: str, now_s: float) -> None:
        with self._lock:
            self.per_user.failure(f"{username}|{address}", now_s)
            self.per_name.failure(username, now_s)
            self.per_address.failure(address, now_s)

    def success(self, username: str, address: str) -> None:
        with self._lock:
            self.per_user.success(f"{username}|{address}")
            self.per_name.success(username)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "-"


def login(request: Request, username: str, password: str) -> tuple[User, str]:
    """Check credentials (throttled, audited); return the user and a new page-session cookie."""
    services = get_services(request)
    guard: LoginGuard = request.app.state.login_guard
    address = client_address(request)
    username = username.strip().lower()[:64]
    wait = guard.retry_after(username, address, time.monotonic())
    who = Principal(user=username or "-", role="anonymous")
    if wait > 0:
        services.audit.record(who, request, "login", f"user:{username}", "throttled",
                              {"retry_after_s": int(wait) + 1})
        raise HTTPException(
            status_code=429,
            detail=f"登录失败次数过多，请 {int(wait) + 1} 秒后再试 "
            f"(too many failed logins; retry in {int(wait) + 1} s)",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    user = services.accounts.authenticate(username, password)
    if user is None:
        guard.failure(username, address, time.monotonic())
        services.audit.record(who, request, "login", f"user:{username}", "failed")
        raise HTTPException(status_code=401, detail="用户名或密码错误 (wrong user name or password)")
    guard.success(username, address)
    services.audit.record(user.principal(), request, "login", f"user:{username}", "ok")
    return user, services.accounts.start_page_session(user.username)


def set_session_cookie(request: Request, response: Response, token: str, max_age_s: int) -> None:
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age_s, httponly=True, samesite="lax", path="/",
        secure=request.url.scheme == "https",
    )


def safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


# -- login / logout ----------------------------------------------------------------------------
class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login", include_in_schema=False)
def login_form(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    try:
        _user, token = login(request, username, password)
    except HTTPException as exc:
        return render(request, "login.html", status_code=exc.status_code, next=safe_next(next),
                      error=exc.detail, headers=exc.headers)
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(request, response, token, get_services(request).accounts.session_max_ns // 10**9)
    return response


@router.post("/api/auth/login")
def api_login(request: Request, body: LoginBody) -> JSONResponse:
    """Password login for scripts and the pages' fetch calls: sets the session cookie."""
    user, token = login(request, body.username, body.password)
    response = JSONResponse({"user": user.username, "role": user.role, "display_name": user.display_name})
    set_session_cookie(request, response, token, get_services(request).accounts.session_max_ns // 10**9)
    return response


def _logout(request: Request) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts = get_services(request).accounts
        principal = accounts.resolve_session_token(token)
        accounts.end_page_session(token)
        if principal is not None:
            get_services(request).audit.record(principal, request, "logout", f"user:{principal.user}")


@router.post("/logout", include_in_schema=False)
def logout_form(request: Request) -> Response:
    _logout(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/api/auth/logout")
def api_logout(request: Request) -> JSONResponse:
    _logout(request)
    response = JSONResponse({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- own account -------------------------------------------------------------------------------
AnyRole = Annotated[Principal, Depends(require_roles(*USER_ROLES, "participant"))]
Staff = Annotated[Principal, Depends(require_roles(*STAFF))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]


def _account_user(p: Principal) -> str:
    if p.user == "admin-token":
        raise HTTPException(status_code=409, detail="管理员令牌不是账号 (the admin token is not an account)")
    return p.user


@router.get("/api/auth/me")
def me(p: AnyRole) -> dict[str, Any]:
    return {"user": p.user, "role": p.role, "display_name": p.display_name, "session_scope": p.session_scope,
            **({"sub_role": p.extra["sub_role"]} if "sub_role" in p.extra else {})}


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    old_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


@router.post("/api/auth/password")
def change_password(request: Request, body: PasswordChange, p: Staff) -> dict[str, Any]:
    """New password: ends every page session and revokes every API token of the account."""
    accounts = get_services(request).accounts
    if accounts.authenticate(_account_user(p), body.old_password) is None:
        raise HTTPException(status_code=403, detail="原密码错误 (old password is wrong)")
    revoked = accounts.set_password(p.user, body.new_password)
    return {"ok": True, "tokens_revoked": revoked}


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=128)
    ttl_s: int | None = Field(default=None, ge=60, le=366 * 86400)


@router.get("/api/auth/tokens")
def list_tokens(request: Request, p: Staff) -> list[dict[str, Any]]:
    return [t.__dict__ for t in get_services(request).accounts.list_api_tokens(_account_user(p))]


@router.post("/api/auth/tokens", status_code=201)
def issue_token(request: Request, body: TokenRequest, p: Staff) -> dict[str, Any]:
    """A Bearer token for automation, acting as the calling user. Shown once."""
    rec, token = get_services(request).accounts.issue_api_token(_account_user(p), body.label, body.ttl_s)
    return {**rec.__dict__, "token": token}


@router.delete("/api/auth/tokens/{token_id}")
def revoke_token(request: Request, token_id: str, p: Staff) -> dict[str, bool]:
    if not get_services(request).accounts.revoke_api_token(token_id, _account_user(p)):
        raise HTTPException(status_code=404, detail=f"令牌不存在或已撤销 (no active token {token_id!r})")
    return {"ok": True}


# -- user administration -----------------------------------------------------------------------
class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    role: str = Field(max_length=32)
    password: str = Field(min_length=1, max_length=1024)
    display_name: str = Field(default="", max_length=128)


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str | None = Field(default=None, max_length=32)
    disabled: bool | None = None
    display_name: str | None = Field(default=None, max_length=128)


class PasswordReset(BaseModel):
    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=1, max_length=1024)


def _user_json(u: User) -> dict[str, Any]:
    return {"username": u.username, "display_name": u.display_name, "role": u.role, "disabled": u.disabled,
            "created_ns": u.created_ns}


@router.get("/api/users")
def list_users(request: Request, _p: Admin) -> list[dict[str, Any]]:
    return [_user_json(u) for u in get_services(request).accounts.list_users()]


@router.post("/api/users", status_code=201)
def create_user(request: Request, body: NewUser, p: Admin) -> dict[str, Any]:
    services = get_services(request)
    try:
        user = services.accounts.create_user(body.username, body.role, body.password, body.display_name)
    except AccountError:
        services.audit.record(p, request, "user_create", f"user:{body.username}", "failed",
                              {"role": body.role})
        raise
    services.audit.record(p, request, "user_create", f"user:{user.username}", "ok", {"role": user.role})
    return _user_json(user)


@router.patch("/api/users/{username}")
def patch_user(request: Request, username: str, body: UserPatch, p: Admin) -> dict[str, Any]:
    from tonglu.web.routes.whep import end_user_viewers  # live viewing ends with the account / role

    services = get_services(request)
    accounts = services.accounts
    before = accounts.get_user(username)
    if body.role is not None and body.role != before.role:
        try:
            old, new = accounts.set_role(username, body.role)
        except AccountError:
            services.audit.record(p, request, "role_change", f"user:{username}", "failed",
                                  {"from": before.role, "to": body.role})
            raise
        services.audit.record(p, request, "role_change", f"user:{username}", "ok", {"from": old, "to": new})
        end_user_viewers(request, username, "role_changed")  # what it watched under the old role ends
    if body.disabled is not None and body.disabled != before.disabled:
        accounts.set_disabled(username, body.disabled)
        action = "user_disable" if body.disabled else "user_enable"
        services.audit.record(p, request, action, f"user:{username}")
        if body.disabled:
            end_user_viewers(request, username, "account_disabled")  # live viewing ends with the account
    if body.display_name is not None:
        accounts.set_display_name(username, body.display_name)
    return _user_json(accounts.get_user(username))


@router.post("/api/users/{username}/password")
def reset_password(request: Request, username: str, body: PasswordReset, _p: Admin) -> dict[str, Any]:
    """Admin reset: ends the user's page sessions and revokes all their API tokens."""
    revoked = get_services(request).accounts.set_password(username, body.password)
    return {"ok": True, "tokens_revoked": revoked}
