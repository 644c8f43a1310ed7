"""Answers shared by the WHIP and WHEP resources (RFC 9725 / draft-ietf-wish-whep)."""

from __future__ import annotations

from fastapi.responses import JSONResponse, Response


def options_answer() -> Response:
    """The endpoint accepts an SDP offer by POST."""
    return Response(status_code=204, headers={"Allow": "POST, OPTIONS", "Accept-Post": "application/sdp"})


def patch_not_supported(how_to_reconnect: str) -> JSONResponse:
    """aiortc has no trickle ICE and no ICE restart: the client reconnects with a new offer."""
    return JSONResponse(
        {
            "detail": "不支持 trickle ICE / ICE 重启 "
            f"(trickle ICE and ICE restart are not supported: {how_to_reconnect})"
        },
        status_code=405,
        headers={"Allow": "DELETE"},
    )
