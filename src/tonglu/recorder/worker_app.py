"""A recorder worker process: one `LocalRecorder` behind an internal HTTP API (see `recorder.remote`).

    POST /rpc/<method>      JSON keyword arguments -> 200 {"result": ...} | RecorderError status
                            {"error", "detail"}; 421 for a session another worker owns
    GET  /worker/status     pid, pinned cores, live sessions and track counters, event-loop lag
                            (`?since_ns=` limits the lag figures to ticks after that time)
    GET  /worker/health     200 once start-up recovery is done

Every request needs the shared secret in `X-Tonglu-Worker-Secret` (401 otherwise). The worker is
pinned to one core before anything starts a thread. At start it recovers the sessions it owns
(seals leftover staging files; the next publish continues with a `recorder_restart` gap); on
SIGTERM/SIGINT, or when its supervisor's pipe closes, it stops taking media, seals every open
segment, writes their entries, and exits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hmac
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tonglu.config import Settings
from tonglu.evidence.logctx import context_logger
from tonglu.recorder.errors import RecorderError
from tonglu.recorder.looplag import LoopLag
from tonglu.recorder.remote import FORWARDED, SECRET_HEADER

log = context_logger(__name__)


# -- settings across the process boundary ----------------------------------------------------------
def settings_to_json(settings: Settings) -> dict[str, Any]:
    return {f.name: (str(v) if isinstance(v, Path) else v) for f, v in _items(settings)}


def settings_from_json(data: dict[str, Any]) -> Settings:
    names = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    for name, value in data.items():
        f = names.get(name)
        if f is None:
            continue
        values[name] = Path(value) if "Path" in str(f.type) and isinstance(value, str) else value
    return Settings(**values)


def _items(settings: Settings) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
    for f in dataclasses.fields(settings):
        yield f, getattr(settings, f.name)


# -- pinning ---------------------------------------------------------------------------------------
def pin_to_core(index: int) -> int | None:
    """Pin this process (and every thread it starts later) to core `index` mod the usable cores."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    core = cores[index % len(cores)]
    os.sched_setaffinity(0, {core})
    return core


# -- the internal API ------------------------------------------------------------------------------
def _json(data: Any, status: int = 200) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(data, status_code=status)


def _error(status: int, name: str, detail: str) -> Any:
    return _json({"error": name, "detail": detail}, status)


class WorkerState:
    """What the internal API serves: the recorder, its routing share, and the lag monitor."""

    def __init__(
        self, recorder: Any, secret: str, index: int = 0, count: int = 1, owns: Callable[[str], bool] | None = None
    ) -> None:
        self.recorder = recorder
        self.secret = secret
        self.index = index
        self.count = count
        self.owns = owns or (lambda sid: True)
        self.lag = LoopLag()
        self.ready = False
        self.started_ns = time.time_ns()
        # Live viewers that ended here (connection lost, session stopped, DELETE): the web process
        # polls them so its audit trail records every `watch_stop`, as with an in-process recorder.
        self.ended: collections.deque[dict[str, Any]] = collections.deque(maxlen=4096)
        self.ended_seq = 0

    def viewer_ended(self, info: dict[str, Any]) -> None:
        self.ended_seq += 1
        self.ended.append({"seq": self.ended_seq, "info": info})

    def viewer_events(self, after: int) -> dict[str, Any]:
        return {"events": [e for e in self.ended if e["seq"] > after], "last": self.ended_seq}

    def authorized(self, headers: Any) -> bool:
        given = headers.get(SECRET_HEADER, "")
        return bool(given) and hmac.compare_digest(given.encode(), self.secret.encode())

    def status(self, since_ns: int | None, detail: bool) -> dict[str, Any]:
        totals = dict.fromkeys(
            ("tracks", "frames", "packets", "packets_lost", "queue_dropped", "waiting_for_keyframe_dropped"), 0
        )
        sessions: dict[str, Any] = {}
        for sid, live in list(getattr(self.recorder, "live", {}).items()):
            peers: dict[str, Any] = {}
            for source, peer in list(live.peers.items()):
                tracks = {name: t.stats() for name, t in list(peer.tracks.items())}
                for st in tracks.values():
                    totals["tracks"] += 1
                    for k in ("frames", "packets", "packets_lost", "queue_dropped", "waiting_for_keyframe_dropped"):
                        totals[k] += int(st.get(k) or 0)
                peers[source] = {"peer_id": peer.id, "state": peer.state, "closed": peer.closed, "tracks": tracks}
            sessions[sid] = peers
        extra = getattr(self.recorder, "totals", None)  # a recorder with its own counters (bench baseline)
        if callable(extra):
            for k, v in extra().items():
                totals[k] = totals.get(k, 0) + int(v)
        out: dict[str, Any] = {
            "index": self.index,
            "count": self.count,
            "pid": os.getpid(),
            "cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "started_ns": self.started_ns,
            "ready": self.ready,
            "sessions": sessions if detail else sorted(sessions),
            "totals": totals,
            "loop_lag_ms": self.lag.stats(since_ns),
        }
        return out


