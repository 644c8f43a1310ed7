"""`tonglu store up --cluster`: evidence written through the cluster's S3 verifies, Object Lock
holds, and everything stays readable and verifiable with one volume server SIGKILLed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from minio.error import S3Error

from tests.conftest import SeaweedServer
from tests.verify.session_builder import build_session
from tonglu.evidence.spool import Spool
from tonglu.evidence.uploader import Uploader
from tonglu.evidence.verify import local_trusted_keys, verify_store_session


@pytest.mark.slow
def test_cluster_evidence_verifies_and_survives_a_lost_volume_server(
    seaweed_cluster: SeaweedServer, tmp_path: Path
) -> None:
    cluster = seaweed_cluster.store
    procs = cluster.procs
    assert set(procs) == {"master", "volume1", "volume2", "filer", "s3"}
    assert len({p.pid for p in procs.values()}) == 5
    settings = seaweed_cluster.settings(tmp_path / "data")  # bootstrap: locked bucket + site key
    built = build_session(settings.data_dir)
    store = seaweed_cluster.object_store(settings, "recorder")
    up = Uploader(Spool(settings.spool_dir), store, settings, threads=2)
    try:
        report = up.drain(max_wait_s=60)
    finally:
        up.close()
    assert report.pending_left == 0 and not report.errors, report
    trusted = local_trusted_keys(settings.keys_dir)
    reviewer = seaweed_cluster.object_store(settings, "reviewer")
    first = verify_store_session(reviewer, built.sid, trusted_keys=trusted)
    assert first.verdict == "intact", first.problems

    # Object Lock through the cluster: a sealed version cannot be deleted, even by admin
    key = built.segment_keys[0]
    version = store.client.stat_object(settings.evidence_bucket, key).version_id
    admin = seaweed_cluster.object_store(settings, "admin")
    with pytest.raises(S3Error):
        admin.client.remove_object(settings.evidence_bucket, key, version_id=version)

    # replication 001: both volume servers hold the data; lose one, everything still reads
    data = cluster.store_dir / "data"
    segment_bytes = sum(int(e.body["bytes"]) for e in built.segment_entries())
    volumes = {}
    for name in ("volume1", "volume2"):
        volumes[name] = {f.name: f.stat().st_size for f in (data / name).glob("*.dat")}
        held = sum(volumes[name].values())
        assert held >= segment_bytes > 0, f"{name} holds {held} bytes of {segment_bytes}: not replicated"
    assert volumes["volume1"].keys() == volumes["volume2"].keys(), volumes  # the same volumes, on both servers
    cluster.kill("volume2")
    try:
        deadline = time.monotonic() + 30
        while True:
            result = verify_store_session(reviewer, built.sid, trusted_keys=trusted)
            if result.verdict == "intact" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert result.verdict == "intact", [p.message for p in result.problems]
        assert result.sessions[0].segments == 7
    finally:
        cluster.restart("volume2")
