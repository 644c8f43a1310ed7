"""`HostRouter`: the web tier's recorder when recording happens on other hosts (`--role web`).

Recorder hosts register (`web/routes/recorders.py` → `register`) and heartbeat; `Placement` picks
the host for each new session by free capacity, and this adapter forwards every call for a
session to the host that owns it (`HttpRecorder` over the host's internal API, with the RPC
secret the host gave at registration). A timer probes each host's `/worker/health` and ticks the
placement: a host that misses heartbeats or probes is declared dead (`on_event(HostDead)`), calls
for its sessions answer 503 naming the host, and new sessions go elsewhere. When it registers
again (`HostReturned`) its own start-up recovery has sealed and spooled what the killed process
left, and its uploader sends it to the shared store; a publisher that reconnects continues the
session after a `recorder_restart` gap.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx

from tonglu.evidence.logctx import context_logger
from tonglu.recorder.errors import SessionNotFound, WorkerUnavailable
from tonglu.recorder.placement import HostInfo, HostState, NoCapacity, Placement
from tonglu.recorder.remote import SECRET_HEADER, HttpRecorder
from tonglu.recorder.router import RecorderRouter

log = context_logger(__name__)


class HostRouter(RecorderRouter):
    def __init__(
        self,
        placement: Placement,
        *,
        heartbeat_s: float = 2.0,
        on_event: Callable[[object], None] | None = None,
    ) -> None:
        self.placement = placement
        self.heartbeat_s = heartbeat_s
        self.on_event = on_event or (lambda ev: None)
        self.clients: dict[str, HttpRecorder] = {}
        self.host_keys: dict[str, bytes] = {}  # host -> raw public key (heartbeat proofs)
        self._task: asyncio.Task[None] | None = None

    # -- registration (called by the web route) -------------------------------------------------
    def register(self, info: HostInfo, rpc_secret: str, public_key: bytes, now_ns: int) -> list[object]:
        events = self.placement.register(info, now_ns)
        old = self.clients.get(info.host)
        if old is None or old.url != info.url.rstrip("/") or old.secret != rpc_secret:
            self.clients[info.host] = HttpRecorder(info.url, rpc_secret, name=f"{info.host}@{info.url}")
        self.host_keys[info.host] = public_key
        self._emit(events)
        return events

    def heartbeat(self, host: str, now_ns: int, sessions: list[str], recording: list[str]) -> list[object]:
        events = self.placement.heartbeat(host, now_ns, sessions=sessions, recording=recording)
        self._emit(events)
        return events

    def _emit(self, events: list[object]) -> None:
        for ev in events:
            log.warning("recorder host event: %s", ev)
            try:
                self.on_event(ev)
            except Exception:
                log.exception("recorder host event handler failed for %s", ev)

    # -- routing --------------------------------------------------------------------------------
    def _state(self, sid: str) -> HostState:
        state = self.placement.owner(sid)
        if state is None:
            raise SessionNotFound(f"会话不存在 (no recorder host holds session {sid})")
        if not state.alive:
            raise WorkerUnavailable(
                f"录像主机 {state.info.host} 失联，会话 {sid} 暂不可用 (recorder host {state.info.host} is "
                "unreachable; its sessions continue when it is back)"
            )
        return state

    def backend(self, sid: str) -> Any:
        return self.clients[self._state(sid).info.host]

    async def create_session(self, request: dict[str, Any], created_by: str) -> tuple[str, dict[str, str]]:
        slot = f"pending-{secrets.token_hex(8)}"
        try:
            state = self.placement.place(slot, time.time_ns())
        except NoCapacity as exc:
            raise WorkerUnavailable(str(exc)) from exc
        try:
            sid, tokens = await self.clients[state.info.host].create_session(request, created_by)
        except BaseException:
            state.recording.discard(slot)
            state.sessions.discard(slot)
            raise
        self.placement.rebind(slot, sid)
        return sid, tokens

    async def list_sessions(self) -> list[dict[str, Any]]:
        hosts = self.placement.live_hosts()
        results = await asyncio.gather(
            *(self.clients[h.info.host].list_sessions() for h in hosts), return_exceptions=True
        )
        out: list[dict[str, Any]] = []
        for h, r in zip(hosts, results, strict=True):
            if isinstance(r, BaseException):
                log.warning("recorder host %s did not list its sessions: %s", h.info.host, r)
                continue
            out.extend({**s, "recorder_host": h.info.host} for s in r)
        return sorted(out, key=lambda s: s.get("started_ns") or 0, reverse=True)

    async def stop(self, sid: str, stopped_by: str, reason: str = "") -> dict[str, Any]:
        result = await super().stop(sid, stopped_by, reason)
        self.placement.finished(sid)
        return result

    async def end_viewers(self, user: str, reason: str) -> int:
        ended = 0
        for h in self.placement.live_hosts():
            try:
                ended += int(await self.clients[h.info.host].end_viewers(user, reason))
            except WorkerUnavailable:
                continue
        return ended

    # -- liveness -------------------------------------------------------------------------------
    async def probe(self, host: str) -> bool:
        client = self.clients.get(host)
        if client is None:
            return False
        try:
            async with httpx.AsyncClient(timeout=max(0.5, self.heartbeat_s)) as http:
                r = await http.get(f"{client.url}/worker/health", headers={SECRET_HEADER: client.secret})
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            hosts = list(self.placement.hosts)
            results = await asyncio.gather(*(self.probe(h) for h in hosts))
            now = time.time_ns()
            events: list[object] = []
            for host, ok in zip(hosts, results, strict=True):
                events += self.placement.probe(host, ok, now)
            events += self.placement.tick(now)
            self._emit(events)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for client in self.clients.values():
            await client.close()
