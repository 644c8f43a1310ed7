"""WHIP ingest (RFC 9725).

POST    /whip/{session}/{source}            application/sdp offer, Bearer source token
                                            -> 201, SDP answer, Location, ETag
DELETE  /whip/{session}/{source}/{peer}     ends that peer (the session goes on)
OPTIONS /whip/{session}/{source}            204, Accept-Post: application/sdp
PATCH   /whip/{session}/{source}/{peer}     405: no trickle ICE / ICE restart (aiortc has none);
                                            a client that lost its connection POSTs a new offer

The in-room capture page that publishes here is `web/routes/capture.py`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tonglu.web.auth import bearer_token
from tonglu.web.deps import get_recorder
from tonglu.web.sdp_http import options_answer, patch_not_supported

router = APIRouter(tags=["whip"])
MAX_OFFER_BYTES = 64 * 1024


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


async def _read_limited(request: Request) -> bytes | None:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > MAX_OFFER_BYTES:
                return None
        except ValueError:
            pass
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_OFFER_BYTES:
            return None
    return bytes(data)


@router.post("/whip/{sid}/{source}")
async def whip_post(sid: str, source: str, request: Request) -> Response:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        return _error(415, f"需要 application/sdp (Content-Type must be application/sdp, got {ctype or 'none'!r})")
    body = await _read_limited(request)
    if body is None:
        return _error(413, f"SDP 超过 64 KiB (offer larger than {MAX_OFFER_BYTES} bytes)")
    try:
        offer = body.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "SDP 不是 UTF-8 文本 (offer is not UTF-8 text)")
    result = await get_recorder(request).publish(sid, source, bearer_token(request), offer)
    location = f"/whip/{sid}/{source}/{result['peer_id']}"
    return Response(
        content=result["sdp"],
        status_code=201,
        media_type="application/sdp",
        headers={"Location": location, "ETag": result["etag"]},
    )


@router.delete("/whip/{sid}/{source}/{peer_id}")
async def whip_delete(sid: str, source: str, peer_id: str, request: Request) -> Response:
    await get_recorder(request).unpublish(sid, source, peer_id, bearer_token(request))
    return Response(status_code=200)


@router.options("/whip/{sid}/{source}")
async def whip_options(sid: str, source: str) -> Response:
    return options_answer()


@router.patch("/whip/{sid}/{source}/{peer_id}")
async def whip_patch(sid: str, source: str, peer_id: str) -> Response:
    return patch_not_supported("POST a new offer with the same token to reconnect")
