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


def _connect_store(app: App) -> None:
    """A worker host uses the site's store as it is: the web tier bootstrapped it (buckets, Object
    Lock); this host's credentials need not be allowed to read the bucket configuration."""
    from tonglu.evidence.objectstore import ObjectStore

    store = ObjectStore.from_settings(app.settings, role="recorder")
    app.services.store = store
    app.services.audit.store = store

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


# -- roles on several hosts (`tonglu up --role`, docs/deploy/) -------------------------------------
ROLES = ("all", "web", "recorder", "worker")


class RoleError(Exception):
    """A role started without what it needs (message names the setting)."""


def start_web(settings: Settings, *, transcribe_workers: int | None = 0,
              echo: Callable[[str], None] = print) -> App:
    """`--role web`: pages, API, accounts, audit, index and uploader; sessions record on the
    recorder hosts that register (`recorder.hosts.HostRouter`); transcription on `--role worker`."""
    if not settings.registration_secret:
        raise RoleError("--role web 需要 TONGLU_REGISTRATION_SECRET (recorder hosts register with it)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    restrict_data_dir(settings)
    services = Services.local(settings)
    app = App(settings, services)
    try:
        _start_store(app, echo)
        _start_index_and_uploader(app)
        _start_accounts(app, echo)
        _start_transcription(app, transcribe_workers)
        from tonglu.recorder.hosts import HostRouter
        from tonglu.recorder.placement import Placement

        timeout_ns = int(3 * settings.heartbeat_s * 1e9)
        router = HostRouter(Placement(heartbeat_timeout_ns=timeout_ns), heartbeat_s=settings.heartbeat_s)
        services.recorder = router
        from tonglu.recorder.hostledger import HostLedger

        # the routes' ledger: sessions recorded elsewhere are read and annotated on their host
        services.ledger = HostLedger(settings.ledger_dir, services.spool, services.ledger.key, router)
        app.checks["recorder"] = lambda: True  # hosts come and go; /api/recorders shows them
        restrict_data_dir(settings)
    except BaseException:
        app.stop()
        raise
    return app


@dataclass
class RecorderHost:
    """`--role recorder`: this host's recorder workers, spool, ledger and uploader behind the
    internal API the web tier calls, registered with the web tier."""

    settings: Settings
    app: App
    state: Any  # recorder.worker_app.WorkerState
    registrar: Any  # recorder.registration.Registrar
    router: Any
    api: Any  # the Starlette app of the internal API


def start_recorder_host(
    settings: Settings,
    *,
    web_url: str,
    advertise_url: str,
    capacity: int,
    workers: int | None = None,
    verify_tls: bool | str = True,
) -> RecorderHost:
    import secrets
    import types

    from tonglu.evidence.hostcert import HOST_PUBLIC_NAME, load_host_key, load_identity
    from tonglu.evidence.ledger import Ledger
    from tonglu.evidence.objectstore import ObjectStore
    from tonglu.evidence.spool import Spool
    from tonglu.recorder.registration import Registrar, RegistrationConfig
    from tonglu.recorder.router import build_router
    from tonglu.recorder.store import SessionStore
    from tonglu.recorder.worker_app import WorkerState, create_worker_app
    from tonglu.recorder.workers import start_workers

    if not settings.registration_secret:
        raise RoleError("--role recorder 需要 TONGLU_REGISTRATION_SECRET (the web tier's registration secret)")
    if settings.embedded_store:
        raise RoleError("--role recorder 需要共享对象存储 TONGLU_S3_ENDPOINT (a recorder host uploads to the "
                        "site's store, not to a store of its own)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    restrict_data_dir(settings)
    identity = load_identity(settings.keys_dir)
    if identity is None:
        key = load_host_key(settings.keys_dir)
        raise RoleError(
            f"本机密钥 {key.key_id} 尚未经站点密钥认证 (this host's key is not certified): on the web host run "
            f"`tonglu host certify --host NAME --public-key {settings.keys_dir / HOST_PUBLIC_NAME}` and copy the "
            f"certificate to {settings.keys_dir / 'host-cert.json'}"
        )
    spool = Spool(settings.spool_dir)
    ledger = Ledger(settings.ledger_dir, spool, identity.key)
    services = types.SimpleNamespace(settings=settings, spool=spool, ledger=ledger, store=None, index=None)
    app = App(settings, services)  # type: ignore[arg-type]  # the parts a recorder host has
    try:
        store = ObjectStore.from_settings(settings, role="recorder")
        services.store = store
        _start_uploader(app, spool, ledger, store)
        _start_transcript_publisher(app, spool, ledger)
        n = settings.recorder_workers if workers is None else workers
        handle = start_workers(settings, max(1, n))
        app.on_stop("recorder workers", handle.stop)
        router = build_router(settings, services, worker_urls=handle.urls, secret=handle.secret)
        state = WorkerState(router, secrets.token_urlsafe(32))
        store_sessions = SessionStore(ledger, settings.db_url)

        def sessions() -> tuple[list[str], list[str]]:
            every = store_sessions.list()
            return [s["id"] for s in every], [s["id"] for s in every if s["state"] == "recording"]

        registrar = Registrar(
            RegistrationConfig(web_url, advertise_url, capacity, settings.registration_secret, state.secret,
                               settings.heartbeat_s, verify_tls),
            identity,
            sessions,
        )
    except BaseException:
        app.stop()
        raise
    return RecorderHost(settings, app, state, registrar, router, create_worker_app(state))


def _start_uploader(app: App, spool: Any, ledger: Any, store: Any) -> None:
    from tonglu.evidence.uploader import Uploader

    index = None
    try:
        from tonglu.evidence.index import Index

        index = Index(app.settings.db_url)
    except Exception as exc:  # the index is a cache: upload without it, reindex later
        log.warning("index DB unavailable on this recorder host (%s); uploading goes on", exc)

    def confirmed(item: Any, now_ns: int) -> None:
        if index is not None:
            index.mark_uploaded(item.key, now_ns)

    uploader = Uploader(spool, store, app.settings, ledger=ledger, on_confirmed=confirmed)
    uploader.recover()  # what a killed process left in the spool goes up first
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), name="uploader", daemon=True)
    thread.start()

    def stop_uploader() -> None:
        stop.set()
        thread.join(30)
        uploader.close()

    app.on_stop("uploader", stop_uploader)
    app.checks["uploader"] = thread.is_alive


