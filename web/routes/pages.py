"""HTML pages (Chinese first; plain HTML/CSS/JS, no build step) and the static files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from web.accounts import SESSION_COOKIE, USER_ROLES
from web.auth import Principal, require_roles, resolve_principal
from web.errors import InvitationError
from web.rbac import STAFF
from web.templating import render

router = APIRouter(include_in_schema=False)
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

HOME = {
    "admin": "/console",
    "interviewer": "/console",
    "supervisor": "/console",
    "reviewer": "/review",
    "auditor": "/audit",
}


def setup(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


@router.get("/")
def home(request: Request) -> Response:
    principal = resolve_principal(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    if principal.role == "participant" and principal.session_scope:
        return RedirectResponse(f"/remote/{principal.session_scope}", status_code=303)
    return RedirectResponse(HOME.get(principal.role, "/account"), status_code=303)


@router.get("/join/{token}")
def join(request: Request, token: str) -> Response:
    """An invitation link: exchange it for a page session bound to its session, then go there."""
    services = request.app.state.services
    try:
        inv, cookie = services.accounts.redeem_invitation(token[:200])
    except InvitationError as exc:
        services.audit.record(None, request, "invitation_redeem", "invitation:?", "denied",
                              {"reason": str(exc)})
        status = 410 if ("撤销" in str(exc) or "过期" in str(exc)) else 404
        return render(request, "message.html", status_code=status, title="邀请无效 Invitation not valid",
                      message=str(exc))
    services.audit.record(inv.principal(), request, "invitation_redeem", f"invitation:{inv.id}", "ok",
                          {"session": inv.session_id})
    response = RedirectResponse(f"/remote/{inv.session_id}", status_code=303)
    max_age = max(1, (inv.expires_ns - services.accounts.clock()) // 10**9)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=max_age, httponly=True, samesite="lax", path="/",
                        secure=request.url.scheme == "https")
    return response


@router.get("/account")
def account_page(request: Request, p: Annotated[Principal, Depends(require_roles(*STAFF))]) -> Response:
    tokens = [] if p.user == "admin-token" else request.app.state.services.accounts.list_api_tokens(p.user)
    return render(request, "account.html", tokens=tokens)


@router.get("/admin/users")
def users_page(request: Request, _p: Annotated[Principal, Depends(require_roles("admin"))]) -> Response:
    users = request.app.state.services.accounts.list_users()
    return render(request, "users.html", users=users, roles=USER_ROLES)
