"""Shared fixtures. Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonglu.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_RETENTION_SECONDS": "60"})
