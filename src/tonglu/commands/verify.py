"""`tonglu verify PATH | --session ID [--json]`.

Exit status: 0 intact (warnings allowed), 1 anything wrong — including a package that cannot be
read or a store that cannot be reached (nothing was proven) —, 2 usage error (neither or both of
PATH and --session, a PATH that does not exist, a bad --key file, bad configuration).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

EXIT_OK, EXIT_BAD, EXIT_USAGE = 0, 1, 2


def _usage(msg: str) -> NoReturn:
    typer.echo(f"错误 usage error: {msg}", err=True)
    raise typer.Exit(EXIT_USAGE)


def _unreadable(msg: str, source: str, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(
            json.dumps(
                {"ok": False, "verdict": "unreadable", "source": source, "error": msg}, ensure_ascii=False
            )
        )
    else:
        typer.echo(f"结论 Verdict: 无法验证 CANNOT VERIFY — {msg}")
    raise typer.Exit(EXIT_BAD)


def _read_keys(paths: list[Path]) -> list[bytes]:
    out = []
    for p in paths:
        try:
            out.append(p.read_bytes())
        except OSError as exc:
            _usage(f"--key {p}: {exc.strerror or exc}")
    return out


def run_verify(
    path: Path | None, session: str | None, as_json: bool, key_files: list[Path], digests: list[str]
) -> int:
    from tonglu.evidence import verify_core
    from tonglu.evidence.errors import StorageError

    if (path is None) == (session is None):
        _usage("give either PATH (a package or directory) or --session ID, not both / 请指定路径或会话之一")
    trusted = _read_keys(key_files)
    try:
        if path is not None:
            if not path.exists():
                _usage(f"{path}: no such file or directory / 路径不存在")
            from tonglu.evidence.verify import verify_path

            result = verify_path(path, trusted_keys=trusted, expected_digests=digests)
        else:
            assert session is not None
            result = _verify_store(session, trusted, digests)
    except verify_core.UsageError as exc:
        _usage(str(exc))
    except verify_core.VerifyError as exc:
        _unreadable(str(exc), str(path), as_json)
    except StorageError as exc:
        _unreadable(f"{type(exc).__name__}: {exc}", f"session {session}", as_json)
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=1))
    else:
        typer.echo(verify_core.format_human(result), nl=False)
    return EXIT_OK if result.ok else EXIT_BAD


def _verify_store(session: str, trusted: list[bytes], digests: list[str]) -> Any:
    from tonglu.config import Settings, SettingsError
    from tonglu.evidence import keys
    from tonglu.evidence.objectstore import ObjectStore
    from tonglu.evidence.verify import local_trusted_keys, verify_store_session

    try:
        keys.safe_id(session, "session id")
    except ValueError as exc:
        _usage(str(exc))
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        _usage(f"configuration: {exc}")
    # Read with the read-only reviewer identity of the embedded store (an external endpoint uses the
    # configured credentials). The site's own public key, when present here, is the trust anchor.
    store = ObjectStore.from_settings(settings, role="reviewer")
    return verify_store_session(
        store,
        session,
        trusted_keys=trusted or local_trusted_keys(settings.keys_dir),
        expected_digests=digests,
    )


def register(app: typer.Typer) -> None:
    @app.command("verify")
    def verify(
        path: Annotated[
            Path | None,
            typer.Argument(help="export package (.zip) or evidence directory", show_default=False),
        ] = None,
        session: Annotated[
            str | None,
            typer.Option("--session", help="verify this session in the object store", show_default=False),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
        key: Annotated[list[Path] | None, typer.Option("--key", help="trusted site public key (PEM)")] = None,
        digest: Annotated[
            list[str] | None,
            typer.Option(
                "--digest", help="final digest from the paper form; a validly signed checkpoint must have it"
            ),
        ] = None,
    ) -> None:
        """校验证据 Verify evidence: re-hash every segment, check the hash chain, signed checkpoints and
        Merkle roots; name every missing, extra, altered, reordered or truncated object.
        Exit 0 intact, 1 tampered/incomplete/unreadable, 2 usage error."""
        raise typer.Exit(run_verify(path, session, as_json, key or [], digest or []))
