"""Alert and acknowledgement entries are evidence: hash-chained, signed, and accepted by the offline
verifier shipped in every export package."""

from __future__ import annotations

from pathlib import Path

from tests.verify.session_builder import SECOND, T0, build_session, lay_out
from tonglu.evidence import verify_core


def test_a_session_with_alerts_verifies_offline(tmp_path: Path) -> None:
    built = build_session(tmp_path / "built", stop=False)
    sid, ledger = built.sid, built.ledger
    alert = {"alert_id": "interviewers_present.seq9", "rule_id": "interviewers_present", "severity": "告警",
             "title": "在场讯问人员少于二人", "legal_source": "刑事诉讼法第118条", "message": "…",
             "condition_ns": T0 + 4 * SECOND}
    ledger.append(sid, "alert", alert, now_ns=T0 + 4 * SECOND + 1)
    ledger.append(sid, "alert_ack", {"alert_id": "interviewers_present.seq9", "by": "sup", "role": "supervisor"},
                  now_ns=T0 + 4 * SECOND + 2)
    ledger.append(sid, "session_stop", {"stopped_by": "李四"}, now_ns=T0 + 5 * SECOND)
    ledger.checkpoint(sid, final=True, now_ns=T0 + 5 * SECOND + 1)
    result = verify_core.verify_path(str(lay_out(built, tmp_path / "evidence")))
    assert result.errors == [], verify_core.format_human(result)
    assert {"alert", "alert_ack"} <= verify_core.ANNOTATION_KINDS
