"""Helpers to run `tonglu` as a separate process in tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tonglu.config import Settings

ENV_KEYS = {
    "data_dir": "TONGLU_DATA_DIR",
    "s3_endpoint": "TONGLU_S3_ENDPOINT",
    "s3_access_key": "TONGLU_S3_ACCESS_KEY",
    "s3_secret_key": "TONGLU_S3_SECRET_KEY",
    "evidence_bucket": "TONGLU_EVIDENCE_BUCKET",
    "work_bucket": "TONGLU_WORK_BUCKET",
    "retention_seconds": "TONGLU_RETENTION_SECONDS",
    "database_url": "TONGLU_DATABASE_URL",
}


def env_for(settings: Settings, **override: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGLU_")}
    for attr, name in ENV_KEYS.items():
        value = getattr(settings, attr)
        if value is not None:
            env[name] = str(value)
    env.update(override)
    return env


def tonglu_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tonglu.cli", *args]


def run_tonglu(
    settings: Settings, *args: str, timeout: float = 120, **override: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tonglu_cmd(*args),
        env=env_for(settings, **override),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).resolve().parents[2],
    )


def spool_files(settings: Settings) -> dict[str, bytes]:
    """Every file in the spool (ready + quarantine), by relative path."""
    root = settings.spool_dir
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
