"""笔录 (signed written record) documents in the evidence store, and their comparison with the transcript.

    store = RecordStore.from_review(review)
    entry = store.import_bytes(sid, data, name="笔录.docx", content_type=..., by="li4")   # or import_text
    doc = store.comparison(sid)        # findings + side by side + both inputs' hashes

`import_bytes` refuses (RecordDocumentError, nothing written) a file over `bilu.MAX_BYTES`, one that is
not a DOCX or text document, and one without 问/答 lines. Otherwise, under a per-session lock, the
file's exact bytes go to the spool (EVIDENCE bucket, uploaded under Object Lock) as
``sessions/<sid>/records/<NNNN>-<sha256[:16]>.<docx|txt>``, then a ``record_document`` manifest entry
names it: {"version", "key", "sha256", "bytes", "name", "content_type", "format", "origin", "by",
"parser", "preamble", "footer", "items": [{"n", "role", "marker", "text", "time", "line"}], "questions",
"answers"}. The verifier re-hashes the file like every object an entry names. Importing the same bytes
again returns the entry already there (nothing is written twice).

The comparison takes the newest imported record and the newest *verified* transcript version (the
newest version at all when none is verified), read through `EvidenceFiles` and checked against the
SHA-256 its manifest entry names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tonglu.evidence import keys
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.spool import EVIDENCE, Spool
from tonglu.integrity import bilu
from tonglu.integrity.bilu_compare import CompareConfig, compare, transcript_units
from tonglu.integrity.errors import RecordDocumentError, RecordEmpty, RecordNotFound, UnknownSession
from tonglu.integrity.evidence import EvidenceFiles
from tonglu.integrity.timefmt import iso_utc

KIND = "record_document"
CONTENT_TYPES = {
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "text": "text/plain; charset=utf-8",
}
EXTENSIONS = {"docx": "docx", "text": "txt"}


def record_key(sid: str, version: int, sha256: str, kind: str) -> str:
    return f"{keys.session_prefix(sid)}records/{version:04d}-{sha256[:16]}.{EXTENSIONS[kind]}"


def clean_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return base[:200] or "笔录"


def record_entries(entries: Sequence[ManifestEntry]) -> list[dict[str, Any]]:
    return [{**e.body, "manifest_seq": e.seq, "time_ns": e.time_ns} for e in entries if e.kind == KIND]


def choose_transcript(entries: Sequence[ManifestEntry]) -> dict[str, Any] | None:
    """The newest verified transcript version (`draft` false), else the newest version."""
    versions = [{**e.body, "manifest_seq": e.seq, "time_ns": e.time_ns} for e in entries if e.kind == "transcript"]
    verified = [v for v in versions if v.get("draft") is False]
    pool = verified or versions
    return pool[-1] if pool else None


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    if "time_ns" in out:
        out["imported"] = iso_utc(int(out["time_ns"]))
    return out


@dataclass
class RecordStore:
    root: Path  # data_dir/records: per-session locks
    ledger: Ledger
    spool: Spool
    files: EvidenceFiles
    on_entry: Callable[[ManifestEntry], None] | None = None
    config: CompareConfig | None = None

    @classmethod
    def from_review(cls, review: Any) -> RecordStore:
        return cls(review.settings.data_dir / "records", review.ledger, review.ledger.spool, review.files,
                   review.on_entry)

    def _check_session(self, sid: str) -> None:
        try:
            keys.safe_id(sid, "session id")
        except ValueError as exc:
            raise UnknownSession(f"会话不存在 unknown session {sid!r}: {exc}") from exc
        if not self.ledger.has(sid):
            raise UnknownSession(f"会话不存在 unknown session {sid!r}")

    # -- import ----------------------------------------------------------------------------------
    def import_text(self, sid: str, text: str, *, by: str, now_ns: int | None = None) -> tuple[dict[str, Any], bool]:
        if not text.strip():
            raise RecordEmpty("笔录文本为空 (the pasted text is empty)")
        return self.import_bytes(sid, text.encode("utf-8"), name="粘贴文本 pasted.txt", by=by, origin="pasted",
                                 now_ns=now_ns)

    def import_bytes(
        self,
        sid: str,
        data: bytes,
        *,
        name: str,
        by: str,
        origin: str = "file",
        now_ns: int | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Store a record document; returns (its manifest entry body, created). Refusals write nothing."""
        self._check_session(sid)
        kind, parsed = bilu.read(data, name)  # every refusal happens here, before anything is written
        digest = hashlib.sha256(data).hexdigest()
        d = self.root / keys.safe_id(sid, "session id")
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            existing = record_entries(self.ledger.entries(sid))
            same = next((e for e in existing if e.get("sha256") == digest), None)
            if same is not None:
                return _public(same), False
            version = max((int(e.get("version", 0)) for e in existing), default=0) + 1
            key = record_key(sid, version, digest, kind)
            if not any(item.key == key for item in self.spool.pending()):
                self.spool.put_bytes(key, data, content_type=CONTENT_TYPES[kind], bucket=EVIDENCE)
            body = {
                "version": version,
                "key": key,
                "sha256": digest,
                "bytes": len(data),
                "name": clean_name(name),
                "content_type": CONTENT_TYPES[kind],
                "format": kind,
                "origin": origin,
                "by": by,
                "parser": bilu.PARSER,
                "preamble": parsed.preamble,
                "footer": parsed.footer,
                "items": [i.to_json() for i in parsed.items],
                "questions": len(parsed.questions),
                "answers": len(parsed.answers),
            }
            entry = self.ledger.append(sid, "record_document", body, now_ns=now_ns)
        if self.on_entry is not None:
            self.on_entry(entry)
        return _public({**entry.body, "manifest_seq": entry.seq, "time_ns": entry.time_ns}), True

    def documents(self, sid: str) -> list[dict[str, Any]]:
        self._check_session(sid)
        return [_public(e) for e in record_entries(self.ledger.entries(sid))]

    # -- comparison ------------------------------------------------------------------------------
    def _read_checked(self, key: str, sha256: str, what: str) -> bytes:
        try:
            with self.files.open(key) as fh:
                data = fh.read()
        except (OSError, KeyError) as exc:
            raise RecordNotFound(f"{what} {key} 无法读取 (cannot be read): {exc}") from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise RecordDocumentError(
                f"{what} {key} 与清单记录的 SHA-256 不符 (does not match the SHA-256 its manifest entry names)"
            )
        return data

    def comparison(self, sid: str, entries: Sequence[ManifestEntry] | None = None) -> dict[str, Any]:
        """The newest record vs the chosen transcript version: findings, rows and both inputs' hashes."""
        if entries is None:
            self._check_session(sid)
            entries = self.ledger.entries(sid)
        records = record_entries(entries)
        if not records:
            raise RecordNotFound(f"会话 {sid} 尚未导入笔录 (no written record imported for this session)")
        record = records[-1]
        chosen = choose_transcript(entries)
        if chosen is None:
            raise RecordNotFound(f"会话 {sid} 尚无转写稿，无法比对 (no stored transcript to compare the record with)")
        doc = json.loads(self._read_checked(str(chosen["key"]), str(chosen["sha256"]), "转写稿 transcript"))
        items = [bilu.RecordItem.from_json(i) for i in record.get("items", [])]
        units = transcript_units(doc.get("lines") or [], doc.get("speakers") or {}, self.config)
        result = compare(items, units, self.config).to_json()
        return {
            "session": sid,
            "document": {
                k: record.get(k)
                for k in ("version", "key", "sha256", "bytes", "name", "format", "origin", "by", "manifest_seq")
            }
            | {"imported": iso_utc(int(record["time_ns"])), "parser": record.get("parser")},
            "transcript": {
                "version": chosen.get("version"),
                "key": chosen.get("key"),
                "sha256": chosen.get("sha256"),
                "origin": chosen.get("origin"),
                "draft": chosen.get("draft"),
                "verified": chosen.get("draft") is False,
                "verified_by": doc.get("verified_by"),
                "manifest_seq": chosen.get("manifest_seq"),
            },
            "documents": len(records),
            **result,
        }

    def report_section(self, sid: str, entries: Sequence[ManifestEntry] | None = None) -> dict[str, Any] | None:
        """The comparison for the integrity report: None without a record; the reason when it cannot run."""
        entries = self.ledger.entries(sid) if entries is None else entries
        if not any(e.kind == KIND for e in entries):
            return None
        try:
            return self.comparison(sid, entries)
        except RecordDocumentError as exc:
            return {"session": sid, "error": str(exc), "findings": [], "rows": []}
