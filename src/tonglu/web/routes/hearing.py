"""Remote hearings (速裁庭审) and remote arraignment, two-way inside the room (issue 12).

POST   /party-whep/{sid}               a party viewer (application/sdp offer, one recvonly video +
                                        audio m-section pair per source): every *other* party's
                                        sources in one peer -> 201, answer, Location, and the header
                                        `Tonglu-Sources: main,panorama,remote-...` (one per pair).
       Who: the room (Bearer source token of one of the room's own sources: its display plays the
       remote parties) or a remote participant that has joined (its invitation: the room's
       cameras, every room microphone as its own track, and the other participants).
DELETE /party-whep/{sid}/{viewer}       ends it.
POST   /api/sessions/{sid}/consultation {"action": "start"|"end", "lawyer"?, "defendant"?}
       a lawyer consultation (CPL art. 39, `recorder.consultation`): the defendant's and the
       lawyer's media go to nobody else; by default not recorded (one explained gap per track).
       Who: staff operating the session, or a participant whose role is clerk, judge or lawyer.
POST   /api/sessions/{sid}/hearing-markers {"phase": "opening"|...}
       the clerk's console: 开庭/法庭调查/法庭辩论/最后陈述/宣判 as `marker` entries with a `phase`.
       Who: staff operating the session, or the clerk or judge (participants).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tonglu.recorder.errors import RecorderError
from tonglu.recorder.participants import is_remote_source
from tonglu.web.auth import Principal, bearer_token, require_roles, resolve_principal
from tonglu.web.deps import get_recorder, get_services
from tonglu.web.rbac import OPERATE, require_session_access

router = APIRouter(tags=["hearing"])
MAX_OFFER_BYTES = 64 * 1024
CONSULT_SUB_ROLES = ("clerk", "judge", "lawyer")
MARKER_SUB_ROLES = ("clerk", "judge")
PHASES = {
    "opening": "开庭",
    "investigation": "法庭调查",
    "debate": "法庭辩论",
    "final_statement": "最后陈述",
    "judgment": "宣判",
}
Phase = Literal["opening", "investigation", "debate", "final_statement", "judgment"]
ROLE_LABELS = {
    "judge": "审判员",
    "clerk": "书记员",
    "prosecutor": "公诉人",
    "lawyer": "辩护律师",
    "defendant": "被告人",
    "interpreter": "翻译",
    "other": "其他",
}


def _register_rules() -> None:
    from tonglu.web import rbac

    rules = {
        # the route checks the room's source token or the participant's invitation itself
        ("POST", "/party-whep/{}"): rbac.token(audit="stream"),
        ("DELETE", "/party-whep/{}/{}"): rbac.token(),
        ("POST", "/api/sessions/{}/consultation"): rbac.roles(*OPERATE, "participant", scoped=True,
                                                               audit="consultation"),
        ("POST", "/api/sessions/{}/hearing-markers"): rbac.roles(*OPERATE, "participant", scoped=True,
                                                                  audit="marker"),
    }
    for key, rule in rules.items():
        rbac.MATRIX.setdefault(key, rule)


_register_rules()


# -- who is watching as which party ----------------------------------------------------------------
async def _party(request: Request, sid: str) -> dict[str, Any]:
    """The viewer identity of a party request: a participant (its invitation) or the room (a source
    token of one of the room's own sources). Staff watch per source through /whep."""
    principal = await asyncio.to_thread(resolve_principal, request)
    if principal is not None:
        require_session_access(principal, sid)
        if principal.role != "participant":
            raise HTTPException(status_code=403,
                                detail="工作人员请按信号源观看 (staff watch per source: /whep/{sid}/{source})")
        from tonglu.web.routes.whep import invitation_expiry

        return {
            "user": principal.user,
            "role": "participant",
            "name": principal.display_name or principal.user,
            "party": principal.extra.get("source") or "",
            "expires_ns": await asyncio.to_thread(invitation_expiry, request, principal),
        }
    token = bearer_token(request)
    if token is None:
        raise HTTPException(status_code=401, detail="未登录或令牌无效 (missing or invalid credentials)",
                            headers={"WWW-Authenticate": "Bearer"})
    store = get_services(request).capture_tokens
    facts = await asyncio.to_thread(store.facts, sid)
    for source in facts.sources:
        if is_remote_source(source):
            continue  # a participant's WHIP token is not the room's credential
        try:
            await asyncio.to_thread(store.check_token, sid, source, token)
        except RecorderError:
            continue
        return {"user": f"room:{sid}", "role": "room", "name": f"讯问室 {facts.room}", "party": "room"}
    raise HTTPException(status_code=403, detail="不是本场讯问室的信号源令牌 (not a source token of this room)")


async def _read_offer(request: Request) -> str:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        raise HTTPException(status_code=415, detail=f"需要 application/sdp (got {ctype or 'none'!r})")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_OFFER_BYTES:
            raise HTTPException(status_code=413, detail=f"SDP 超过 64 KiB (offer larger than {MAX_OFFER_BYTES} bytes)")
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(status_code=400, detail="SDP 不是 UTF-8 文本 (offer is not UTF-8 text)") from exc


@router.post("/party-whep/{sid}")
async def party_watch(sid: str, request: Request) -> Response:
    viewer = await _party(request, sid)
    offer = await _read_offer(request)
    viewer["address"] = request.client.host if request.client else "-"
    audit = get_services(request).audit
    result = await get_recorder(request).watch_party(sid, offer, viewer)
    if audit is not None:
        who = Principal(user=viewer["user"], role=viewer["role"], display_name=viewer["name"],
                        session_scope=sid)
        await audit.arecord(who, request, "watch_start", f"/party-whep/{sid}", "ok",
                            {"session": sid, "viewer": result["viewer_id"], "sources": result["sources"],
                             "party": viewer["party"], "name": viewer["name"]})
    return Response(
        content=result["sdp"],
        status_code=201,
        media_type="application/sdp",
        headers={"Location": f"/party-whep/{sid}/{result['viewer_id']}", "ETag": result["etag"],
                 "Tonglu-Sources": ",".join(result["sources"]),
                 "Access-Control-Expose-Headers": "Location, Tonglu-Sources"},
    )


@router.delete("/party-whep/{sid}/{viewer_id}")
async def party_unwatch(sid: str, viewer_id: str, request: Request) -> Response:
    viewer = await _party(request, sid)
    await get_recorder(request).unwatch(sid, "party", viewer_id, viewer["user"])
    return Response(status_code=200)


# -- consultation and the clerk's markers ------------------------------------------------------------
Member = Annotated[Principal, Depends(require_roles(*OPERATE, "participant"))]


def _may(principal: Principal, sid: str, sub_roles: tuple[str, ...], what: str) -> None:
    require_session_access(principal, sid)
    if principal.role == "participant" and principal.extra.get("sub_role") not in sub_roles:
        labels = "、".join(ROLE_LABELS.get(r, r) for r in sub_roles)
        raise HTTPException(status_code=403, detail=f"只有{labels}可以{what} (only {', '.join(sub_roles)} may)")


class ConsultationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["start", "end"]
    lawyer: str | None = Field(default=None, max_length=80)
    defendant: str | None = Field(default=None, max_length=80)


@router.post("/api/sessions/{sid}/consultation")
async def consultation(sid: str, body: ConsultationIn, request: Request, principal: Member) -> JSONResponse:
    _may(principal, sid, CONSULT_SUB_ROLES, "开始或结束律师会见")
    result = await get_recorder(request).consultation(sid, body.action, principal.user, body.lawyer, body.defendant)
    return JSONResponse(result, status_code=201 if body.action == "start" else 200)


class HearingMarkerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phase: Phase
    note: str = Field(default="", max_length=1000)


@router.post("/api/sessions/{sid}/hearing-markers", status_code=201)
async def hearing_marker(sid: str, body: HearingMarkerIn, request: Request, principal: Member) -> dict[str, Any]:
    _may(principal, sid, MARKER_SUB_ROLES, "标记庭审阶段")
    ledger = get_services(request).ledger
    entries = await asyncio.to_thread(ledger.entries, sid) if await asyncio.to_thread(ledger.has, sid) else []
    if not entries:
        raise HTTPException(status_code=404, detail=f"会话不存在 (no session {sid!r})")
    if any(e.kind == "session_stop" for e in entries):
        raise HTTPException(status_code=409, detail=f"庭审已结束 (session {sid} is stopped)")
    label = PHASES[body.phase]
    marker = {"time_ns": time.time_ns(), "note": label + (f"：{body.note}" if body.note else ""),
              "phase": body.phase, "by": principal.user}
    entry = await asyncio.to_thread(ledger.append, sid, "marker", marker)
    return {"seq": entry.seq, "kind": entry.kind, "time_ns": entry.time_ns, "body": marker}
