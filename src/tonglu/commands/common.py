"""What every command module needs: one way to fail with a clear line, one way to read the settings."""

from __future__ import annotations

from typing import NoReturn

import typer

from tonglu.config import Settings, SettingsError


def fail(msg: str, code: int = 1) -> NoReturn:
    """Print one line naming the cause (Chinese and English) on stderr and exit with `code`."""
    typer.echo(f"错误 error: {msg}", err=True)
    raise typer.Exit(code)


def load_settings() -> Settings:
    """Settings from the environment; a bad value is a usage error (exit 2)."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        fail(f"configuration: {exc}", 2)
