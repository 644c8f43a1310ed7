"""`tonglu verify PATH | --session ID [--json]`.

Exit status: 0 intact and anchored (warnings allowed), 1 anything wrong — including a package that
cannot be read or a store that cannot be reached (nothing was proven) —, 2 usage error (neither or
both of PATH and --session, a PATH that does not exist, a bad --key file, bad configuration),
3 consistent but NOT anchored (一致但未锚定: no --key/--digest, so a forgery re-signed with a new key
would pass the same checks).

Anchors: `--key` (the site's public key, obtained from the site), `--digest` (the final digest on the
paper record) and, for `--session` on the site's own store, the site public key held locally in
keys_dir (named in the output). At a terminal (stdin is a TTY) without --key/--digest the digest is
asked for; scripts and CI are never asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

EXIT_OK, EXIT_BAD, EXIT_USAGE, EXIT_UNANCHORED = 0, 1, 2, 3


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
    if not trusted and not digests:
        digests = verify_core.ask_digest()
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
    return int(result.exit_code)


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
    local = [] if trusted else local_trusted_keys(settings.keys_dir)
    result = verify_store_session(store, session, trusted_keys=trusted or local, expected_digests=digests)
    if local and result.key_ids:
        # The site's own key, read from this machine's keys_dir rather than from the store: an anchor
        # (a forger who can write to the store cannot change it), but say which one it was.
        from tonglu.evidence.signing import PUBLIC_NAME

        result.anchors = [
            a if not a.startswith("--key ") else
            f"本机持有的站点公钥 site key held locally ({settings.keys_dir / PUBLIC_NAME}, key id {a[6:]})"
            for a in result.anchors
        ]
    return result


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
        Exit 0 intact and anchored, 1 tampered/incomplete/unreadable, 2 usage error,
        3 consistent but not anchored (一致但未锚定: give --digest or --key)."""
        raise typer.Exit(run_verify(path, session, as_json, key or [], digest or []))
