"""The application object: every long-lived part `tonglu up` builds once at startup, in order, and
stops in reverse. Routes reach these parts through `web.deps` (FastAPI dependencies on `Services`).

    database check + migrations → store (embedded SeaweedFS, unless TONGLU_S3_ENDPOINT) →
    bucket bootstrap → index DB →
    uploader thread → accounts + audit → transcription workers → job runners → recorder workers → web

Each part registers a health check; `/healthz` answers 200 once all of them pass.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tonglu.config import Settings
from tonglu.evidence.logctx import context_logger
from tonglu.web.services import Services

log = context_logger(__name__)


def uvicorn_server_base() -> type:
    import uvicorn

    return uvicorn.Server


@dataclass
class App:
    """Settings, the parts the web app uses (`services`: DB engine, object store, index, recorder
    router, transcription service, accounts, audit), their health checks and their stops."""

    settings: Settings
    services: Services
    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    _stops: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def on_stop(self, name: str, fn: Callable[[], None]) -> None:
        self._stops.append((name, fn))

    def stop(self) -> None:
        """Stop every part in reverse start order; one failing stop never skips the others."""
        while self._stops:
            name, fn = self._stops.pop()
            try:
                fn()
                log.info("stopped %s", name)
            except Exception:
                log.exception("stopping %s failed", name)


def start_app(settings: Settings, *, recorder_workers: int | None = None,
                transcribe_workers: int | None = None, echo: Callable[[str], None] = print) -> App:
    """Start everything but the HTTP listener. On failure, what was started is stopped again.
    A database that cannot be used raises `DatabaseUnavailable` (one line) before anything starts."""
    from tonglu.evidence.migrate import prepare_database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    restrict_data_dir(settings)
    prepare_database(settings.db_url)  # check the URL and the server, then migrate to the newest schema
    services = Services.local(settings)
    app = App(settings, services)
    try:
        _start_store(app, echo)
        _start_index_and_uploader(app)
        _start_accounts(app, echo)
        _start_transcription(app, transcribe_workers)
        _start_jobs(app)
        _start_recorder(app, recorder_workers)
        restrict_data_dir(settings)  # the databases the parts above created
    except BaseException:
        app.stop()
        raise
    return app


PRIVATE_UMASK = 0o077
# SQLite databases holding password/token hashes and transcript text, with their side files.
PRIVATE_DB_FILES = ("index.db", "transcribe/queue.db")


def restrict_data_dir(settings: Settings) -> None:
    """Owner-only access to the data directory and its databases, also for a data directory that
    an older version (or a command run under another umask) created world-readable. New files
    are covered by the umask `tonglu up` and its workers run under (`PRIVATE_UMASK`)."""
    import os

    os.chmod(settings.data_dir, 0o700)
    for name in PRIVATE_DB_FILES:
        for suffix in ("", "-wal", "-shm", "-journal"):
            path = settings.data_dir / (name + suffix)
            if path.exists():
                os.chmod(path, 0o600)


def _start_store(app: App, echo: Callable[[str], None]) -> None:
    from tonglu.evidence.bootstrap import bootstrap
    from tonglu.evidence.objectstore import ObjectStore

    settings = app.settings
    if settings.embedded_store:
        from tonglu.evidence.seaweed import EmbeddedStore

        embedded = EmbeddedStore(settings.store_dir)
        endpoint = embedded.start()
        app.on_stop("object store", embedded.stop)
        echo(f"==> 对象存储 object store (SeaweedFS): {endpoint.s3_url}")
    admin = ObjectStore.from_settings(settings, role="admin") if settings.embedded_store else None
    store = ObjectStore.from_settings(settings, role="recorder")
    # External stores are bootstrapped by their operator's credentials; try with ours, which may
    # lack admin rights: then the buckets must already exist.
    bootstrap(admin or store, settings, app.services.site_key)
    app.services.store = store
    app.services.audit.store = store  # where the audit check reads its signed WORM batches

    def store_ok() -> bool:
        store.ping()
        return True

    app.checks["store"] = store_ok


def _start_index_and_uploader(app: App) -> None:
    from tonglu.evidence.index import Index
    from tonglu.evidence.reader import EvidenceReader
    from tonglu.evidence.uploader import Uploader

    services, settings = app.services, app.settings
    store = services.store
    assert store is not None, "the object store starts first"
    index = Index(services.engine)
    services.index = index
    services.reader = EvidenceReader(services.spool, store)
    index.transcript_reader = services.reader.read  # transcript lines for session search
    for sid in services.ledger.sessions():
        index.sync_from_ledger(services.ledger, sid)

    def confirmed(item: Any, now_ns: int) -> None:
        index.mark_uploaded(item.key, now_ns)

    uploader = Uploader(services.spool, store, settings, ledger=services.ledger, on_confirmed=confirmed)
    uploader.recover()
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), name="uploader", daemon=True)
    thread.start()

    def stop_uploader() -> None:
        stop.set()
        thread.join(30)
        uploader.close()

    app.on_stop("uploader", stop_uploader)
    app.checks["uploader"] = thread.is_alive
    app.checks["index"] = lambda: index.count_sessions() >= 0


def _start_accounts(app: App, echo: Callable[[str], None]) -> None:
    from tonglu.web.accounts import ensure_initial_admin

    services, settings = app.services, app.settings
    ensure_initial_admin(services.accounts, settings.data_dir, echo=echo)
    # Records since the last WORM batch go to the spool on the way out (the uploader, stopped
    # after this, drains what it can; the rest waits in the spool for the next start).
    app.on_stop("audit batch", services.audit.flush)


def _start_transcription(app: App, workers: int | None) -> None:
    from tonglu.transcribe.service import TranscriptService
    from tonglu.transcribe.workers import start_workers

    services, settings = app.services, app.settings
    reader = services.reader
    assert reader is not None, "the evidence reader is built with the index"
    handle = start_workers(settings, workers=workers, spool=services.spool, ledger=services.ledger)
    app.on_stop("transcription workers", handle.stop)
    services.transcripts = TranscriptService(settings, services.spool, services.ledger, read=reader.read)
    if services.index is not None:  # new transcript versions become searchable at once
        handle.dispatcher.versions.on_entry = services.index.apply
        services.transcripts.versions_store.on_entry = services.index.apply
    app.checks["transcription"] = handle.alive


def _start_jobs(app: App) -> None:
    """Runner threads of the background job queue (working copies, exports, clips): the table lives
    in the index DB, so runners in other processes on the same database take jobs too."""
    import os

    from tonglu.evidence.jobs import JobQueue
    from tonglu.web.jobs import JobService

    n = max(1, int(os.environ.get("TONGLU_JOB_WORKERS", "1") or 1))
    jobs = JobService(app.services, JobQueue(app.services.engine), threads=n)
    app.services.jobs = jobs
    jobs.start()
    app.on_stop("job runners", jobs.stop)
    app.checks["jobs"] = jobs.alive


def _start_recorder(app: App, workers: int | None) -> None:
    from tonglu.recorder.router import build_router

    services, settings = app.services, app.settings
    n = settings.recorder_workers if workers is None else workers
    if n > 0:
        from tonglu.recorder.workers import start_workers

        handle = start_workers(settings, n)
        app.on_stop("recorder workers", handle.stop)
        services.recorder = build_router(settings, services, worker_urls=handle.urls, secret=handle.secret)
        app.checks["recorder"] = handle.alive
    else:
        services.recorder = build_router(settings, services)
        app.checks["recorder"] = lambda: True


def serve(app: App) -> None:
    """Run the web app until SIGINT/SIGTERM (uvicorn handles both), then stop every part."""
    import asyncio

    from tonglu.web.app import create_app
    from tonglu.web.routes.health import register_check
    from tonglu.web.server import uvicorn_config

    settings = app.settings
    web = create_app(app.services)
    for name, check in app.checks.items():
        register_check(web, name, check)
    config = uvicorn_config(web, settings)
    server = _Server(config)
    try:
        asyncio.run(_serve(server, app))
    finally:
        app.stop()


class _Server(uvicorn_server_base()):  # type: ignore[misc]
    """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, which would kill the process
    before the other parts are stopped; here a signal only asks the server to exit."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._ask_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    should_exit: bool
    force_exit: bool

    def _ask_exit(self, sig: int, frame: Any) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


async def _serve(server: Any, app: App) -> None:
    recorder = app.services.recorder
    if recorder is not None:
        await recorder.start()
    try:
        await server.serve()
    finally:
        if recorder is not None:
            await recorder.close()


def wait_healthy(url: str, timeout_s: float = 60.0) -> bool:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


logging.getLogger("uvicorn.error").propagate = True
