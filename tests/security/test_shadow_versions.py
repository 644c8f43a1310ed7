"""Finding 7: the recorder credential must not be able to shadow evidence.

With the recorder's S3 identity (which must be able to write) an attacker puts a newer version over
sealed keys (a plain PUT) or a delete marker on top. Object Lock keeps the originals; tools that
read the latest version then reported the session TAMPERED forever (or the object missing).
Every reader of evidence now reads the FIRST version and reports later versions and delete markers
as warnings naming the key: the verifier over the store, the evidence reader, reindex and the
export's object reader (`SpoolStoreEvidence`). Delete markers are refused outright on a bucket set
up by `bootstrap` (bucket policy); a bucket without that policy (set up before it) is covered too.
All against the real SeaweedFS of tests/conftest.py.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.verify.session_builder import BuiltSession, build_session
from tests.verify.test_store import env_for
from tonglu.cli import app
from tonglu.config import Settings
from tonglu.evidence import keys
from tonglu.evidence.errors import StoreAuthError
from tonglu.evidence.index import Index
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.reader import EvidenceReader
from tonglu.evidence.reindex import reindex
from tonglu.evidence.spool import Spool
from tonglu.evidence.uploader import Uploader
from tonglu.evidence.verify import local_trusted_keys, verify_store_session
from tonglu.integrity.evidence import STORE, SpoolStoreEvidence

runner = CliRunner()


def _upload(seaweed: Any, root: Path) -> tuple[Settings, BuiltSession]:
    settings = seaweed.settings(root / "data")  # fresh locked buckets, bootstrapped (site key, policy)
    built = build_session(settings.data_dir)
    up = Uploader(Spool(settings.spool_dir), seaweed.object_store(settings, "recorder"), settings, threads=2)
    try:
        report = up.drain(max_wait_s=30)
    finally:
        up.close()
    assert report.pending_left == 0 and not report.errors, report
    return settings, built


@pytest.fixture
def uploaded(seaweed: Any, tmp_path: Path) -> tuple[Settings, BuiltSession]:
    return _upload(seaweed, tmp_path)


def _shadow(store: ObjectStore, key: str) -> bytes:
    """A plain PUT (no If-None-Match) of different bytes over `key`; returns the original bytes."""
    original = store.get(key)
    forged = b"forged " + bytes(b ^ 0x5A for b in original)
    store.client.put_object(store.evidence_bucket, key, io.BytesIO(forged), len(forged))
    assert store.get(key) == forged  # the latest version is now the forgery
    return original


def _readers_see_originals(
    settings: Settings, built: BuiltSession, reviewer: ObjectStore, originals: dict[str, bytes]
) -> None:
    # evidence reader (nothing in a spool: straight from the store)
    reader = EvidenceReader(None, reviewer)
    for key, data in originals.items():
        assert reader.read(key) == data
        assert reader.exists(key)
    assert all(any(key in f for f in reader.findings) for key in originals)
    # the export's / integrity review's object reader
    files = SpoolStoreEvidence(Spool(settings.data_dir / "empty-spool"), reviewer)
    for key, data in originals.items():
        assert files.where(key) == STORE
        with files.open(key) as fh:
            assert fh.read() == data
    assert all(any(key in f for f in files.findings) for key in originals)
    # reindex: every entry and checkpoint applied from the originals, the shadows named
    report = reindex(reviewer, Index(f"sqlite:///{settings.data_dir / 'reindex.db'}"))
    assert not report.skipped, report.skipped
    assert report.entries == len(built.entries) and report.checkpoints == 2
    assert all(any(key in f for f in report.findings) for key in originals)


def test_shadow_versions_by_the_recorder_are_reported_and_the_originals_verify(
    seaweed: Any, uploaded: tuple[Settings, BuiltSession]
) -> None:
    settings, built = uploaded
    recorder = seaweed.object_store(settings, "recorder")
    reviewer = seaweed.object_store(settings, "reviewer")
    segment = built.segment_keys[1]
    entry = keys.manifest_key(built.sid, 3)
    checkpoint = keys.checkpoint_key(built.sid, 1)
    originals = {k: _shadow(recorder, k) for k in (segment, entry, checkpoint)}

    result = verify_store_session(reviewer, built.sid, trusted_keys=local_trusted_keys(settings.keys_dir))
    assert result.ok and result.verdict == "intact", [p.to_json() for p in result.errors]
    shadows = {(p.object, p.severity) for p in result.problems if p.code == "shadow_version"}
    assert shadows == {(k, "warning") for k in originals}
    assert result.sessions[0].final_digest == built.ledger.checkpoints(built.sid)[-1].digest

    out = runner.invoke(app, ["verify", "--session", built.sid, "--json"], env=env_for(seaweed, settings))
    doc = json.loads(out.output)
    assert out.exit_code == 0 and doc["verdict"] == "intact", out.output
    assert {p["object"] for p in doc["problems"] if p["code"] == "shadow_version"} == set(originals)

    _readers_see_originals(settings, built, reviewer, originals)


def test_delete_markers_are_refused_and_an_older_bucket_still_verifies(
    seaweed: Any, uploaded: tuple[Settings, BuiltSession]
) -> None:
    settings, built = uploaded
    recorder = seaweed.object_store(settings, "recorder")
    reviewer = seaweed.object_store(settings, "reviewer")
    victim = built.segment_keys[4]
    # The bucket as bootstrapped: no identity may put a delete marker on evidence.
    with pytest.raises(StoreAuthError, match="AccessDenied"):
        recorder.delete_version(victim, None)
    assert [v.delete_marker for v in recorder.versions(victim)] == [False]

    # A bucket set up before that policy existed: the marker goes in, hiding the key from listings.
    admin = seaweed.object_store(settings, "admin")
    admin.client.delete_bucket_policy(settings.evidence_bucket)
    original = recorder.get(victim)
    recorder.delete_version(victim, None)
    manifest_entry = keys.manifest_key(built.sid, 5)
    entry_bytes = recorder.get(manifest_entry)
    recorder.delete_version(manifest_entry, None)
    assert victim not in recorder.list(keys.session_prefix(built.sid))

    result = verify_store_session(reviewer, built.sid, trusted_keys=local_trusted_keys(settings.keys_dir))
    assert result.ok and result.verdict == "intact", [p.to_json() for p in result.errors]
    markers = {(p.object, p.severity) for p in result.problems if p.code == "delete_marker"}
    assert markers == {(victim, "warning"), (manifest_entry, "warning")}
    assert result.sessions[0].segments == 7

    code_out = runner.invoke(app, ["verify", "--session", built.sid], env=env_for(seaweed, settings))
    assert code_out.exit_code == 0, code_out.output
    assert "delete_marker" in code_out.output and victim in code_out.output and "TAMPERED" not in code_out.output

    _readers_see_originals(settings, built, reviewer, {victim: original, manifest_entry: entry_bytes})


def test_the_original_is_the_oldest_data_version() -> None:
    """Sans-I/O: S3 lists a key's versions newest first and reports whole seconds."""
    from datetime import UTC, datetime

    from tonglu.evidence.objectstore import VersionInfo, group_versions

    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    listing = [
        VersionInfo("k", "v3", True, 5, False, t1),  # newest
        VersionInfo("k", "v2", False, 5, False, t0),
        VersionInfo("k", "v1", False, 5, False, t0),  # same second as v2, listed after it: older
        VersionInfo("k", "m1", False, 0, True, t1),
        VersionInfo("gone", "m2", True, 0, True, t1),
    ]
    found = group_versions(listing)
    assert found["k"].original is not None and found["k"].original.version_id == "v1"
    assert [v.version_id for v in found["k"].shadows] == ["v2", "v3"]
    assert [v.version_id for v in found["k"].delete_markers] == ["m1"]
    assert found["gone"].original is None and not found["k"].clean


def test_a_retried_upload_compares_with_the_original_not_the_shadow(
    seaweed: Any, uploaded: tuple[Settings, BuiltSession]
) -> None:
    """The uploader re-sending a sealed object (e.g. after a crash) must not take a shadow for a conflict."""
    settings, built = uploaded
    recorder = seaweed.object_store(settings, "recorder")
    key = built.segment_keys[0]
    original = _shadow(recorder, key)
    result = recorder.put_if_absent(key, original, hashlib.sha256(original).hexdigest(), "video/webm")
    assert result.created is False  # identical to what is stored (the first version): success
