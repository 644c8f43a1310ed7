"""`tonglu up`: run the whole system on one machine."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        recorder_workers: Annotated[int | None, typer.Option(help="recorder worker processes (0: in-process)")] = None,
        transcribe_workers: Annotated[int | None, typer.Option(help="transcription worker processes")] = None,
        tls_self_signed: Annotated[
            bool, typer.Option("--tls-self-signed", help="serve HTTPS with a generated development certificate")
        ] = False,
    ) -> None:
        """启动全部服务 Run everything: object store, uploader, recorder, transcription, web."""
        import dataclasses
        import os

        from tonglu.app import PRIVATE_UMASK, serve, start_app
        from tonglu.config import Settings, SettingsError
        from tonglu.evidence.errors import StorageError
        from tonglu.evidence.logctx import configure_logging
        from tonglu.integrity.errors import RuleFileError

        # Every file and directory this process and its workers (which inherit the umask) create
        # is the owner's only: the databases hold password hashes, token hashes, transcripts.
        os.umask(PRIVATE_UMASK)
        try:
            settings = Settings.from_env()
            if tls_self_signed and not settings.tls:
                settings = dataclasses.replace(settings, tls_self_signed=True)
        except SettingsError as exc:
            typer.echo(f"配置错误 configuration error: {exc}", err=True)
            raise typer.Exit(2) from exc
        configure_logging(settings.log_level)
        try:
            stack = start_app(settings, recorder_workers=recorder_workers, transcribe_workers=transcribe_workers)
        except StorageError as exc:
            typer.echo(f"启动失败 start-up failed: {exc}", err=True)
            raise typer.Exit(1) from exc
        except RuleFileError as exc:  # names the rule file and line: fix it, then start again
            typer.echo(f"启动失败 start-up failed: {exc}", err=True)
            raise typer.Exit(2) from exc
        if settings.public_url is None and settings.http_host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo("==> 提示 note: TONGLU_PUBLIC_URL is not set; links (WHIP, capture, invitations) are built "
                       "from each request's Host header", err=True)
        typer.echo(f"==> 同录 Tonglu: {settings.base_url}  (Ctrl-C 停止 to stop)")
        serve(stack)
