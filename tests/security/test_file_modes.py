"""Local files readable by other users (finding 9): after `tonglu up` the data directory is 0700,
its databases 0600 (also when an older version left them 0755/0644), every file it and its worker
processes create is the owner's only, and export packages built for a download do not stay."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from tests.conftest import SeaweedServer
from tests.integrity.builder import Scenario, build
from tests.test_spine import _free_port
from tonglu.config import Settings
from tonglu.web.downloads import sweep

TONGLU = str(Path(sys.executable).with_name("tonglu"))
TOKEN = "file-modes-admin-token-0123456789"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _umask_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc status")


def test_up_keeps_the_data_dir_private(seaweed: SeaweedServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    # an index DB an older version (or `tonglu user add` under umask 022) left world-readable
    (data / "index.db").touch(mode=0o644)
    os.chmod(data / "index.db", 0o644)
    s = seaweed.settings(data)  # bootstraps the buckets (and makes the site key) from this process
    before = {p for p in data.rglob("*")}
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGLU_")}
    env.update(
        TONGLU_DATA_DIR=str(data), TONGLU_HTTP_PORT=str(port), TONGLU_ADMIN_TOKEN=TOKEN,
        TONGLU_S3_ENDPOINT=seaweed.endpoint, TONGLU_S3_ACCESS_KEY=seaweed.credentials["admin"][0],
        TONGLU_S3_SECRET_KEY=seaweed.credentials["admin"][1], TONGLU_EVIDENCE_BUCKET=s.evidence_bucket,
        TONGLU_WORK_BUCKET=s.work_bucket, TONGLU_RETENTION_SECONDS="60", TONGLU_RECORDER_WORKERS="1",
        TONGLU_TRANSCRIBE_WORKERS="1", TONGLU_WHISPER_MODEL="tiny.en",
    )
    log = open(tmp_path / "up.log", "wb")
    proc = subprocess.Popen([TONGLU, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "tonglu up not healthy in 120 s"
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        # something that writes: a failed login (audit log + table), the initial admin file exists
        httpx.post(f"{base}/api/auth/login", json={"username": "admin", "password": "x" * 12}, timeout=30)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2, "expected a recorder and a transcription worker"
        umasks = {int(pid): _umask_of(int(pid)) for pid in [proc.pid, *map(int, children)]}
        assert all(m == 0o077 for m in umasks.values()), {p: oct(m) for p, m in umasks.items()}

        assert _mode(data) == 0o700
        assert _mode(data / "index.db") == 0o600
        assert _mode(data / "transcribe" / "queue.db") == 0o600
        assert (data / "audit" / "audit.log").exists() and (data / "initial-admin.txt").exists()
        loose = []
        for dirpath, dirnames, filenames in os.walk(data):
            for name in filenames + dirnames:
                p = Path(dirpath) / name
                if p not in before and not p.is_symlink() and _mode(p) & 0o077:
                    loose.append(f"{p.relative_to(data)} {oct(_mode(p))}")
        assert loose == [], loose
        assert len([p for p in data.rglob("*") if p not in before]) > 10  # the check above saw real files
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()


def test_export_downloads_do_not_stay(tmp_path: Path) -> None:
    from tonglu.web.app import create_app
    from tonglu.web.services import Services

    token = "export-admin-token-0123456789abcdef"
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_ADMIN_TOKEN": token})
    b = build(tmp_path, Scenario(), settings=settings, spool_segments=True)
    exports = settings.data_dir / "exports"
    stale = exports / "old-session" / "old.zip"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over by a crash")
    os.utime(stale, (time.time() - 2 * settings.export_ttl_s,) * 2)
    fresh = exports / "other" / "fresh.zip"
    fresh.parent.mkdir(parents=True)
    fresh.write_bytes(b"being served right now")

    client = TestClient(create_app(Services.local(settings)))
    assert not stale.exists(), "an expired download was not swept at start"
    r = client.get(f"/api/sessions/{b.sid}/export.zip?workcopy=false", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.content[:2] == b"PK"
    assert f'filename="{b.sid}-' in r.headers["content-disposition"]
    left = [p for p in exports.rglob("*") if p.is_file()]
    assert left == [fresh], f"the served package stayed on disk: {left}"
    assert sweep(exports, settings.export_ttl_s, now_s=time.time() + settings.export_ttl_s + 1) == 1
    assert not exports.exists() or not any(exports.iterdir())
