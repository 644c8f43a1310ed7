"""笔录 (signed written record) import and its comparison with the recording.

    POST /api/sessions/{sid}/record-document               multipart `file` (DOCX or text) or JSON {"text": ...}
                                                           -> 201 the `record_document` manifest entry
                                                              (200 with the same entry when those bytes are
                                                              already imported)
    GET  /api/sessions/{sid}/record-document/comparison    findings + side by side + both inputs' hashes

Refusals (nothing is stored): 413 over 5 MB, 415 not a DOCX/text document, 422 no 问/答 lines or a
bad body, 400 empty, 404 unknown session (or, for the comparison, no record / no transcript yet).
Import: admin, interviewer (who make and have the record signed). Comparison: who may read the session.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tonglu.integrity import bilu
from tonglu.integrity.errors import IntegrityError, RecordDocumentError, UnknownSession
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services
from tonglu.web.rbac import OPERATE, READ_SESSION, require_session_access

router = APIRouter(tags=["records"])
Importer = Annotated[Principal, Depends(require_roles(*OPERATE))]
Reader = Annotated[Principal, Depends(require_roles(*READ_SESSION))]
MULTIPART_SLACK = 256 * 1024  # form boundaries and headers around the file


def _store(request: Request) -> Any:
    from tonglu.integrity.bilu_store import RecordStore
    from tonglu.integrity.service import Review

    return RecordStore.from_review(Review.from_services(get_services(request)))


def _http(exc: IntegrityError) -> HTTPException:
    if isinstance(exc, UnknownSession):
        return HTTPException(404, detail=str(exc))
    if isinstance(exc, RecordDocumentError):
        return HTTPException(exc.status, detail=str(exc))
    return HTTPException(500, detail=str(exc))


async def _payload(request: Request) -> tuple[bytes | None, str | None, str]:
    """(file bytes, pasted text, file name) from a multipart form or a JSON body."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4, max_part_size=bilu.MAX_BYTES + MULTIPART_SLACK)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            text = form.get("text")
            if isinstance(text, str):
                return None, text, ""
            raise HTTPException(422, detail="缺少 file 字段 (multipart form needs a `file` part or a `text` field)")
        data = await upload.read(bilu.MAX_BYTES + 1)
        return data, None, upload.filename or "笔录"
    if ctype.startswith("application/json"):
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise HTTPException(422, detail=f"JSON 无效 (invalid JSON): {exc}") from exc
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise HTTPException(422, detail='JSON 需要 {"text": "..."} (JSON body needs a string `text`)')
        return None, body["text"], ""
    raise HTTPException(
        415, detail="请上传文件（multipart/form-data）或 JSON {\"text\": ...} (send a multipart file or JSON text)"
    )


@router.post("/api/sessions/{sid}/record-document", status_code=201)
async def import_record(request: Request, sid: str, p: Importer) -> JSONResponse:
    """导入已签名的笔录 Import the signed written record (DOCX, text file, or pasted text)."""
    require_session_access(p, sid)
    data, text, name = await _payload(request)
    store = _store(request)
    try:
        if data is not None:
            if len(data) > bilu.MAX_BYTES:
                raise HTTPException(
                    413, detail=f"文件超过上限 {bilu.MAX_BYTES} 字节 (the document exceeds {bilu.MAX_BYTES} bytes)"
                )
            entry, created = await run_in_threadpool(lambda: store.import_bytes(sid, data, name=name, by=p.user))
        else:
            assert text is not None
            if len(text.encode("utf-8")) > bilu.MAX_BYTES:
                raise HTTPException(
                    413, detail=f"文本超过上限 {bilu.MAX_BYTES} 字节 (the text exceeds {bilu.MAX_BYTES} bytes)"
                )
            entry, created = await run_in_threadpool(lambda: store.import_text(sid, text, by=p.user))
    except IntegrityError as exc:
        raise _http(exc) from exc
    return JSONResponse({**entry, "created": created}, status_code=201 if created else 200)


@router.get("/api/sessions/{sid}/record-document/comparison")
def record_comparison(request: Request, sid: str, p: Reader) -> JSONResponse:
    """笔录与录音录像比对 The record vs the transcript of the recording: findings (inserted, omitted,
    changed: negation_flipped, number_changed, name_changed, text_changed) with recording times, the
    side-by-side rows, and the SHA-256 of both inputs (record file, transcript version)."""
    require_session_access(p, sid)
    try:
        return JSONResponse(_store(request).comparison(sid))
    except IntegrityError as exc:
        raise _http(exc) from exc
