"""Integrity review API: the report, the gap list and explanations, the export package and the
working copy of a session.

    GET  /api/sessions/{sid}/report[?format=html]                  report (JSON, or HTML for people)
    GET  /api/sessions/{sid}/gaps                                   findings (all, with explanations)
    POST /api/sessions/{sid}/gaps/{finding_id}/explanations         append a signed explanation
    POST /api/sessions/{sid}/workcopy                               working copy job (202, routes/jobs.py)
    GET  /api/sessions/{sid}/workcopy.mp4 | workcopy.json           latest working copy / its sidecar
    GET  /api/sessions/{sid}/export.zip                             court export package (409 while recording)
    POST /api/sessions/{sid}/clip                                   clip of a time range with its own proof (zip)

The work (verification, ffmpeg, zipping) runs in worker threads (plain `def` routes). This module
registers its rows of the RBAC matrix (`web.rbac.MATRIX`) itself, so the guard and the RBAC
table test know them.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from tonglu.integrity.errors import (
    ClipNotSigned,
    IntegrityError,
    InvalidClipRange,
    InvalidExplanation,
    SessionStillRecording,
    ToolError,
    UnknownFinding,
    UnknownSession,
)
from tonglu.integrity.findings import REASON_CODES
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services

READ = ("admin", "interviewer", "supervisor", "reviewer")
EXPLAIN = ("admin", "interviewer", "supervisor")
EXPORT = ("admin", "supervisor", "reviewer")

router = APIRouter(tags=["review"])


def _register_rules() -> None:
    try:
        from tonglu.web import rbac
    except ImportError:  # pragma: no cover - the web area always ships rbac
        return
    rules = {
        ("GET", "/api/sessions/{}/report"): rbac.roles(*READ, audit="report_view"),
        ("GET", "/api/sessions/{}/gaps"): rbac.roles(*READ, audit="view"),
        ("POST", "/api/sessions/{}/gaps/{}/explanations"): rbac.roles(*EXPLAIN, audit="explanation"),
        ("POST", "/api/sessions/{}/workcopy"): rbac.roles(*READ, audit="workcopy_build"),
        ("GET", "/api/sessions/{}/workcopy.mp4"): rbac.roles(*READ, audit="download"),
        ("GET", "/api/sessions/{}/workcopy.json"): rbac.roles(*READ, audit="download"),
        ("GET", "/api/sessions/{}/export.zip"): rbac.roles(*EXPORT, audit="export"),
        ("POST", "/api/sessions/{}/clip"): rbac.roles(*EXPORT, audit="clip_export"),
    }
    for key, rule in rules.items():
        rbac.MATRIX.setdefault(key, rule)


_register_rules()


class ExplanationIn(BaseModel):
    reason_code: Literal["rest", "meal", "equipment_fault", "lawyer_consultation", "network", "other"] = (
        Field(description="理由代码 reason code: " + ", ".join(REASON_CODES))
    )
    text: str = Field(min_length=1, max_length=4000, description="说明 what happened")
    approver: str = Field(min_length=1, max_length=200, description="批准人 who approved")


class ClipIn(BaseModel):
    from_: str = Field(
        alias="from",
        min_length=1,
        max_length=64,
        description="起点 start: ISO-8601 (no offset = Beijing time) or offset from the session start, 02:10:00",
    )
    to: str = Field(min_length=1, max_length=64, description="终点 end, same forms as `from`")
    sources: list[str] | None = Field(None, description="信号源 sources (default: all), e.g. main, panorama")
    media: bool = Field(True, description="include the playable MP4 per source")


def _review(request: Request) -> Any:
    from tonglu.integrity.service import Review

    return Review.from_services(get_services(request))


def _errors(exc: IntegrityError) -> HTTPException:
    if isinstance(exc, UnknownSession | UnknownFinding):
        return HTTPException(404, detail=str(exc))
    if isinstance(exc, SessionStillRecording):
        return HTTPException(409, detail=str(exc))
    if isinstance(exc, ClipNotSigned):
        return HTTPException(409, detail=str(exc))
    if isinstance(exc, InvalidExplanation | InvalidClipRange):
        return HTTPException(422, detail=str(exc))
    if isinstance(exc, ToolError):
        return HTTPException(503, detail=str(exc))
    return HTTPException(500, detail=str(exc))


def _scope(principal: Principal, sid: str) -> None:
    if principal.session_scope is not None and principal.session_scope != sid:
        raise HTTPException(403, detail="邀请仅限于另一场讯问 (invitation is bound to another session)")


@router.get("/api/sessions/{sid}/report", response_model=None)
def get_report(
    sid: str,
    request: Request,
    principal: Annotated[Principal, Depends(require_roles(*READ))],
    format: Literal["json", "html"] = Query("json", description="json | html"),
) -> JSONResponse | HTMLResponse:
    """审查报告 Integrity review report: `verified`, `gaps` ({source, track, kind, start, end,
    explained}, ISO-8601 UTC), session facts, coverage, checkpoint digests, custody trail."""
    _scope(principal, sid)
    from tonglu.integrity.documents import report_bundle

    try:
        doc = report_bundle(_review(request), sid)
    except IntegrityError as exc:
        raise _errors(exc) from exc
    if format == "html":
        return HTMLResponse(doc.html)
    return JSONResponse(doc.json)


@router.get("/api/sessions/{sid}/gaps")
def get_gaps(
    sid: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))]
) -> Any:
    """All findings of the gap analysis (info included), each with its explanations."""
    _scope(principal, sid)
    try:
        analysis = _review(request).analyse(sid)
    except IntegrityError as exc:
        raise _errors(exc) from exc
    return {
        "session": sid,
        "verified": analysis.verified,
        "recording": analysis.view.recording,
        "findings": [f.to_json() for f in analysis.findings],
    }


@router.post("/api/sessions/{sid}/gaps/{finding_id}/explanations", status_code=201)
def post_explanation(
    sid: str,
    finding_id: str,
    body: ExplanationIn,
    request: Request,
    principal: Annotated[Principal, Depends(require_roles(*EXPLAIN))],
) -> Any:
    """追加说明 Append an explanation (signed: a checkpoint follows it). Nothing is edited or deleted."""
    _scope(principal, sid)
    try:
        entry = _review(request).explain(
            sid,
            finding_id,
            reason_code=body.reason_code,
            text=body.text,
            approver=body.approver,
            by=principal.user,
        )
    except IntegrityError as exc:
        raise _errors(exc) from exc
    return {
        "session": sid,
        "finding_id": finding_id,
        "seq": entry.seq,
        "entry_hash": entry.entry_hash,
        "by": principal.user,
        "reason_code": body.reason_code,
        "approver": body.approver,
    }


@router.post("/api/sessions/{sid}/workcopy", status_code=202)
def post_workcopy(
    sid: str,
    request: Request,
    principal: Annotated[Principal, Depends(require_roles(*READ))],
    height: int = Query(720, ge=90, le=2160),
) -> Any:
    """Ask for the working copy (PiP MP4 with burned-in Beijing time; gaps shown as cards): a
    background job (`GET /api/jobs/{id}` for progress and ETA). 202 with the job; 200 with the
    finished job when the working copy of this very manifest exists already (never rebuilt)."""
    _scope(principal, sid)
    from tonglu.web.jobs import job_service
    from tonglu.web.routes.jobs import job_answer

    try:
        _review(request).load(sid)
    except IntegrityError as exc:
        raise _errors(exc) from exc
    job, created = job_service(get_services(request)).workcopy(sid, height=height, by=principal.user)
    return job_answer(job, created)


def _latest_workcopy(request: Request, sid: str) -> tuple[Path, Path]:
    from tonglu.integrity import workcopy

    review = _review(request)
    try:
        review.load(sid)
    except IntegrityError as exc:
        raise _errors(exc) from exc
    found = workcopy.latest(review, sid)
    if found is None:
        raise HTTPException(404, detail="尚未生成工作副本 no working copy yet (POST .../workcopy)")
    return found


@router.get("/api/sessions/{sid}/workcopy.mp4", response_model=None)
def get_workcopy(
    sid: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))]
) -> FileResponse:
    _scope(principal, sid)
    mp4, _ = _latest_workcopy(request, sid)
    return FileResponse(
        mp4, media_type="video/mp4", filename=f"{sid}-workcopy.mp4", content_disposition_type="inline"
    )


@router.get("/api/sessions/{sid}/workcopy.json", response_model=None)
def get_workcopy_sidecar(
    sid: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))]
) -> FileResponse:
    _scope(principal, sid)
    _, side = _latest_workcopy(request, sid)
    return FileResponse(side, media_type="application/json")


@router.get("/api/sessions/{sid}/export.zip", response_model=None)
def get_export(
    sid: str,
    request: Request,
    principal: Annotated[Principal, Depends(require_roles(*EXPORT))],
    workcopy: bool = Query(True, description="include the working copy"),
) -> FileResponse:
    """出庭证据包 Court export package (zip). 409 while the session is still recording."""
    _scope(principal, sid)
    from tonglu.evidence import keys
    from tonglu.integrity.export import export_session

    review = _review(request)
    try:
        keys.safe_id(sid, "session id")
    except ValueError as exc:
        raise HTTPException(404, detail=f"会话不存在 unknown session: {exc}") from exc
    from tonglu.web.downloads import exports_dir, remove_file, sweep

    sweep(exports_dir(review.settings.data_dir), review.settings.export_ttl_s)
    out_dir = exports_dir(review.settings.data_dir) / sid
    name = f"{sid}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.zip"
    out = out_dir / f"{secrets.token_hex(4)}-{name}"  # two downloads in one second never share a file
    try:
        export_session(review, sid, out, with_workcopy=workcopy)
    except IntegrityError as exc:
        raise _errors(exc) from exc
    out.chmod(0o600)
    # built for this download only: deleted once sent (the package can be rebuilt at any time)
    return FileResponse(out, media_type="application/zip", filename=name,
                        background=BackgroundTask(remove_file, out))


@router.post("/api/sessions/{sid}/clip", response_model=None)
def post_clip(
    sid: str,
    body: ClipIn,
    request: Request,
    principal: Annotated[Principal, Depends(require_roles(*EXPORT))],
) -> FileResponse:
    """片段导出 Clip of a time range with its own proof (zip): the whole master segments covering the
    range, their manifest entries and RFC 9162 inclusion proofs, the signed checkpoint, the site key,
    the gaps inside the range, a playable MP4 per source, README and the offline verifier.
    422 for a bad or uncovered range, 409 while the range is not yet covered by a signed checkpoint."""
    _scope(principal, sid)
    from tonglu.evidence import keys
    from tonglu.integrity.clip import export_clip, session_start_ns
    from tonglu.integrity.clip_plan import parse_time
    from tonglu.web.downloads import exports_dir, remove_file, sweep

    review = _review(request)
    try:
        keys.safe_id(sid, "session id")
        for source in body.sources or []:
            keys.safe_id(source, "source")
    except ValueError as exc:
        raise HTTPException(422, detail=f"标识无效 bad id: {exc}") from exc
    try:
        start = session_start_ns(review, sid)
        from_ns, to_ns = parse_time(body.from_, start), parse_time(body.to, start)
        sweep(exports_dir(review.settings.data_dir), review.settings.export_ttl_s)
        out_dir = exports_dir(review.settings.data_dir) / sid
        out = out_dir / f"{sid}-clip-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{time.time_ns() % 10**6}.zip"
        result = export_clip(
            review, sid, from_ns, to_ns, out, sources=body.sources, by=principal.user, with_media=body.media
        )
    except IntegrityError as exc:
        raise _errors(exc) from exc
    audit = get_services(request).audit
    if audit is not None:
        detail = {k: v for k, v in result.to_json().items() if k in ("from", "to", "tracks", "checkpoint_digest")}
        audit.record(principal, request, "clip_range", f"session:{sid}/clip", detail=detail)
    out.chmod(0o600)
    # built for this download only: deleted once sent (the clip can be cut again at any time)
    return FileResponse(out, media_type="application/zip", filename=out.name,
                        background=BackgroundTask(remove_file, out))
