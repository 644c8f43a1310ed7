"""The in-room capture page (issue 3, item 8) and the narrow status it polls.

    GET /capture/{session}                       the page (Chinese UI, plain HTML/JS: web/static/capture.js)
    GET /api/sessions/{session}/capture-status   Bearer *source* token -> what the room screen shows

Tokens: `POST /api/sessions` answers `capture_url = <base>/capture/<id>#main=<token>&panorama=<token>`.
The tokens travel in the URL *fragment*, which browsers never send to a server (no access log,
no proxy log, no Referer). The page reads them, keeps them in `sessionStorage` for reloads of
that tab and removes the fragment from the address bar. The page itself holds no secret, so it
is public; everything it does with the server (WHIP POST/DELETE, the status poll) carries a
source token as `Authorization: Bearer`.

The status endpoint exists because a source token is not a user: `GET /api/sessions/{id}` is for
staff roles. A source token holder (the room computer) gets only what the room screen needs:
state, start time (the running duration is counted from the session's start, not the page's),
case number and room, which sources the recorder sees connected, who watches live (every viewer
of any role, by name and role: nobody watches covertly) and which remote participants are
connected. No suspect name, tokens, peer ids or gap details.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from tonglu.recorder.errors import RecorderError, TokenInvalid, TokenMissing
from tonglu.web.auth import bearer_token
from tonglu.web.deps import get_recorder, get_services
from tonglu.web.templating import render
from tonglu.web.turn import ice_servers

router = APIRouter(tags=["capture"])
STATUS_POLL_S = 3  # the page polls capture-status this often


def _register_rules() -> None:
    from tonglu.web import rbac

    rbac.MATRIX.setdefault(("GET", "/capture/{}"), rbac.public())
    # the route checks the Bearer source token itself (like WHIP); anonymous callers get 401
    rbac.MATRIX.setdefault(("GET", "/api/sessions/{}/capture-status"), rbac.token())


_register_rules()


# -- pure mapping: full recorder status -> what the room screen may show ---------------------------
ROLE_LABELS = {
    "admin": "管理员 admin",
    "supervisor": "监督 supervisor",
    "interviewer": "讯问人员 interviewer",
    "participant": "远程参与人 participant",
}


def _is_monitor(viewer: Any) -> bool:
    """Anyone watching live, whatever the role: nobody watches the room covertly (same rule as
    `recorder.whep.is_monitor`). The room's own display (it plays the remote parties) is no monitor."""
    return not (isinstance(viewer, dict) and (viewer.get("state") == "closed" or viewer.get("role") == "room"))


def _watchers(status: dict[str, Any]) -> list[dict[str, str]]:
    """Who watches, by name and role (what the room screen lists under 正在被监看)."""
    viewers = status.get("viewers")
    if isinstance(viewers, dict):
        viewers = list(viewers.values())
    if not isinstance(viewers, list):
        return []
    out = []
    for v in viewers:
        if isinstance(v, dict) and _is_monitor(v):
            role = str(v.get("role", ""))
            out.append({"name": str(v.get("name") or v.get("user") or ""), "role": role,
                        "role_label": ROLE_LABELS.get(role, role), "source": str(v.get("source", ""))})
    return out


def _monitor_count(status: dict[str, Any]) -> int:
    viewers = status.get("viewers")
    if isinstance(viewers, dict):
        viewers = list(viewers.values())
    if isinstance(viewers, list):
        count = sum(1 for v in viewers if _is_monitor(v))
    elif isinstance(viewers, int) and not isinstance(viewers, bool):
        count = max(0, viewers)
    else:
        count = 0
    monitored = status.get("monitored")
    if monitored is True:  # the recorder may say so without a list; it never hides a listed viewer
        return max(count, 1)
    return count


