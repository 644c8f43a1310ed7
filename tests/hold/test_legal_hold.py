"""Legal hold against a real SeaweedFS: a held object outlives its COMPLIANCE retention (the store's
admin credential cannot delete it), a lift needs a second person, every step is audited and in the
manifest, and objects uploaded while the hold is on are held from their first byte."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.hold.conftest import ADMIN_TOKEN, HoldEnv
from tonglu.evidence import keys
from tonglu.evidence.errors import ObjectNotFound, StoreAuthError
from tonglu.evidence.verify import local_trusted_keys, verify_store_session

HOLD = {"reason": "被告人提出排除非法证据申请", "case_reference": "(2026)京0105刑初123号 排非"}


def _wait_until_retention_ends(env: HoldEnv, sid: str) -> None:
    latest = max(env.store.stat(v.key, version_id=v.version_id).retain_until for v in env.versions(sid))
    assert latest is not None
    left = (latest - datetime.now(UTC)).total_seconds()
    assert left < 30, f"retention is not the short test retention: {latest}"
    time.sleep(max(0.0, left) + 1.5)


def _audit(env: HoldEnv, action: str) -> list[tuple[str, str, str]]:
    return [(r["user"], r["outcome"], r["object"]) for r in
            (env.services.audit.query(action=action) or [])]


def test_a_held_session_outlives_its_retention_and_is_released_only_by_a_second_person(hold_env: HoldEnv) -> None:
    env = hold_env
    built = env.session("S-held")
    other = env.session("S-free")  # same retention, no hold: shows the retention really ended
    versions = env.versions(built.sid)
    kinds = {v.key.split("/")[2] for v in versions}
    assert {"segments", "manifest", "checkpoints"} <= kinds and len(versions) >= 15

    r = env.client.post(f"/api/sessions/{built.sid}/legal-hold", json=HOLD, headers=env.auth("sup1"))
    assert r.status_code == 201, r.text
    hold = r.json()["hold"]
    assert r.json()["store"] == {"objects": len(versions), "changed": len(versions), "unchanged": 0, "failed": 0,
                                 "errors": [], "complete": True}
    # Placing it again with the same reference is idempotent (same hold, store re-checked).
    again = env.client.post(f"/api/sessions/{built.sid}/legal-hold", json=HOLD, headers=env.auth("adm1"))
    assert again.status_code == 201 and again.json()["hold"]["hold_id"] == hold["hold_id"]
    assert again.json()["new"] is False and again.json()["store"]["changed"] == len(versions)

    # Evidence written after the hold (a note, an explanation, a transcript version) is held on upload.
    late = env.services.ledger.append(built.sid, "note", {"text": "排非庭审调取录像", "by": "sup1"})
    late_key = keys.manifest_key(built.sid, late.seq)
    env.upload()
    assert env.store.stat(late_key).legal_hold
    every = env.versions(built.sid)
    assert len(every) > len(versions)  # the hold's own manifest entry and checkpoint, the transcript
    assert all(env.store.stat(v.key, version_id=v.version_id).legal_hold for v in every)

    _wait_until_retention_ends(env, built.sid)
    free = env.versions(other.sid)[0]
    # The bucket's deny-deletes policy refuses every delete, the admin's too ...
    with pytest.raises(StoreAuthError, match="AccessDenied"):
        env.admin_store.delete_version(free.key, free.version_id)
    # ... but an admin can remove that policy: then only retention and the legal hold stand.
    env.admin_store.client.delete_bucket_policy(env.settings.evidence_bucket)
    env.admin_store.delete_version(free.key, free.version_id)  # retention over, no hold: deletable
    with pytest.raises(ObjectNotFound):
        env.store.stat(free.key, version_id=free.version_id)
    for v in [*every[:5], next(v for v in every if v.key == late_key)]:
        with pytest.raises(StoreAuthError, match="AccessDenied"):
            env.admin_store.delete_version(v.key, v.version_id)
        assert env.store.stat(v.key, version_id=v.version_id).size == v.size

    # Lift: requested by sup1; sup1 cannot approve it (two-person rule), sup2 can.
    r = env.client.post(f"/api/sessions/{built.sid}/legal-hold/lift-requests",
                        json={"reason": "判决已生效，排非程序终结"}, headers=env.auth("sup1"))
    assert r.status_code == 201, r.text
    rid = r.json()["request"]["request_id"]
    approve = f"/api/sessions/{built.sid}/legal-hold/lift-requests/{rid}/approve"
    same = env.client.post(approve, json={}, headers=env.auth("sup1"))
    assert same.status_code == 403
    assert "two-person rule" in same.json()["detail"] and "双人规则" in same.json()["detail"]
    token = env.client.post(approve, json={}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert token.status_code == 403 and "shared admin token" in token.json()["detail"]
    reviewer = env.client.post(approve, json={}, headers=env.auth("rev1"))
    assert reviewer.status_code == 403
    assert env.client.get(f"/api/sessions/{built.sid}/legal-hold", headers=env.auth("rev1")).json()["held"] is True
    with pytest.raises(StoreAuthError):
        env.admin_store.delete_version(every[0].key, every[0].version_id)

    ok = env.client.post(approve, json={"note": "同意"}, headers=env.auth("sup2"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["held"] is False and ok.json()["store"]["failed"] == 0
    assert ok.json()["request"]["approved_by"] == "sup2"
    twice = env.client.post(approve, json={}, headers=env.auth("adm1"))
    assert twice.status_code == 404 and "approved" in twice.json()["detail"]

    state = env.client.get(f"/api/sessions/{built.sid}/legal-hold?objects=true", headers=env.auth("aud1")).json()
    assert state["held"] is False
    assert state["holds"][0]["lifted_by"] == "sup2" and state["holds"][0]["placed_by"] == "sup1"

    # The manifest tells the hold's history, and the session still verifies with it.
    entries = env.services.ledger.entries(built.sid)
    history = [(e.kind, e.body.get("action"), e.body.get("by")) for e in entries
               if e.kind in ("legal_hold", "legal_hold_lift")]
    assert history == [("legal_hold", None, "sup1"), ("legal_hold_lift", "request", "sup1"),
                       ("legal_hold_lift", "approve", "sup2")]
    env.upload()
    assert state["store"]["objects_held"] == 0 and state["store"]["objects"] == len(every)
    result = verify_store_session(env.store, built.sid, trusted_keys=local_trusted_keys(env.settings.keys_dir))
    assert result.ok, result.problems

    # Every step audited, the refusals too.
    assert _audit(env, "legal_hold_place") == [("sup1", "ok", f"session:{built.sid}"),
                                                ("adm1", "ok", f"session:{built.sid}")]
    assert _audit(env, "legal_hold_lift_request") == [("sup1", "ok", f"session:{built.sid}")]
    approvals = _audit(env, "legal_hold_lift_approve")
    assert ("sup1", "denied", f"session:{built.sid}") in approvals
    assert ("admin-token", "denied", f"session:{built.sid}") in approvals
    assert ("sup2", "ok", f"session:{built.sid}") in approvals
    assert env.services.audit.verify().ok

    # Released: with its retention over, the admin credential can now delete it.
    released = env.versions(built.sid)
    assert not any(env.store.stat(v.key, version_id=v.version_id).legal_hold for v in released)
    _wait_until_retention_ends(env, built.sid)
    env.admin_store.delete_version(every[0].key, every[0].version_id)
    with pytest.raises(ObjectNotFound):
        env.store.stat(every[0].key, version_id=every[0].version_id)


def test_two_holds_keep_the_objects_held_until_both_are_lifted(hold_env: HoldEnv) -> None:
    env = hold_env
    sid = env.bare_session("S-two-holds")
    url = f"/api/sessions/{sid}/legal-hold"
    h1 = env.client.post(url, json=HOLD, headers=env.auth("sup1")).json()["hold"]["hold_id"]
    h2 = env.client.post(url, json={"reason": "上诉", "case_reference": "(2026)京01刑终9号"},
                         headers=env.auth("sup2")).json()["hold"]["hold_id"]
    ambiguous = env.client.post(f"{url}/lift-requests", json={"reason": "x"}, headers=env.auth("sup1"))
    assert ambiguous.status_code == 404 and h1 in ambiguous.json()["detail"]
    rid = env.client.post(f"{url}/lift-requests", json={"reason": "排非结束", "hold_id": h1},
                          headers=env.auth("sup1")).json()["request"]["request_id"]
    r = env.client.post(f"{url}/lift-requests/{rid}/approve", json={}, headers=env.auth("adm1"))
    assert r.status_code == 200 and r.json()["held"] is True and r.json()["store"] is None
    assert all(env.store.stat(v.key, version_id=v.version_id).legal_hold for v in env.versions(sid))
    state = env.client.get(url, headers=env.auth("sup1")).json()
    assert [h["hold_id"] for h in state["holds"] if h["active"]] == [h2]


def test_who_may_place_and_lift(hold_env: HoldEnv) -> None:
    env = hold_env
    sid = env.bare_session("S-roles", created_by="int1")  # int1 on the session: refused for its role
    url = f"/api/sessions/{sid}/legal-hold"
    for user in ("int1", "rev1", "aud1"):
        assert env.client.post(url, json=HOLD, headers=env.auth(user)).status_code == 403
    assert env.client.post(url, json={"reason": "", "case_reference": "x"},
                           headers=env.auth("sup1")).status_code == 422
    assert env.client.post("/api/sessions/no-such/legal-hold", json=HOLD, headers=env.auth("sup1")).status_code == 404
    none = env.client.post(f"{url}/lift-requests", json={"reason": "x"}, headers=env.auth("sup1"))
    assert none.status_code == 404 and "no active legal hold" in none.json()["detail"]
    assert env.client.get(url, headers=env.auth("int1")).json()["held"] is False


def test_the_read_only_identity_cannot_lift_a_hold(hold_env: HoldEnv) -> None:
    env = hold_env
    sid = env.bare_session("S-ident")
    assert env.client.post(f"/api/sessions/{sid}/legal-hold", json=HOLD, headers=env.auth("sup1")).status_code == 201
    reviewer = env.seaweed.object_store(env.settings, "reviewer")
    (v,) = env.versions(sid)
    assert reviewer.stat(v.key, version_id=v.version_id).legal_hold  # may read it
    with pytest.raises(StoreAuthError):
        reviewer.set_legal_hold(v.key, False, version_id=v.version_id)
    assert env.store.stat(v.key, version_id=v.version_id).legal_hold
