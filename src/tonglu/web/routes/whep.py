"""WHEP live viewing (draft-ietf-wish-whep) and the room's monitoring indicator.

POST    /whep/{session}/{source}              application/sdp recvonly offer -> 201, SDP answer,
                                              Location /whep/{session}/{source}/{viewer}, ETag
DELETE  /whep/{session}/{source}/{viewer}     ends that viewer
OPTIONS /whep/{session}/{source}              204, Accept-Post: application/sdp
PATCH   /whep/{session}/{source}/{viewer}     405: no trickle ICE / ICE restart (aiortc has none)
GET     /api/sessions/{session}/monitoring    who watches live and which remote participants are
                                              connected (for the capture page: Bearer source token)

Who may watch (Bearer token or page cookie): admins and supervisors any recording session; an
interviewer the sessions it created or is listed on; a remote participant only the session its
invitation is bound to, and only after it has joined. Reviewers, auditors and anonymous callers
may not (403/401); a session the caller is not bound to answers 404, as one that does not exist.
Nobody watches covertly: every viewer is listed on the room screen by name and role. Every start
and stop is in the audit trail (`watch_start` / `watch_stop`, with the viewer id, name and role),
besides the guard's `stream` record of every attempt. A viewer ends when its invitation is revoked
or expires, or its account is disabled (`end_user_viewers`). Media is relayed as received (see
`recorder.whep`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import anyio.from_thread
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from tonglu.recorder.errors import RecorderError
from tonglu.web.auth import Principal, bearer_token, require_roles, resolve_principal
from tonglu.web.deps import get_recorder, get_services
from tonglu.web.rbac import require_session_access
from tonglu.web.sdp_http import options_answer, patch_not_supported

log = logging.getLogger(__name__)
router = APIRouter(tags=["whep"])
# Interviewers watch their own session's cameras as previews in the console: the room lists them
# like every other viewer.
WATCHERS = ("admin", "interviewer", "supervisor", "participant")
MONITOR_READERS = ("admin", "interviewer", "supervisor", "reviewer", "participant")
MAX_OFFER_BYTES = 64 * 1024
Watcher = Annotated[Principal, Depends(require_roles(*WATCHERS))]


def _register_rules() -> None:
    from tonglu.web import rbac

    rules = {
        ("POST", "/whep/{}/{}"): rbac.roles(*WATCHERS, scoped=True, audit="stream"),
        ("DELETE", "/whep/{}/{}/{}"): rbac.roles(*WATCHERS, scoped=True),  # audited: watch_stop
        ("OPTIONS", "/whep/{}/{}"): rbac.public(),  # capability answer only
        ("PATCH", "/whep/{}/{}/{}"): rbac.public(),  # always 405
        # Bearer source token of the session (capture page) or a principal; the route checks
        ("GET", "/api/sessions/{}/monitoring"): rbac.token(),
    }
    for key, rule in rules.items():
        rbac.MATRIX.setdefault(key, rule)


_register_rules()


def _scope(principal: Principal, sid: str) -> None:
    require_session_access(principal, sid)  # 404 for another session's invitation (the guard checks too)


def invitation_expiry(request: Request, principal: Principal) -> int | None:
    """When a participant's invitation expires (blocking: call from a thread)."""
    inv_id = principal.extra.get("invitation")
    accounts = get_services(request).accounts
    if not inv_id or accounts is None:
        return None
    try:
        return int(accounts.get_invitation(inv_id).expires_ns)
    except Exception:  # the guard resolved it a moment ago; a vanished one ends at once
        return 0


def end_user_viewers(request: Request, username: str, reason: str) -> int:
    """A sync route's hook (account disabled, role changed): end `username`'s live viewers on every
    recorder now. Failures are logged: the account change itself stands."""
    services = get_services(request)
    if services.recorder is None:
        return 0
    try:
        return int(anyio.from_thread.run(services.recorder.end_viewers, username, reason))
    except Exception:
        log.exception("cannot end the live viewers of %s (%s)", username, reason)
        return 0


def _audit(request: Request) -> Any:
    return get_services(request).audit


def _stop_detail(sid: str, info: dict[str, Any], address: str) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "session": sid,
        "source": info.get("source"),
        "viewer": info.get("viewer_id"),
        "viewer_user": info.get("user"),
        "reason": info.get("reason"),
        "address": address,
    }
    if isinstance(info.get("ended_ns"), int) and isinstance(info.get("since_ns"), int):
        detail["duration_ms"] = (info["ended_ns"] - info["since_ns"]) // 1_000_000
    return detail


