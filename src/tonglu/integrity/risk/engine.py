"""Evaluate a rule set over one session's facts at `now`: alerts, deduplicated by episode.

Pure: the caller (the web process's timer) writes each returned alert body as an `alert`
manifest entry and feeds it back, so the same rule and episode never alerts twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tonglu.integrity.risk.facts import SessionFacts
from tonglu.integrity.risk.ruleset import Rule, RuleSet

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")


@dataclass(frozen=True)
class Alert:
    alert_id: str
    rule: Rule
    key: str
    at_ns: int
    message: str
    detail: dict[str, Any]

    def body(self, ruleset: RuleSet, now_ns: int) -> dict[str, Any]:
        """The `alert` manifest entry body."""
        return {
            "alert_id": self.alert_id,
            "rule_id": self.rule.id,
            "rule_type": self.rule.type,
            "severity": self.rule.severity,
            "level": self.rule.level,
            "title": self.rule.title,
            "legal_source": self.rule.legal_source,
            "message": self.message,
            "condition_ns": self.at_ns,
            "evaluated_ns": now_ns,
            "params": self.rule.params,
            "detail": self.detail,
            "rules_version": ruleset.version,
            "rules_sha256": ruleset.sha256,
        }


def alert_id(rule_id: str, key: str) -> str:
    return f"{rule_id}.{_UNSAFE.sub('_', key)}"


def evaluate(ruleset: RuleSet, facts: SessionFacts, now_ns: int) -> list[Alert]:
    """Every alert the rules raise for the session as of `now` (written ones included)."""
    out = []
    for rule in ruleset.rules:
        for hit in rule.evaluate(rule.params, facts, now_ns):
            out.append(Alert(alert_id(rule.id, hit.key), rule, hit.key, hit.at_ns, hit.message, hit.detail))
    return out


def pending(ruleset: RuleSet, facts: SessionFacts, now_ns: int) -> list[Alert]:
    """The alerts not yet written (their id is not among the session's `alert` entries)."""
    return [a for a in evaluate(ruleset, facts, now_ns) if a.alert_id not in facts.alert_ids]
