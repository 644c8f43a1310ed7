"""The rule file: shipped default, a site's own file, and every malformation refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonglu.config import Settings
from tonglu.integrity.errors import RuleFileError
from tonglu.integrity.risk.rules import RULE_TYPES
from tonglu.integrity.risk.ruleset import DEFAULT_RULES, RULE_FIELDS, load_rules, parse_rules

GOOD = """\
version: 1
rules:
  - id: duration_limit
    legal_source: 刑事诉讼法第119条
    severity: 告警
    title: 讯问持续时间达到法定上限
    params: {hours: 8, serious_case_hours: 24}
  - id: two_interviewers
    type: interviewers_present
    legal_source: 刑事诉讼法第118条
    severity: 预警
    title: 在场讯问人员少于二人
"""


def test_the_shipped_file_has_every_rule_type_with_source_severity_and_title() -> None:
    rs = load_rules()
    assert rs.path == str(DEFAULT_RULES) and DEFAULT_RULES.name == "default.yaml"
    assert {r.type for r in rs.rules} == set(RULE_TYPES)
    for r in rs.rules:
        assert r.legal_source and r.title and r.severity in ("提示", "预警", "告警")


def test_a_site_file_sets_parameters_and_types() -> None:
    rs = parse_rules(GOOD, "site.yaml")
    assert [(r.id, r.type, r.level) for r in rs.rules] == [
        ("duration_limit", "duration_limit", "alarm"), ("two_interviewers", "interviewers_present", "warning")]
    assert rs.rules[0].params == {"hours": 8, "serious_case_hours": 24}
    assert rs.rules[1].params == {"min_count": 2}  # defaults fill in


BAD = [
    (GOOD.replace("    params: {hours: 8", "    colour: red\n    params: {hours: 8"), 7, "unknown field 'colour'"),
    (GOOD.replace("version: 1\n", "version: 1\nauthor: x\n"), 2, "unknown field 'author'"),
    (GOOD.replace("- id: duration_limit", "- id: duration_limmit"), 3, "unknown rule type 'duration_limmit'"),
    (GOOD.replace("type: interviewers_present", "type: interviewer_present"), 9, "unknown rule type"),
    (GOOD.replace("severity: 预警", "severity: 严重"), 11, "severity must be one of"),
    (GOOD.replace("{hours: 8,", "{hours: -1,"), 7, "must be >= 0.001"),
    (GOOD.replace("{hours: 8,", "{hours: eight,"), 7, "must be a float"),
    (GOOD.replace("{hours: 8,", "{hourz: 8,"), 7, "unknown field 'hourz'"),
    (GOOD.replace("- id: two_interviewers\n    type: interviewers_present", "- id: duration_limit"), 8,
     "duplicate rule id"),
    (GOOD.replace("    title: 讯问持续时间达到法定上限\n", ""), 3, "missing 'title'"),
    (GOOD.replace("version: 1", "version: 2"), 1, "unsupported version"),
    (GOOD.replace("    severity: 告警\n", "    severity: 告警\n   bad: [\n"), 6, "YAML syntax error"),
    (GOOD.replace("    legal_source: 刑事诉讼法第118条\n",
                  "    legal_source: 刑事诉讼法第118条\n    legal_source: x\n"), 11, "duplicate field"),
]


@pytest.mark.parametrize(("text", "line", "needle"), BAD)
def test_a_malformed_file_is_refused_naming_the_file_and_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(RuleFileError) as info:
        parse_rules(text, "/etc/tonglu/rules.yaml")
    assert info.value.path == "/etc/tonglu/rules.yaml"
    assert needle in str(info.value)
    assert info.value.line == line, str(info.value)
    assert f"/etc/tonglu/rules.yaml:{line}:" in str(info.value)


def test_every_rule_field_is_known() -> None:
    assert RULE_FIELDS == {"id", "type", "legal_source", "severity", "title", "params", "enabled"}


def test_the_server_refuses_to_start_with_a_bad_site_file(tmp_path: Path) -> None:
    from tonglu.web.services import Services

    bad = tmp_path / "rules.yaml"
    bad.write_text(GOOD.replace("severity: 预警", "severity: warning"), encoding="utf-8")
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_RISK_RULES": str(bad)})
    assert settings.risk_rules == bad
    with pytest.raises(RuleFileError, match=rf"{bad}:11:"):
        Services.local(settings)
    good = tmp_path / "good.yaml"
    good.write_text(GOOD, encoding="utf-8")
    services = Services.local(Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data"),
                                                 "TONGLU_RISK_RULES": str(good)}))
    assert services.risk is not None and [r.id for r in services.risk.ruleset.rules] == [
        "duration_limit", "two_interviewers"]


def test_tonglu_up_refuses_a_bad_rule_file_naming_file_and_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tonglu.cli import app

    bad = tmp_path / "site-rules.yaml"
    bad.write_text(GOOD.replace("    title: 在场讯问人员少于二人\n", "    title: 在场讯问人员少于二人\n    owner: x\n"),
                   encoding="utf-8")
    r = CliRunner().invoke(app, ["up", "--recorder-workers", "0"],
                           env={"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_RISK_RULES": str(bad)})
    assert r.exit_code == 2, r.output
    assert f"{bad}:13:" in r.stderr and "unknown field 'owner'" in r.stderr
