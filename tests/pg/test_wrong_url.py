"""Bad input: `tonglu up` with a wrong TONGLU_DATABASE_URL stops at once with one clear line
(中文 + English) and exit 1, no traceback, and starts nothing (no object store, no workers)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tonglu.evidence.pgserver import LocalPostgres, _free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg_with_password() -> Iterator[LocalPostgres]:
    base = Path(tempfile.mkdtemp(prefix="tonglu-test-pgpw-"))  # outside pytest's 0700 basetemp (conftest)
    pg = LocalPostgres(base / "pg", password="right-password-1")
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def tonglu_up(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "HOME": str(Path.home()),
           "TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_DATABASE_URL": url,
           "TONGLU_HTTP_PORT": str(_free_port())}
    return subprocess.run([sys.executable, "-m", "tonglu.cli", "up"], env=env, capture_output=True, text=True,
                          timeout=90, cwd=ROOT)


def _one_clear_line(res: subprocess.CompletedProcess[str], *words: str) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("启动失败 start-up failed: ")
    for w in words:
        assert w in line, line
    assert "对象存储" not in res.stdout  # nothing was started before the check
    return line


def test_unsupported_scheme(tmp_path: Path) -> None:
    _one_clear_line(tonglu_up(tmp_path, "mysql://u:secret@127.0.0.1/tonglu"), "不支持的数据库", "mysql")


def test_unreachable_server(tmp_path: Path) -> None:
    _one_clear_line(tonglu_up(tmp_path, f"postgresql://tonglu@127.0.0.1:{_free_port()}/tonglu"),
                           "无法连接数据库", "cannot reach")


def test_unknown_host(tmp_path: Path) -> None:
    _one_clear_line(tonglu_up(tmp_path, "postgresql://tonglu@db.invalid:5432/tonglu"), "无法连接数据库", "db.invalid")


def test_wrong_database(tmp_path: Path, postgres: Any) -> None:
    url = f"postgresql://tonglu@127.0.0.1:{postgres.port}/no_such_database"
    _one_clear_line(tonglu_up(tmp_path, url), "数据库不存在", "no_such_database")


def test_wrong_password(tmp_path: Path, pg_with_password: LocalPostgres) -> None:
    good = pg_with_password.url("tonglu")
    line = _one_clear_line(tonglu_up(tmp_path, good.replace("right-password-1", "wrong-password-2")),
                           "数据库拒绝登录", "wrong password")
    assert "wrong-password-2" not in line and "right-password-1" not in line  # the password is masked