def _participants(status: dict[str, Any]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    raw = status.get("participants", status.get("remote_participants"))
    if isinstance(raw, dict):
        raw = [{"source": k, **v} for k, v in raw.items() if isinstance(v, dict)]
    if isinstance(raw, list):
        for p in raw:
            if not isinstance(p, dict):
                continue
            if p.get("present") is False or p.get("connected") is False or p.get("left_ns"):
                continue
            out.append({"name": str(p.get("name", "")), "role": str(p.get("role", ""))})
        return out
    for name, spec in (status.get("sources") or {}).items():
        if isinstance(spec, dict) and spec.get("kind") == "remote" and spec.get("connected"):
            out.append({"name": str(spec.get("name") or spec.get("label") or name), "role": str(spec.get("role", ""))})
    return out


def _parties(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The remote parties present (joined, not left), with their sources: what the room's display
    plays (`/party-whep`), labelled by role (审判员, 公诉人, ...)."""
    from tonglu.web.routes.hearing import ROLE_LABELS as HEARING_LABELS

    raw = status.get("remote_participants")
    out: list[dict[str, Any]] = []
    if isinstance(raw, list):
        for p in raw:
            if isinstance(p, dict) and p.get("present") and isinstance(p.get("source"), str):
                role = str(p.get("role", ""))
                out.append({"source": p["source"], "name": str(p.get("name", "")), "role": role,
                            "role_label": HEARING_LABELS.get(role, role),
                            "connected": bool(p.get("connected"))})
    return out


def capture_view(status: dict[str, Any], now_ns: int) -> dict[str, Any]:
    """The room screen's view of a session (see the module docstring for what is left out)."""
    sources = {}
    for name, spec in (status.get("sources") or {}).items():
        if not isinstance(spec, dict) or spec.get("kind") == "remote":
            continue
        sources[name] = {
            "label": str(spec.get("label", name)),
            "kind": str(spec.get("kind", "camera")),
            "connected": bool(spec.get("connected")),
        }
    viewers = _monitor_count(status)
    return {
        "id": status.get("id"),
        "state": status.get("state"),
        "room": status.get("room"),
        "case_number": status.get("case_number"),
        "started_ns": status.get("started_ns"),
        "stopped_ns": status.get("stopped_ns"),
        "now_ns": now_ns,
        "sources": sources,
        # every viewer, of any role, is shown by name and role: nobody watches covertly
        "monitored": bool(status.get("monitored", viewers > 0)) or viewers > 0,
        "viewers": viewers,
        "watchers": _watchers(status),
        "participants": _participants(status),
        "parties": _parties(status),
        "kind": status.get("kind") or "interrogation",
        # a lawyer consultation runs: the room is told (and what is recorded of it)
        "consultation": bool(status.get("consultation")),
        "poll_s": STATUS_POLL_S,
    }


# -- source tokens ---------------------------------------------------------------------------------
def _token_store(request: Request) -> Any:
    """Source tokens are kept hashed in the index DB, so this works whichever process records the session."""
    return get_services(request).capture_tokens


def check_any_source_token(store: Any, sid: str, token: str | None) -> None:
    """Accept the token of any of the session's sources; raise the recorder's 401/403/404 errors."""
    if not token:
        raise TokenMissing("缺少信号源令牌 (missing Bearer source token)")
    facts = store.facts(sid)  # SessionNotFound (404) for an unknown session
    for source in facts.sources:
        try:
            store.check_token(sid, source, token)
            return
        except RecorderError:
            continue
    raise TokenInvalid("信号源令牌错误 (token is not a source token of this session)")


@router.get("/api/sessions/{sid}/capture-status")
async def capture_status(sid: str, request: Request) -> JSONResponse:
    store = _token_store(request)
    await asyncio.to_thread(check_any_source_token, store, sid, bearer_token(request))
    status = await get_recorder(request).status(sid)
    view = capture_view(status, time.time_ns())
    # the room computer's TURN credentials (time-limited; refreshed with every poll)
    view["ice_servers"] = ice_servers(get_services(request).settings, int(time.time()), f"room-{sid}")
    return JSONResponse(view, headers={"Cache-Control": "no-store"})


# -- the page --------------------------------------------------------------------------------------
@router.get("/capture/{sid}", response_class=HTMLResponse)
async def capture_page(sid: str, request: Request) -> Response:
    from tonglu.evidence.keys import safe_id

    try:
        safe_id(sid, "session id")
        known = await asyncio.to_thread(get_services(request).ledger.has, sid)
    except ValueError:
        known = False
    if not known:
        return render(
            request,
            "message.html",
            status_code=404,
            title="会话不存在 Unknown session",
            message=f"没有编号为 {sid[:80]} 的讯问会话 (no session with this id)",
        )
    from tonglu.web.accounts import SUB_ROLES

    response = render(request, "capture.html", sid=sid, poll_s=STATUS_POLL_S, role_labels=SUB_ROLES)
    # the fragment never leaves the browser, and no link from this page may carry the URL along
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
