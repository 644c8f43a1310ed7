"""`tonglu store upload|bootstrap|up` and `tonglu reindex` as separate processes: results and clear errors."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.storage_io.cli import env_for, run_tonglu, spool_files, tonglu_cmd
from tonglu.config import Settings
from tonglu.evidence.errors import StorageError
from tonglu.evidence.keys import public_key_key
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.seaweed import load_endpoint, s3_answers
from tonglu.evidence.signing import PRIVATE_NAME, SiteKey
from tonglu.evidence.spool import Spool


def seg_key(sid: str, i: int) -> str:
    return f"sessions/{sid}/segments/main/video/{i:08d}.webm"


def spool_session(settings: Settings, sid: str = "C1", n: int = 3) -> tuple[Spool, Ledger]:
    spool = Spool(settings.spool_dir)
    ledger = Ledger(settings.ledger_dir, spool, SiteKey.load_or_create(settings.keys_dir))
    ledger.append(sid, "session_start", {"room": "r1", "case_number": "CLI-1"})
    for i in range(n):
        spool.put_bytes(seg_key(sid, i), os.urandom(10_000))
    ledger.append(sid, "session_stop", {"stopped_by": "t", "reason": "done"})
    ledger.checkpoint(sid, final=True)
    return spool, ledger


def assert_nothing_lost(before: dict[str, bytes], after: dict[str, bytes]) -> None:
    """Every spooled file is still there (maybe re-spooled extras, never fewer)."""
    for name, data in before.items():
        assert after.get(name) == data, f"{name} was removed or changed"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_upload_once_drains_the_spool(seaweed, store_settings: Settings) -> None:
    spool_session(store_settings)
    r = run_tonglu(store_settings, "store", "upload", "--once")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["uploaded"] == 3 + 2 + 1 and out["pending"] == 0 and out["quarantined"] == 0
    store = seaweed.object_store(store_settings)
    assert len(store.list("sessions/C1/")) == 6
    # reindex from the store alone
    db = store_settings.data_dir / "rebuilt.db"
    r2 = run_tonglu(store_settings, "reindex", TONGLU_DATABASE_URL=f"sqlite:///{db}")
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout) == {"sessions": 1, "entries": 2, "checkpoints": 1, "skipped": [], "findings": []}


def test_unreachable_store_is_named_and_spool_kept(store_settings: Settings) -> None:
    spool_session(store_settings)
    before = spool_files(store_settings)
    url = f"http://127.0.0.1:{closed_port()}"
    r = run_tonglu(store_settings, "store", "upload", "--once", "--max-wait", "0.5", TONGLU_S3_ENDPOINT=url)
    assert r.returncode == 1
    assert "unreachable" in r.stderr and url in r.stderr and "stay in the spool" in r.stderr
    assert_nothing_lost(before, spool_files(store_settings))


def test_wrong_credential_is_named_and_spool_kept(store_settings: Settings) -> None:
    spool_session(store_settings)
    before = spool_files(store_settings)
    r = run_tonglu(store_settings, "store", "upload", "--once", "--max-wait", "0", TONGLU_S3_SECRET_KEY="wrong")
    assert r.returncode == 1
    assert "rejected the credentials" in r.stderr and "SignatureDoesNotMatch" in r.stderr
    assert_nothing_lost(before, spool_files(store_settings))


def test_missing_key_file_is_named_and_spool_kept(store_settings: Settings) -> None:
    spool_session(store_settings)
    (store_settings.keys_dir / PRIVATE_NAME).unlink()
    before = spool_files(store_settings)
    r = run_tonglu(store_settings, "store", "upload", "--once")
    assert r.returncode == 1
    assert str(store_settings.keys_dir / PRIVATE_NAME) in r.stderr and "missing" in r.stderr
    assert spool_files(store_settings) == before
    r2 = run_tonglu(store_settings, "store", "bootstrap")
    assert r2.returncode == 1 and "KeyFileError" in r2.stderr and PRIVATE_NAME in r2.stderr


def test_corrupt_spool_file_is_quarantined_and_named(seaweed, store_settings: Settings) -> None:
    spool, _ = spool_session(store_settings)
    victim = next(i for i in spool.pending() if i.key == seg_key("C1", 1))
    victim.data_path.write_bytes(b"tampered")
    r = run_tonglu(store_settings, "store", "upload", "--once")
    assert r.returncode == 1
    assert seg_key("C1", 1) in r.stderr and "quarantined" in r.stderr
    out = json.loads(r.stdout)
    assert out["quarantined"] == 1 and out["uploaded"] == 5
    (q,) = spool.quarantined()
    assert (q / victim.data_path.name).read_bytes() == b"tampered"
    assert not seaweed.object_store(store_settings).exists(seg_key("C1", 1))


def test_embedded_store_never_started_is_named(tmp_path: Path) -> None:
    s = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "fresh")})
    spool_session(s)
    before = spool_files(s)
    r = run_tonglu(s, "store", "upload", "--once")
    assert r.returncode == 1
    assert "endpoint.json" in r.stderr and "tonglu store up" in r.stderr
    assert spool_files(s) == before


def test_store_up_runs_bootstraps_and_stops_on_sigterm(tmp_path: Path) -> None:
    s = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "emb"), "TONGLU_RETENTION_SECONDS": "60"})
    proc = subprocess.Popen(
        tonglu_cmd("store", "up"), env=env_for(s), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        ep = None
        while time.monotonic() < deadline and proc.poll() is None:
            if (s.store_dir / "endpoint.json").exists() and (s.store_dir / "weed.pid").exists():
                ep = load_endpoint(s.store_dir)
                if s3_answers(ep.s3_url):
                    break
            time.sleep(0.1)
        assert ep is not None and proc.poll() is None
        weed_pid = int((s.store_dir / "weed.pid").read_text())
        # Bootstrap runs right after start (it creates the site key): wait until the key is in the bucket.
        admin = ObjectStore.from_settings(s, role="admin")
        while time.monotonic() < deadline:
            if (s.keys_dir / PRIVATE_NAME).exists():
                key_id = SiteKey.load(s.keys_dir).key_id
                with contextlib.suppress(StorageError):
                    if admin.exists(public_key_key(key_id)):
                        break
            time.sleep(0.1)
        else:
            pytest.fail("store up did not bootstrap within 60 s")
        spool_session(s, "E1", 2)
        r = run_tonglu(s, "store", "upload", "--once", "--max-wait", "2")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["pending"] == 0
        r2 = run_tonglu(s, "reindex")
        assert r2.returncode == 0, r2.stderr
        assert json.loads(r2.stdout)["entries"] == 2
        # A second `store up` on the same data dir is refused, naming the running one.
        r3 = run_tonglu(s, "store", "up", timeout=60)
        assert r3.returncode == 1 and f"pid {weed_pid}" in r3.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    with pytest.raises(ProcessLookupError):
        os.kill(weed_pid, 0)
    assert not (s.store_dir / "weed.pid").exists()


def test_bench_store_prints_one_json_object(tmp_path: Path) -> None:
    s = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "unused")})
    r = run_tonglu(s, "bench", "store", "--seconds", "4", "--streams", "8", "--verify-mb", "8", timeout=180)
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.strip().splitlines()
    out = json.loads(line)
    for k in ("seal_p50_s", "seal_p99_s", "verify_mb_s", "sha256sum_mb_s"):
        assert isinstance(out[k], float) and out[k] > 0, k
    assert out["segments"] == 8 and out["segments_not_sealed"] == 0 and out["one_version_per_key"]
    assert out["seal_p50_s"] <= out["seal_p99_s"]
