"""Risk alerts (server-side rules, see `web/risk.py`): live streams, acknowledgement, the facts the
rules need, and the supervisor page.

    GET  /api/risk/rules                                  the rule set in force (file, version, rules)
    GET  /api/sessions/{sid}/alerts                       the session's alerts with acknowledgements
    GET  /api/sessions/{sid}/alerts/live                  SSE: `snapshot`, then `alert` / `ack` events
    GET  /api/risk/live                                 SSE over every running session (supervisors)
    POST /api/sessions/{sid}/alerts/{alert_id}/ack        -> an `alert_ack` manifest entry (who, when)
    POST /api/sessions/{sid}/risk-facts                   a fact the rules use, as a `note` entry
    POST /api/sessions/{sid}/interviewers                 an interviewer leaves / joins (`participant`)
    GET  /supervise                                       监督台: live alerts of all running sessions

The rule timer's task starts and stops with the app (its lifespan).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from tonglu.integrity.risk.facts import RISK_FACT_TOPIC
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services
from tonglu.web.guard import session_start_body
from tonglu.web.rbac import OPERATE, READ_SESSION, WATCH, may_access_session
from tonglu.web.risk import RiskMonitor, ack_view, session_alerts
from tonglu.web.routes.evidence import _session
from tonglu.web.templating import render

router = APIRouter(tags=["alerts"])
Watcher = Annotated[Principal, Depends(require_roles(*WATCH))]
Reader = Annotated[Principal, Depends(require_roles(*READ_SESSION))]
Operator = Annotated[Principal, Depends(require_roles(*OPERATE))]
Supervisor = Annotated[Principal, Depends(require_roles("admin", "supervisor"))]
KEEPALIVE_S = 15.0
Short = Annotated[str, Field(max_length=200)]
Text = Annotated[str, Field(max_length=4000)]


def _monitor(request: Request) -> RiskMonitor:
    risk = get_services(request).risk
    if risk is None:
        raise HTTPException(503, "风险规则未启用 (risk rules not configured)")
    return risk


def setup(app: FastAPI) -> None:
    """Run the rule timer for as long as the app runs (wrapping whatever lifespan it has)."""
    inner: Callable[[Any], AbstractAsyncContextManager[Any]] = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        risk = app.state.services.risk
        async with inner(a) as state:
            if risk is not None:
                risk.start()
            try:
                yield state
            finally:
                if risk is not None:
                    await risk.stop()

    app.router.lifespan_context = lifespan


@router.get("/api/risk/rules")
def rules(request: Request, _p: Reader) -> dict[str, Any]:
    risk = _monitor(request)
    return {**risk.ruleset.to_json(), "running": risk.running, "tick_s": risk.tick_s}


@router.get("/api/sessions/{sid}/alerts")
async def alerts(request: Request, sid: str, p: Reader) -> dict[str, Any]:
    await anyio.to_thread.run_sync(_session, request, sid, p)
    items = await anyio.to_thread.run_sync(session_alerts, get_services(request).ledger, sid)
    return {"session": sid, "alerts": items, "unacknowledged": sum(1 for a in items if a["ack"] is None)}


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _stream(
    request: Request, risk: RiskMonitor, sessions: Callable[[], list[str]], visible: Callable[[str], bool]
) -> StreamingResponse:
    """`sessions`: those the snapshot covers; `visible`: whether an event's session may reach this caller."""
    ledger = get_services(request).ledger
    queue = risk.subscribe()  # before the snapshot: nothing falls between the two

    def snapshot() -> list[dict[str, Any]]:
        out = []
        for sid in sessions():
            if visible(sid):
                out += session_alerts(ledger, sid)
        return out

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            yield _sse("snapshot", {"alerts": await anyio.to_thread.run_sync(snapshot), "server_ns": time.time_ns()})
            while not await request.is_disconnected():
                try:
                    ev = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if ev["type"] == "resync":
                    yield _sse("snapshot", {"alerts": await anyio.to_thread.run_sync(snapshot)})
                    continue
                item = ev.get("alert") or ev.get("ack") or {}
                if not await anyio.to_thread.run_sync(visible, str(item.get("session"))):
                    continue
                yield _sse(ev["type"], item)
        finally:
            risk.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/api/sessions/{sid}/alerts/live")
async def session_live(request: Request, sid: str, p: Watcher) -> StreamingResponse:
    """Server-sent events for one session: `snapshot` (all its alerts), then `alert` and `ack`."""
    await anyio.to_thread.run_sync(_session, request, sid, p)
    return _stream(request, _monitor(request), lambda: [sid], lambda s: s == sid)


@router.get("/api/risk/live")
async def all_live(request: Request, p: Watcher) -> StreamingResponse:
    """Server-sent events over every running session the caller may reach (the supervisor page sees
    all; an interviewer's console only the sessions it created or is listed on)."""
    risk = _monitor(request)
    services = get_services(request)

    def visible(sid: str) -> bool:
        return may_access_session(p, sid, session_start_body(services, sid))

    return _stream(request, risk, risk.active_sessions, visible)


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text = ""


