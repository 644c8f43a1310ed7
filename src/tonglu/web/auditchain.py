"""The audit trail's records and hash chain (sans-I/O).

One record per audited event, encoded canonically (`evidence.canonical`) and chained like the
manifest: each carries the SHA-256 of the previous record's bytes. `verify_chain` walks stored
records and names the first place where an edit, deletion, insertion or reordering shows.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
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
    worm_records: int = 0  # records [0, worm_records) are covered by signed WORM batches
    notes: list[str] = field(default_factory=list)  # not problems: e.g. records not yet batched

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


# -- WORM batches and their signed checkpoints ---------------------------------------------------
# Every `batch_records` records (or `batch_interval_s`) the records since the last batch go to the
# evidence bucket (Object Lock) as `audit/<first>-<last>.jsonl`, together with
# `audit/<first>-<last>.checkpoint.json`: {"body": {...}, "signature": base64 Ed25519 by the site
# key}. The body commits to the batch bytes and to `head`, the hash of record `last`. Since the
# local copies (file, table) are hash-chained, a local record `last` whose hash equals a signed head
# proves every local record up to it unchanged; rewriting the trail (even consistently, re-hashed)
# cannot reproduce the signed heads, and the first record that differs from its batch is named.

CHECKPOINT_VERSION = 1
_BATCH_KEY = re.compile(r"^audit/(\d{12})-(\d{12})\.jsonl$")
_CHECKPOINT_KEY = re.compile(r"^audit/(\d{12})-(\d{12})\.checkpoint\.json$")
CHECKPOINT_FIELDS = frozenset(
    {"v", "kind", "first", "last", "count", "batch_sha256", "prev", "head", "time_ns", "key_id"}
)
SignatureCheck = Callable[[str, bytes, bytes], bool]  # (key_id, signature, data) -> valid


def batch_key(first: int, last: int) -> str:
    return f"audit/{first:012d}-{last:012d}.jsonl"


def batch_checkpoint_key(first: int, last: int) -> str:
    return f"audit/{first:012d}-{last:012d}.checkpoint.json"


def parse_batch_key(key: str) -> tuple[int, int] | None:
    m = _BATCH_KEY.match(key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_checkpoint_key(key: str) -> tuple[int, int] | None:
    m = _CHECKPOINT_KEY.match(key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def checkpoint_body(records: Sequence[bytes], batch: bytes, *, time_ns: int, key_id: str) -> dict[str, Any]:
    """The body signed for one batch (`records`: its lines, in order; `batch`: its exact bytes)."""
    first, last = AuditRecord.from_bytes(records[0]), AuditRecord.from_bytes(records[-1])
    return {
        "v": CHECKPOINT_VERSION,
        "kind": "audit_batch",
        "first": first.seq,
        "last": last.seq,
        "count": len(records),
        "batch_sha256": hashlib.sha256(batch).hexdigest(),
        "prev": first.prev,
        "head": hashlib.sha256(records[-1]).hexdigest(),
        "time_ns": time_ns,
        "key_id": key_id,
    }


def encode_checkpoint(body: dict[str, Any], signature: bytes) -> bytes:
    return canonical.encode({"body": body, "signature": base64.b64encode(signature).decode()})


@dataclass(frozen=True)
class SignedBatch:
    """A WORM batch whose bytes match a validly signed checkpoint."""

    key: str
    first: int
    last: int
    prev: str  # `prev` of record `first`
    head: str  # hash of record `last`


def check_batch(
    key: str, data: bytes, checkpoint: bytes | None, verify_sig: SignatureCheck
) -> tuple[SignedBatch | None, list[str]]:
    """Check one batch against its signed checkpoint. Returns (the batch if trusted, problems)."""
    span = parse_batch_key(key)
    if span is None:
        return None, [f"store: {key} is not an audit batch name"]
    first, last = span
    cp_key = batch_checkpoint_key(first, last)
    if checkpoint is None:
        return None, [f"store: WORM batch {key} has no signed checkpoint ({cp_key} missing)"]
    try:
        doc = canonical.decode(checkpoint)
        body, sig_b64 = doc["body"], doc["signature"]
        if not isinstance(body, dict) or set(body) != CHECKPOINT_FIELDS or not isinstance(sig_b64, str):
            raise CanonicalError("fields are not those of an audit checkpoint")
        signature = base64.b64decode(sig_b64, validate=True)
    except (CanonicalError, KeyError, TypeError, ValueError) as exc:
        return None, [f"store: checkpoint {cp_key} is malformed ({exc})"]
    if not verify_sig(str(body["key_id"]), signature, canonical.encode(body)):
        return None, [
            f"store: checkpoint {cp_key} is not validly signed by the site key (signed by {body['key_id']!r})"
        ]
    if (body["first"], body["last"]) != (first, last) or body["count"] != last - first + 1:
        return None, [f"store: checkpoint {cp_key} covers records {body['first']}..{body['last']}, not its name's"]
    if body["batch_sha256"] != hashlib.sha256(data).hexdigest():
        return None, [f"store: WORM batch {key} does not match the SHA-256 in its signed checkpoint"]
    lines = [ln for ln in data.split(b"\n") if ln]
    prev = body["prev"]
    for i, line in enumerate(lines):
        try:
            rec = AuditRecord.from_bytes(line)
        except CanonicalError as exc:
            return None, [f"store: WORM batch {key} line {i} is not an audit record ({exc})"]
        if rec.seq != first + i or rec.prev != prev:
            return None, [f"store: WORM batch {key} record #{i} is out of sequence or unlinked"]
        prev = rec.hash
    if len(lines) != last - first + 1 or prev != body["head"]:
        return None, [f"store: WORM batch {key} does not end at the signed head"]
    return SignedBatch(key, first, last, body["prev"], body["head"]), []


def first_divergence(lines: Sequence[bytes], batch_lines: Sequence[bytes], first: int) -> int:
    """The first seq at which local `lines` differ from a batch's lines (which start at `first`)."""
    for i, want in enumerate(batch_lines):
        seq = first + i
        if seq >= len(lines) or lines[seq] != want:
            return seq
    return first + len(batch_lines)


def compare_with_batches(lines: Sequence[bytes], batches: Sequence[SignedBatch]) -> SignedBatch | None:
    """The first signed batch (in seq order) the local copy does not reproduce, else None.

    Local `lines` must have passed `verify_chain`: equal heads then prove equal prefixes."""
    for b in sorted(batches, key=lambda b: (b.last, b.first)):
        if b.last >= len(lines) or hashlib.sha256(lines[b.last]).hexdigest() != b.head:
            return b
        if b.first > 0 and (b.first >= len(lines) or AuditRecord.from_bytes(lines[b.first]).prev != b.prev):
            return b
    return None


def coverage_gaps(batches: Sequence[SignedBatch]) -> list[tuple[int, int]]:
    """Seq ranges between 0 and the last batched record that no signed batch covers."""
    gaps, upto = [], 0  # records [0, upto) covered
    for b in sorted(batches, key=lambda b: (b.first, b.last)):
        if b.first > upto:
            gaps.append((upto, b.first - 1))
        upto = max(upto, b.last + 1)
    return gaps
