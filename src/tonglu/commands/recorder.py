"""`tonglu recorder worker` (one pinned recorder process)."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    rec_app = typer.Typer(help="录像 Recorder worker processes.", no_args_is_help=True)
    app.add_typer(rec_app, name="recorder")

    @rec_app.command("worker")
    def worker(
        index: Annotated[int, typer.Option(help="this worker's number; it is pinned to core INDEX mod ncpu")] = 0,
        count: Annotated[int, typer.Option(help="how many workers share the sessions (routing)")] = 1,
        host: Annotated[str, typer.Option(help="address of the internal API")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="port of the internal API (0: a free one, reported)")] = 0,
        fd: Annotated[int | None, typer.Option(help="serve on this inherited listening socket")] = None,
        config_stdin: Annotated[
            bool, typer.Option(help="read settings and secret from stdin (supervised by start_workers)")
        ] = False,
    ) -> None:
        """Run one recorder worker: a LocalRecorder behind the internal HTTP API.

        Standalone, settings come from the environment and the secret from TONGLU_RECORDER_SECRET
        (or a new one, printed once in the ready line on stdout)."""
        import os
        import secrets
        import socket
        import sys
        import threading

        from tonglu.recorder.worker_app import pin_to_core

        if not 0 <= index < max(count, 1):
            typer.echo(f"错误 error: --index {index} must be in 0..{count - 1}", err=True)
            raise typer.Exit(2)
        core = pin_to_core(index)  # before anything starts a thread
        os.umask(0o077)  # segments, ledger and index rows are the owner's only (as under `tonglu up`)

        import asyncio

        from tonglu.config import Settings, SettingsError
        from tonglu.evidence.logctx import configure_logging
        from tonglu.recorder.worker_app import serve_worker, settings_from_json, watch_parent

        stop = threading.Event()
        generated = False
        if config_stdin:
            try:
                data = json.loads(sys.stdin.buffer.readline())
                settings, secret = settings_from_json(data["settings"]), str(data["secret"])
            except (ValueError, KeyError, TypeError) as exc:
                typer.echo(f"错误 error: bad worker config on stdin: {exc}", err=True)
                raise typer.Exit(2) from exc
            watch_parent(stop)
        else:
            try:
                settings = Settings.from_env()
            except SettingsError as exc:
                typer.echo(f"错误 error: {exc}", err=True)
                raise typer.Exit(2) from exc
            secret = os.environ.get("TONGLU_RECORDER_SECRET") or ""
            if not secret:
                secret, generated = secrets.token_urlsafe(32), True
        configure_logging(settings.log_level)
        if fd is not None:
            sock = socket.socket(fileno=fd)
        else:
            from tonglu.recorder.workers import listen_socket

            try:
                sock = listen_socket(host, port)
            except OSError as exc:
                typer.echo(f"错误 error: cannot listen on {host}:{port}: {exc}", err=True)
                raise typer.Exit(2) from exc
        bound = sock.getsockname()
        url = f"http://{bound[0]}:{bound[1]}"

        def ready() -> None:
            line = {"event": "ready", "index": index, "count": count, "url": url, "pid": os.getpid(), "core": core}
            if generated:
                line["secret"] = secret
            print(json.dumps(line), flush=True)

        asyncio.run(serve_worker(settings, secret, sock, index=index, count=count, on_ready=ready, stop_event=stop))
