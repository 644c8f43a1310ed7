"""HTML pages (Chinese first; plain HTML/CSS/JS, no build step) and the static files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from tonglu.evidence.keys import safe_id
from tonglu.web.accounts import SESSION_COOKIE, USER_ROLES
from tonglu.web.auth import Principal, require_roles, resolve_principal
from tonglu.web.deps import get_services
from tonglu.web.errors import InvitationError
from tonglu.web.rbac import STAFF, require_session_access
from tonglu.web.routes.evidence import BREAK_REASONS
from tonglu.web.templating import render

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
    services = get_services(request)
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


Watch = Annotated[Principal, Depends(require_roles("admin", "interviewer", "supervisor"))]
Reviewer = Annotated[Principal, Depends(require_roles("admin", "reviewer", "supervisor"))]


def _sid(sid: str) -> str:
    try:
        return safe_id(sid, "session id")
    except ValueError as exc:
        raise HTTPException(status_code=404, detail=f"讯问记录不存在 (no session {sid!r})") from exc


@router.get("/console")
def console_page(request: Request, _p: Watch) -> Response:
    """讯问控制台: rooms and their state, start a session."""
    return render(request, "console.html")


@router.get("/console/{sid}")
def session_console_page(request: Request, sid: str, _p: Watch) -> Response:
    """One running (or ended) session: indicator, previews, markers, breaks, transcript, stop."""
    return render(request, "session.html", sid=_sid(sid), break_reasons=BREAK_REASONS)


@router.get("/live/{sid}")
def live_page(request: Request, sid: str, _p: Annotated[Principal, Depends(require_roles("admin", "supervisor"))]
              ) -> Response:
    """Supervisor live view (WHEP): the room shows "being monitored" while this page watches."""
    return render(request, "live.html", sid=_sid(sid))


@router.get("/remote/{sid}")
def remote_page(request: Request, sid: str, p: Annotated[Principal, Depends(require_roles("participant"))]
                ) -> Response:
    """Remote participant: device check, then join two-way."""
    require_session_access(p, sid)
    return render(request, "remote.html", sid=_sid(sid))


@router.get("/review")
def review_search_page(request: Request, _p: Reviewer) -> Response:
    """审查: search sessions by case number, room, person, date, transcript words."""
    return render(request, "review.html")


@router.get("/review/{sid}")
def review_page(request: Request, sid: str, _p: Reviewer) -> Response:
    """Replay: working copy, timeline (gaps, breaks, markers, participants), transcript, report, export."""
    return render(request, "replay.html", sid=_sid(sid))


@router.get("/account")
def account_page(request: Request, p: Annotated[Principal, Depends(require_roles(*STAFF))]) -> Response:
    tokens = [] if p.user == "admin-token" else get_services(request).accounts.list_api_tokens(p.user)
    return render(request, "account.html", tokens=tokens)


@router.get("/admin/users")
def users_page(request: Request, _p: Annotated[Principal, Depends(require_roles("admin"))]) -> Response:
    users = get_services(request).accounts.list_users()
    return render(request, "users.html", users=users, roles=USER_ROLES)
