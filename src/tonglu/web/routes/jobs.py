"""Background jobs: ask for a working copy, an export package or a clip; follow its progress.

    POST /api/sessions/{sid}/workcopy            (routes/review.py) working copy job
    POST /api/sessions/{sid}/jobs/export         court export package job
    POST /api/sessions/{sid}/jobs/clip           clip job ({"from", "to", "sources", "media"})
    POST /api/sessions/{sid}/jobs/report         review report job ({"format": "html" | "pdf"})
    GET  /api/jobs/{job_id}                      state, progress (0..1, percent), ETA, result or error
    GET  /api/jobs/{job_id}/download             the finished job's file (zip / mp4)

Each POST answers at once: 202 with the job (200 when an identical finished job is reused, e.g. the
working copy of an unchanged manifest). A job belongs to its session: only those who may reach the
session (`rbac.may_access_session`) may see or download it (others get 404, as for no such job).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from tonglu.evidence.jobs import DONE, Job
from tonglu.integrity.errors import IntegrityError
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services

READ = ("admin", "interviewer", "supervisor", "reviewer")
EXPORT = ("admin", "supervisor", "reviewer")
router = APIRouter(tags=["review"])


def _register_rules() -> None:
    from tonglu.web import rbac

    rules = {
        ("GET", "/api/jobs/{}"): rbac.roles(*READ),  # polled every second: not audited
        ("GET", "/api/jobs/{}/download"): rbac.roles(*READ, audit="download"),
        ("POST", "/api/sessions/{}/jobs/export"): rbac.roles(*EXPORT, audit="export"),
        ("POST", "/api/sessions/{}/jobs/clip"): rbac.roles(*EXPORT, audit="clip_export"),
        ("POST", "/api/sessions/{}/jobs/report"): rbac.roles(*READ, audit="report"),
    }
    for key, rule in rules.items():
        rbac.MATRIX.setdefault(key, rule)


_register_rules()


class ExportJobIn(BaseModel):
    workcopy: bool = Field(True, description="include the working copy")


class ReportJobIn(BaseModel):
    format: Literal["html", "pdf"] = Field("html", description="html | pdf (printed by headless Chromium)")


class ClipJobIn(BaseModel):
    from_: str = Field(alias="from", min_length=1, max_length=64, description="起点 start (ISO-8601 or 02:10:00)")
    to: str = Field(min_length=1, max_length=64, description="终点 end")
    sources: list[str] | None = Field(None, max_length=16)
    media: bool = True


def job_answer(job: Job, created: bool, *, poll: bool = False) -> JSONResponse:
    """The job as JSON: 202 for a job asked for and not finished, 200 otherwise (and always when polled)."""
    doc = job.to_json()
    if doc.get("result"):
        doc["result"] = {k: v for k, v in doc["result"].items() if k not in ("file", "mp4", "sidecar")}
    doc["url"] = f"/api/jobs/{job.id}"
    if job.state == DONE and (job.result or {}).get("file"):
        doc["download"] = f"/api/jobs/{job.id}/download"
    accepted = not poll and (created or job.state != DONE)
    return JSONResponse(doc, status_code=202 if accepted else 200)


def _owned_job(request: Request, principal: Principal, job_id: str) -> Job:
    from tonglu.web.guard import session_start_body
    from tonglu.web.jobs import job_service
    from tonglu.web.rbac import may_access_session

    services = get_services(request)
    job = job_service(services).queue.find(job_id[:64])
    missing = HTTPException(404, detail="任务不存在 no such job")
    if job is None or job.session_id is None:
        raise missing
    if not may_access_session(principal, job.session_id, session_start_body(services, job.session_id)):
        raise missing
    return job


@router.get("/api/jobs/{job_id}")
def get_job(job_id: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))]) -> Any:
    """任务进度 A job's state (queued/running/done/failed), progress, ETA (s), result or error."""
    return job_answer(_owned_job(request, principal, job_id), False, poll=True)


