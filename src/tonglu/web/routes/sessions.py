"""Sessions API: create, list, read and stop recording sessions (issue 3).

    POST /api/sessions              admin, interviewer
                                    -> 201 {id, sources: {name: {whip_url, token}}, capture_url}
    GET  /api/sessions              admin, interviewer, supervisor, reviewer
    GET  /api/sessions/{id}         same; state, sources, connected peers, segments sealed, open gaps
    POST /api/sessions/{id}/stop    admin, interviewer  -> final checkpoint digest

Only the stop call ends a session: silence, a lost camera or a dropped peer never do.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import anyio.to_thread
from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from tonglu.recorder.errors import RecorderError
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_recorder, get_services
from tonglu.web.rbac import may_access_session

router = APIRouter(tags=["sessions"])
WRITERS = ("admin", "interviewer")
READERS = ("admin", "interviewer", "supervisor", "reviewer")


def base_url(request: Request) -> str:
    """The base of links we hand out (WHIP, capture, invitations): TONGLU_PUBLIC_URL when set; the
    request's own Host only when it is not (`tonglu up` says so at start)."""
    public = get_services(request).settings.public_url
    return (public or str(request.base_url)).rstrip("/")


def _text(value: Any, limit: int) -> str:
    """Caller-supplied text fit for the audit record (valid UTF-8, bounded)."""
    return str(value)[:limit].encode("utf-8", "replace").decode("utf-8")


@router.post("/api/sessions", status_code=201)
async def create_session(
    request: Request,
    principal: Annotated[Principal, Depends(require_roles(*WRITERS))],
    body: Annotated[dict[str, Any], Body()],
) -> JSONResponse:
    """Audited as `session_start`, ok with the new id or failed with the reason; nothing is created
    when the audit trail cannot be written."""
    audit = get_services(request).audit
    rec = get_recorder(request)
    if audit is not None:
        await anyio.to_thread.run_sync(audit.check_writable)
    facts = {k: _text(body.get(k, ""), 64) for k in ("room", "case_number")}
    try:
        sid, tokens = await rec.create_session(body, principal.user)
    except Exception as exc:
        if audit is not None:
            reason = _text(getattr(exc, "detail", None) or str(exc) or type(exc).__name__, 300)
            await audit.arecord(principal, request, "session_start", "session:?", "failed",
                                {"reason": reason, **facts})
        raise
    if audit is not None:
        await audit.arecord(principal, request, "session_start", f"session:{sid}", "ok", facts)
    base = base_url(request)
    sources = {name: {"whip_url": f"{base}/whip/{sid}/{name}", "token": tok} for name, tok in tokens.items()}
    # tokens travel in the URL fragment: the browser never sends them to a server or a log
    capture = f"{base}/capture/{sid}#" + urlencode(tokens)
    return JSONResponse(
        {"id": sid, "sources": sources, "capture_url": capture},
        status_code=201,
        headers={"Location": f"/api/sessions/{sid}"},
    )


@router.get("/api/sessions")
async def list_sessions(
    request: Request, p: Annotated[Principal, Depends(require_roles(*READERS))]
) -> list[dict[str, Any]]:
    """Every session the caller may reach: an interviewer sees only its own (`rbac.may_access_session`)."""
    return [s for s in await get_recorder(request).list_sessions() if may_access_session(p, str(s.get("id")), s)]


@router.get("/api/sessions/{sid}")
async def get_session(
    sid: str, request: Request, _p: Annotated[Principal, Depends(require_roles(*READERS))]
) -> dict[str, Any]:
    return await get_recorder(request).status(sid)


@router.post("/api/sessions/{sid}/stop")
async def stop_session(
    sid: str,
    request: Request,
    principal: Annotated[Principal, Depends(require_roles(*WRITERS))],
) -> Any:
    reason = ""
    raw = await request.body()
    if raw.strip():
        import json

        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return JSONResponse({"detail": "请求体不是可用的 JSON (body is not usable JSON)"}, status_code=400)
        if isinstance(data, dict):
            reason = str(data.get("reason", ""))
    return await get_recorder(request).stop(sid, principal.user, reason)


def setup(app: FastAPI) -> None:
    if getattr(app.state, "_recorder_errors", False):
        return
    app.state._recorder_errors = True

    @app.exception_handler(RecorderError)
    async def _recorder_error(_request: Request, exc: RecorderError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"detail": exc.detail, "error": type(exc).__name__}, status_code=exc.status, headers=headers
        )