@router.post("/api/sessions/{sid}/alerts/{alert_id}/ack", status_code=201)
async def ack(request: Request, sid: str, alert_id: str, p: Watcher, body: AckIn | None = None) -> dict[str, Any]:
    """确认: who acknowledged the alert and when, as an `alert_ack` manifest entry (once per alert)."""
    risk = _monitor(request)
    ledger = get_services(request).ledger

    def write() -> dict[str, Any]:
        state = _session(request, sid, p)
        found = [e for e in state.entries if e.kind == "alert" and e.body.get("alert_id") == alert_id]
        if not found:
            raise HTTPException(404, f"没有此告警 (no alert {alert_id!r} in session {sid})")
        done = [e for e in state.entries if e.kind == "alert_ack" and e.body.get("alert_id") == alert_id]
        if done:
            raise HTTPException(409, f"告警已由 {done[0].body.get('by')} 确认 (already acknowledged)")
        entry = ledger.append(sid, "alert_ack", {
            "alert_id": alert_id, "alert_seq": found[0].seq, "by": p.user, "role": p.role,
            "name": p.display_name or p.user, "note": body.note if body else "", "acknowledged_ns": time.time_ns()})
        return {"session": sid, **ack_view(entry)}

    result = await anyio.to_thread.run_sync(write)
    risk.publish({"type": "ack", "ack": result})
    return result


FactName = Literal["night_reason", "appropriate_adult", "serious_case", "suspect_age", "authorised_viewer",
                   "detained_at_iso"]


class FactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: FactName
    value: str | bool | int
    text: Text = ""
    approver: Short = ""


def _check_fact(body: FactIn) -> None:
    from tonglu.integrity.risk.facts import FACT_TYPES

    kind = FACT_TYPES[body.name]
    ok = (isinstance(body.value, bool) if kind is bool else
          isinstance(body.value, int) and not isinstance(body.value, bool) and 0 <= body.value <= 150 if kind is int
          else isinstance(body.value, str) and bool(body.value.strip()))
    if not ok:
        raise HTTPException(422, f"{body.name} 的值类型应为 {kind.__name__} (value must be a {kind.__name__})")
    if body.name in ("serious_case", "authorised_viewer") and not body.approver.strip():
        raise HTTPException(422, f"{body.name} 须写明批准人 (needs an approver)")
    if body.name == "detained_at_iso":
        from datetime import datetime

        try:
            parsed = datetime.fromisoformat(str(body.value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise HTTPException(422, "detained_at_iso 不是 ISO-8601 时间 (not ISO-8601)") from exc
        if parsed.tzinfo is None:
            raise HTTPException(422, "detained_at_iso 缺少时区 (needs a UTC offset)")


@router.post("/api/sessions/{sid}/risk-facts", status_code=201)
async def risk_fact(request: Request, sid: str, body: FactIn, p: Watcher) -> dict[str, Any]:
    """A fact the risk rules use, recorded during the session: the reason for night questioning, the
    appropriate adult (合适成年人), the serious-case extension, an authorised live viewer..."""
    _check_fact(body)

    def write() -> dict[str, Any]:
        _session(request, sid, p)
        e = get_services(request).ledger.append(sid, "note", {
            "topic": RISK_FACT_TOPIC, "name": body.name, "value": body.value, "text": body.text,
            "approver": body.approver, "by": p.user})
        return {"seq": e.seq, "kind": e.kind, "time_ns": e.time_ns, "body": e.body}

    return await anyio.to_thread.run_sync(write)


class PresenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: Literal["left", "joined"]
    name: Short


@router.post("/api/sessions/{sid}/interviewers", status_code=201)
async def interviewer_presence(request: Request, sid: str, body: PresenceIn, p: Operator) -> dict[str, Any]:
    """An interviewer leaves the room or (re)joins: a `participant` entry with role interviewer."""
    name = body.name.strip()
    if not name:
        raise HTTPException(422, "缺少姓名 (name required)")

    def write() -> dict[str, Any]:
        state = _session(request, sid, p)
        if any(e.kind == "session_stop" for e in state.entries):
            raise HTTPException(409, f"讯问已结束 (session {sid} is stopped)")
        present = {str(i) for i in (state.entries[0].body.get("interviewers") or [])}
        for e in state.entries:
            if e.kind == "participant" and e.body.get("role") == "interviewer":
                (present.discard if e.body.get("event") == "left" else present.add)(str(e.body.get("name")))
        if body.event == "left" and name not in present:
            raise HTTPException(404, f"{name} 不在场 (not present)")
        if body.event == "joined" and name in present:
            raise HTTPException(409, f"{name} 已在场 (already present)")
        now = time.time_ns()
        e = get_services(request).ledger.append(sid, "participant", {
            "role": "interviewer", "event": body.event, "name": name, "time_ns": now, "by": p.user})
        return {"seq": e.seq, "kind": e.kind, "time_ns": e.time_ns, "body": e.body}

    return await anyio.to_thread.run_sync(write)


@router.get("/supervise", include_in_schema=False)
def supervise_page(request: Request, _p: Supervisor) -> Response:
    """监督台: live alerts of every running session, with acknowledgement."""
    return render(request, "supervise.html")
