"""Annotations that are evidence: markers, breaks, 笔录 times, custody events; and invitations.

Each annotation is a manifest entry appended to the session's ledger (hash-chained, spooled to
the evidence bucket like every other entry), in the body layout of the shared conventions.
Nothing here edits or deletes an entry: a break ends with a second `break` entry.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tonglu.evidence.index import SessionSearch, TranscriptHit
from tonglu.evidence.keys import safe_id
from tonglu.evidence.manifest import ManifestEntry
from tonglu.transcribe.lines import iso
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services
from tonglu.web.rbac import OPERATE, READ_SESSION, SITE_WIDE, may_access_session, require_session_access
from tonglu.web.services import Services

router = APIRouter(tags=["evidence"])
Operator = Annotated[Principal, Depends(require_roles(*OPERATE))]
Reader = Annotated[Principal, Depends(require_roles(*READ_SESSION, "participant"))]
InviteReader = Annotated[Principal, Depends(require_roles(*OPERATE, "supervisor"))]

BREAK_REASONS = ("rest", "meal", "adjournment", "equipment_fault", "lawyer_consultation", "other")
BreakReason = Literal["rest", "meal", "adjournment", "equipment_fault", "lawyer_consultation", "other"]
TIMELINE_KINDS = frozenset({
    "session_start", "session_stop", "gap", "marker", "break", "record_times", "custody", "participant",
    "explanation", "transcript",
})
Short = Annotated[str, Field(max_length=200)]
Text = Annotated[str, Field(max_length=4000)]


def _by(p: Principal) -> str:
    return p.user


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(value: str, name: str) -> str:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"{name} 不是 ISO-8601 时间 (not ISO-8601: {value!r})") \
            from exc
    if dt.tzinfo is None:
        raise HTTPException(status_code=422, detail=f"{name} 缺少时区 (needs a UTC offset, e.g. +08:00 or Z)")
    return value


class SessionState:
    def __init__(self, entries: list[ManifestEntry]) -> None:
        self.entries = entries
        self.started = any(e.kind == "session_start" for e in entries)
        self.stopped = any(e.kind == "session_stop" for e in entries)


def _session(request: Request, sid: str, p: Principal) -> SessionState:
    try:
        safe_id(sid, "session id")
    except ValueError as exc:
        raise HTTPException(status_code=404, detail=f"讯问记录不存在 (no session {sid!r})") from exc
    require_session_access(p, sid)
    ledger = get_services(request).ledger
    if not ledger.has(sid):
        raise HTTPException(status_code=404, detail=f"讯问记录不存在 (no session {sid!r})")
    state = SessionState(ledger.entries(sid))
    if not state.started:
        raise HTTPException(status_code=404, detail=f"讯问记录不存在 (no session {sid!r})")
    return state


def _append(request: Request, sid: str, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    entry = get_services(request).ledger.append(sid, kind, body)
    return {"seq": entry.seq, "kind": entry.kind, "time_ns": entry.time_ns, "hash": entry.entry_hash,
            "body": body}


def _recording(state: SessionState, sid: str) -> None:
    if state.stopped:
        raise HTTPException(status_code=409, detail=f"讯问已结束，不能再添加 (session {sid} is stopped)")


# -- markers -----------------------------------------------------------------------------------
class MarkerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Text = ""
    time_ns: int | None = Field(default=None, ge=0, lt=2**63)


@router.post("/api/sessions/{sid}/markers", status_code=201)
def add_marker(request: Request, sid: str, body: MarkerIn, p: Operator) -> dict[str, Any]:
    """打点: a marker at a moment of the recording (now by default) with a note."""
    state = _session(request, sid, p)
    _recording(state, sid)
    return _append(request, sid, "marker",
                   {"time_ns": body.time_ns or time.time_ns(), "note": body.note, "by": _by(p)})


# -- breaks ------------------------------------------------------------------------------------
class BreakIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["start", "end"]
    break_id: Short | None = None
    reason_code: BreakReason | None = None
    text: Text = ""
    approver: Short = ""


def _open_breaks(state: SessionState) -> dict[str, dict[str, Any]]:
    open_: dict[str, dict[str, Any]] = {}
    for e in state.entries:
        if e.kind != "break":
            continue
        bid = str(e.body.get("break_id"))
        if e.body.get("end_ns") is None:
            open_[bid] = e.body
        else:
            open_.pop(bid, None)
    return open_


@router.post("/api/sessions/{sid}/breaks", status_code=201)
def add_break(request: Request, sid: str, body: BreakIn, p: Operator) -> dict[str, Any]:
    """A break (休息/用餐/休庭...) while recording continues: start it, later end it."""
    state = _session(request, sid, p)
    _recording(state, sid)
    now = time.time_ns()
    if body.action == "start":
        if body.reason_code is None:
            raise HTTPException(
                status_code=422, detail=f"缺少中断原因 (reason_code required: {', '.join(BREAK_REASONS)})"
            )
        if body.reason_code == "equipment_fault" and not body.approver.strip():
            raise HTTPException(
                status_code=422, detail="设备故障须写明批准人 (equipment_fault needs an approver)"
            )
        return _append(request, sid, "break", {
            "break_id": secrets.token_hex(6), "reason_code": body.reason_code, "start_ns": now,
            "end_ns": None,
            "text": body.text, "approver": body.approver, "by": _by(p)})
    if not body.break_id:
        raise HTTPException(
            status_code=422, detail="结束中断须给出 break_id (break_id required to end a break)"
        )
    started = _open_breaks(state).get(body.break_id)
    if started is None:
        raise HTTPException(status_code=404, detail=f"没有进行中的中断 (no open break {body.break_id!r})")
    return _append(request, sid, "break", {
        "break_id": body.break_id, "reason_code": started["reason_code"], "start_ns": started["start_ns"],
        "end_ns": now, "text": body.text or started.get("text", ""), "approver": started.get("approver", ""),
        "by": _by(p)})


# -- 笔录 times and custody -------------------------------------------------------------------
class RecordTimesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    record_start_iso: Short
    record_end_iso: Short


@router.post("/api/sessions/{sid}/record-times", status_code=201)
def record_times(request: Request, sid: str, body: RecordTimesIn, p: Operator) -> dict[str, Any]:
    """The 笔录's start and end times as written on it (checked against the recording)."""
    _session(request, sid, p)
    start = _iso(body.record_start_iso, "record_start_iso")
    end = _iso(body.record_end_iso, "record_end_iso")
    if _dt(end) < _dt(start):
        raise HTTPException(
            status_code=422, detail="笔录结束早于开始 (record_end_iso is before record_start_iso)"
        )
    return _append(request, sid, "record_times",
                   {"record_start_iso": start, "record_end_iso": end, "by": _by(p)})


class CustodyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    event: Literal["out", "in"]
    time_iso: Short


@router.post("/api/sessions/{sid}/custody", status_code=201)
def custody(request: Request, sid: str, body: CustodyIn, p: Operator) -> dict[str, Any]:
    """提押 (out) / 还押 (in): when the suspect left and returned to custody."""
    _session(request, sid, p)
    return _append(request, sid, "custody",
                   {"event": body.event, "time_iso": _iso(body.time_iso, "time_iso"), "by": _by(p)})


# -- the session's timeline --------------------------------------------------------------------
@router.get("/api/sessions/{sid}/events")
async def events(request: Request, sid: str, p: Reader) -> dict[str, Any]:
    """Everything but segments: start/stop, gaps, markers, breaks, times, custody, participants."""
    state = await anyio.to_thread.run_sync(_session, request, sid, p)
    out = [{"seq": e.seq, "kind": e.kind, "time_ns": e.time_ns, "body": e.body}
           for e in state.entries if e.kind in TIMELINE_KINDS]
    segments = sum(1 for e in state.entries if e.kind == "segment")
    return {"session": sid, "recording": state.started and not state.stopped, "stopped": state.stopped,
            "segments": segments, "open_breaks": list(_open_breaks(state).values()), "events": out}


# -- invitations -------------------------------------------------------------------------------
class InvitationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Short
    sub_role: Literal["prosecutor", "judge", "lawyer", "interpreter", "other"]
    ttl_s: int = Field(default=4 * 3600, ge=60, le=7 * 86400)


