"""The sans-I/O part: the retention policy and the lock state folded from manifest entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tonglu.config import Settings
from tonglu.evidence.errors import ConfigError, HoldNotFound, TwoPersonRule, UnknownCategory
from tonglu.evidence.retention import PERMANENT_SECONDS, LockState, RetentionPolicy


def _state(*entries: tuple[str, dict[str, Any]]) -> LockState:
    st = LockState()
    for seq, (kind, body) in enumerate(entries):
        st.apply(seq, kind, body, 1_000 + seq)
    return st


def test_builtin_policy_and_overrides(tmp_path: Any) -> None:
    s = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path), "TONGLU_RETENTION_CATEGORIES":
                           '{"minor": "30s", "traffic": 365, "homicide": "200y", "general": "default"}'})
    p = RetentionPolicy.from_settings(s)
    assert p.rule(None).name == "general" and p.rule(None).seconds == 3650 * 86400
    assert p.rule("serious").permanent and p.rule("evidence").seconds == PERMANENT_SECONDS
    assert p.rule("minor").seconds == 30 and p.rule("traffic").seconds == 365 * 86400
    assert p.rule("homicide").permanent  # longer than "permanent" is permanent
    up = datetime(2026, 1, 1, tzinfo=UTC)
    assert p.retain_until("homicide", up).year == 2126
    with pytest.raises(UnknownCategory, match="minor"):
        p.rule("nonesuch")
    # An unknown category (removed from the settings later) keeps the longest retention, never less.
    assert p.effective("nonesuch").permanent
    assert p.retain_until("nonesuch", up) == up + timedelta(seconds=PERMANENT_SECONDS)


@pytest.mark.parametrize("bad", ['{"x": "soon"}', '{"Bad Name": "1d"}', '{"x": "0d"}', "[1, 2]", "not json"])
def test_bad_category_settings_are_refused(tmp_path: Any, bad: str) -> None:
    s = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path), "TONGLU_RETENTION_CATEGORIES": bad})
    with pytest.raises(ConfigError):
        RetentionPolicy.from_settings(s)


def test_category_from_session_start_then_retention_entries() -> None:
    st = _state(("session_start", {"room": "r", "case_category": "serious"}), ("segment", {}))
    assert st.category == "serious" and st.history == []
    st.apply(2, "retention", {"category": "evidence", "by": "a"}, 5)
    assert st.category == "evidence" and [h["kind"] for h in st.history] == ["retention"]
    assert _state(("session_start", {"room": "r"})).category is None


def test_two_person_rule_and_several_holds() -> None:
    st = _state(
        ("session_start", {}),
        ("legal_hold", {"hold_id": "h1", "reason": "排非", "case_reference": "A", "by": "sup1"}),
        ("legal_hold", {"hold_id": "h2", "reason": "上诉", "case_reference": "B", "by": "sup2"}),
        ("legal_hold_lift", {"action": "request", "request_id": "r1", "hold_id": "h1", "by": "sup1"}),
        ("legal_hold_lift", {"action": "request", "request_id": "r2", "hold_id": "h1", "by": "sup2"}),
    )
    assert st.held and st.active_hold_for("B") is not None
    with pytest.raises(HoldNotFound, match="several"):
        st.check_lift_request(None)
    with pytest.raises(TwoPersonRule, match="sup1"):
        st.check_approval("r1", "sup1")
    assert st.check_approval("r1", "adm1").request_id == "r1"
    st.apply(5, "legal_hold_lift", {"action": "approve", "request_id": "r1", "by": "adm1"}, 9)
    assert st.holds["h1"].lifted_by == "adm1" and st.held  # h2 still holds the objects
    assert st.requests["r2"].status == "superseded" and st.pending_requests == []
    with pytest.raises(HoldNotFound, match="approved"):
        st.check_approval("r1", "sup2")
    with pytest.raises(HoldNotFound, match="superseded"):
        st.check_approval("r2", "sup1")
    assert st.check_lift_request(None).hold_id == "h2"
    st.apply(6, "legal_hold_lift", {"action": "request", "request_id": "r3", "hold_id": "h2", "by": "sup2"}, 10)
    st.apply(7, "legal_hold_lift", {"action": "approve", "request_id": "r3", "by": "sup1"}, 11)
    assert not st.held
    with pytest.raises(HoldNotFound, match="no active"):
        st.check_lift_request(None)
    # An approval of an unknown request (a forged entry) changes nothing.
    st.apply(8, "legal_hold_lift", {"action": "approve", "request_id": "nope", "by": "x"}, 12)
    assert not st.held and len(st.history) == 8


def test_without_an_object_store_nothing_is_recorded(tmp_path: Any) -> None:
    from tonglu.evidence.holds import Holds
    from tonglu.evidence.ledger import Ledger
    from tonglu.evidence.signing import SiteKey
    from tonglu.evidence.spool import Spool

    ledger = Ledger(tmp_path / "ledger", Spool(tmp_path / "spool"), SiteKey.load_or_create(tmp_path / "keys"))
    ledger.append("S1", "session_start", {"room": "r"})
    holds = Holds(ledger, None, RetentionPolicy.build(60))
    with pytest.raises(ConfigError, match="no object store"):
        holds.place("S1", reason="排非", case_reference="A", by="sup1")
    with pytest.raises(ConfigError):
        holds.set_category("S1", "serious", by="sup1")
    with pytest.raises(HoldNotFound):
        holds.state("S2")
    assert [e.kind for e in ledger.entries("S1")] == ["session_start"]
