"""Start and stop the transcription service: N worker processes plus the dispatcher thread.

    handle = start_workers(settings)          # settings.transcribe_workers processes
    ...
    handle.stop()                             # SIGTERM, wait, SIGKILL what is left

Workers are separate processes (one CPU thread each) so Whisper never competes with an event loop
for the GIL; a worker that dies is restarted by the supervisor (its job is retried after its lease).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tonglu.config import Settings
from tonglu.evidence.index import Index
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.process import die_with_parent
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.transcribe.dispatcher import Dispatcher, DispatcherThread, IndexEntries
from tonglu.transcribe.models import resolve_model
from tonglu.transcribe.queue import JobQueue, open_queue
from tonglu.transcribe.versions import VersionStore

log = context_logger(__name__)


def model_identity(settings: Settings, model: str | None = None) -> dict[str, str]:
    spec = resolve_model(model or settings.whisper_model)
    language = "en" if spec.english_only else (settings.whisper_language or "auto")
    return {**spec.identity(), "compute_type": settings.whisper_compute_type, "language": language}


@dataclass
class WorkersHandle:
    settings: Settings
    queue: JobQueue
    dispatcher: Dispatcher
    thread: DispatcherThread
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)
    incarnations: dict[str, int] = field(default_factory=dict)
    restarts: int = 0
    restart_dead: bool = True
    _stopping: bool = False
    _supervisor: threading.Thread | None = None

    @property
    def pids(self) -> dict[str, int]:
        return {w: p.pid for w, p in self.procs.items()}

    def _spawn(self, worker_id: str) -> None:
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        # every incarnation gets its own id, so a restarted worker never inherits a dead one's lease
        self.incarnations[worker_id] = self.incarnations.get(worker_id, 0) + 1
        argv = [*self.argv[worker_id], "--worker-id", f"{worker_id}.{self.incarnations[worker_id]}"]
        # A killed `tonglu up` must not leave workers polling the queue behind it.
        self.procs[worker_id] = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent())

    def _supervise(self) -> None:
        while not self._stopping:
            for wid, proc in list(self.procs.items()):
                if proc.poll() is not None and not self._stopping and self.restart_dead:
                    log.warning("transcription worker %s exited (%s); restarting it", wid, proc.returncode)
                    self.restarts += 1
                    self._spawn(wid)
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.thread.is_alive() and all(p.poll() is None for p in self.procs.values())

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.thread.stop()
        if self._supervisor is not None:
            self._supervisor.join(2)


def start_workers(
    settings: Settings,
    *,
    workers: int | None = None,
    model: str | None = None,
    lease_s: float = 30.0,
    spool: Spool | None = None,
    ledger: Ledger | None = None,
    restart_dead: bool = True,
    dispatch_poll_s: float = 0.2,
) -> WorkersHandle:
    n = settings.transcribe_workers if workers is None else workers
    model_name = model or settings.whisper_model
    identity = model_identity(settings, model_name)  # also prepares the base model if needed
    spool = spool or Spool(settings.spool_dir)
    ledger = ledger or Ledger(settings.ledger_dir, spool, SiteKey.load_or_create(settings.keys_dir))
    queue = open_queue(settings.data_dir, settings.db_url, lease_s=lease_s)
    versions = VersionStore(settings.data_dir / "transcribe" / "versions", spool, ledger)
    # one host: the ledger files; PostgreSQL (workers on any host): the manifest entries in the index
    source: Path | IndexEntries = IndexEntries(Index(settings.db_url)) if queue.on_postgres else settings.ledger_dir
    dispatcher = Dispatcher(source, queue, versions, identity)
    thread = DispatcherThread(dispatcher, poll_s=dispatch_poll_s)
    handle = WorkersHandle(settings, queue, dispatcher, thread, restart_dead=restart_dead)
    for i in range(n):
        wid = f"w{i + 1}-{os.getpid()}"
        handle.argv[wid] = [
            sys.executable,
            "-m",
            "tonglu.transcribe.worker",
            "--data-dir",
            str(Path(settings.data_dir)),
            "--model",
            model_name or "base",
            "--compute-type",
            settings.whisper_compute_type,
            "--language",
            identity["language"] if identity["language"] != "auto" else "",
            "--lease-s",
            str(lease_s),
        ]
        handle._spawn(wid)
    thread.start()
    handle._supervisor = threading.Thread(target=handle._supervise, name="transcribe-supervisor", daemon=True)
    handle._supervisor.start()
    return handle