def create_worker_app(state: WorkerState) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route

    async def rpc(request: Request) -> Any:
        if not state.authorized(request.headers):
            return _error(401, "Unauthorized", "缺少或错误的工作进程密钥 (missing or wrong worker secret)")
        method = request.path_params["method"]
        fn = getattr(state.recorder, method, None) if method in FORWARDED else None
        if fn is None:
            return _error(404, "RecorderError", f"工作进程没有此操作 (worker has no method {method!r})")
        try:
            kwargs = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "BadRequest", "请求体不是 JSON (body is not JSON)")
        if not isinstance(kwargs, dict):
            return _error(400, "BadRequest", "请求体必须是对象 (body must be a JSON object)")
        sid = kwargs.get("sid")
        if isinstance(sid, str) and not state.owns(sid):
            return _error(
                421,
                "RecorderError",
                f"会话 {sid} 不归此工作进程 (session belongs to another recorder worker, not {state.index})",
            )
        if method in ("watch", "watch_party"):
            kwargs["on_end"] = state.viewer_ended
        try:
            result = await fn(**kwargs)
        except RecorderError as exc:
            return _error(exc.status, type(exc).__name__, exc.detail)
        except TypeError as exc:
            return _error(400, "BadRequest", f"参数错误 (bad arguments for {method}: {exc})")
        except Exception as exc:
            context_logger(__name__, session=sid if isinstance(sid, str) else None).exception(
                "worker call %s failed", method
            )
            return _error(500, "RecorderError", f"录像工作进程内部错误 (recorder worker error: {type(exc).__name__})")
        return _json({"result": result})

    async def viewer_events(request: Request) -> Any:
        if not state.authorized(request.headers):
            return _error(401, "Unauthorized", "缺少或错误的工作进程密钥 (missing or wrong worker secret)")
        try:
            after = int(request.query_params.get("after", "0"))
        except ValueError:
            return _error(400, "BadRequest", "after 必须是整数 (after must be an integer)")
        return _json(state.viewer_events(after))

    async def status(request: Request) -> Any:
        if not state.authorized(request.headers):
            return _error(401, "Unauthorized", "缺少或错误的工作进程密钥 (missing or wrong worker secret)")
        since = request.query_params.get("since_ns")
        detail = request.query_params.get("detail", "1") != "0"
        try:
            since_ns = int(since) if since else None
        except ValueError:
            return _error(400, "BadRequest", f"since_ns 不是整数 (since_ns is not an integer: {since!r})")
        return _json(state.status(since_ns, detail))

    async def health(request: Request) -> Any:
        if not state.authorized(request.headers):
            return _error(401, "Unauthorized", "缺少或错误的工作进程密钥 (missing or wrong worker secret)")
        if not state.ready:
            return _error(503, "WorkerUnavailable", "工作进程正在启动 (recorder worker starting)")
        return _json({"ok": True, "index": state.index, "pid": os.getpid()})

    return Starlette(
        routes=[
            Route("/rpc/{method}", rpc, methods=["POST"]),
            Route("/worker/status", status, methods=["GET"]),
            Route("/worker/viewer-events", viewer_events, methods=["GET"]),
            Route("/worker/health", health, methods=["GET"]),
        ]
    )


# -- the process ---------------------------------------------------------------------------------
def _server_class() -> type:
    import uvicorn

    class _Server(uvicorn.Server):
        """Signals are handled by `serve_worker` (uvicorn would re-raise them after shutdown and
        kill the process before open segments are sealed)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return _Server


def build_recorder(settings: Settings, index: int, count: int, queue_limit: int | None = None) -> Any:
    """The worker's `LocalRecorder`, owning the sessions routed to `index` of `count`."""
    from tonglu.evidence.hostcert import checkpoint_signer
    from tonglu.evidence.ledger import Ledger
    from tonglu.evidence.spool import Spool
    from tonglu.recorder.local import LocalRecorder
    from tonglu.recorder.router import owner_index

    spool = Spool(settings.spool_dir)
    ledger = Ledger(settings.ledger_dir, spool, checkpoint_signer(settings.keys_dir))
    index_db: Any = None
    try:
        from tonglu.evidence.index import Index

        index_db = Index(settings.db_url)
    except Exception as exc:  # the index is a cache: record without it, reindex later
        log.warning("index DB unavailable in recorder worker %d (%s); recording goes on", index, exc)
    return LocalRecorder(settings, spool, ledger, index_db, owns=lambda sid: owner_index(sid, count) == index)


async def serve_worker(
    settings: Settings,
    secret: str,
    sock: socket.socket,
    *,
    index: int = 0,
    count: int = 1,
    on_ready: Callable[[], None] | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (or `stop_event`): recover, serve, then seal and close."""
    import uvicorn

    recorder = build_recorder(settings, index, count)
    state = WorkerState(recorder, secret, index, count, owns=recorder.owns)
    config = uvicorn.Config(create_worker_app(state), log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    server = _server_class()(config)
    loop = asyncio.get_running_loop()

    def ask_exit() -> None:
        server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, ask_exit)
    if stop_event is not None:
        threading.Thread(target=lambda: (stop_event.wait(), loop.call_soon_threadsafe(ask_exit)), daemon=True).start()
    lag_task = asyncio.ensure_future(state.lag.run())
    try:
        await recorder.start()  # recovery before the first request is answered (they wait in the backlog)
        state.ready = True
        log.info(
            "recorder worker %d/%d ready (pid %d, cores %s)",
            index,
            count,
            os.getpid(),
            state.status(None, False)["cores"],
        )
        if on_ready is not None:
            on_ready()
        await server.serve(sockets=[sock])
    finally:
        log.info("recorder worker %d stopping: sealing open segments", index)
        await recorder.close()
        lag_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag_task
        log.info("recorder worker %d stopped", index)


def watch_parent(stop: threading.Event) -> None:
    """Supervised workers keep their stdin pipe open: EOF means the supervisor is gone."""

    def run() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):  # the raw fd: a daemon thread must not hold a buffer's lock at exit
                pass
        stop.set()

    threading.Thread(target=run, name="parent-watch", daemon=True).start()
