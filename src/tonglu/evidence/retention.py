"""Retention by case category and legal holds, as the manifest records them (sans-I/O).

Retention policy: each case category maps to how long its masters stay under COMPLIANCE
retention, counted from each object's upload. Built-in categories (override or add more with
`TONGLU_RETENTION_CATEGORIES`, a JSON object such as `{"minor": "3650d", "test": "30s"}`):

    general    the site default (TONGLU_RETENTION_DAYS, 10 years; TONGLU_RETENTION_SECONDS in tests)
    serious    permanent  (重大案件)
    homicide   permanent  (命案)
    evidence   permanent  (已作为证据使用 used as evidence in court)

S3 Object Lock has no "permanent": a permanent category is written as a retain-until date
`PERMANENT_YEARS` (100) years after upload, and reported as permanent. COMPLIANCE retention can
only be extended, so a change to a category with a shorter retention is refused.

Lock state of a session: folded from its manifest entries (`LockState.from_entries`), so the
evidence itself shows its hold history and the uploader, web app and CLI agree on it:
- `session_start.case_category` (optional) and later `retention` entries set the category;
- `legal_hold` places a hold (a session may carry several: a motion and an appeal);
- `legal_hold_lift` with `action: "request"` asks to lift one hold, with `action: "approve"`
  approves that request. The approver must be a different person from the requester (two-person
  rule). The store's objects stay held while any hold is active.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tonglu.evidence.errors import ConfigError, HoldNotFound, TwoPersonRule, UnknownCategory

if TYPE_CHECKING:
    from tonglu.config import Settings
    from tonglu.evidence.manifest import ManifestEntry

PERMANENT = "permanent"
PERMANENT_YEARS = 100
PERMANENT_SECONDS = PERMANENT_YEARS * 36524 * 86400 // 100  # 100 Gregorian years
DEFAULT_CATEGORY = "general"
SITE_DEFAULT = "default"
BUILTIN_CATEGORIES: dict[str, str] = {
    DEFAULT_CATEGORY: SITE_DEFAULT,
    "serious": PERMANENT,
    "homicide": PERMANENT,
    "evidence": PERMANENT,
}
CATEGORY_LABELS = {
    "general": "一般案件 general",
    "serious": "重大案件 serious",
    "homicide": "命案 homicide",
    "evidence": "已作为证据使用 used as evidence",
}
_CATEGORY = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_DURATION = re.compile(r"^(\d{1,9})([sdy])$")
_UNIT_S = {"s": 1, "d": 86400, "y": 365 * 86400}


def valid_category_name(name: str) -> bool:
    return bool(_CATEGORY.match(name))


@dataclass(frozen=True)
class CategoryRule:
    name: str
    seconds: int
    permanent: bool

    @property
    def label(self) -> str:
        return CATEGORY_LABELS.get(self.name, self.name)

    def describe(self) -> str:
        if self.permanent:
            return f"永久 permanent (S3: {PERMANENT_YEARS} years)"
        days = self.seconds / 86400
        return f"{days:g} 天 days" if self.seconds >= 86400 else f"{self.seconds} 秒 seconds"


@dataclass(frozen=True)
class RetentionPolicy:
    rules: dict[str, CategoryRule]

    @classmethod
    def build(cls, default_seconds: int, overrides: Mapping[str, str] | None = None) -> RetentionPolicy:
        spec = {**BUILTIN_CATEGORIES, **(overrides or {})}
        rules = {}
        for name, value in spec.items():
            if not valid_category_name(name):
                raise ConfigError(f"retention category name {name!r} must match {_CATEGORY.pattern}")
            rules[name] = _rule(name, str(value), default_seconds)
        return cls(rules)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        overrides: dict[str, str] = {}
        if settings.retention_categories:
            try:
                doc = json.loads(settings.retention_categories)
            except ValueError as exc:
                raise ConfigError(f"TONGLU_RETENTION_CATEGORIES is not JSON: {exc}") from exc
            if not isinstance(doc, dict) or not all(isinstance(v, str | int) for v in doc.values()):
                raise ConfigError('TONGLU_RETENTION_CATEGORIES must be an object {"category": "3650d"|"permanent"}')
            overrides = {str(k): str(v) for k, v in doc.items()}
        return cls.build(settings.object_lock_retention_seconds, overrides)

    def rule(self, category: str | None) -> CategoryRule:
        name = category or DEFAULT_CATEGORY
        try:
            return self.rules[name]
        except KeyError:
            raise UnknownCategory(
                f"未知案件类别 (unknown case category {name!r}; known: {', '.join(sorted(self.rules))})"
            ) from None

    def effective(self, category: str | None) -> CategoryRule:
        """The rule for `category`; an unknown one (e.g. removed from the settings) keeps the
        longest retention any category has, never a shorter one."""
        try:
            return self.rule(category)
        except UnknownCategory:
            longest = max(self.rules.values(), key=lambda r: r.seconds)
            return CategoryRule(category or DEFAULT_CATEGORY, longest.seconds, longest.permanent)

    def retain_until(self, category: str | None, uploaded: datetime) -> datetime:
        return uploaded + timedelta(seconds=self.effective(category).seconds)


def _rule(name: str, value: str, default_seconds: int) -> CategoryRule:
    value = value.strip().lower()
    if value == PERMANENT:
        return CategoryRule(name, PERMANENT_SECONDS, True)
    if value == SITE_DEFAULT:
        return CategoryRule(name, default_seconds, False)
    if value.isdigit():
        value += "d"
    m = _DURATION.match(value)
    if not m or int(m.group(1)) == 0:
        raise ConfigError(
            f"retention for category {name!r} is {value!r}: use 'permanent', 'default' or N followed by s, d or y"
        )
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)]
    if seconds >= PERMANENT_SECONDS:
        return CategoryRule(name, PERMANENT_SECONDS, True)
    return CategoryRule(name, seconds, False)


# -- lock state from the manifest ------------------------------------------------------------------
@dataclass
class Hold:
    hold_id: str
    reason: str
    case_reference: str
    placed_by: str
    placed_ns: int
    lifted_ns: int | None = None
    lifted_by: str | None = None  # the approver
    lift_request_id: str | None = None

    @property
    def active(self) -> bool:
        return self.lifted_ns is None

    def to_json(self) -> dict[str, Any]:
        return {
            "hold_id": self.hold_id, "reason": self.reason, "case_reference": self.case_reference,
            "placed_by": self.placed_by, "placed_ns": self.placed_ns, "active": self.active,
            "lifted_ns": self.lifted_ns, "lifted_by": self.lifted_by, "lift_request_id": self.lift_request_id,
        }


@dataclass
class LiftRequest:
    request_id: str
    hold_id: str
    reason: str
    requested_by: str
    requested_ns: int
    approved_by: str | None = None
    approved_ns: int | None = None
    superseded: bool = False  # its hold was lifted through another request

    @property
    def status(self) -> str:
        if self.approved_ns is not None:
            return "approved"
        return "superseded" if self.superseded else "pending"

    def to_json(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "hold_id": self.hold_id, "reason": self.reason,
            "requested_by": self.requested_by, "requested_ns": self.requested_ns, "status": self.status,
            "approved_by": self.approved_by, "approved_ns": self.approved_ns,
        }


@dataclass
class LockState:
    category: str | None = None
    category_seq: int | None = None
    holds: dict[str, Hold] = field(default_factory=dict)
    requests: dict[str, LiftRequest] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # the hold/retention entries, in order
    entries_seen: int = 0

    @classmethod
    def from_entries(cls, entries: Iterable[ManifestEntry]) -> LockState:
        state = cls()
        state.extend(entries)
        return state

    def extend(self, entries: Iterable[ManifestEntry]) -> None:
        for e in entries:
            self.apply(e.seq, e.kind, e.body, e.time_ns)
            self.entries_seen += 1

    def apply(self, seq: int, kind: str, body: Mapping[str, Any], time_ns: int) -> None:
        if kind == "session_start":
            cat = body.get("case_category")
            if isinstance(cat, str) and cat:
                self.category, self.category_seq = cat, seq
            return
        elif kind == "retention":
            self.category, self.category_seq = str(body.get("category")), seq
        elif kind == "legal_hold":
            hid = str(body.get("hold_id"))
            self.holds[hid] = Hold(hid, str(body.get("reason", "")), str(body.get("case_reference", "")),
                                   str(body.get("by", "")), time_ns)
        elif kind == "legal_hold_lift":
            rid = str(body.get("request_id"))
            if body.get("action") == "request":
                self.requests[rid] = LiftRequest(rid, str(body.get("hold_id")), str(body.get("reason", "")),
                                                 str(body.get("by", "")), time_ns)
            elif body.get("action") == "approve" and rid in self.requests:
                req = self.requests[rid]
                req.approved_by, req.approved_ns = str(body.get("by", "")), time_ns
                hold = self.holds.get(req.hold_id)
                if hold is not None and hold.active:
                    hold.lifted_ns, hold.lifted_by, hold.lift_request_id = time_ns, req.approved_by, rid
                for other in self.requests.values():
                    if other.hold_id == req.hold_id and other.approved_ns is None:
                        other.superseded = True
        else:
            return
        self.history.append({"seq": seq, "kind": kind, "time_ns": time_ns, "body": dict(body)})

    # -- queries ---------------------------------------------------------------------------------
    @property
    def active_holds(self) -> list[Hold]:
        return [h for h in self.holds.values() if h.active]

    @property
    def held(self) -> bool:
        return any(h.active for h in self.holds.values())

    @property
    def pending_requests(self) -> list[LiftRequest]:
        return [r for r in self.requests.values() if r.status == "pending"]

    def active_hold_for(self, case_reference: str) -> Hold | None:
        return next((h for h in self.active_holds if h.case_reference == case_reference), None)

    def check_lift_request(self, hold_id: str | None) -> Hold:
        """The active hold a lift request would name (the only one when `hold_id` is None)."""
        active = self.active_holds
        if hold_id is None:
            if len(active) == 1:
                return active[0]
            if not active:
                raise HoldNotFound("本场没有生效的法律保全 (no active legal hold on this session)")
            raise HoldNotFound(
                f"本场有 {len(active)} 项保全，须指明 hold_id (several active holds: "
                f"{', '.join(h.hold_id for h in active)}; name one)"
            )
        hold = self.holds.get(hold_id)
        if hold is None or not hold.active:
            raise HoldNotFound(f"没有生效的保全 {hold_id!r} (no active legal hold {hold_id!r})")
        return hold

    def check_approval(self, request_id: str, approver: str) -> LiftRequest:
        """The pending request `approver` may approve; raises TwoPersonRule for its requester."""
        req = self.requests.get(request_id)
        if req is None:
            raise HoldNotFound(f"没有解除申请 {request_id!r} (no lift request {request_id!r})")
        if req.status != "pending":
            raise HoldNotFound(f"解除申请 {request_id} 已{'批准' if req.status == 'approved' else '失效'} "
                               f"(lift request {request_id} is {req.status}, not pending)")
        if approver == req.requested_by:
            raise TwoPersonRule(
                f"双人规则：申请人 {req.requested_by} 不能批准自己的解除申请，须由另一人批准 "
                f"(two-person rule: the requester {req.requested_by!r} cannot approve their own lift request)"
            )
        return req

    def to_json(self) -> dict[str, Any]:
        return {
            "held": self.held, "category": self.category or DEFAULT_CATEGORY,
            "category_set": self.category is not None,
            "holds": [h.to_json() for h in self.holds.values()],
            "lift_requests": [r.to_json() for r in self.requests.values()],
            "history": self.history,
        }
