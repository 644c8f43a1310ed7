"""`tonglu up`: run the whole system on one machine, or one role of it on each of several hosts
(docs/deploy/); `tonglu host ...`: recorder host keys certified by the site key."""

from __future__ import annotations

from pathlib import Path
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
        role: Annotated[
            str, typer.Option(help="all (one host) | web | recorder | worker (several hosts: docs/deploy/)")
        ] = "all",
        web: Annotated[str | None, typer.Option(help="--role recorder: the web tier's URL to register with")] = None,
        advertise: Annotated[
            str | None, typer.Option(help="--role recorder: this host's internal API URL as the web tier reaches it")
        ] = None,
        capacity: Annotated[int, typer.Option(help="--role recorder: sessions this host records at once")] = 8,
        web_ca: Annotated[
            Path | None, typer.Option(help="--role recorder: CA bundle of a web tier with a private certificate")
        ] = None,
    ) -> None:
        """启动服务 Run everything (--role all), or one role: web, recorder, worker."""
        import dataclasses
        import os

        from tonglu.app import (
            PRIVATE_UMASK,
            ROLES,
            RoleError,
            serve,
            serve_recorder_host,
            serve_until_signal,
            start_app,
            start_recorder_host,
            start_web,
            start_worker_role,
        )
        from tonglu.config import Settings, SettingsError
        from tonglu.evidence.errors import KeyFileError, StorageError
        from tonglu.evidence.logctx import configure_logging
        from tonglu.integrity.errors import RuleFileError

        if role not in ROLES:
            typer.echo(f"配置错误 configuration error: --role must be one of {', '.join(ROLES)}", err=True)
            raise typer.Exit(2)
        if role == "recorder" and not (web and advertise):
            typer.echo("配置错误 configuration error: --role recorder needs --web URL and --advertise URL", err=True)
            raise typer.Exit(2)
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
            if role == "recorder":
                assert web is not None and advertise is not None
                host = start_recorder_host(settings, web_url=web, advertise_url=advertise, capacity=capacity,
                                           workers=recorder_workers,
                                           verify_tls=str(web_ca) if web_ca else True)
                typer.echo(f"==> 同录录像主机 Tonglu recorder host {host.registrar.identity.host}: {advertise} "
                           f"-> {web}")
                raise typer.Exit(serve_recorder_host(host))
            if role == "worker":
                stack = start_worker_role(settings, transcribe_workers=transcribe_workers)
                typer.echo("==> 同录转写主机 Tonglu worker host (Ctrl-C 停止 to stop)")
                serve_until_signal(stack)
                return
            if role == "web":
                stack = start_web(settings, transcribe_workers=transcribe_workers or 0)
            else:
                stack = start_app(settings, recorder_workers=recorder_workers, transcribe_workers=transcribe_workers)
        except (RoleError, KeyFileError) as exc:
            typer.echo(f"启动失败 start-up failed: {exc}", err=True)
            raise typer.Exit(2) from exc
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

    host_app = typer.Typer(help="录像主机密钥 Recorder host keys, certified by the site key.", no_args_is_help=True)
    app.add_typer(host_app, name="host")

    @host_app.command("keygen")
    def host_keygen() -> None:
        """On a recorder host: create (once) its key; prints the public key file to certify."""
        from tonglu.config import Settings
        from tonglu.evidence.hostcert import HOST_PUBLIC_NAME, load_host_key

        settings = Settings.from_env()
        key = load_host_key(settings.keys_dir)
        typer.echo(f"{settings.keys_dir / HOST_PUBLIC_NAME}  (key id {key.key_id})")

    @host_app.command("certify")
    def host_certify(
        host: Annotated[str, typer.Option(help="the recorder host's id (e.g. rec-1)")],
        public_key: Annotated[Path, typer.Option(help="its host-ed25519.pub.pem")],
        output: Annotated[Path, typer.Option("-o", "--output", help="certificate file to write")],
        days: Annotated[int, typer.Option(help="validity in days")] = 730,
    ) -> None:
        """On the web host (which holds the site key): certify a recorder host's key."""
        from tonglu.config import Settings
        from tonglu.evidence.hostcert import HostCertError, issue
        from tonglu.evidence.signing import SiteKey

        settings = Settings.from_env()
        try:
            cert = issue(SiteKey.load(settings.keys_dir), host, public_key.read_bytes(), validity_s=days * 86400)
        except (HostCertError, ValueError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
        output.write_bytes(cert.to_bytes())
        typer.echo(f"{output}: host {cert.host} key {cert.key_id} certified by site key {cert.issuer}")