@router.post("/api/sessions/{sid}/invitations", status_code=201)
def create_invitation(request: Request, sid: str, body: InvitationIn, p: Operator) -> dict[str, Any]:
    """An invitation link for a remote participant, bound to this session; shown once."""
    state = _session(request, sid, p)
    _recording(state, sid)
    services = get_services(request)
    inv, token = services.accounts.create_invitation(sid, body.name, body.sub_role, _by(p), body.ttl_s)
    from tonglu.web.routes.sessions import base_url  # TONGLU_PUBLIC_URL, not the request's Host

    base = base_url(request)
    return {**inv.to_json(services.accounts.clock()), "token": token, "url": f"{base}/join/{token}"}


@router.get("/api/sessions/{sid}/invitations")
def list_invitations(request: Request, sid: str, p: InviteReader) -> list[dict[str, Any]]:
    _session(request, sid, p)
    accounts = get_services(request).accounts
    now = accounts.clock()
    return [inv.to_json(now) for inv in accounts.list_invitations(sid)]


@router.post("/api/sessions/{sid}/invitations/{inv_id}/revoke")
def revoke_invitation(request: Request, sid: str, inv_id: str, p: Operator) -> dict[str, Any]:
    _session(request, sid, p)
    accounts = get_services(request).accounts
    inv = accounts.get_invitation(inv_id)
    if inv.session_id != sid:
        raise HTTPException(
            status_code=404, detail=f"本场没有此邀请 (no invitation {inv_id!r} in session {sid})"
        )
    revoked = accounts.revoke_invitation(inv_id, _by(p))
    out: dict[str, Any] = revoked.to_json(accounts.clock())
    out["cut_off"] = _cut_off(request, sid, inv.source, _by(p))
    return out


def _cut_off(request: Request, sid: str, source: str, by: str) -> dict[str, Any] | None:
    """The revoked participant's media ends now: its WHIP token, its peer, its live viewers (on the
    recorder that owns the session). The revocation itself stands even if the recorder cannot be reached:
    the participant's credentials no longer resolve, and its token is refused at the next publish."""
    from tonglu.web.deps import get_recorder

    try:
        rec = get_recorder(request)
        result: dict[str, Any] = anyio.from_thread.run(rec.cut_off_participant, sid, source, "invitation_revoked", by)
        return result
    except Exception as exc:
        import logging

        logging.getLogger(__name__).exception("cannot cut off %s/%s after revocation", sid, source)
        return {"error": f"录像服务未能立即断开 (recorder could not cut off the participant: {type(exc).__name__})"}


# -- search ------------------------------------------------------------------------------------
SEARCH_LIMIT = 200  # sessions per answer, newest first (`limited` says when more matched)


def _session_summaries(services: Services) -> list[dict[str, Any]]:
    """Every session's facts from its `session_start` / `session_stop` entries (the ledger): only
    for an app without an index DB (tests of other areas); `tonglu serve` always has one."""
    ledger = services.ledger
    out = []
    for sid in ledger.sessions():
        try:
            entries = ledger.entries(sid)
        except Exception:  # a session being written right now, or unreadable: skip it
            continue
        if not entries or entries[0].kind != "session_start":
            continue
        start = entries[0]
        stop = next((e for e in entries if e.kind == "session_stop"), None)
        people = [str(e.body.get("name", "")) for e in entries if e.kind == "participant"]
        b = start.body
        out.append({
            "id": sid, "room": b.get("room"), "case_number": b.get("case_number"), "suspect": b.get("suspect"),
            "interviewers": b.get("interviewers") or [], "created_by": b.get("created_by"),
            "participants": sorted(set(filter(None, people))),
            "started_ns": start.time_ns, "stopped_ns": stop.time_ns if stop else None,
            "state": "stopped" if stop else "recording",
            "gaps": sum(1 for e in entries if e.kind == "gap"), "start_body": b,
        })
    return out


def _transcript_hits(services: Services, sid: str, text: str) -> list[dict[str, Any]]:
    svc = services.transcripts
    if svc is None:
        return []
    try:
        doc = svc.current(sid)
    except Exception:  # no transcript (yet) for this session
        return []
    needle = text.casefold()
    return [{"start": ln.get("start"), "start_ns": ln.get("start_ns"), "speaker": ln.get("speaker"),
             "text": ln.get("text")}
            for ln in doc.get("lines", []) if needle in str(ln.get("text", "")).casefold()][:5]


