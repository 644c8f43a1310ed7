"""Remote participants joining a running session two-way (issue 6, remote arraignment).

POST   /api/sessions/{sid}/participants            a participant (invitation bound to this session)
       -> 201 {"source": "remote-<id>", "whip_url", "token", "watch": {"main": url, "panorama": url}}
          and a `participant` "joined" entry in the manifest. Calling it again (a reloaded page)
          issues a new WHIP token for the same source and writes no second "joined" entry.
DELETE /api/sessions/{sid}/participants/{source}   the participant itself, or an admin/interviewer:
          ends its WHIP peer and writes a "left" entry.

The participant then publishes with `whip_url` + `token` (recorded like every other source: segments,
gaps) and watches the room's cameras through WHEP (`/whep/{sid}/main`, `/whep/{sid}/panorama`) with
its invitation token or page cookie.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse

from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_recorder
from tonglu.web.routes.sessions import base_url

router = APIRouter(tags=["participants"])
REMOVERS = ("admin", "interviewer", "participant")


def _register_rules() -> None:
    from tonglu.web import rbac

    rules = {
        ("POST", "/api/sessions/{}/participants"): rbac.roles("participant", scoped=True, audit="participant_join"),
        ("DELETE", "/api/sessions/{}/participants/{}"): rbac.roles(*REMOVERS, scoped=True, audit="participant_leave"),
    }
    for key, rule in rules.items():
        rbac.MATRIX.setdefault(key, rule)


_register_rules()


def _own_source(principal: Principal, sid: str) -> str:
    if principal.session_scope != sid:
        raise HTTPException(
            status_code=403, detail="邀请仅限于另一场讯问，无权访问本场 (invitation is bound to another session)"
        )
    source = principal.extra.get("source")
    if not source:
        raise HTTPException(status_code=403, detail="邀请没有信号源 (this invitation carries no source)")
    return source


@router.post("/api/sessions/{sid}/participants", status_code=201)
async def join(
    sid: str, request: Request, principal: Annotated[Principal, Depends(require_roles("participant"))]
) -> JSONResponse:
    source = _own_source(principal, sid)
    rec = get_recorder(request)
    name = principal.display_name or principal.user
    role = principal.extra.get("sub_role", "participant")
    from tonglu.web.routes.whep import invitation_expiry

    expires_ns = await asyncio.to_thread(invitation_expiry, request, principal)
    token = await rec.join_participant(sid, source, name, role, expires_ns)
    base = base_url(request)
    body: dict[str, Any] = {
        "session": sid,
        "source": source,
        "whip_url": f"{base}/whip/{sid}/{source}",
        "token": token,
        "watch": {cam: f"{base}/whep/{sid}/{cam}" for cam in ("main", "panorama")},
    }
    return JSONResponse(body, status_code=201, headers={"Location": f"/api/sessions/{sid}/participants/{source}"})


@router.delete("/api/sessions/{sid}/participants/{source}")
async def leave(
    sid: str, source: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*REMOVERS))]
) -> dict[str, Any]:
    if principal.role == "participant" and _own_source(principal, sid) != source:
        raise HTTPException(status_code=403, detail="只能退出自己的连线 (a participant can only leave itself)")
    await get_recorder(request).leave_participant(sid, source, principal.user)
    return {"session": sid, "source": source, "event": "left"}
