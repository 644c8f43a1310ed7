"""Who is calling: principals, and the dependencies routes use to require a role.

This is the seam between routes and the accounts system (`web/accounts.py`, owned by the web
area). Routes never parse credentials themselves; they declare what they need:

    @router.post("/api/sessions")
    def create(p: Annotated[Principal, Depends(require_roles("admin", "interviewer"))]): ...

Resolution order: the admin token from settings (automation), then `services.accounts`
(`resolve_bearer(token)` / `resolve_cookie(request)` returning a Principal or None).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import HTTPException, Request

ROLES = ("admin", "interviewer", "supervisor", "participant", "reviewer", "auditor")


@dataclass(frozen=True)
class Principal:
    user: str
    role: str
    display_name: str = ""
    session_scope: str | None = None  # an invitation is bound to one session
    extra: dict[str, str] = field(default_factory=dict)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def resolve_principal(request: Request) -> Principal | None:
    services = request.app.state.services
    token = bearer_token(request)
    admin_token = services.settings.admin_token
    if token and admin_token and hmac.compare_digest(token.encode(), admin_token.encode()):
        return Principal(user="admin-token", role="admin", display_name="管理员令牌 admin token")
    accounts = services.accounts
    if accounts is not None:
        if token:
            return accounts.resolve_bearer(token)  # type: ignore[no-any-return,unused-ignore]
        return accounts.resolve_cookie(request)  # type: ignore[no-any-return,unused-ignore]
    return None


def require_roles(*roles: str) -> Callable[[Request], Principal]:
    for role in roles:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")

    def dependency(request: Request) -> Principal:
        principal = resolve_principal(request)
        if principal is None:
            raise HTTPException(
                status_code=401,
                detail="未登录或令牌无效 (missing or invalid credentials)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.role not in roles:
            raise HTTPException(status_code=403, detail=f"角色 {principal.role} 无权访问 (role not allowed)")
        request.state.principal = principal
        return principal

    dependency.roles = roles  # type: ignore[attr-defined]  # read by the RBAC route table test
    return dependency