def _day_bounds(date: str) -> tuple[int, int]:
    """[start, end) in ns of the Beijing-time calendar day `date` (YYYY-MM-DD)."""
    from tonglu.web.templating import SHANGHAI

    day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=SHANGHAI)
    start = int(day.timestamp()) * 10**9
    return start, start + 86400 * 10**9


def scan_sessions(services: Services, *, case: str = "", room: str = "", person: str = "", date: str = "",
                  text: str = "") -> list[dict[str, Any]]:
    """The ledger scan, for an app without an index DB: reads every session's ledger and transcript
    (what search did before the index; `tonglu bench search` measures it as its baseline)."""
    lo, hi = _day_bounds(date) if date else (0, 0)
    results = []
    for s in _session_summaries(services):
        if case and case.casefold() not in str(s["case_number"]).casefold():
            continue
        if room and room.casefold() not in str(s["room"]).casefold():
            continue
        if person:
            names = [str(s["suspect"]), *map(str, s["interviewers"]), str(s["created_by"]), *s["participants"]]
            if not any(person.casefold() in n.casefold() for n in names):
                continue
        if date and not lo <= s["started_ns"] < hi:
            continue
        if text:
            hits = _transcript_hits(services, s["id"], text)
            if not hits:
                continue
            s["transcript_hits"] = hits
        results.append(s)
    results.sort(key=lambda s: s["started_ns"], reverse=True)
    return results


def _hit_json(h: TranscriptHit) -> dict[str, Any]:
    start = iso(h.start_ns) if h.start_ns is not None else None
    return {"start": start, "start_ns": h.start_ns, "speaker": h.speaker, "text": h.text}


def search_sessions(request: Request, *, case: str = "", room: str = "", person: str = "", date: str = "",
                    text: str = "", owners: tuple[str, ...] | None = None,
                    limit: int = SEARCH_LIMIT) -> list[dict[str, Any]]:
    """Sessions matching every given filter, newest first, from the index DB (evidence/index.py
    `Index.search`: full-text index of metadata and transcript lines); `owners` keeps only sessions
    created by or listing one of these names."""
    services = get_services(request)
    index = services.index
    if index is None:
        return scan_sessions(services, case=case, room=room, person=person, date=date, text=text)[:limit]
    lo, hi = _day_bounds(date) if date else (None, None)
    found = index.search(SessionSearch(case=case, room=room, person=person, text=text, started_from_ns=lo,
                                       started_to_ns=hi, owners=owners, limit=limit))
    out = []
    for r in found:
        s = r.session
        row: dict[str, Any] = {
            "id": s.id, "room": s.room, "case_number": s.case_number, "suspect": s.suspect,
            "interviewers": s.interviewers, "created_by": s.created_by, "participants": r.participants,
            "started_ns": s.started_ns, "stopped_ns": s.stopped_ns, "state": s.state, "gaps": r.gaps,
            "start_body": s.start_body,
        }
        if text.strip():
            row["transcript_hits"] = [_hit_json(h) for h in r.hits]
        out.append(row)
    return out


Query200 = Annotated[str, Query(max_length=200)]


@router.get("/api/search")
def search(request: Request, p: Annotated[Principal, Depends(require_roles(*READ_SESSION))],
           case: Query200 = "", room: Query200 = "", person: Query200 = "", date: Query200 = "",
           text: Query200 = "") -> dict[str, Any]:
    """Find sessions by case number, room, person (suspect, interviewer, remote participant),
    date (YYYY-MM-DD, Beijing time) and words of the transcript."""
    if date:
        try:
            datetime.strptime(date, "%Y-%m-%d")
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=f"日期格式应为 YYYY-MM-DD (date {date!r})") from exc
    # an interviewer finds only its own sessions (the others answer 404 anyway): asked of the index,
    # so that the limit counts only sessions it may see; checked again below by the rule itself
    owners = None if p.role in SITE_WIDE or p.session_scope is not None else (
        tuple(n for n in (p.user, p.display_name) if n))
    found = search_sessions(request, case=case, room=room, person=person, date=date, text=text, owners=owners)
    results = []
    for s in found:
        start_body = s.pop("start_body", None)
        if may_access_session(p, str(s["id"]), start_body):
            results.append(s)
    return {"results": results, "limited": len(found) >= SEARCH_LIMIT}
