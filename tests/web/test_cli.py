"""`tonglu user ...` and `tonglu audit ...` through the real console entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from tonglu.web.tables import audit_records, engine_for

TONGLU = str(Path(sys.executable).with_name("tonglu"))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run(data: Path, *args: str, stdin: str = "") -> Result:
    """In-process (the CLI imports take seconds on a loaded machine); one test below uses a subprocess."""
    from tonglu.cli import app

    r = CliRunner().invoke(app, list(args), input=stdin, env={"TONGLU_DATA_DIR": str(data)})
    return Result(r.exit_code, r.stdout, r.stderr)


def test_console_entry_point(tmp_path: Path) -> None:
    env = {**os.environ, "TONGLU_DATA_DIR": str(tmp_path / "data")}
    r = subprocess.run(
        [TONGLU, "audit", "verify", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0 and json.loads(r.stdout)["ok"] is True


@pytest.mark.sqlite_only  # edits the SQLite index.db of the data dir directly
def test_user_and_audit_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = run(
        data,
        "user",
        "add",
        "chen",
        "--role",
        "admin",
        "--name",
        "陈管理员",
        "--password-stdin",
        stdin="a-long-password\n",
    )
    assert r.returncode == 0, r.stderr
    r = run(data, "user", "add", "chen", "--role", "admin", "--password-stdin", stdin="a-long-password\n")
    assert r.returncode == 1 and "already exists" in r.stderr
    r = run(data, "user", "add", "x1", "--role", "king", "--password-stdin", stdin="a-long-password\n")
    assert r.returncode == 1 and "unknown role" in r.stderr
    r = run(data, "user", "add", "x2", "--role", "reviewer", "--password-stdin", stdin="short\n")
    assert r.returncode == 1 and "at least 10" in r.stderr
    assert run(data, "user", "role", "chen", "auditor").returncode == 0
    assert run(data, "user", "role", "ghost", "auditor").returncode == 1
    users = json.loads(run(data, "user", "list", "--json").stdout)
    assert [(u["username"], u["role"]) for u in users] == [("chen", "auditor")]
    assert run(data, "user", "token", "chen").stdout.strip().startswith("tlk_")
    r = run(data, "audit", "verify", "--json")
    result = json.loads(r.stdout)
    assert r.returncode == 0 and result["ok"] and result["count"] >= 5
    out = tmp_path / "audit.csv"
    assert run(data, "audit", "export", "-o", str(out)).returncode == 0
    text = out.read_text(encoding="utf-8-sig")
    assert "role_change" in text and "cli:" in text
    # tamper with the stored trail: verify fails and says where
    engine = engine_for(f"sqlite:///{data / 'index.db'}")
    with engine.begin() as conn:
        conn.execute(
            update(audit_records).where(audit_records.c.seq == 1).values(outcome="ok", action="view")
        )
    r = run(data, "audit", "verify")
    assert r.returncode == 1 and "seq 1" in r.stdout