@router.get("/api/jobs/{job_id}/download", response_model=None)
def download_job(
    job_id: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))]
) -> FileResponse:
    job = _owned_job(request, principal, job_id)
    if job.state != DONE:
        raise HTTPException(409, detail=f"任务尚未完成 the job is {job.state}")
    if job.kind not in ("workcopy", "report") and principal.role not in EXPORT:
        raise HTTPException(403, detail="无权下载导出文件 (export downloads need an export role)")
    result = job.result or {}
    path = Path(str(result.get("file", "")))
    if not result.get("file") or not path.is_file():
        raise HTTPException(410, detail="文件已过期，请重新生成 the file has expired; ask for it again")
    return FileResponse(path, media_type=str(result.get("media_type") or "application/octet-stream"),
                        filename=str(result.get("name") or path.name))


def _scope(principal: Principal, sid: str) -> None:
    if principal.session_scope is not None and principal.session_scope != sid:
        raise HTTPException(403, detail="邀请仅限于另一场讯问 (invitation is bound to another session)")


def _known(request: Request, sid: str) -> None:
    from tonglu.evidence import keys

    try:
        keys.safe_id(sid, "session id")
    except ValueError as exc:
        raise HTTPException(404, detail=f"会话不存在 unknown session: {exc}") from exc
    if not get_services(request).ledger.has(sid):
        raise HTTPException(404, detail=f"会话不存在 unknown session {sid!r}")


@router.post("/api/sessions/{sid}/jobs/export", status_code=202)
def post_export_job(
    sid: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*EXPORT))],
    body: ExportJobIn | None = None,
) -> Any:
    """出庭证据包（后台任务）Court export package as a background job (409 while recording)."""
    from tonglu.integrity.service import Review
    from tonglu.web.jobs import EXPORT as KIND
    from tonglu.web.jobs import job_service

    _scope(principal, sid)
    _known(request, sid)
    services = get_services(request)
    if Review.from_services(services).load(sid).view.recording:
        raise HTTPException(409, detail="会话仍在录制中，结束后才能导出 (the session is still recording)")
    job, created = job_service(services).submit(KIND, sid, {"workcopy": body.workcopy if body is not None else True},
                                                by=principal.user)
    return job_answer(job, created)


@router.post("/api/sessions/{sid}/jobs/clip", status_code=202)
def post_clip_job(
    sid: str, body: ClipJobIn, request: Request, principal: Annotated[Principal, Depends(require_roles(*EXPORT))]
) -> Any:
    """片段导出（后台任务）Clip of a time range with its own proof, as a background job. The range is
    checked now (422 bad range, 409 not yet signed); the zip is cut by the job."""
    from tonglu.evidence import keys
    from tonglu.integrity.clip import session_start_ns
    from tonglu.integrity.clip_plan import parse_time, plan_clip
    from tonglu.integrity.errors import ClipNotSigned
    from tonglu.integrity.service import Review
    from tonglu.web.jobs import CLIP, job_service

    _scope(principal, sid)
    _known(request, sid)
    try:
        for source in body.sources or []:
            keys.safe_id(source, "source")
    except ValueError as exc:
        raise HTTPException(422, detail=f"标识无效 bad id: {exc}") from exc
    services = get_services(request)
    review = Review.from_services(services)
    try:
        start = session_start_ns(review, sid)
        from_ns, to_ns = parse_time(body.from_, start), parse_time(body.to, start)
        plan_clip(sid, services.ledger.entries(sid), services.ledger.checkpoints(sid), from_ns, to_ns, body.sources)
    except ClipNotSigned as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    except IntegrityError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    args = {"from_ns": from_ns, "to_ns": to_ns, "sources": body.sources, "media": body.media, "by": principal.user}
    job, created = job_service(services).submit(CLIP, sid, args, by=principal.user)
    return job_answer(job, created)


@router.post("/api/sessions/{sid}/jobs/report", status_code=202)
def post_report_job(
    sid: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))],
    body: ReportJobIn | None = None,
) -> Any:
    """审查报告（后台任务）The integrity review report as a background job (HTML or PDF); the report
    of an unchanged manifest is not made again (200 with the finished job)."""
    from tonglu.web.jobs import job_service

    _scope(principal, sid)
    _known(request, sid)
    job, created = job_service(get_services(request)).report(
        sid, fmt=body.format if body is not None else "html", by=principal.user)
    return job_answer(job, created)
