"""Fault tests: SIGKILL the uploader process mid-upload; stop the object store for 30 s."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.storage_io.cli import env_for, run_tonglu, tonglu_cmd
from tonglu.config import Settings
from tonglu.evidence.bootstrap import bootstrap
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.seaweed import EmbeddedStore, load_endpoint
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool

pytestmark = pytest.mark.slow


def seg_key(sid: str, i: int) -> str:
    return f"sessions/{sid}/segments/main/video/{i:08d}.ts"


def assert_exactly_once(store: ObjectStore, expected: dict[str, bytes], prefix: str) -> None:
    versions = store.versions(prefix)
    per_key: dict[str, int] = {}
    for v in versions:
        assert not v.delete_marker
        per_key[v.key] = per_key.get(v.key, 0) + 1
    missing = sorted(set(expected) - set(per_key))
    assert not missing, f"never arrived: {missing[:5]}"
    dupes = {k: n for k, n in per_key.items() if n != 1}
    assert not dupes, f"more than one version: {dupes}"
    for key, data in expected.items():
        assert hashlib.sha256(store.get(key)).hexdigest() == hashlib.sha256(data).hexdigest(), key


def test_sigkill_uploader_mid_upload_then_restart(seaweed, store_settings: Settings) -> None:
    spool = Spool(store_settings.spool_dir)
    ledger = Ledger(store_settings.ledger_dir, spool, SiteKey.load(store_settings.keys_dir))
    expected: dict[str, bytes] = {}
    ledger.append("K1", "session_start", {"room": "r1"})
    for i in range(40):
        data = os.urandom(2 * 1024 * 1024) if i % 2 == 0 else os.urandom(300_000)
        spool.put_bytes(seg_key("K1", i), data)
        expected[seg_key("K1", i)] = data
        ledger.append("K1", "marker", {"time_ns": i, "note": f"n{i}", "by": "t"})
    for e in ledger.entries("K1"):
        expected[f"sessions/K1/manifest/{e.seq:08d}.json"] = e.to_bytes()
    total = len(spool.pending())
    kills = 0
    env = env_for(store_settings)
    for _round in range(3):
        before = len(spool.pending())
        proc = subprocess.Popen(
            tonglu_cmd("store", "upload", "--once", "--threads", "2"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        # Kill once a few items were confirmed (uploads are in flight: 2 threads, 2 MB objects).
        while time.monotonic() < deadline and proc.poll() is None:
            if before - len(spool.pending()) >= 4:
                break
            time.sleep(0.01)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(30)
        assert 0 < len(spool.pending()) < total
    assert kills == 3
    r = run_tonglu(store_settings, "store", "upload", "--once")
    assert r.returncode == 0, r.stderr
    assert spool.pending() == [] and spool.quarantined() == []
    assert_exactly_once(seaweed.object_store(store_settings), expected, "sessions/K1/")


def test_store_outage_of_30s_loses_nothing(tmp_path: Path) -> None:
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_RETENTION_SECONDS": "120"})
    store_proc = EmbeddedStore(settings.store_dir)
    ep = store_proc.start()
    uploader = None
    try:
        key = SiteKey.load_or_create(settings.keys_dir)
        bootstrap(ObjectStore.from_settings(settings, role="admin"), settings, key)
        spool = Spool(settings.spool_dir)
        ledger = Ledger(settings.ledger_dir, spool, key)
        uploader = subprocess.Popen(
            tonglu_cmd("store", "upload", "--threads", "2"),
            env=env_for(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        expected: dict[str, bytes] = {}
        stop = threading.Event()
        errors: list[BaseException] = []

        def produce() -> None:
            i = 0
            try:
                ledger.append("O1", "session_start", {"room": "r1"})
                while not stop.is_set():
                    data = os.urandom(100_000)
                    spool.put_bytes(seg_key("O1", i), data)
                    expected[seg_key("O1", i)] = data
                    ledger.append("O1", "marker", {"time_ns": time.time_ns(), "note": f"seg {i}", "by": "t"})
                    i += 1
                    stop.wait(0.25)
            except BaseException as exc:  # surfaced by the main thread
                errors.append(exc)

        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(3)
        store_proc.stop()  # the outage begins
        outage_started = time.monotonic()
        time.sleep(30)
        backlog = len(spool.pending())
        assert backlog > 50, f"segments kept being spooled during the outage, backlog {backlog}"
        restarted = store_proc.start()  # same data dir, same ports
        assert restarted.ports == ep.ports and load_endpoint(settings.store_dir) == ep
        assert time.monotonic() - outage_started >= 30
        time.sleep(2)
        stop.set()
        producer.join(10)
        assert not errors, errors
        deadline = time.monotonic() + 90
        while spool.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert spool.pending() == [] and spool.quarantined() == []
        assert uploader.poll() is None, "the uploader gave up during the outage"
        store = ObjectStore.from_settings(settings)
        for e in ledger.entries("O1"):
            expected[f"sessions/O1/manifest/{e.seq:08d}.json"] = e.to_bytes()
        assert_exactly_once(store, expected, "sessions/O1/")
        assert ManifestEntry.from_bytes(store.get("sessions/O1/manifest/00000000.json")).kind == "session_start"
    finally:
        if uploader is not None and uploader.poll() is None:
            uploader.send_signal(signal.SIGTERM)
            try:
                uploader.wait(30)
            except subprocess.TimeoutExpired:
                uploader.kill()
        store_proc.stop()
    assert uploader is not None and uploader.returncode == 0, uploader.stderr.read() if uploader.stderr else ""


def test_weed_does_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path; from tonglu.evidence.seaweed import EmbeddedStore\n"
        f"s = EmbeddedStore(Path({str(tmp_path / 'store')!r})); s.start(); print(s.pid, flush=True); time.sleep(120)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2]
    )
    try:
        assert parent.stdout is not None
        weed_pid = int(parent.stdout.readline())
        os.kill(weed_pid, 0)
    finally:
        parent.kill()
        parent.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(weed_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(weed_pid, signal.SIGKILL)
        pytest.fail("weed outlived its killed parent")
    assert "Volume       stopped" in (tmp_path / "store" / "weed.log").read_text()  # a clean SIGTERM stop
