"""The verifier against a real SeaweedFS: a session uploaded by the real Uploader, then tampered
with through S3 (an overwrite creates a second version under WORM: reported, the original is read;
delete markers: tests/security/test_shadow_versions.py)."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.verify.session_builder import BuiltSession, build_session
from tonglu.cli import app
from tonglu.config import Settings
from tonglu.evidence.spool import Spool
from tonglu.evidence.uploader import Uploader
from tonglu.evidence.verify import local_trusted_keys, verify_store_session

runner = CliRunner()


@pytest.fixture
def uploaded(seaweed: Any, tmp_path: Path) -> tuple[Settings, BuiltSession]:
    settings = seaweed.settings(tmp_path / "data")  # fresh locked buckets; site key uploaded by bootstrap
    built = build_session(settings.data_dir)
    assert built.spool.root == settings.spool_dir
    up = Uploader(Spool(settings.spool_dir), seaweed.object_store(settings, "recorder"), settings, threads=2)
    try:
        report = up.drain(max_wait_s=30)
    finally:
        up.close()
    assert report.pending_left == 0 and not report.errors, report
    return settings, built


def env_for(seaweed: Any, settings: Settings, role: str = "reviewer", **over: str) -> dict[str, str]:
    access, secret = seaweed.credentials[role]
    env = {
        "TONGLU_DATA_DIR": str(settings.data_dir),
        "TONGLU_S3_ENDPOINT": seaweed.endpoint,
        "TONGLU_S3_ACCESS_KEY": access,
        "TONGLU_S3_SECRET_KEY": secret,
        "TONGLU_EVIDENCE_BUCKET": settings.evidence_bucket,
        "TONGLU_WORK_BUCKET": settings.work_bucket,
    }
    env.update(over)
    return env


def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", *args], env=env)
    return result.exit_code, result.output


@pytest.mark.slow
def test_store_session_verifies_then_an_overwrite_is_named_and_ignored(
    seaweed: Any, uploaded: tuple[Settings, BuiltSession]
) -> None:
    settings, built = uploaded
    reviewer = seaweed.object_store(settings, "reviewer")
    trusted = local_trusted_keys(settings.keys_dir)
    assert trusted, "the site key is the trust anchor"

    result = verify_store_session(reviewer, built.sid, trusted_keys=trusted)
    assert result.ok and result.problems == [], result.problems
    assert (
        result.sessions[0].segments == 7
        and result.sessions[0].final_digest == built.ledger.checkpoints(built.sid)[-1].digest
    )
    code, out = cli(env_for(seaweed, settings), "--session", built.sid, "--json")
    assert code == 0, out
    assert json.loads(out)["source_kind"] == "store"
    # The fixture's store lives in <dir>/store, i.e. the store_dir of data dir <dir>.
    assert seaweed.store.store_dir.name == "store"
    # No S3 variables: the embedded store found through `store_dir/endpoint.json` (reviewer identity).
    embedded = {
        "TONGLU_DATA_DIR": str(seaweed.store.store_dir.parent),
        "TONGLU_EVIDENCE_BUCKET": settings.evidence_bucket,
        "TONGLU_WORK_BUCKET": settings.work_bucket,
    }
    code, out = cli(embedded, "--session", built.sid)
    # that data dir holds no site key: nothing anchors the store's own key
    assert code == 3 and "一致但未锚定" in out, out
    digest = built.ledger.checkpoints(built.sid)[-1].digest
    code, out = cli(embedded, "--session", built.sid, "--digest", digest)
    assert code == 0 and "完整 INTACT" in out, out

    # Overwrite one segment with a plain PUT (the recorder identity may write): a second version.
    # The verifier reads the first version (the sealed original) and reports the shadow by key.
    recorder = seaweed.object_store(settings, "recorder")
    victim = built.segment_keys[2]
    original = recorder.get(victim)
    forged = bytes(b ^ 0x55 for b in original)
    recorder.client.put_object(settings.evidence_bucket, victim, io.BytesIO(forged), len(forged))
    assert recorder.get(victim) == forged

    result = verify_store_session(reviewer, built.sid, trusted_keys=trusted)
    assert result.ok, result.errors
    assert {(p.code, p.object, p.severity) for p in result.problems} == {("shadow_version", victim, "warning")}

    code, out = cli(env_for(seaweed, settings), "--session", built.sid)
    assert code == 0, out
    assert "shadow_version" in out and victim in out and "完整 INTACT" in out
    assert "site key held locally" in out  # the anchor is named


def test_unknown_session_in_the_store_is_not_intact(seaweed: Any, tmp_path: Path) -> None:
    settings = seaweed.settings(tmp_path / "data")
    code, out = cli(env_for(seaweed, settings), "--session", "no-such-session", "--json")
    assert code == 1
    assert "session_empty" in {p["code"] for p in json.loads(out)["problems"]}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_store_and_wrong_key_exit_1_naming_the_cause(seaweed: Any, tmp_path: Path) -> None:
    settings = seaweed.settings(tmp_path / "data")
    env = env_for(seaweed, settings, TONGLU_S3_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    code, out = cli(env, "--session", "S1")
    assert code == 1 and "CANNOT VERIFY" in out and "unreachable" in out
    env = env_for(seaweed, settings, TONGLU_S3_SECRET_KEY="wrong-secret")
    code, out = cli(env, "--session", "S1", "--json")
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "unreadable" and "credentials" in doc["error"]
