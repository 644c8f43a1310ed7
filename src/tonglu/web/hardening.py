"""Two small ASGI middlewares every response goes through.

- `JsonDepthLimit`: a JSON body nested deeper than `MAX_JSON_DEPTH` is refused with 400 and a
  reason before any route parses it (deep nesting made the parsers recurse until Python gave up:
  500). It sits inside the guard, so the body it reads is already size-limited.
- `SecurityHeaders`: a NUL character in the path or query is refused with 400 (PostgreSQL cannot
  store one: a lookup by such an id failed with 500), `X-Content-Type-Options: nosniff` everywhere, and a strict
  Content-Security-Policy on every HTML response that does not bring its own (pages set one with a
  per-response nonce in `web/templating.py`; the HTML report and anything else get `HTML_CSP`:
  no script at all).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_DEPTH = 64
NUL_REASON = "请求含有 NUL 字符 (a NUL character in the request path or query)"
# For HTML with no script of its own (the integrity report, error pages): nothing but inline
# styles and data: images, nothing from anywhere, never framed.
HTML_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def json_depth(body: bytes) -> int:
    """How deep arrays/objects nest in `body` (brackets inside strings do not count). Linear time;
    meant for bodies the guard has already size-limited."""
    skeleton = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    if not skeleton:
        return 0
    return max(0, max(accumulate(map(_STEP.__getitem__, skeleton))))


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return ""


class JsonDepthLimit:
    def __init__(self, app: ASGIApp, max_depth: int = MAX_JSON_DEPTH) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctype = _header(scope, b"content-type").lower() if scope["type"] == "http" else "x"
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or (ctype and "json" not in ctype):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        end: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                end = message  # a disconnect (or the guard's "too big"): the route sees it as before
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if end is None and body:
            depth = json_depth(body) if len(body) < 256 * 1024 else await anyio.to_thread.run_sync(json_depth, body)
            if depth > self.max_depth:
                detail = f"JSON 嵌套过深 (JSON nested {depth} levels deep; at most {self.max_depth})"
                payload = json.dumps({"detail": detail}, ensure_ascii=False).encode()
                await send({"type": "http.response.start", "status": 400, "headers": [
                    (b"content-type", b"application/json; charset=utf-8"),
                    (b"content-length", str(len(payload)).encode())]})
                await send({"type": "http.response.body", "body": payload})
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return end if end is not None else {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html") and b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", HTML_CSP.encode()))
                    if b"x-frame-options" not in names:
                        headers.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": headers}
            await send(message)

        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"").lower():
            # no id, name or filter holds a NUL; PostgreSQL refuses one in a string (an error, 500)
            body = json.dumps({"detail": NUL_REASON}, ensure_ascii=False).encode()
            await send_with_headers({"type": "http.response.start", "status": 400,
                                     "headers": [(b"content-type", b"application/json"),
                                                 (b"content-length", str(len(body)).encode())]})
            await send_with_headers({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send_with_headers)
