"""Start, supervise and stop the recorder worker processes (one per core, each pinned).

    handle = start_workers(settings, n)     # n processes, worker i pinned to core i mod ncpu
    router = build_router(settings, services, worker_urls=handle.urls, secret=handle.secret)
    handle.alive()                          # every worker running (health check)
    handle.stop()                           # SIGTERM: seal open segments, write entries, exit

The supervisor (this process) binds each worker's listening socket on 127.0.0.1 and hands it to
the worker (`--fd`): the URL stays the same for the life of the handle. A worker that dies is
started again on the same socket; requests sent meanwhile wait in the socket's backlog and are
answered by the new process once its start-up recovery is done (it seals the staging files the
dead one left, and the next publish continues the session with a `recorder_restart` gap). The
shared secret is generated here and given to each worker on its stdin, never on its command line.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx

from tonglu.config import Settings
from tonglu.evidence.logctx import context_logger
from tonglu.recorder.errors import WorkerUnavailable
from tonglu.recorder.remote import SECRET_HEADER
from tonglu.recorder.worker_app import settings_to_json

log = context_logger(__name__)
POLL_S = 0.2
START_TIMEOUT_S = 60.0
MAX_BACKOFF_S = 30.0


@dataclass
class WorkerProcess:
    index: int
    sock: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0
    fast_deaths: int = 0
    next_start: float = 0.0

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class WorkersHandle:
    settings: Settings
    secret: str
    workers: list[WorkerProcess]
    restart_dead: bool = True
    extra_args: list[str] = field(default_factory=list)
    _stopping: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _supervisor: threading.Thread | None = None

    @property
    def urls(self) -> list[str]:
        return [w.url for w in self.workers]

    @property
    def pids(self) -> list[int | None]:
        return [w.proc.pid if w.proc is not None else None for w in self.workers]

    @property
    def restarts(self) -> int:
        return sum(w.restarts for w in self.workers)

    def alive(self) -> bool:
        return not self._stopping and all(w.running for w in self.workers)

    # -- processes ----------------------------------------------------------------------------
    def _spawn(self, w: WorkerProcess) -> None:
        fd = w.sock.fileno()
        argv = [
            sys.executable, "-m", "tonglu.cli", "recorder", "worker",
            "--index", str(w.index), "--count", str(len(self.workers)), "--fd", str(fd), "--config-stdin",
            *self.extra_args,
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(fd,))
        assert proc.stdin is not None
        config = {"settings": settings_to_json(self.settings), "secret": self.secret}
        proc.stdin.write(json.dumps(config).encode() + b"\n")
        proc.stdin.flush()  # the pipe stays open: the worker exits when it closes (we are gone)
        w.proc, w.started = proc, time.monotonic()

    def _supervise(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            with self._lock:
                for w in self.workers:
                    if self._stopping or w.proc is None or w.proc.poll() is None:
                        continue
                    if w.next_start == 0.0:
                        code = w.proc.returncode
                        # a worker that keeps dying at start-up is retried less and less often
                        w.fast_deaths = w.fast_deaths + 1 if now - w.started < 5.0 else 0
                        delay = min(MAX_BACKOFF_S, 0.5 * (2**w.fast_deaths - 1))
                        w.next_start = now + delay
                        log.warning(
                            "recorder worker %d (pid %d) exited with %s; restarting it in %.1f s",
                            w.index, w.proc.pid, code, delay,
                        )  # fmt: skip
                    if now >= w.next_start and self.restart_dead:
                        _close_stdin(w.proc)
                        w.restarts += 1
                        w.next_start = 0.0
                        self._spawn(w)
            time.sleep(POLL_S)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until every worker answers its health check (its start-up recovery is done)."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.workers)
        with httpx.Client(headers={SECRET_HEADER: self.secret}, timeout=2.0) as client:
            while pending:
                w = pending[0]
                if w.proc is not None and w.proc.poll() is not None and not self.restart_dead:
                    raise WorkerUnavailable(
                        f"录像工作进程启动失败 (recorder worker {w.index} exited with {w.proc.returncode})"
                    )
                try:
                    if client.get(f"{w.url}/worker/health").status_code == 200:
                        pending.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise WorkerUnavailable(
                        f"录像工作进程未就绪 (recorder worker {w.index} not ready after {timeout_s:.0f} s)"
                    )
                time.sleep(0.1)

    def kill(self, index: int, sig: int = signal.SIGKILL) -> int:
        """Signal one worker (tests and drills); the supervisor restarts it. Returns its pid."""
        w = self.workers[index]
        assert w.proc is not None
        w.proc.send_signal(sig)
        return w.proc.pid

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every worker (they seal open segments and write their entries), SIGKILL after
        `timeout_s`, then release the sockets."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.join(5)
        with self._lock:
            procs = [w.proc for w in self.workers if w.proc is not None]
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            for p in procs:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("recorder worker pid %d did not stop in %.0f s; killing it", p.pid, timeout_s)
                    p.kill()
                    p.wait()
                _close_stdin(p)
            for w in self.workers:
                w.sock.close()


def _close_stdin(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass


def listen_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(256)
    sock.set_inheritable(False)  # handed only to its own worker (pass_fds)
    return sock


def start_workers(
    settings: Settings,
    n: int,
    *,
    restart_dead: bool = True,
    wait: bool = True,
    extra_args: list[str] | None = None,
) -> WorkersHandle:
    """Start `n` recorder worker processes on 127.0.0.1 (worker i pinned to core i mod ncpu)."""
    if n < 1:
        raise ValueError("start_workers needs n >= 1")
    handle = WorkersHandle(
        settings,
        secrets.token_urlsafe(32),
        [WorkerProcess(i, listen_socket()) for i in range(n)],
        restart_dead=restart_dead,
        extra_args=list(extra_args or []),
    )
    try:
        for w in handle.workers:
            handle._spawn(w)
        handle._supervisor = threading.Thread(target=handle._supervise, name="recorder-supervisor", daemon=True)
        handle._supervisor.start()
        if wait:
            handle.wait_ready()
    except BaseException:
        handle.stop(timeout_s=10)
        raise
    log.info("recorder workers ready: %s (supervisor pid %d)", " ".join(handle.urls), os.getpid())
    return handle
