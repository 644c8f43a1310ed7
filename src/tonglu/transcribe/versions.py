"""Transcript versions in the evidence store: numbered, never overwritten, each with a ledger entry.

`publish` allocates the next number under a per-session lock, writes the JSON object to a local
cache and to the spool (EVIDENCE bucket, uploaded under Object Lock), then appends a ``transcript``
manifest entry {"version", "key", "sha256", "model", "draft", "origin", "by"}. A crash between the
spool and the ledger is healed on the next publish of that version: the cached bytes are reused, so
the same key never gets two contents.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tonglu.evidence import keys
from tonglu.evidence.fsutil import write_durable
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.spool import EVIDENCE, Spool
from tonglu.transcribe.errors import TranscribeError, VersionNotFound

log = context_logger(__name__)


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1).encode("utf-8")


class VersionStore:
    def __init__(self, root: Path, spool: Spool, ledger: Ledger, read: Callable[[str], bytes] | None = None) -> None:
        self.root = root  # data_dir/transcribe/versions
        self.spool = spool
        self.ledger = ledger
        self.read = read
        # told of every `transcript` entry appended here, e.g. `Index.apply` (the search index
        # reads the version back by key); a failure there is logged, the version stands
        self.on_entry: Callable[[ManifestEntry], object] | None = None
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, sid: str) -> Path:
        return self.root / keys.safe_id(sid, "session id")

    def entries(self, sid: str) -> list[dict[str, Any]]:
        """Stored versions, oldest first: the ledger's transcript entries with seq and time."""
        if not self.ledger.has(sid):
            return []
        out = []
        for e in self.ledger.entries(sid):
            if e.kind == "transcript":
                out.append({**e.body, "seq": e.seq, "time_ns": e.time_ns})
        return out

    def load(self, sid: str, version: int) -> dict[str, Any]:
        entry = next((e for e in self.entries(sid) if e.get("version") == version), None)
        if entry is None:
            raise VersionNotFound(f"session {sid} has no transcript version {version}")
        cached = self._dir(sid) / f"{version:04d}.json"
        data = cached.read_bytes() if cached.exists() else None
        if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            if self.read is None:
                raise VersionNotFound(f"transcript version {version} of {sid} is not cached here and no reader is set")
            data = self.read(entry["key"])
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise VersionNotFound(f"stored transcript {entry['key']} does not match its manifest SHA-256")
        doc: dict[str, Any] = json.loads(data)
        return doc

    def latest(self, sid: str) -> dict[str, Any] | None:
        entries = self.entries(sid)
        return self.load(sid, entries[-1]["version"]) if entries else None

    def publish(
        self,
        sid: str,
        doc: dict[str, Any],
        *,
        by: str,
        skip_if: Callable[[list[dict[str, Any]]], bool] | None = None,
    ) -> dict[str, Any] | None:
        """Store `doc` as the next version; returns it with its number (None if `skip_if` says so).
        Only where the session's ledger is: appending elsewhere would start a second chain."""
        if not self.ledger.has(sid):
            raise TranscribeError(f"会话 {sid} 的清单不在本机 (this host's ledger does not hold session {sid})")
        d = self._dir(sid)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self.entries(sid)
            if skip_if is not None and skip_if(entries):
                return None
            version = max((int(e["version"]) for e in entries), default=0) + 1
            cached = d / f"{version:04d}.json"
            if cached.exists():  # a crash after spooling: reuse the very bytes that were spooled
                data = cached.read_bytes()
                doc = json.loads(data)
            else:
                doc = {**doc, "version": version}
                data = encode(doc)
                write_durable(cached, data)
            key = keys.transcript_key(sid, version)
            digest = hashlib.sha256(data).hexdigest()
            if not any(item.key == key for item in self.spool.pending()):
                self.spool.put_bytes(key, data, content_type="application/json", bucket=EVIDENCE)
            model = doc.get("model") or {}
            entry = self.ledger.append(
                sid,
                "transcript",
                {
                    "version": version,
                    "key": key,
                    "sha256": digest,
                    "model": {"name": str(model.get("name", "")), "sha256": str(model.get("sha256", ""))},
                    "draft": bool(doc.get("draft", True)),
                    "origin": str(doc.get("origin", "")),
                    "by": by,
                },
            )
            if self.on_entry is not None:
                try:
                    self.on_entry(entry)
                except Exception:  # the index is a cache: the next start or `tonglu reindex` catches up
                    log.exception("transcript version %d of %s not passed on to the index", version, sid)
            return doc
