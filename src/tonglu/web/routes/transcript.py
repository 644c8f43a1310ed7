"""Transcript API: newest version (JSON), versions, WebVTT/SRT/DOCX, live draft (SSE), corrections.

Read: admin, interviewer, supervisor, reviewer. Corrections: admin, interviewer.
`services.transcripts` is a `transcribe.service.TranscriptService`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from tonglu.evidence.keys import safe_id
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services

router = APIRouter(tags=["transcript"])
READ = require_roles("admin", "interviewer", "supervisor", "reviewer")
WRITE = require_roles("admin", "interviewer")


def _svc(request: Request, sid: str) -> Any:
    svc = get_services(request).transcripts
    if svc is None:
        raise HTTPException(503, "转写服务未启用 (transcription service not configured)")
    try:
        safe_id(sid, "session id")
    except ValueError as exc:
        raise HTTPException(400, f"会话编号无效 (invalid session id): {exc}") from exc
    if not svc.has_session(sid):
        raise HTTPException(404, f"会话不存在 (no such session): {sid}")
    return svc


async def _audit(
    request: Request, p: Principal, action: str, sid: str, doc: dict[str, Any] | None, outcome: str = "ok"
) -> None:
    """Every view, export and correction of a transcript is audited (REQUIREMENTS 16) when audit is on."""
    audit = get_services(request).audit
    if audit is not None:
        detail = {"version": doc.get("version")} if doc is not None else None
        await audit.arecord(p, request, action, f"session:{sid}/transcript", outcome=outcome, detail=detail)


async def _doc(request: Request, sid: str, version: int | None) -> dict[str, Any]:
    from tonglu.transcribe.errors import VersionNotFound

    svc = _svc(request, sid)
    try:
        if version is None:
            return await run_in_threadpool(svc.current, sid)
        return await run_in_threadpool(svc.version, sid, version)
    except VersionNotFound as exc:
        raise HTTPException(404, f"无此版本 (no such transcript version): {exc}") from exc


@router.get("/api/sessions/{sid}/transcript")
async def transcript(
    request: Request, sid: str, p: Annotated[Principal, Depends(READ)], version: int | None = None
) -> JSONResponse:
    doc = await _doc(request, sid, version)
    await _audit(request, p, "transcript.view", sid, doc)
    return JSONResponse(doc)


@router.get("/api/sessions/{sid}/transcript/versions")
async def versions(request: Request, sid: str, p: Annotated[Principal, Depends(READ)]) -> JSONResponse:
    svc = _svc(request, sid)
    await _audit(request, p, "transcript.versions", sid, None)
    return JSONResponse({"session": sid, "versions": await run_in_threadpool(svc.versions, sid)})


@router.get("/api/sessions/{sid}/transcript.vtt")
async def vtt(
    request: Request, sid: str, p: Annotated[Principal, Depends(READ)], version: int | None = None
) -> Response:
    from tonglu.transcribe.exports import to_vtt

    doc = await _doc(request, sid, version)
    await _audit(request, p, "transcript.export.vtt", sid, doc)
    return Response(to_vtt(doc), media_type="text/vtt; charset=utf-8")


@router.get("/api/sessions/{sid}/transcript.srt")
async def srt(
    request: Request, sid: str, p: Annotated[Principal, Depends(READ)], version: int | None = None
) -> Response:
    from tonglu.transcribe.exports import to_srt

    doc = await _doc(request, sid, version)
    await _audit(request, p, "transcript.export.srt", sid, doc)
    return Response(to_srt(doc), media_type="application/x-subrip; charset=utf-8")


@router.get("/api/sessions/{sid}/transcript.docx")
async def docx(
    request: Request, sid: str, p: Annotated[Principal, Depends(READ)], version: int | None = None
) -> Response:
    from tonglu.transcribe.exports import to_docx

    doc = await _doc(request, sid, version)
    await _audit(request, p, "transcript.export.docx", sid, doc)
    svc = _svc(request, sid)
    start, _, _ = await run_in_threadpool(svc.session_facts, sid)
    data = await run_in_threadpool(to_docx, doc, start)
    return Response(
        data,
        media_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        headers={"Content-Disposition": f'attachment; filename="{sid}-transcript-v{doc["version"]}.docx"'},
    )


@router.get("/api/sessions/{sid}/transcript/live")
async def live(
    request: Request, sid: str, p: Annotated[Principal, Depends(READ)], poll_s: float = 0.5
) -> StreamingResponse:
    """Server-sent events: `line` for each live line (id = line id; resume with Last-Event-ID),
    `version` when a version is stored, `end` once the final version exists (then the stream closes)."""
    svc = _svc(request, sid)
    try:
        after = int(request.headers.get("last-event-id") or 0)
    except ValueError:
        after = 0
    poll = min(5.0, max(0.1, poll_s))
    await _audit(request, p, "transcript.live", sid, None)

    async def events() -> AsyncIterator[bytes]:
        nonlocal after
        seen_versions = 0
        yield b"retry: 2000\n\n"
        while not await request.is_disconnected():
            for line_id, item in await run_in_threadpool(svc.live_lines, sid, after):
                after = line_id
                yield f"id: {line_id}\nevent: line\ndata: {json.dumps(item, ensure_ascii=False)}\n\n".encode()
            vs = await run_in_threadpool(svc.versions, sid)
            for v in vs[seen_versions:]:
                yield f"event: version\ndata: {json.dumps(v, ensure_ascii=False)}\n\n".encode()
            seen_versions = len(vs)
            if any(v["origin"] == "final" for v in vs):
                yield b"event: end\ndata: {}\n\n"
                return
            await asyncio.sleep(poll)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


class CorrectionLine(BaseModel):
    start: str
    end: str
    speaker: str = ""
    text: str
    source: str | None = None
    track: str | None = None


class Correction(BaseModel):
    lines: list[CorrectionLine] = Field(min_length=1)
    base_version: int | None = None
    verified: bool = False
    note: str = ""


@router.post("/api/sessions/{sid}/transcript/corrections", status_code=201)
async def corrections(
    request: Request, sid: str, body: Correction, p: Annotated[Principal, Depends(WRITE)]
) -> JSONResponse:
    from tonglu.transcribe.errors import CorrectionError

    svc = _svc(request, sid)
    lines = [ln.model_dump(exclude_none=True) for ln in body.lines]
    try:
        doc = await run_in_threadpool(
            lambda: svc.correct(
                sid, lines, by=p.user, verified=body.verified, note=body.note, base_version=body.base_version
            )
        )
    except CorrectionError as exc:
        await _audit(request, p, "transcript.correct", sid, None, outcome="rejected")
        raise HTTPException(422, f"更正无效 (invalid correction): {exc}") from exc
    await _audit(request, p, "transcript.verify" if body.verified else "transcript.correct", sid, doc)
    return JSONResponse(doc, status_code=201)
