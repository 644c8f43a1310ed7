"""The guard: one ASGI middleware in front of every route, driven by the RBAC matrix.

For each HTTP request it finds the route, looks up its rule in `web.rbac.MATRIX` and
1. refuses bodies larger than the rule allows (413, before the route reads them);
2. refuses callers the rule does not admit (401 anonymous, 403 wrong role; HTML page requests
   without a login are redirected to `/login`), and callers bound to some sessions (interviewers,
   invitations) that reach another session: 404, exactly as for a session that does not exist
   (`rbac.may_access_session`), on every route with a session id in its path, new ones included;
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
from tonglu.web.rbac import (
    PUBLIC,
    TOKEN,
    Rule,
    may_access_session,
    no_session_detail,
    public,
    rule_for,
    session_bound,
    session_id_from,
)
from tonglu.web.routeindex import RouteIndex
from tonglu.web.services import Services

log = logging.getLogger(__name__)
PUBLIC_MOUNTS = ("/static",)


_START_CACHE_MAX = 4096


def session_start_body(services: Services, session_id: str) -> dict[str, Any] | None:
    """The ownership facts of a session (`created_by`, `interviewers` of its `session_start`), or
    None for no such session. `session_start` never changes, so it is cached per process (blocking:
    call from a thread)."""
    from tonglu.evidence.keys import safe_id

    cache = services.session_owners
    hit = cache.get(session_id)
    if hit is not None:
        return hit
    try:
        safe_id(session_id, "session id")
        if not services.ledger.has(session_id):
            return None
        entries = services.ledger.entries(session_id)
    except Exception:  # an invalid id or an unreadable session: not one this caller may reach
        return None
    if not entries or entries[0].kind != "session_start":
        return None
    body = {k: entries[0].body.get(k) for k in ("created_by", "interviewers", "room")}
    if len(cache) >= _START_CACHE_MAX:
        cache.clear()
    cache[session_id] = body
    return body


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

    @staticmethod
    async def _owner_refuses(request: Request, principal: Principal, session_id: str) -> bool:
        """True when `principal` is bound to some sessions and `session_id` is not one of them."""
        if not session_bound(principal):
            return False
        start = await anyio.to_thread.run_sync(session_start_body, get_services(request), session_id)
        return not may_access_session(principal, session_id, start)

    async def _foreign(self, request: Request, params: dict[str, Any]) -> Principal | None:
        """For a route without a rule: the caller, when it reaches a session it is not bound to."""
        session_id = session_id_from(params)
        principal = await anyio.to_thread.run_sync(resolve_principal, request)
        if principal is None or session_id is None:
            return None
        return principal if await self._owner_refuses(request, principal, session_id) else None

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
            # even without a rule, a session id in the path is bound to the session's people
            if session_id_from(params) is not None and await self._foreign(Request(scope), params) is not None:
                await _send_json(send, 404, no_session_detail(str(session_id_from(params))))
                return
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
        detail_extra: dict[str, str] = {}
        # TOKEN routes (WHIP) check their own per-source Bearer token: any Bearer token passes here.
        token_route = rule.kind == TOKEN and principal is None and bearer_token(request) is not None
        if principal is not None and session_id is not None and await self._owner_refuses(request, principal,
                                                                                           session_id):
            # ownership first: an interviewer reaches its own sessions, an invitation its one session;
            # any other session answers like one that does not exist, whatever the route (no oracle)
            refusal = (404, no_session_detail(session_id))
            detail_extra = {"refused": "not_this_sessions_people"}  # in the trail: denied, not a miss
        elif not token_route and not rule.allows(principal):
            refusal = (401, "未登录或令牌无效 (missing or invalid credentials)") if principal is None else (
                403, f"角色 {principal.role} 无权访问 (role not allowed)")

        action = rule.audit
        audit = get_services(request).audit if action else None
        detail: dict[str, Any] = {"method": scope["method"], "route": template}
        if session_id is not None:
            detail["session"] = session_id

        async def write_audit(status: int) -> bool:
            if audit is None or action is None:
                return True
            try:
                outcome = "denied" if detail_extra else outcome_for(status)
                await audit.arecord(principal, request, action, scope["path"], outcome,
                                    {**detail, **detail_extra, "status": status})
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
