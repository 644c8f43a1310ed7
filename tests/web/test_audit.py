"""The audit trail: evidence access shows up, the chain verifies, edits are detected."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, update

from tests.web.conftest import Staff, start_session
from tonglu.evidence.spool import Spool
from tonglu.web.audit import AuditLog
from tonglu.web.rbac import MATRIX
from tonglu.web.services import Services
from tonglu.web.tables import audit_records, engine_for

SID = "s-audit-1"
EVIDENCE_PATH = re.compile(r"^/(api/sessions|review|console|live|remote)/\{\}")


def _fill(path: str) -> str:
    first = True

    def repl(_m: re.Match[str]) -> str:
        nonlocal first
        value = SID if first else "x"
        first = False
        return value

    return re.sub(r"\{\}", repl, path)


def test_every_evidence_read_route_is_audited() -> None:
    """Every GET under a session (pages, streams, downloads, reports, transcripts) names an audit action."""
    unaudited = [
        p
        for (m, p), rule in MATRIX.items()
        if m == "GET"
        and EVIDENCE_PATH.match(p)
        and rule.kind == "roles"
        and rule.audit is None
        and p not in {"/api/sessions/{}", "/api/sessions/{}/events", "/api/sessions/{}/invitations"}
    ]
    assert unaudited == []


def test_evidence_access_shows_up_in_the_audit_trail(
    app: object, client: TestClient, staff: Staff, services: Services
) -> None:
    """Call every audited route once as a role it admits and once as one it refuses."""
    start_session(services, SID)
    from tonglu.web.routeindex import flatten

    registered = {(m, re.sub(r"\{[^}]*\}", "{}", i.path)) for i in flatten(app) for m in i.methods}
    audited = [
        (m, p, r) for (m, p), r in MATRIX.items() if r.audit and r.kind == "roles" and (m, p) in registered
    ]
    # endless server-sent-event streams are audited at response start too; the live-server test covers them
    audited = [(m, p, r) for m, p, r in audited if not p.endswith("/live")]
    assert len(audited) >= 8
    for method, path, rule in audited:
        staff_roles = [r for r in rule.roles if r != "participant"]
        if not staff_roles:
            continue  # participant-only pages: covered in test_invitations
        allowed = staff_roles[0]
        url = _fill(path)
        before = services.audit.count()
        kwargs: dict[str, object] = {"headers": staff.auth(allowed)}
        if method in ("POST", "PATCH", "PUT"):
            kwargs["json"] = {}
        r = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        rows = services.audit.query(obj=url)
        assert services.audit.count() > before, f"{method} {url} left no audit record"
        last = rows[-1]
        assert last["user"] == allowed and last["role"] == allowed and last["action"] == rule.audit
        assert last["address"] == "testclient"
        assert f'"status": {r.status_code}' in last["detail"]
        refused = next(
            (x for x in ("reviewer", "auditor", "supervisor", "interviewer") if x not in rule.roles), None
        )
        if refused:
            r = client.request(method, url, headers=staff.auth(refused))
            assert r.status_code == 403
            last = services.audit.query(obj=url)[-1]
            assert last["user"] == refused and last["outcome"] == "denied"
    assert services.audit.verify().ok


def test_logins_are_audited(client: TestClient, staff: Staff, services: Services) -> None:
    client.post("/api/auth/login", json={"username": "reviewer", "password": "nope"})
    client.post("/api/auth/login", json={"username": "reviewer", "password": "pw-reviewer-0123456789"})
    rows = services.audit.query(action="login")
    assert [(r["user"], r["role"], r["outcome"]) for r in rows[-2:]] == [
        ("reviewer", "anonymous", "failed"),
        ("reviewer", "reviewer", "ok"),
    ]


def _stored(tmp_path: Path, n: int = 5) -> AuditLog:
    log = AuditLog(engine_for(f"sqlite:///{tmp_path / 'audit.db'}"), tmp_path / "audit")
    for i in range(n):
        log.append(user=f"u{i}", role="reviewer", address="10.0.0.1", action="view", obj=f"/review/s{i}")
    assert log.verify().ok
    return log


def test_edit_of_a_database_record_is_detected(tmp_path: Path) -> None:
    log = _stored(tmp_path)
    with log.engine.begin() as conn:
        conn.execute(update(audit_records).where(audit_records.c.seq == 2).values(user="someone-else"))
    check = log.verify()
    assert not check.ok and any("seq 2" in p for p in check.problems)


def test_consistent_rewrite_of_a_database_record_is_detected(tmp_path: Path) -> None:
    """Even rewriting raw bytes and hash together breaks the link to the next record and the file copy."""
    log = _stored(tmp_path)
    with log.engine.connect() as conn:
        row = conn.execute(audit_records.select().where(audit_records.c.seq == 4)).first()
    assert row is not None
    from tonglu.web.auditchain import AuditRecord

    rec = AuditRecord.from_bytes(row.raw.encode())
    forged = AuditRecord(
        rec.seq,
        rec.time_ns,
        rec.user,
        rec.role,
        rec.address,
        "view",
        "/review/other",
        "ok",
        rec.prev,
        rec.detail,
    )
    with log.engine.begin() as conn:
        conn.execute(
            update(audit_records)
            .where(audit_records.c.seq == 4)
            .values(object=forged.object, raw=forged.to_bytes().decode(), hash=forged.hash)
        )
    check = log.verify()
    assert not check.ok and any("differs between audit.log and the database" in p for p in check.problems)


def test_deleted_database_record_is_detected(tmp_path: Path) -> None:
    log = _stored(tmp_path)
    with log.engine.begin() as conn:
        conn.execute(delete(audit_records).where(audit_records.c.seq == 1))
    check = log.verify()
    assert not check.ok and any("database" in p and "seq" in p for p in check.problems)


@pytest.mark.parametrize("how", ["edit", "delete", "swap"])
def test_edit_of_the_log_file_is_detected(tmp_path: Path, how: str) -> None:
    log = _stored(tmp_path)
    lines = log.log_path.read_bytes().split(b"\n")
    if how == "edit":
        lines[1] = lines[1].replace(b'"u1"', b'"u9"')
    elif how == "delete":
        del lines[2]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    log.log_path.write_bytes(b"\n".join(lines))
    check = log.verify()
    assert not check.ok and any("audit.log" in p for p in check.problems)


def test_records_are_spooled_to_the_worm_bucket_in_batches(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    log = AuditLog(engine_for(f"sqlite:///{tmp_path / 'a.db'}"), tmp_path / "audit", spool, batch_records=3)
    for i in range(7):
        log.append(user="u", role="reviewer", address="-", action="view", obj=f"o{i}")
    keys = [item.key for item in spool.pending()]
    assert keys == ["audit/000000000000-000000000002.jsonl", "audit/000000000003-000000000005.jsonl"]
    log.flush()
    items = spool.pending()
    assert items[-1].key == "audit/000000000006-000000000006.jsonl"
    from tonglu.web.audit import verify_batch_objects

    check = verify_batch_objects([i.data_path.read_bytes() for i in items])
    assert check.ok and check.count == 7


def test_two_writers_share_one_chain(tmp_path: Path) -> None:
    """Two processes' AuditLogs (same dir and DB) interleave without forking the chain."""
    engine = engine_for(f"sqlite:///{tmp_path / 'a.db'}")
    a = AuditLog(engine, tmp_path / "audit")
    b = AuditLog(engine, tmp_path / "audit")
    for i in range(6):
        (a if i % 2 else b).append(user="u", role="r", address="-", action="view", obj=f"o{i}")
    check = a.verify()
    assert check.ok and check.count == 6


