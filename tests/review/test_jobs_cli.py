"""`tonglu workcopy|export|clip|report` show a progress bar: inline (built here) or as the server's background
job (--server), downloading the result."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.clip.helpers import TONGLU
from tests.integrity.builder import Scenario, build
from tests.integrity.test_api_cli import TOKEN, settings_for
from tests.review.conftest import serve
from tonglu.web.app import create_app
from tonglu.web.services import Services


def run_cli(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "TONGLU_DATA_DIR": str(tmp / "data"), **env}
    return subprocess.run([TONGLU, *args], capture_output=True, text=True, env=full, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_cli_inline_and_against_a_server(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    b = build(tmp_path, Scenario(), settings=settings, spool_segments=True)
    r = run_cli(tmp_path, "workcopy", b.sid, "--height", "90")
    assert r.returncode == 0, r.stderr
    assert "100%" in r.stderr and "工作副本 workcopy [" in r.stderr, r.stderr
    assert json.loads(r.stdout)["duration_ms"] == 6000

    services = Services.local(settings)
    try:
        with serve(create_app(services), settings) as base:
            out = tmp_path / "remote.mp4"
            r = run_cli(tmp_path, "workcopy", b.sid, "--height", "90", "--server", base, "-o", str(out),
                        TONGLU_TOKEN=TOKEN)
            assert r.returncode == 0, r.stderr
            assert "100%" in r.stderr, r.stderr
            assert out.read_bytes()[4:8] == b"ftyp"
            assert json.loads(r.stdout)["duration_ms"] == 6000
            clip = tmp_path / "remote-clip.zip"
            r = run_cli(tmp_path, "clip", b.sid, "--from", "00:00:01", "--to", "00:00:03", "--no-media",
                        "--server", base, "-o", str(clip), TONGLU_TOKEN=TOKEN)
            assert r.returncode == 0, r.stderr
            assert clip.read_bytes()[:2] == b"PK" and json.loads(r.stdout)["intact"] is True
            page = tmp_path / "remote-report.html"
            r = run_cli(tmp_path, "report", b.sid, "--format", "html", "--server", base, "-o", str(page),
                        TONGLU_TOKEN=TOKEN)
            assert r.returncode == 0, r.stderr
            assert b.sid in page.read_text(encoding="utf-8") and json.loads(r.stdout)["format"] == "html"
            r = run_cli(tmp_path, "report", b.sid, "--server", base, TONGLU_TOKEN=TOKEN)  # json: made here
            assert r.returncode == 2 and "--format html|pdf" in r.stderr
            r = run_cli(tmp_path, "workcopy", b.sid, "--server", base, TONGLU_TOKEN="wrong-token")
            assert r.returncode == 1 and "401" in r.stderr
    finally:
        if services.jobs is not None:
            services.jobs.stop()
