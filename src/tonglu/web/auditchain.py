"""The audit trail's records and hash chain (sans-I/O).

One record per audited event, encoded canonically (`evidence.canonical`) and chained like the
manifest: each carries the SHA-256 of the previous record's bytes. `verify_chain` walks stored
records and names the first place where an edit, deletion, insertion or reordering shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tonglu.evidence import canonical
from tonglu.evidence.errors import CanonicalError
from tonglu.evidence.manifest import GENESIS

AUDIT_VERSION = 1
OUTCOMES = frozenset({"ok", "denied", "failed", "rejected", "throttled", "error"})


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    time_ns: int
    user: str
    role: str
    address: str
    action: str
    object: str
    outcome: str
    prev: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": AUDIT_VERSION,
            "seq": self.seq,
            "time_ns": self.time_ns,
            "user": self.user,
            "role": self.role,
            "address": self.address,
            "action": self.action,
            "object": self.object,
            "outcome": self.outcome,
            "detail": self.detail,
            "prev": self.prev,
        }

    def to_bytes(self) -> bytes:
        return canonical.encode(self.to_json())

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @classmethod
    def from_bytes(cls, data: bytes) -> AuditRecord:
        value = canonical.decode(data)
        if not isinstance(value, dict) or value.get("v") != AUDIT_VERSION:
            raise CanonicalError("not an audit record of a known version")
        try:
            return cls(
                seq=value["seq"], time_ns=value["time_ns"], user=value["user"], role=value["role"],
                address=value["address"], action=value["action"], object=value["object"],
                outcome=value["outcome"], prev=value["prev"], detail=value["detail"],
            )
        except KeyError as exc:
            raise CanonicalError(f"audit record lacks field {exc}") from exc


class AuditChain:
    """Builds the next record from the chain's head: give it the event and `now_ns`."""

    def __init__(self, next_seq: int = 0, head: str = GENESIS) -> None:
        self.next_seq = next_seq
        self.head = head

    def append(self, *, now_ns: int, user: str, role: str, address: str, action: str, obj: str,
               outcome: str, detail: dict[str, Any] | None = None) -> AuditRecord:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown audit outcome {outcome!r}")
        rec = AuditRecord(self.next_seq, now_ns, user, role, address, action, obj, outcome, self.head,
                          dict(detail or {}))
        rec.to_bytes()  # refuse unencodable details before anything is written
        self.next_seq += 1
        self.head = rec.hash
        return rec


@dataclass
class ChainCheck:
    count: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(lines: Iterable[bytes], where: str) -> ChainCheck:
    """Check canonical form, numbering and links of stored record bytes, in order."""
    check = ChainCheck()
    for i, line in enumerate(lines):
        try:
            rec = AuditRecord.from_bytes(line)
        except CanonicalError as exc:
            check.problems.append(f"{where}: record #{i} is not a valid audit record ({exc})")
            return check
        if rec.seq != i:
            check.problems.append(
                f"{where}: record #{i} carries seq {rec.seq} (deleted, inserted or reordered)"
            )
            return check
        if rec.prev != check.head:
            check.problems.append(
                f"{where}: record seq {i} does not link to the previous record (edited before it)"
            )
            return check
        check.head = rec.hash
        check.count += 1
    return check
