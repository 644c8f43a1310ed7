"""`HttpRecorder`: the recorder interface (`recorder.api.RecorderAPI`) over HTTP, to one worker.

A worker (`tonglu recorder worker`, `recorder.worker_app`) runs a `LocalRecorder` behind an
internal API on 127.0.0.1 (or a private network): `POST /rpc/<method>` with the keyword
arguments as a JSON object, authenticated by the shared secret in `SECRET_HEADER`.

- Answers: 200 `{"result": ...}`; an error `{"error": <RecorderError class name>, "detail": ...}`
  with that error's HTTP status, re-raised here as the same class, so the web routes answer
  exactly as they do for an in-process recorder. A worker that cannot be reached (refused, reset,
  timed out) is `WorkerUnavailable` (503) naming the worker and the cause.
- Creating and listing sessions need no media process: with a `SessionStore` (the web process
  shares the ledger and the index DB with the workers) they are answered here.
- Only the methods in `FORWARDED` may be called on a worker. Adding one is one line there plus a
  one-line method below (`return await self.call("name", arg=arg, ...)`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tonglu.recorder.errors import ERRORS, RecorderError, WorkerUnavailable
from tonglu.recorder.store import SessionStore

SECRET_HEADER = "X-Tonglu-Worker-Secret"
FORWARDED: frozenset[str] = frozenset(
    {
        "create_session",
        "list_sessions",
        "status",
        "publish",
        "unpublish",
        "stop",
        # live viewing and remote participants (recorder.whep, recorder.participants)
        "watch",
        "unwatch",
        "monitoring",
        "check_source_token",
        "join_participant",
        "leave_participant",
        "cut_off_participant",
        "end_viewers",
        "watch_party",
        "consultation",
        # the session's chain for the web tier on another host (recorder.hostledger)
        "ledger_entries",
        "ledger_append",
    }
)
# how long one call may take: a stop seals every open segment and signs the final checkpoint
TIMEOUT_S = {"stop": 120.0, "publish": 30.0, "watch": 30.0}
DEFAULT_TIMEOUT_S = 30.0


def error_from(status: int, body: Any, worker: str) -> RecorderError:
    """The exception a worker's error answer stands for (same class, same status)."""
    name = body.get("error") if isinstance(body, dict) else None
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str):
        detail = f"录像工作进程 {worker} 返回 HTTP {status} (recorder worker answered HTTP {status})"
    cls = ERRORS.get(name) if isinstance(name, str) else None
    exc = (cls or RecorderError)(detail)
    if exc.status != status:
        exc.status = status  # e.g. 421 (session routed to the wrong worker), 401 (wrong secret)
    return exc


