"""Uploader and EvidenceReader against a real SeaweedFS (in-process)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from minio.commonconfig import COMPLIANCE

from tonglu.config import Settings
from tonglu.evidence.errors import ObjectNotFound, SpoolCorrupt
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.reader import EvidenceReader
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import WORK, Spool
from tonglu.evidence.uploader import Uploader


def seg_key(sid: str, i: int) -> str:
    return f"sessions/{sid}/segments/main/video/{i:08d}.webm"


@pytest.fixture
def parts(seaweed, store_settings: Settings) -> tuple[Spool, Ledger, ObjectStore]:
    spool = Spool(store_settings.spool_dir)
    ledger = Ledger(store_settings.ledger_dir, spool, SiteKey.load(store_settings.keys_dir))
    return spool, ledger, seaweed.object_store(store_settings)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_drain_uploads_everything_once_with_retention(parts, store_settings: Settings) -> None:
    spool, ledger, store = parts
    blobs = {seg_key("S1", i): os.urandom(20_000 + i) for i in range(6)}
    ledger.append("S1", "session_start", {"room": "r1"})
    for k, b in blobs.items():
        spool.put_bytes(k, b, content_type="video/webm")
    spool.put_bytes("sessions/S1/workcopy/pip.mp4", b"derived", bucket=WORK)
    ledger.checkpoint("S1", final=True)
    up = Uploader(spool, store, store_settings, ledger=ledger, threads=3)
    report = up.drain_once()
    assert report.uploaded == 9 and report.quarantined == 0 and report.unavailable is None
    assert spool.pending() == []
    assert len(report.seal_latencies_s) == 9 and all(0 <= x < 60 for x in report.seal_latencies_s)
    for k, b in blobs.items():
        assert store.get(k) == b
        info = store.stat(k)
        assert info.lock_mode == COMPLIANCE and info.retain_until is not None
        assert info.content_type == "video/webm"
    work = store.stat("sessions/S1/workcopy/pip.mp4", bucket=store.work_bucket)
    assert work.lock_mode is None and store.get("sessions/S1/workcopy/pip.mp4", bucket=store.work_bucket) == b"derived"
    entry = ManifestEntry.from_bytes(store.get("sessions/S1/manifest/00000000.json"))
    assert entry.kind == "session_start"
    # Restart: recovery re-spools the ledger tail; the identical objects count as present.
    up2 = Uploader(spool, store, store_settings, ledger=ledger)
    up2.recover()
    assert spool.pending(), "recover() should have re-spooled the newest entries"
    r2 = up2.drain_once()
    assert r2.uploaded == 0 and r2.already_present >= 2 and spool.pending() == []
    assert all(len([v for v in store.versions(k)]) == 1 for k in blobs)
    up.close()
    up2.close()


def test_corrupt_spool_file_is_quarantined_not_deleted(parts, store_settings: Settings) -> None:
    spool, _, store = parts
    good = spool.put_bytes(seg_key("S2", 0), b"good segment")
    bad = spool.put_bytes(seg_key("S2", 1), b"bad segment!")
    bad.data_path.write_bytes(b"bit-rotted!!")
    report = Uploader(spool, store, store_settings, threads=1).drain_once()
    assert report.uploaded == 1 and report.quarantined == 1
    assert seg_key("S2", 1) in report.errors[0] and "changed on disk" in report.errors[0]
    (q,) = spool.quarantined()
    assert (q / bad.data_path.name).read_bytes() == b"bit-rotted!!"
    assert (q / bad.meta_path.name).exists() and "changed on disk" in (q / "REASON.txt").read_text()
    assert store.get(good.key) == b"good segment"
    with pytest.raises(ObjectNotFound):
        store.stat(bad.key)


def test_unreachable_store_keeps_the_spool(store_settings: Settings) -> None:
    spool = Spool(store_settings.spool_dir)
    items = [spool.put_bytes(seg_key("S3", i), b"x" * (i + 1)) for i in range(3)]
    dead = ObjectStore(f"http://127.0.0.1:{closed_port()}", "a", "b", evidence_bucket=store_settings.evidence_bucket)
    up = Uploader(spool, dead, store_settings, threads=2, backoff_initial_s=0.05)
    report = up.drain_once()
    assert report.confirmed == 0 and report.unavailable and "unreachable" in report.unavailable
    assert [i.name for i in spool.pending()] == [i.name for i in items]
    assert all(i.data_path.exists() for i in items)
    total = up.drain(max_wait_s=0.3)
    assert total.unavailable and len(spool.pending()) == 3
    up.close()


def test_wrong_credential_keeps_the_spool(seaweed, store_settings: Settings) -> None:
    spool = Spool(store_settings.spool_dir)
    spool.put_bytes(seg_key("S4", 0), b"data")
    access, _ = seaweed.credentials["recorder"]
    wrong = ObjectStore(seaweed.endpoint, access, "wrong-secret", evidence_bucket=store_settings.evidence_bucket)
    report = Uploader(spool, wrong, store_settings, threads=1).drain_once()
    assert report.auth_failed and "SignatureDoesNotMatch" in (report.unavailable or "")
    assert len(spool.pending()) == 1


def test_run_loop_uploads_items_as_they_arrive(parts, store_settings: Settings) -> None:
    spool, ledger, store = parts
    seen: list[str] = []
    up = Uploader(
        spool,
        store,
        store_settings,
        ledger=ledger,
        threads=2,
        on_confirmed=lambda item, _ns: seen.append(item.key),
    )
    stop = threading.Event()
    t = threading.Thread(target=up.run, args=(stop,))
    t.start()
    try:
        for i in range(5):
            spool.put_bytes(seg_key("S5", i), os.urandom(1000))
            ledger.append("S5", "marker", {"time_ns": time.time_ns(), "note": f"m{i}", "by": "t"})
            time.sleep(0.05)
        deadline = time.monotonic() + 30
        while spool.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(30)
        up.close()
    assert not t.is_alive()
    assert spool.pending() == []
    assert sorted(seen) == sorted(
        [seg_key("S5", i) for i in range(5)] + [f"sessions/S5/manifest/{i:08d}.json" for i in range(5)]
    )
    assert len(up.latencies_s) == 10


def test_reader_serves_spool_then_store(parts, store_settings: Settings, tmp_path: Path) -> None:
    spool, _, store = parts
    data = os.urandom(300_000)
    item = spool.put_bytes(seg_key("S6", 0), data)
    reader = EvidenceReader(spool, store)
    assert reader.read(item.key) == data  # pending: from the spool
    assert reader.exists(item.key)
    Uploader(spool, store, store_settings, threads=1).drain_once()
    assert not item.data_path.exists()
    assert reader.read(item.key) == data  # now from the store
    out = tmp_path / "o.webm"
    assert reader.to_file(item.key, out) == len(data) and out.read_bytes() == data
    with pytest.raises(ObjectNotFound):
        reader.read(seg_key("S6", 99))
    # A spooled copy that rotted is refused, not served.
    rot = spool.put_bytes(seg_key("S6", 1), b"abc")
    rot.data_path.write_bytes(b"abd")
    with pytest.raises(SpoolCorrupt):
        reader.read(rot.key)
    assert hashlib.sha256(store.get(item.key)).hexdigest() == item.sha256


def test_crash_inside_confirm_is_finished_not_quarantined(parts, store_settings: Settings) -> None:
    spool, _, store = parts
    item = spool.put_bytes(seg_key("S7", 0), b"stored already")
    store.put_if_absent(item.key, b"stored already", item.sha256)
    item.data_path.unlink()  # the crash: data gone, sidecar left
    report = Uploader(spool, store, store_settings, threads=1).drain_once()
    assert (report.already_present, report.quarantined) == (1, 0)
    assert spool.pending() == [] and spool.quarantined() == []
    # Without the object in the store, the same state is a real loss: quarantined and named.
    lost = spool.put_bytes(seg_key("S7", 1), b"never uploaded")
    lost.data_path.unlink()
    report = Uploader(spool, store, store_settings, threads=1).drain_once()
    assert report.quarantined == 1 and "missing" in report.errors[0]
