"""Finding 5: the audit trail could be rewritten consistently in its two local copies.

Removing records from both `audit.log` and the `web_audit` table and re-hashing the rest passed
`AuditLog.verify()`: the WORM batches in the evidence bucket were never compared. Now every batch
has a checkpoint signed with the site key, and `verify()` (`tonglu audit verify`, `/api/audit/verify`
and the `/audit` page) checks the local copies against the signed batches read from the real
object store, naming the first record that differs. Forged batches written with the recorder's
credential (shadow versions, own signature) change nothing: the first version is read and only
the site key's signature counts.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert
from typer.testing import CliRunner

from tests.verify.test_store import env_for
from tests.web.conftest import FAST_HASHER, Staff
from tonglu.cli import app as cli_app
from tonglu.config import Settings
from tonglu.evidence import canonical
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.evidence.uploader import Uploader
from tonglu.web.accounts import USER_ROLES, Accounts
from tonglu.web.app import create_app
from tonglu.web.audit import AuditLog
from tonglu.web.auditchain import AuditChain, AuditRecord, checkpoint_body, encode_checkpoint
from tonglu.web.services import Services
from tonglu.web.tables import audit_records

BATCH = 5
N = 23  # batches 0-4, 5-9, 10-14, 15-19, then 20-22 at flush
REMOVED = (7, 8)


def _upload(seaweed: Any, settings: Settings) -> None:
    up = Uploader(Spool(settings.spool_dir), seaweed.object_store(settings, "recorder"), settings, threads=2)
    try:
        report = up.drain(max_wait_s=30)
    finally:
        up.close()
    assert report.pending_left == 0 and not report.errors, report


@pytest.fixture
def trail(seaweed: Any, tmp_path: Path) -> tuple[Settings, AuditLog]:
    settings = seaweed.settings(tmp_path / "data")
    log = AuditLog.from_settings(settings, Spool(settings.spool_dir), batch_records=BATCH)
    for i in range(N):
        log.append(user=f"u{i}", role="reviewer", address="10.0.0.9", action="view", obj=f"/review/s-{i}")
    log.flush()
    _upload(seaweed, settings)
    reviewer = seaweed.object_store(settings, "reviewer")
    keys = reviewer.list("audit/")
    assert len([k for k in keys if k.endswith(".jsonl")]) == 5
    assert len([k for k in keys if k.endswith(".checkpoint.json")]) == 5
    check = AuditLog.from_settings(settings).verify(store=reviewer)
    assert check.ok and check.worm_records == N, check.problems
    return settings, log


def rewrite_consistently(log: AuditLog, removed: tuple[int, ...]) -> list[bytes]:
    """Drop `removed` from the file and the table, renumber and re-hash the rest (a valid chain)."""
    old = [AuditRecord.from_bytes(ln) for ln in log.log_path.read_bytes().split(b"\n") if ln]
    chain = AuditChain()
    lines = []
    for rec in old:
        if rec.seq in removed:
            continue
        new = chain.append(now_ns=rec.time_ns, user=rec.user, role=rec.role, address=rec.address,
                           action=rec.action, obj=rec.object, outcome=rec.outcome, detail=rec.detail)
        lines.append(new.to_bytes())
    log.log_path.write_bytes(b"".join(ln + b"\n" for ln in lines))
    with log.engine.begin() as conn:
        conn.execute(delete(audit_records))
        for ln in lines:
            conn.execute(insert(audit_records).values(**AuditLog._row(AuditRecord.from_bytes(ln), ln)))
    return lines


def _named_first(problems: list[str]) -> None:
    want = "record seq 7 is the first that differs from the signed WORM batch audit/000000000005-000000000009.jsonl"
    assert any(p.startswith(f"audit.log: {want}") for p in problems), problems
    assert any(p.startswith(f"database: {want}") for p in problems), problems


def test_consistent_rewrite_of_file_and_table_is_detected_via_the_signed_worm_batches(
    seaweed: Any, trail: tuple[Settings, AuditLog]
) -> None:
    settings, log = trail
    rewrite_consistently(log, REMOVED)
    fresh = AuditLog.from_settings(settings)
    local_only = fresh.verify(store=None)  # what the old check saw: both copies agree, chains hold
    assert not any("differs between audit.log and the database" in p for p in local_only.problems)
    assert not any(p.startswith(("audit.log: record #", "database: record #")) for p in local_only.problems)

    check = fresh.verify(store=seaweed.object_store(settings, "reviewer"))
    assert not check.ok
    _named_first(check.problems)

    # `tonglu audit verify` (the read-only identity, as an operator runs it)
    r = CliRunner().invoke(cli_app, ["audit", "verify", "--json"], env=env_for(seaweed, settings))
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["ok"] is False
    _named_first(doc["problems"])
    r = CliRunner().invoke(cli_app, ["audit", "verify"], env=env_for(seaweed, settings))
    assert r.exit_code == 1 and "seq 7" in r.stdout


def test_forged_batches_by_the_recorder_do_not_hide_the_rewrite(
    seaweed: Any, trail: tuple[Settings, AuditLog]
) -> None:
    """The attacker also overwrites the batch and its checkpoint (own key) with the recorder credential,
    and adds a new, self-signed batch: the first versions and the site key still decide."""
    settings, log = trail
    lines = rewrite_consistently(log, REMOVED)
    recorder = seaweed.object_store(settings, "recorder")
    attacker = SiteKey.load_or_create(settings.data_dir / "attacker-keys")
    forged = lines[5:10]
    data = b"".join(ln + b"\n" for ln in forged)
    body = checkpoint_body(forged, data, time_ns=1, key_id=attacker.key_id)
    cp = encode_checkpoint(body, attacker.sign(canonical.encode(body)))
    for key, blob in (
        ("audit/000000000005-000000000009.jsonl", data),
        ("audit/000000000005-000000000009.checkpoint.json", cp),
        ("audit/000000000021-000000000021.jsonl", lines[-1] + b"\n"),
    ):
        recorder.client.put_object(settings.evidence_bucket, key, io.BytesIO(blob), len(blob))
    check = AuditLog.from_settings(settings).verify(store=seaweed.object_store(settings, "reviewer"))
    assert not check.ok
    _named_first(check.problems)
    assert any("shadow version: audit/000000000005-000000000009.jsonl" in n for n in check.notes), check.notes
    assert any("audit/000000000021-000000000021.jsonl has no signed checkpoint" in p for p in check.problems)


def test_the_audit_page_and_api_check_against_the_worm_batches(
    seaweed: Any, trail: tuple[Settings, AuditLog]
) -> None:
    settings, log = trail
    services = Services.local(settings)
    services.accounts = Accounts.from_url(settings.db_url, hasher=FAST_HASHER)
    services.audit = log
    services.store = seaweed.object_store(settings, "recorder")  # as `tonglu up` wires it
    tokens = {}
    for role in USER_ROLES:
        services.accounts.create_user(role, role, f"pw-{role}-0123456789", display_name=role)
        tokens[role] = services.accounts.issue_api_token(role, "tests")[1]
    staff = Staff(tokens)
    with TestClient(create_app(services), follow_redirects=False) as client:
        ok = client.get("/api/audit/verify", headers=staff.auth("auditor")).json()
        assert ok["ok"] is True and ok["worm_records"] >= N
        rewrite_consistently(log, REMOVED)
        log._state = type(log._state)()  # the running app re-reads the rewritten file on its next append
        doc = client.get("/api/audit/verify", headers=staff.auth("auditor")).json()
        assert doc["ok"] is False
        _named_first(doc["problems"])
        page = client.get("/audit", headers=staff.auth("auditor"))
        assert page.status_code == 200 and "哈希链被破坏" in page.text and "seq 7" in page.text


def test_a_batch_left_unsigned_by_a_crash_is_no_false_alarm(tmp_path: Path) -> None:
    """Crash between the batch and its checkpoint: the records are re-batched (signed) with the next ones."""
    from tonglu.web.tables import engine_for

    engine = engine_for(f"sqlite:///{tmp_path / 'a.db'}")
    spool = Spool(tmp_path / "spool")
    key = SiteKey.load_or_create(tmp_path / "keys")
    unsigned = AuditLog(engine, tmp_path / "audit", spool, batch_records=3)  # the checkpoint never written
    for i in range(3):
        unsigned.append(user="u", role="reviewer", address="-", action="view", obj=f"o{i}")
    (tmp_path / "audit" / "spooled").write_text("0")  # ...nor the counter
    log = AuditLog(engine, tmp_path / "audit", spool, batch_records=3, site_key=key)
    log.append(user="u", role="reviewer", address="-", action="view", obj="o3")
    check = log.verify()
    assert check.ok and check.worm_records == 4, check.problems
    assert any("000000000000-000000000002.jsonl: no signed checkpoint" in n for n in check.notes)
    # a batch nobody re-batched stays a problem
    (tmp_path / "audit" / "spooled").write_text("4")
    for item in spool.pending():
        if item.key.endswith("000000000000-000000000003.jsonl"):
            item.data_path.unlink()
            item.meta_path.unlink()
    check = AuditLog(engine, tmp_path / "audit", spool, site_key=key).verify()
    assert not check.ok
    assert any("has no signed checkpoint" in p for p in check.problems), check.problems
