"""Risk rules as data: a YAML file with a `version` and a list of rules, validated strictly.

    version: 1
    rules:
      - id: duration_limit            # unique; also the rule type unless `type` is given
        legal_source: 刑事诉讼法第119条
        severity: 告警                 # 提示 (info) | 预警 (warning) | 告警 (alarm)
        title: 讯问持续时间达到法定上限
        params: {hours: 12, serious_case_hours: 24}

The package ships `default.yaml` next to this module; a site points `TONGLU_RISK_RULES` at its
own file. Any unknown field, unknown rule type, duplicate id, bad severity or bad parameter is
refused with the file and the line of the offending node (`RuleFileError`), so a server never
starts with rules it does not understand.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tonglu.integrity.errors import RuleFileError
from tonglu.integrity.risk.rules import RULE_TYPES, Evaluator, Param

DEFAULT_RULES = Path(__file__).resolve().parent / "default.yaml"
RULES_VERSION = 1
SEVERITIES = {"提示": "info", "预警": "warning", "告警": "alarm"}
TOP_FIELDS = {"version", "rules"}
RULE_FIELDS = {"id", "type", "legal_source", "severity", "title", "params", "enabled"}
REQUIRED = ("id", "legal_source", "severity", "title")
_ID = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Rule:
    id: str
    type: str
    legal_source: str
    severity: str  # 提示 | 预警 | 告警
    title: str
    params: dict[str, Any]
    evaluate: Evaluator = field(repr=False, compare=False)

    @property
    def level(self) -> str:
        """info | warning | alarm"""
        return SEVERITIES[self.severity]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "legal_source": self.legal_source, "severity": self.severity,
                "level": self.level, "title": self.title, "params": self.params}


@dataclass(frozen=True)
class RuleSet:
    path: str
    version: int
    sha256: str
    rules: tuple[Rule, ...]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "version": self.version, "sha256": self.sha256,
                "rules": [r.to_json() for r in self.rules]}


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node | None, message: str) -> RuleFileError:
        return RuleFileError(self.path, _line(node) if node is not None else None, message)

    def mapping(self, node: yaml.Node, what: str, allowed: set[str]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} 应为映射 (must be a mapping)")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self.fail(key_node, f"{what} 的键应为文本 (keys must be strings)")
            if key in out:
                raise self.fail(key_node, f"{what} 重复字段 {key!r} (duplicate field)")
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.fail(key_node, f"{what} 未知字段 {key!r} (unknown field {key!r}; allowed: {known})")
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, "应为单个值 (must be a single value)")
        return self.constructor.construct_object(node, deep=True)

    def text(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, f"{what} 应为非空文本 (must be a non-empty string)")
        return value.strip()


def _param(reader: _Reader, rule_id: str, name: str, spec: Param, node: yaml.Node) -> Any:
    what = f"规则 {rule_id} 参数 {name}"
    if spec.kind is list:
        if not isinstance(node, yaml.SequenceNode):
            raise reader.fail(node, f"{what} 应为列表 (must be a list)")
        return [reader.text(item, what) for item in node.value]
    value = reader.scalar(node)
    if spec.kind is str:
        return reader.text(node, what)
    wrong = isinstance(value, bool) or not isinstance(value, int | float)
    if wrong or (spec.kind is int and not isinstance(value, int)):
        kind = "整数" if spec.kind is int else "数值"
        raise reader.fail(node, f"{what} 应为{kind} (must be a {spec.kind.__name__})")
    if spec.minimum is not None and value < spec.minimum:
        raise reader.fail(node, f"{what} 不得小于 {spec.minimum:g} (must be >= {spec.minimum:g})")
    return value


def _rule(reader: _Reader, node: yaml.Node, seen: set[str]) -> Rule:
    fields = reader.mapping(node, "规则 rule", RULE_FIELDS)
    for name in REQUIRED:
        if name not in fields:
            raise reader.fail(node, f"规则缺少字段 {name!r} (rule is missing {name!r})")
    id_node = fields["id"][1]
    rule_id = reader.text(id_node, "id")
    if not _ID.match(rule_id):
        raise reader.fail(id_node, f"规则 id {rule_id!r} 应为小写字母、数字、下划线 (must match [a-z][a-z0-9_]*)")
    if rule_id in seen:
        raise reader.fail(id_node, f"规则 id {rule_id!r} 重复 (duplicate rule id)")
    type_node = fields["type"][1] if "type" in fields else id_node
    rule_type = reader.text(type_node, "type")
    if rule_type not in RULE_TYPES:
        known = ", ".join(sorted(RULE_TYPES))
        raise reader.fail(type_node, f"未知规则 {rule_type!r} (unknown rule type {rule_type!r}; known: {known})")
    sev_node = fields["severity"][1]
    severity = reader.text(sev_node, "severity")
    if severity not in SEVERITIES:
        raise reader.fail(sev_node,
                          f"级别 {severity!r} 无效，应为 提示/预警/告警 (severity must be one of 提示, 预警, 告警)")
    evaluate, specs = RULE_TYPES[rule_type]
    params = {name: spec.default for name, spec in specs.items()}
    if "params" in fields:
        pnode = fields["params"][1]
        if not (isinstance(pnode, yaml.ScalarNode) and pnode.value in ("", "~", "null")):
            for name, (_key, value_node) in reader.mapping(pnode, f"规则 {rule_id} 参数 params", set(specs)).items():
                params[name] = _param(reader, rule_id, name, specs[name], value_node)
    if "enabled" in fields and not isinstance(reader.scalar(fields["enabled"][1]), bool):
        raise reader.fail(fields["enabled"][1], "enabled 应为 true/false (must be a boolean)")
    _check_params(reader, rule_type, params, fields.get("params", (node, node))[1])
    seen.add(rule_id)
    return Rule(rule_id, rule_type, reader.text(fields["legal_source"][1], "legal_source"), severity,
                reader.text(fields["title"][1], "title"), params, evaluate)


def _check_params(reader: _Reader, rule_type: str, params: dict[str, Any], node: yaml.Node) -> None:
    if rule_type == "night_questioning":
        import datetime as dt
        from zoneinfo import ZoneInfo

        for name in ("start", "end"):
            try:
                dt.time.fromisoformat(params[name])
            except ValueError as exc:
                raise reader.fail(node, f"{name} 应为 HH:MM 时间 (must be a HH:MM time)") from exc
        try:
            ZoneInfo(params["timezone"])
        except Exception as exc:
            raise reader.fail(node, f"未知时区 {params['timezone']!r} (unknown time zone)") from exc


def parse_rules(text: str, path: str = "<rules>") -> RuleSet:
    reader = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise RuleFileError(path, line, f"YAML 语法错误 (YAML syntax error): {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise RuleFileError(path, None, f"YAML 错误 (YAML error): {exc}") from exc
    if root is None:
        raise RuleFileError(path, None, "文件为空 (the file is empty)")
    top = reader.mapping(root, "规则文件 rule file", TOP_FIELDS)
    if "version" not in top:
        raise reader.fail(root, "缺少 version (missing 'version')")
    vnode = top["version"][1]
    version = reader.scalar(vnode)
    if version != RULES_VERSION or isinstance(version, bool):
        raise reader.fail(vnode, f"不支持的规则文件版本 {version!r} "
                                 f"(unsupported version; this server reads {RULES_VERSION})")
    if "rules" not in top:
        raise reader.fail(root, "缺少 rules (missing 'rules')")
    rnode = top["rules"][1]
    if not isinstance(rnode, yaml.SequenceNode):
        raise reader.fail(rnode, "rules 应为列表 (must be a list)")
    seen: set[str] = set()
    rules = []
    for item in rnode.value:
        rule = _rule(reader, item, seen)
        fields = reader.mapping(item, "规则 rule", RULE_FIELDS)
        if "enabled" in fields and reader.scalar(fields["enabled"][1]) is False:
            continue
        rules.append(rule)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return RuleSet(path, RULES_VERSION, digest, tuple(rules))


def load_rules(path: Path | None = None) -> RuleSet:
    """The rule file at `path` (a site's `TONGLU_RISK_RULES`), else the shipped default."""
    target = path or DEFAULT_RULES
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(str(target), None, f"无法读取 (cannot read): {exc}") from exc
    except UnicodeDecodeError as exc:
        raise RuleFileError(str(target), None, f"不是 UTF-8 文本 (not UTF-8): {exc}") from exc
    return parse_rules(text, str(target))
