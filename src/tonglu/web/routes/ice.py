"""ICE servers for the browsers' peer connections.

    GET /api/ice-servers   {"ice_servers": [...], "expires_s"}: time-limited TURN credentials
                           (web/turn.py) for a signed-in user or an invitation; [] without TURN

The room computer (no account) gets the same list in its capture status, under its source token.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services
from tonglu.web.rbac import ALL
from tonglu.web.turn import ice_servers

router = APIRouter(tags=["auth"])


def _register_rules() -> None:
    from tonglu.web import rbac

    rbac.MATRIX.setdefault(("GET", "/api/ice-servers"), rbac.roles(*ALL))  # every signed-in role


_register_rules()


@router.get("/api/ice-servers")
def get_ice_servers(request: Request, principal: Annotated[Principal, Depends(require_roles(*ALL))]) -> Any:
    """TURN 中继凭据 Time-limited TURN credentials for this user's browser (empty without TURN)."""
    servers = ice_servers(get_services(request).settings, int(time.time()), principal.user)
    return JSONResponse({"ice_servers": servers, "expires_s": servers[0]["expires_s"] if servers else None},
                        headers={"Cache-Control": "no-store"})
