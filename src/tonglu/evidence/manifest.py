"""Manifest entries: the hash-chained, canonical records of one session.

Every session has one manifest: a sequence of entries numbered from 0. Each entry carries the
SHA-256 of the previous entry's canonical bytes (`prev`), so removing, inserting, reordering or
editing any entry breaks the chain at a named place. The Merkle tree over the entries' canonical
bytes is what checkpoints sign (see `checkpoint.py`).

Entry kinds (the `kind` field) and their bodies:
- ``session_start``: case facts (room, case_number, suspect, interviewers, reason, custody_out, ...)
  and the expected sources.
- ``segment``: one sealed media segment (`SegmentRecord`).
- ``gap``: one gap event (`GapRecord`).
- ``session_stop``: who stopped it and when.
- ``marker``, ``break``, ``explanation``, ``record_times``, ``note``, ``transcript``: annotations
  added by people or services; they are evidence too and are chained the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from tonglu.evidence import canonical
from tonglu.evidence.errors import CanonicalError, ManifestError
from tonglu.evidence.verify_core import ENTRY_VERSION, GAP_REASONS, GENESIS, KINDS

FORMAT_VERSION = ENTRY_VERSION


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ManifestEntry:
    session: str
    seq: int
    kind: str
    time_ns: int
    prev: str
    body: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "session": self.session,
            "seq": self.seq,
            "kind": self.kind,
            "time_ns": self.time_ns,
            "prev": self.prev,
            "body": self.body,
        }

    def to_bytes(self) -> bytes:
        return canonical.encode(self.to_json())

    @property
    def entry_hash(self) -> str:
        return sha256_hex(self.to_bytes())

    @classmethod
    def from_json(cls, data: Any) -> ManifestEntry:
        if not isinstance(data, dict):
            raise ManifestError("manifest entry is not an object")
        expected = {"v", "session", "seq", "kind", "time_ns", "prev", "body"}
        if set(data) != expected:
            raise ManifestError(f"manifest entry fields {sorted(data)} != {sorted(expected)}")
        if data["v"] != FORMAT_VERSION:
            raise ManifestError(f"unsupported manifest version {data['v']!r}")
        if data["kind"] not in KINDS:
            raise ManifestError(f"unknown entry kind {data['kind']!r}")
        if not isinstance(data["seq"], int) or data["seq"] < 0:
            raise ManifestError("seq must be a non-negative integer")
        if not isinstance(data["body"], dict):
            raise ManifestError("body must be an object")
        return cls(
            session=str(data["session"]),
            seq=data["seq"],
            kind=data["kind"],
            time_ns=int(data["time_ns"]),
            prev=str(data["prev"]),
            body=data["body"],
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ManifestEntry:
        try:
            return cls.from_json(canonical.decode(data))
        except CanonicalError as exc:
            raise ManifestError(str(exc)) from exc


@dataclass(frozen=True)
class SegmentRecord:
    """Body of a ``segment`` entry: one sealed, self-contained media file, stored as received."""

    source: str  # "main", "panorama", "remote-<id>"
    track: str  # "video" or "audio" (one track of the source)
    media: str  # "video" | "audio"
    codec: str  # "vp8", "h264", "opus"
    container: str  # "webm", "mpegts", "mka", "ogg"
    index: int  # per (source, track) sequence number, from 0
    key: str  # object key in the evidence bucket
    rtp_first: int  # first RTP timestamp (unwrapped, 64-bit)
    rtp_last: int
    clock_rate: int
    wall_first_ns: int  # wall clock (UTC, ns) of the first frame
    wall_last_ns: int  # wall clock of the end of the last frame
    frames: int
    bytes: int
    sha256: str
    recovered: bool = False  # sealed at start-up from a file left open by a crash

    def to_body(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> SegmentRecord:
        try:
            return cls(**body)
        except TypeError as exc:
            raise ManifestError(f"segment entry body malformed: {exc}") from exc

    @property
    def track_id(self) -> str:
        return f"{self.source}/{self.track}"


@dataclass(frozen=True)
class GapRecord:
    """Body of a ``gap`` entry: an interval in which a track has no recorded media."""

    source: str
    track: str
    reason: str
    start_ns: int
    end_ns: int
    rtp_start: int | None = None
    rtp_end: int | None = None
    packets_lost: int | None = None
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in GAP_REASONS:
            raise ManifestError(f"unknown gap reason {self.reason!r}")
        if self.end_ns < self.start_ns:
            raise ManifestError("gap ends before it starts")

    def to_body(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> GapRecord:
        try:
            return cls(**body)
        except TypeError as exc:
            raise ManifestError(f"gap entry body malformed: {exc}") from exc


class HashChain:
    """Sans-I/O builder of one session's chain: give it kind, body and `now_ns`, get the entry."""

    def __init__(self, session: str, next_seq: int = 0, head: str = GENESIS) -> None:
        self.session = session
        self.next_seq = next_seq
        self.head = head

    def append(self, kind: str, body: dict[str, Any], now_ns: int) -> ManifestEntry:
        if kind not in KINDS:
            raise ManifestError(f"unknown entry kind {kind!r}")
        entry = ManifestEntry(self.session, self.next_seq, kind, now_ns, self.head, body)
        entry.to_bytes()  # raises CanonicalError early for bodies that cannot be encoded
        self.next_seq += 1
        self.head = entry.entry_hash
        return entry