def test_audit_api_csv_and_verify(client: TestClient, staff: Staff, services: Services) -> None:
    services.audit.append(user="=cmd|' /C calc'!A0", role="reviewer", address="-", action="view", obj="x")
    h = staff.auth("auditor")
    r = client.get("/api/audit.csv", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert rows and rows[0]["seq"] == "0"
    assert any(row["user"].startswith("'=cmd") for row in rows)  # formula made inert
    assert client.get("/api/audit/verify", headers=h).json()["ok"] is True
    assert client.get("/api/audit?action=view", headers=h).json()["records"][0]["action"] == "view"
    assert client.get("/api/audit?since=yesterday", headers=h).status_code == 422
    page = client.get("/audit", headers=h)
    assert page.status_code == 200 and "哈希链完整" in page.text
    # the export itself is audited
    assert services.audit.query(action="audit_export")[-1]["user"] == "auditor"


def test_audit_failure_withholds_evidence(
    client: TestClient, staff: Staff, services: Services, tmp_path: Path
) -> None:
    """If the audit record cannot be written, the audited response is not served."""
    start_session(services, SID)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    services.audit.log_path = blocker / "audit.log"
    r = client.get("/api/audit", headers=staff.auth("auditor"))
    assert r.status_code == 503
    r = client.post(f"/api/sessions/{SID}/markers", json={"note": "x"}, headers=staff.auth("interviewer"))
    assert r.status_code == 503 and "审计" in r.json()["detail"]
    assert [e.kind for e in services.ledger.entries(SID)] == ["session_start"]  # no unaudited change
    services.audit.log_path = tmp_path / "data" / "audit" / "audit.log"