def result_of(r: httpx.Response, worker: str) -> Any:
    """The `result` of a 200 answer, else the error it stands for (`error_from`)."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code == 200 and isinstance(body, dict) and "result" in body:
        return body["result"]
    raise error_from(r.status_code, body, worker)


class HttpRecorder:
    def __init__(self, url: str, secret: str, *, store: SessionStore | None = None, name: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.secret = secret
        self.store = store
        self.name = name or self.url
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._on_end: dict[str, Any] = {}  # viewer id -> the web layer's end hook (audit)
        self._events_after = 0
        self._poller: asyncio.Task[None] | None = None

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = self._clients[loop] = httpx.AsyncClient(
                base_url=self.url,
                headers={SECRET_HEADER: self.secret},
                timeout=httpx.Timeout(DEFAULT_TIMEOUT_S, connect=5.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
        return client

    async def call(self, method: str, **kwargs: Any) -> Any:
        if method not in FORWARDED:
            raise ValueError(f"{method!r} is not forwarded to recorder workers")
        try:
            r = await self._client().post(
                f"/rpc/{method}", json=kwargs, timeout=TIMEOUT_S.get(method, DEFAULT_TIMEOUT_S)
            )
        except httpx.TransportError as exc:
            raise WorkerUnavailable(
                f"录像工作进程不可达 (recorder worker {self.name} unreachable: {type(exc).__name__} {exc})"
            ) from exc
        return result_of(r, self.name)

    async def worker_status(self, since_ns: int | None = None, detail: bool = True) -> dict[str, Any]:
        """The worker's own state: pid, pinned core, live tracks, event-loop lag (not a session)."""
        params: dict[str, Any] = {"detail": "1" if detail else "0"}
        if since_ns is not None:
            params["since_ns"] = str(since_ns)
        try:
            r = await self._client().get("/worker/status", params=params)
        except httpx.TransportError as exc:
            raise WorkerUnavailable(f"录像工作进程不可达 (recorder worker {self.name} unreachable: {exc})") from exc
        if r.status_code != 200:
            raise error_from(r.status_code, r.json() if r.content else None, self.name)
        result: dict[str, Any] = r.json()
        return result

    # -- RecorderAPI ---------------------------------------------------------------------------
    async def create_session(self, request: dict[str, Any], created_by: str) -> tuple[str, dict[str, str]]:
        if self.store is not None:
            return await asyncio.to_thread(self.store.create, request, created_by)
        sid, tokens = await self.call("create_session", request=request, created_by=created_by)
        return sid, tokens

    async def list_sessions(self) -> list[dict[str, Any]]:
        if self.store is not None:
            return await asyncio.to_thread(self.store.list)
        result: list[dict[str, Any]] = await self.call("list_sessions")
        return result

    async def status(self, sid: str) -> dict[str, Any]:
        return await self.call("status", sid=sid)

    async def publish(self, sid: str, source: str, token: str | None, offer: str) -> dict[str, Any]:
        return await self.call("publish", sid=sid, source=source, token=token, offer=offer)

    async def unpublish(self, sid: str, source: str, peer_id: str, token: str | None) -> None:
        await self.call("unpublish", sid=sid, source=source, peer_id=peer_id, token=token)

    async def stop(self, sid: str, stopped_by: str, reason: str = "") -> dict[str, Any]:
        return await self.call("stop", sid=sid, stopped_by=stopped_by, reason=reason)

    async def watch(
        self, sid: str, source: str, offer: str, viewer: dict[str, str], on_end: Any = None
    ) -> dict[str, Any]:
        # `on_end` cannot cross to the worker: the worker keeps a log of ended viewers, polled here.
        result: dict[str, Any] = await self.call("watch", sid=sid, source=source, offer=offer, viewer=viewer)
        if on_end is not None:
            self._on_end[result["viewer_id"]] = on_end
            if self._poller is None or self._poller.done():
                self._poller = asyncio.get_running_loop().create_task(self._poll_viewer_events())
        return result

    async def _poll_viewer_events(self, interval_s: float = 1.0) -> None:
        while self._on_end:
            await asyncio.sleep(interval_s)
            try:
                r = await self._client().get("/worker/viewer-events", params={"after": str(self._events_after)})
                body = r.json() if r.status_code == 200 else None
            except (httpx.TransportError, ValueError):
                continue  # the worker restarts: its viewers ended with it, see below
            if body is None:
                continue
            if body["last"] < self._events_after:  # a restarted worker: every viewer it had is gone
                for vid in list(self._on_end):
                    self._on_end.pop(vid)({"viewer_id": vid, "reason": "worker_restart"})
                self._events_after = 0
                continue
            for event in body["events"]:
                hook = self._on_end.pop(event["info"].get("viewer_id"), None)
                if hook is not None:
                    hook(event["info"])
            self._events_after = body["last"]

    async def unwatch(self, sid: str, source: str, viewer_id: str, user: str | None = None) -> dict[str, Any] | None:
        return await self.call("unwatch", sid=sid, source=source, viewer_id=viewer_id, user=user)

    async def monitoring(self, sid: str) -> dict[str, Any]:
        return await self.call("monitoring", sid=sid)

    async def check_source_token(self, sid: str, source: str, token: str | None) -> None:
        await self.call("check_source_token", sid=sid, source=source, token=token)

    async def join_participant(self, sid: str, source: str, name: str, role: str, expires_ns: int | None = None) -> str:
        return await self.call(
            "join_participant", sid=sid, source=source, name=name, role=role, expires_ns=expires_ns
        )

    async def cut_off_participant(self, sid: str, source: str, reason: str, by: str) -> dict[str, Any]:
        return await self.call("cut_off_participant", sid=sid, source=source, reason=reason, by=by)

    async def end_viewers(self, user: str, reason: str) -> int:
        return await self.call("end_viewers", user=user, reason=reason)

    async def leave_participant(self, sid: str, source: str, by: str) -> None:
        await self.call("leave_participant", sid=sid, source=source, by=by)

    async def watch_party(
        self, sid: str, offer: str, viewer: dict[str, Any], on_end: Any = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("watch_party", sid=sid, offer=offer, viewer=viewer)
        if on_end is not None:
            self._on_end[result["viewer_id"]] = on_end
            if self._poller is None or self._poller.done():
                self._poller = asyncio.get_running_loop().create_task(self._poll_viewer_events())
        return result

    async def consultation(
        self, sid: str, action: str, by: str, lawyer: str | None = None, defendant: str | None = None
    ) -> dict[str, Any]:
        return await self.call("consultation", sid=sid, action=action, by=by, lawyer=lawyer, defendant=defendant)

    async def ledger_entries(self, sid: str, after: int = 0) -> list[str]:
        result: list[str] = await self.call("ledger_entries", sid=sid, after=after)
        return result

    async def ledger_append(self, sid: str, kind: str, body: dict[str, Any], while_recording: bool = False) -> str:
        result: str = await self.call("ledger_append", sid=sid, kind=kind, body=body, while_recording=while_recording)
        return result

    async def start(self) -> None:
        """Nothing to start: the worker process recovers its own sessions when it starts."""

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        clients, self._clients = self._clients, {}
        loop = asyncio.get_running_loop()
        for client_loop, client in clients.items():
            if client_loop is loop:
                await client.aclose()
