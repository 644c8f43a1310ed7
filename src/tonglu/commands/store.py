"""`tonglu store up|bootstrap|upload`, `tonglu reindex`.

Errors exit 1 with one line naming the cause (unreachable store, refused credential, missing key
or credentials file, corrupt spool file); nothing spooled is ever deleted by an error path.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import typer

from tonglu.commands.common import fail, load_settings
from tonglu.config import Settings

store_app = typer.Typer(
    help="Object store: embedded SeaweedFS, bucket bootstrap, spool upload.", no_args_is_help=True
)






def _run(fn: Callable[[], int | None]) -> None:
    """Run a command body, turning storage errors into one clear line and exit 1."""
    from tonglu.evidence.errors import StorageError
    from tonglu.evidence.logctx import configure_logging

    configure_logging(load_settings().log_level)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # our errors name the cause
    try:
        code = fn()
    except StorageError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    if code:
        raise typer.Exit(code)


def _load_key_strict(settings: Settings) -> Any:
    from tonglu.evidence.signing import SiteKey

    return SiteKey.load(settings.keys_dir)


def _admin_store(settings: Settings) -> Any:
    from tonglu.evidence.objectstore import ObjectStore

    return ObjectStore.from_settings(settings, role="admin")


def up(
    no_bootstrap: bool = typer.Option(False, "--no-bootstrap", help="do not create/check the buckets"),
    cluster: bool = typer.Option(
        False, "--cluster", help="separate master, 2 volume servers (replication 001), filer and S3 processes"
    ),
) -> None:
    """Run the embedded SeaweedFS in the foreground until Ctrl-C / SIGTERM (buckets bootstrapped)."""

    def body() -> int:
        from tonglu.evidence.bootstrap import bootstrap
        from tonglu.evidence.seaweed import EmbeddedStore, SeaweedCluster
        from tonglu.evidence.signing import SiteKey

        settings = load_settings()
        if not settings.embedded_store:
            fail("TONGLU_S3_ENDPOINT is set: the embedded store is not used with an external endpoint", 2)
        store: Any = SeaweedCluster(settings.store_dir) if cluster else EmbeddedStore(settings.store_dir)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        ep = store.start()
        try:
            if not no_bootstrap:
                report = bootstrap(
                    _admin_store(settings), settings, SiteKey.load_or_create(settings.keys_dir)
                )
                typer.echo(
                    f"buckets: created {report.created or '-'}, existing {report.existing or '-'}", err=True
                )
            typer.echo(f"SeaweedFS S3 at {ep.s3_url} (data {settings.store_dir / 'data'}); Ctrl-C to stop", err=True)
            while not stop.wait(0.5):
                if cluster:
                    dead = [n for n, p in store.procs.items() if p.poll() is not None]
                    if dead:  # systemd-style supervision is the operator's (docs/deploy/); here: report
                        typer.echo(f"SeaweedFS {', '.join(dead)} exited (see {settings.store_dir}/weed-*.log)",
                                   err=True)
                        for n in dead:
                            store.restart(n)
                elif not store.running:
                    fail(f"SeaweedFS exited unexpectedly (see {settings.store_dir / 'weed.log'})")
        finally:
            store.stop()
        return 0

    _run(body)


def bootstrap_cmd() -> None:
    """Create (or check) the locked evidence bucket, the work bucket, and upload the site public key."""

    def body() -> int:
        from tonglu.evidence.bootstrap import bootstrap

        settings = load_settings()
        report = bootstrap(_admin_store(settings), settings, _load_key_strict(settings))
        typer.echo(
            json.dumps(
                {
                    "created": report.created,
                    "existing": report.existing,
                    "default_retention_days": report.default_retention_days,
                    "public_key": report.public_key,
                    "delete_policy": report.delete_policy,
                },
                ensure_ascii=False,
            )
        )
        return 0

    _run(body)


def upload(
    once: bool = typer.Option(False, "--once", help="drain what is spooled now, then exit"),
    threads: int = typer.Option(4, "--threads", min=1, max=64, help="parallel uploads"),
    max_wait: float = typer.Option(
        10.0, "--max-wait", help="with --once: seconds to keep retrying an unreachable store before exiting 1"
    ),
) -> None:
    """Upload the spool to the object store (forever, or --once)."""

    def body() -> int:
        from tonglu.evidence.ledger import Ledger
        from tonglu.evidence.objectstore import ObjectStore
        from tonglu.evidence.signing import PRIVATE_NAME
        from tonglu.evidence.spool import Spool
        from tonglu.evidence.uploader import Uploader

        settings = load_settings()
        spool = Spool(settings.spool_dir)
        ledger = None
        if settings.ledger_dir.exists() and any(settings.ledger_dir.iterdir()):
            # Re-spooling ledger tails needs the ledger; the ledger needs the site key that signed it.
            if not (settings.keys_dir / PRIVATE_NAME).exists():
                fail(
                    f"site signing key {settings.keys_dir / PRIVATE_NAME} is missing, but the ledger "
                    f"{settings.ledger_dir} holds sessions signed with it; spool left untouched"
                )
            ledger = Ledger(settings.ledger_dir, spool, _load_key_strict(settings))
        store = ObjectStore.from_settings(settings)
        uploader = Uploader(spool, store, settings, ledger=ledger, threads=threads)
        uploader.recover()
        if once:
            report = uploader.drain(max_wait_s=max_wait)
            uploader.close()
            if report.confirmed == 0 and not report.unavailable and not report.quarantined:
                store.ping()  # nothing to upload: still say whether the store is reachable
            left = len(spool.pending())
            typer.echo(
                json.dumps(
                    {
                        "uploaded": report.uploaded,
                        "already_present": report.already_present,
                        "quarantined": report.quarantined,
                        "pending": left,
                        "bytes": report.bytes,
                    }
                ),
                err=False,
            )
            for err in report.errors:
                typer.echo(f"错误 error: {err}", err=True)
            if report.unavailable:
                kind = "refused the credentials" if report.auth_failed else "is unreachable"
                typer.echo(
                    f"错误 error: object store {store.url} {kind}: {report.unavailable}; "
                    f"{left} item(s) stay in the spool {settings.spool_dir}",
                    err=True,
                )
                return 1
            return 1 if report.quarantined or report.errors else 0
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            uploader.run(stop)
        finally:
            uploader.close()
        return 0

    _run(body)


def reindex_cmd(
    keep: bool = typer.Option(
        False, "--keep", help="apply on top of the current index instead of rebuilding"
    ),
) -> None:
    """Rebuild the index DB from the object store alone."""

    def body() -> int:
        from tonglu.evidence.index import Index
        from tonglu.evidence.objectstore import ObjectStore
        from tonglu.evidence.reindex import reindex

        settings = load_settings()
        store = ObjectStore.from_settings(
            settings, role="reviewer" if settings.embedded_store else "recorder"
        )
        store.ping()
        report = reindex(store, Index(settings.db_url), reset=not keep)
        typer.echo(
            json.dumps(
                {
                    "sessions": report.sessions,
                    "entries": report.entries,
                    "checkpoints": report.checkpoints,
                    "skipped": report.skipped,
                    "findings": report.findings,  # shadow versions / delete markers (originals used)
                },
                ensure_ascii=False,
            )
        )
        return 1 if report.skipped else 0

    _run(body)


def register(app: typer.Typer) -> None:
    store_app.command("up")(up)
    store_app.command("bootstrap")(bootstrap_cmd)
    store_app.command("upload")(upload)
    app.add_typer(store_app, name="store")
    app.command("reindex")(reindex_cmd)