def _start_transcript_publisher(app: App, spool: Any, ledger: Any) -> None:
    """With the shared PostgreSQL queue, workers on other hosts transcribe this host's sessions; the
    finished versions are appended here, to the sessions' own chains (single host: the local
    dispatcher publishes)."""
    from tonglu.evidence.db import is_postgres
    from tonglu.evidence.index import Index
    from tonglu.transcribe.dispatcher import Dispatcher, IndexEntries, TranscriptPublisher
    from tonglu.transcribe.queue import open_queue
    from tonglu.transcribe.versions import VersionStore
    from tonglu.transcribe.workers import model_identity

    settings = app.settings
    if not is_postgres(settings.db_url):
        return
    index = Index(settings.db_url)
    queue = open_queue(settings.data_dir, settings.db_url)
    versions = VersionStore(settings.data_dir / "transcribe" / "versions", spool, ledger)
    versions.on_entry = index.apply  # searchable at once
    publisher = TranscriptPublisher(Dispatcher(IndexEntries(index), queue, versions,
                                               model_identity(settings, settings.whisper_model)))
    publisher.start()
    app.on_stop("transcript publisher", publisher.stop)
    app.checks["transcript publisher"] = publisher.is_alive


def serve_recorder_host(host: RecorderHost, echo: Callable[[str], None] = print) -> int:
    """Serve the internal API on TONGLU_HTTP_HOST:PORT, register, heartbeat; until SIGINT/SIGTERM.
    Returns 0, or 1 when the web tier refused the registration."""
    import asyncio

    from tonglu.web.server import uvicorn_config

    settings = host.settings
    stop = threading.Event()
    reg_thread = threading.Thread(target=host.registrar.run, args=(stop,), name="registrar", daemon=True)
    config = uvicorn_config(host.api, settings)
    server = _Server(config)

    async def run() -> None:
        await host.router.start()
        host.state.ready = True
        reg_thread.start()
        watcher = asyncio.ensure_future(_stop_when_refused(host, server))
        try:
            await server.serve()
        finally:
            watcher.cancel()
            await host.router.close()

    try:
        asyncio.run(run())
    finally:
        stop.set()
        if reg_thread.is_alive():
            reg_thread.join(5)
        host.registrar.close()
        host.app.stop()
    if host.registrar.refused:
        echo(f"注册被拒绝 registration refused: {host.registrar.refused}")
        return 1
    return 0


async def _stop_when_refused(host: RecorderHost, server: Any) -> None:
    import asyncio

    while not host.registrar.refused:  # noqa: ASYNC110 - set by the registrar thread, not a coroutine
        await asyncio.sleep(0.2)
    server.should_exit = True


def serve_until_signal(app: App) -> None:
    """`--role worker`: the transcription workers run until SIGINT/SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        app.stop()


def start_worker_role(settings: Settings, *, transcribe_workers: int | None = None,
                      echo: Callable[[str], None] = print) -> App:
    """`--role worker`: transcription workers (and their dispatcher) and nothing else."""
    if settings.embedded_store:
        raise RoleError("--role worker 需要共享对象存储 TONGLU_S3_ENDPOINT (a worker host reads the site's store)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    restrict_data_dir(settings)
    services = Services.local(settings)
    app = App(settings, services)
    try:
        _connect_store(app)
        _start_index_and_uploader(app)
        _start_transcription(app, transcribe_workers)
    except BaseException:
        app.stop()
        raise
    return app
