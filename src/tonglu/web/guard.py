"""The guard: one ASGI middleware in front of every route, driven by the RBAC matrix.

For each HTTP request it finds the route, looks up its rule in `web.rbac.MATRIX` and
1. refuses bodies larger than the rule allows (413, before the route reads them);
2. refuses callers the rule does not admit (401 anonymous, 403 wrong role or another session's
   invitation; HTML page requests without a login are redirected to `/login`);
3. audits every call of a route whose rule names an audit action, with its outcome, *before*
   the response leaves: if the audit trail cannot be written, evidence is not served (503), and
   no change is made (writability is checked before a POST/PATCH/DELETE runs).
Routes still declare `require_roles(...)` themselves: the guard is a second, table-driven lock,
and the RBAC test checks both agree. Routes with no rule are passed through (their own
dependencies decide) and logged; the RBAC test fails on them.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tonglu.web.auth import Principal, bearer_token, resolve_principal
from tonglu.web.deps import get_services
from tonglu.web.rbac import PUBLIC, TOKEN, Rule, public, rule_for, session_id_from
from tonglu.web.routeindex import RouteIndex

log = logging.getLogger(__name__)
PUBLIC_MOUNTS = ("/static",)


def outcome_for(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    if status == 429:
        return "throttled"
    return "failed" if status < 500 else "error"


async def _send_json(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    raw = [(b"content-type", b"application/json; charset=utf-8"),
           (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    def __init__(self, app: ASGIApp, fastapi_app: Any) -> None:
        self.app = app
        self.index = RouteIndex(fastapi_app)
        self._warned: set[str] = set()

    def _match(self, scope: Scope) -> tuple[str | None, Rule | None, dict[str, Any]]:
        found = self.index.match(scope["method"], scope["path"])
        if found is None:
            return None, None, {}
        info, params = found
        if info.mount:
            return info.path, public() if info.path in PUBLIC_MOUNTS else rule_for("MOUNT", info.path), params
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        return info.path, rule_for(method, info.path), params

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        template, rule, params = self._match(scope)
        if template is None:  # 404 / 405: the router answers
            await self.app(scope, receive, send)
            return
        if rule is None:
            key = f"{scope['method']} {template}"
            if key not in self._warned:
                self._warned.add(key)
                log.warning("route %s has no RBAC rule in web/rbac.py", key)
            await self.app(scope, receive, send)
            return

        # 1. body size
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                await _send_json(send, 400, "Content-Length 无效 (invalid Content-Length)")
                return
            if int(length) > rule.max_body:
                await _send_json(
                    send, 413, f"请求体过大 (request body of {length} bytes exceeds {rule.max_body})"
                )
                return

        # 2. who is calling
        request = Request(scope)
        principal: Principal | None = None
        if rule.kind != PUBLIC:
            principal = await anyio.to_thread.run_sync(resolve_principal, request)
            scope.setdefault("state", {})["principal"] = principal
        session_id = session_id_from(params)
        refusal: tuple[int, str] | None = None
        # TOKEN routes (WHIP) check their own per-source Bearer token: any Bearer token passes here.
        token_route = rule.kind == TOKEN and principal is None and bearer_token(request) is not None
        if not token_route and not rule.allows(principal):
            refusal = (401, "未登录或令牌无效 (missing or invalid credentials)") if principal is None else (
                403, f"角色 {principal.role} 无权访问 (role not allowed)")
        elif principal is not None and principal.session_scope is not None and rule.kind != PUBLIC:
            if rule.scoped and session_id != principal.session_scope:
                refusal = (403, "邀请仅限于另一场讯问，无权访问本场 (invitation is bound to another session)")

        action = rule.audit
        audit = get_services(request).audit if action else None
        detail: dict[str, Any] = {"method": scope["method"], "route": template}
        if session_id is not None:
            detail["session"] = session_id

        async def write_audit(status: int) -> bool:
            if audit is None or action is None:
                return True
            try:
                await audit.arecord(principal, request, action, scope["path"], outcome_for(status),
                                    {**detail, "status": status})
            except Exception:
                log.exception("audit trail unavailable; refusing %s %s", scope["method"], scope["path"])
                return False
            return True

        if refusal is not None:
            status, message = refusal
            await write_audit(status)
            accept = headers.get("accept", "")
            is_page = scope["method"] == "GET" and "text/html" in accept and not template.startswith("/api/")
            if status == 401 and is_page:
                query = scope.get("query_string", b"").decode("latin-1")
                target = quote(scope["path"] + ("?" + query if query else ""))
                location = f"/login?next={target}".encode()
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", location), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await _send_json(send, status, message, {"WWW-Authenticate": "Bearer"} if status == 401 else None)
            return

        # 3. a change is only made when its audit record can be written afterwards
        if audit is not None and scope["method"] not in ("GET", "HEAD"):
            try:
                await anyio.to_thread.run_sync(audit.check_writable)
            except Exception:
                log.exception("audit trail unavailable; refusing %s %s", scope["method"], scope["path"])
                await _send_json(send, 503, "审计日志不可写，拒绝操作 (audit trail unavailable)")
                return

        # 4. run the route, counting the body and auditing before the response starts
        state = {"received": 0, "too_big": False, "replaced": False, "started": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > rule.max_body:
                    state["too_big"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["replaced"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
                if state["too_big"]:
                    state["replaced"] = True
                    await write_audit(413)
                    await _send_json(send, 413, f"请求体过大 (request body exceeds {rule.max_body} bytes)")
                    return
                if not await write_audit(int(message["status"])) and scope["method"] in ("GET", "HEAD"):
                    state["replaced"] = True
                    await _send_json(send, 503, "审计日志不可写，拒绝提供 (audit trail unavailable)")
                    return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if state["too_big"] and not state["started"]:
                await write_audit(413)
                await _send_json(send, 413, f"请求体过大 (request body exceeds {rule.max_body} bytes)")
                return
            raise
