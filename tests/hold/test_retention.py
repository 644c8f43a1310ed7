"""Retention by case category against a real SeaweedFS: set at session start or later, applied at
upload and extended on stored objects, never shortened; the retention report (API, CLI, page) says
what expires when."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from typer.testing import CliRunner

from tests.hold.conftest import PASSWORD, RETENTION_S, HoldEnv
from tests.storage_io.cli import env_for
from tonglu.cli import app
from tonglu.evidence.retention import PERMANENT_SECONDS

HUNDRED_YEARS = timedelta(seconds=PERMANENT_SECONDS)


def _retentions(env: HoldEnv, sid: str) -> dict[str, tuple[datetime, datetime]]:
    """key@version -> (uploaded, retain_until)."""
    out = {}
    for v in env.versions(sid):
        info = env.store.stat(v.key, version_id=v.version_id)
        assert info.last_modified is not None and info.retain_until is not None
        out[f"{v.key}@{v.version_id}"] = (info.last_modified, info.retain_until)
    return out


def test_category_change_extends_stored_objects_and_shortening_is_refused(hold_env: HoldEnv) -> None:
    env = hold_env
    sid = env.session("S-cat").sid
    before = _retentions(env, sid)
    assert len(before) >= 15
    assert all(until - up < timedelta(seconds=RETENTION_S + 5) for up, until in before.values())

    r = env.client.post(f"/api/sessions/{sid}/retention", json={"category": "evidence", "reason": "已作为定案证据"},
                        headers=env.auth("sup1"))
    assert r.status_code == 200, r.text
    assert r.json()["permanent"] is True and r.json()["store"]["changed"] == len(before)
    extended = _retentions(env, sid)
    for name, (up, _until) in before.items():
        assert abs((extended[name][1] - (up + HUNDRED_YEARS)).total_seconds()) < 2, name

    # Back to a shorter category: refused with the reason, nothing changed, the refusal audited.
    r = env.client.post(f"/api/sessions/{sid}/retention", json={"category": "general"}, headers=env.auth("sup2"))
    assert r.status_code == 409
    assert "can only be extended" in r.json()["detail"] and "只能延长" in r.json()["detail"]
    assert {k: v[1] for k, v in _retentions(env, sid).items() if k in extended} == \
        {k: v[1] for k, v in extended.items()}
    kinds = [(e.kind, e.body.get("category")) for e in env.services.ledger.entries(sid) if e.kind == "retention"]
    assert kinds == [("retention", "evidence")]
    audit = [(r["user"], r["outcome"]) for r in env.services.audit.query(action="retention_category")]
    assert audit == [("sup1", "ok"), ("sup2", "denied")]

    # Objects uploaded after the change get the category's retention at upload.
    late = env.services.ledger.append(sid, "note", {"text": "补充说明", "by": "sup1"})
    env.upload()
    info = env.store.stat(f"sessions/{sid}/manifest/{late.seq:08d}.json")
    assert info.retain_until is not None and info.retain_until > datetime.now(UTC) + HUNDRED_YEARS - timedelta(days=1)

    assert env.client.post(f"/api/sessions/{sid}/retention", json={"category": "nonesuch"},
                           headers=env.auth("sup1")).status_code == 422
    assert env.client.post(f"/api/sessions/{sid}/retention", json={"category": "homicide"},
                           headers=env.auth("rev1")).status_code == 403


def test_category_given_at_session_start_is_applied_at_upload(hold_env: HoldEnv) -> None:
    env = hold_env
    body = {"room": "room-1", "case_number": "A-2026-7", "suspect": "张三", "interviewers": ["李警官", "王警官"],
            "case_category": "homicide"}
    r = env.client.post("/api/sessions", json=body, headers=env.auth("int1"))
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert env.services.ledger.entries(sid)[0].body["case_category"] == "homicide"
    env.upload()
    (up, until), = _retentions(env, sid).values()
    assert abs((until - (up + HUNDRED_YEARS)).total_seconds()) < 5
    bad = env.client.post("/api/sessions", json={**body, "case_category": "Homicide!"}, headers=env.auth("int1"))
    assert bad.status_code == 400 and "case_category" in bad.text


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _cli(env: HoldEnv, *args: str, password: str | None = None) -> Ran:
    """`tonglu ...` in this process (the real command line, its own ledger, store client and audit log)."""
    r = CliRunner().invoke(app, list(args), env=env_for(env.settings),
                           input=f"{password}\n" if password is not None else None)
    return Ran(r.exit_code, r.stdout, r.stderr)


def test_retention_report_says_what_expires_when(hold_env: HoldEnv) -> None:
    env = hold_env
    short = env.bare_session("S-short")
    serious = env.bare_session("S-serious", case_category="serious")
    held = env.bare_session("S-held-report")
    assert env.client.post(f"/api/sessions/{held}/legal-hold", json={"reason": "申诉", "case_reference": "申诉-7"},
                           headers=env.auth("sup1")).status_code == 201
    env.upload()  # the hold's own manifest entry, held from its upload

    r = env.client.get("/api/retention/report", headers=env.auth("aud1"))
    assert r.status_code == 200, r.text
    rows = {row["session"]: row for row in r.json()["sessions"]}
    assert [row["session"] for row in r.json()["sessions"]] == [short, serious, held]
    now = datetime.now(UTC)
    s = rows[short]
    assert (s["category"], s["permanent"], s["held"], s["objects"]) == ("general", False, False, 1)
    earliest = datetime.fromisoformat(s["earliest_retain_until"].replace("Z", "+00:00"))
    assert now - timedelta(seconds=30) < earliest < now + timedelta(seconds=RETENTION_S + 1)
    assert rows[serious]["permanent"] is True and rows[serious]["objects"] == 1
    assert datetime.fromisoformat(rows[serious]["latest_retain_until"].replace("Z", "+00:00")).year >= now.year + 99
    h = rows[held]
    assert h["held"] is True and h["objects_held"] == h["objects"] == 2  # session_start + the hold's entry
    assert h["active_holds"][0]["case_reference"] == "申诉-7"
    cats = {c["category"]: c for c in r.json()["categories"]}
    assert cats["homicide"]["permanent"] and cats["general"]["retention_seconds"] == RETENTION_S
    assert env.client.get("/api/retention/report", headers=env.auth("int1")).status_code == 403

    # The manifest's estimate (entry time + retention) agrees with what the store holds.
    expected = datetime.fromisoformat(s["expected_earliest_retain_until"].replace("Z", "+00:00"))
    assert abs((earliest - expected).total_seconds()) < 5
    quick = env.client.get("/api/retention/report?store=false", headers=env.auth("sup1")).json()["sessions"]
    assert [q["session"] for q in quick] == [short, serious, held] and not any(q["store_checked"] for q in quick)

    page = env.client.get("/admin/holds", headers=env.auth("sup2"))
    assert page.status_code == 200 and held in page.text and "保全中" in page.text and "申诉-7" in page.text
    assert "check-store" in page.text
    checked = env.client.get("/admin/holds?store=1", headers=env.auth("aud1"))
    assert checked.status_code == 200 and "(2 保全中)" in checked.text and 'id="place-hold"' not in checked.text
    assert env.client.get("/admin/holds", headers=env.auth("rev1")).status_code == 403

    out = _cli(env, "retention", "report", "--format", "json")
    assert out.returncode == 0, out.stderr
    cli_rows: list[dict[str, Any]] = json.loads(out.stdout)
    assert [(c["session"], c["category"], c["held"], c["objects"]) for c in cli_rows] == \
        [(short, "general", False, 1), (serious, "serious", False, 1), (held, "general", True, 2)]
    table = _cli(env, "retention", "report")
    assert table.returncode == 0 and "HOLD" in table.stdout and serious in table.stdout


def test_cli_hold_steps_need_a_second_person(hold_env: HoldEnv) -> None:
    env = hold_env
    sid = env.bare_session("S-cli")
    placed = _cli(env, "hold", "place", sid, "--reason", "排非申请", "--case-ref", "排非-1", "--user", "sup1",
                  "--password-stdin", password=PASSWORD)
    assert placed.returncode == 0, placed.stderr
    assert json.loads(placed.stdout)["store"]["complete"] is True
    assert all(env.store.stat(v.key, version_id=v.version_id).legal_hold for v in env.versions(sid))
    wrong = _cli(env, "hold", "request-lift", sid, "--reason", "x", "--user", "sup1", "--password-stdin",
                 password="not-the-password")
    assert wrong.returncode == 1 and "wrong user name or password" in wrong.stderr
    reviewer = _cli(env, "hold", "request-lift", sid, "--reason", "x", "--user", "rev1", "--password-stdin",
                    password=PASSWORD)
    assert reviewer.returncode == 1 and "reviewer" in reviewer.stderr
    req = _cli(env, "hold", "request-lift", sid, "--reason", "判决生效", "--user", "sup1", "--password-stdin",
               password=PASSWORD)
    assert req.returncode == 0, req.stderr
    rid = json.loads(req.stdout)["request"]["request_id"]
    same = _cli(env, "hold", "approve-lift", sid, rid, "--user", "sup1", "--password-stdin", password=PASSWORD)
    assert same.returncode == 1 and "two-person rule" in same.stderr
    assert all(env.store.stat(v.key, version_id=v.version_id).legal_hold for v in env.versions(sid))
    other = _cli(env, "hold", "approve-lift", sid, rid, "--user", "adm1", "--password-stdin", password=PASSWORD)
    assert other.returncode == 0, other.stderr
    assert not any(env.store.stat(v.key, version_id=v.version_id).legal_hold for v in env.versions(sid))
    status = _cli(env, "hold", "status", sid, "--objects")
    assert status.returncode == 0 and json.loads(status.stdout)["held"] is False
    records = [(r["user"], r["action"], r["outcome"], r["address"]) for r in env.services.audit.query(obj=sid)]
    assert records == [
        ("sup1", "legal_hold_place", "ok", "cli"),
        ("sup1", "legal_hold_lift_request", "denied", "cli"),
        ("rev1", "legal_hold_lift_request", "denied", "cli"),
        ("sup1", "legal_hold_lift_request", "ok", "cli"),
        ("sup1", "legal_hold_lift_approve", "denied", "cli"),
        ("adm1", "legal_hold_lift_approve", "ok", "cli"),
    ]