def _on_end(request: Request, principal: Principal, sid: str) -> Any:
    """The viewer-ended hook for ends other than DELETE (connection lost, never connected, session
    stopped): audits `watch_stop` off the event loop (the hub calls it on the loop). In-process
    recorders call it; a worker backend cannot call back (only its DELETEs are audited as stops)."""
    audit = _audit(request)
    if audit is None:
        return None
    address = request.client.host if request.client else "-"
    loop = asyncio.get_running_loop()

    def record(info: dict[str, Any]) -> None:
        if info.get("reason") == "delete":
            return  # the DELETE route audits it, with who ended it

        def write() -> None:
            try:
                audit.record(
                    principal,
                    None,
                    "watch_stop",
                    f"/whep/{sid}/{info['source']}",
                    "ok",
                    _stop_detail(sid, info, address),
                )
            except Exception:  # the trail logs its own failures; the viewer has gone anyway
                log.exception("cannot audit watch_stop")

        loop.run_in_executor(None, write)

    return record


async def _read_limited(request: Request) -> bytes | None:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_OFFER_BYTES:
            return None
    return bytes(data)


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


@router.post("/whep/{sid}/{source}")
async def whep_post(sid: str, source: str, request: Request, principal: Watcher) -> Response:
    _scope(principal, sid)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        return _error(415, f"需要 application/sdp (Content-Type must be application/sdp, got {ctype or 'none'!r})")
    body = await _read_limited(request)
    if body is None:
        return _error(413, f"SDP 超过 64 KiB (offer larger than {MAX_OFFER_BYTES} bytes)")
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "SDP 不是 UTF-8 文本 (offer is not UTF-8 text)")
    viewer: dict[str, Any] = {
        "user": principal.user,
        "role": principal.role,
        "name": principal.display_name or principal.user,
        "address": request.client.host if request.client else "-",
    }
    if principal.role == "participant":
        # the recorder lets a participant watch only once its source has joined, until its invitation ends
        viewer["participant_source"] = principal.extra.get("source")
        viewer["expires_ns"] = await asyncio.to_thread(invitation_expiry, request, principal)
    audit = _audit(request)
    obj = f"/whep/{sid}/{source}"
    try:
        result = await get_recorder(request).watch(sid, source, offer, viewer, _on_end(request, principal, sid))
    except RecorderError as exc:
        if audit is not None:
            await audit.arecord(
                principal,
                request,
                "watch_start",
                obj,
                "failed",
                {"session": sid, "source": source, "status": exc.status, "reason": exc.detail},
            )
        raise
    if audit is not None:
        await audit.arecord(
            principal,
            request,
            "watch_start",
            obj,
            "ok",
            {"session": sid, "source": source, "viewer": result["viewer_id"], "name": viewer["name"],
             "role": principal.role},
        )
    return Response(
        content=result["sdp"],
        status_code=201,
        media_type="application/sdp",
        headers={"Location": f"/whep/{sid}/{source}/{result['viewer_id']}", "ETag": result["etag"]},
    )


@router.delete("/whep/{sid}/{source}/{viewer_id}")
async def whep_delete(sid: str, source: str, viewer_id: str, request: Request, principal: Watcher) -> Response:
    _scope(principal, sid)
    user = None if principal.role == "admin" else principal.user
    info = await get_recorder(request).unwatch(sid, source, viewer_id, user)
    audit = _audit(request)
    if audit is not None:
        address = request.client.host if request.client else "-"
        detail = _stop_detail(
            sid, {"source": source, "viewer_id": viewer_id, **(info or {}), "reason": "delete"}, address
        )
        await audit.arecord(principal, request, "watch_stop", f"/whep/{sid}/{source}", "ok", detail)
    return Response(status_code=200)


@router.options("/whep/{sid}/{source}")
async def whep_options(sid: str, source: str) -> Response:
    return options_answer()


@router.patch("/whep/{sid}/{source}/{viewer_id}")
async def whep_patch(sid: str, source: str, viewer_id: str) -> Response:
    return patch_not_supported("POST a new offer to reconnect")


@router.get("/api/sessions/{sid}/monitoring")
async def monitoring(sid: str, request: Request, source: str | None = None) -> dict[str, Any]:
    """Who watches this session live (supervisors, admins, remote participants) and which remote
    participants are connected. The capture page calls it with a source token of the session
    (`?source=main`, `Authorization: Bearer <main's WHIP token>`); staff with their login."""
    rec = get_recorder(request)
    principal = await asyncio.to_thread(resolve_principal, request)
    if principal is not None:
        if principal.role not in MONITOR_READERS:
            raise HTTPException(status_code=403, detail=f"角色 {principal.role} 无权访问 (role not allowed)")
        _scope(principal, sid)
    else:
        token = bearer_token(request)
        if token is None:
            raise HTTPException(
                status_code=401,
                detail="未登录或令牌无效 (missing or invalid credentials)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not source:
            raise HTTPException(status_code=400, detail="需要 source 参数 (a source token needs ?source=<name>)")
        await rec.check_source_token(sid, source, token)
    return await rec.monitoring(sid)
