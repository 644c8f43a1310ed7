"""A recorded session for the review tests, read the way the running system reads it: ledger + the
real SeaweedFS store (segments uploaded as their first, locked version) — optionally with one
segment's first version tampered (different bytes than its manifest entry says)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tests.integrity.builder import Built, Scenario, build
from tonglu.config import Settings


def upload_session(b: Built, store: Any, tamper: set[str] | None = None) -> None:
    """Put every segment of `b` into the store; keys in `tamper` get one byte flipped first (a new
    first version in a fresh bucket: what the store holds no longer matches the signed manifest)."""
    for e in b.ledger.entries(b.sid):
        if e.kind != "segment":
            continue
        key = str(e.body["key"])
        data = b.evidence_dir.joinpath(*key.split("/")).read_bytes()
        if tamper and key in tamper:
            mid = len(data) // 2
            data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
        store.put_if_absent(key, data, hashlib.sha256(data).hexdigest(), content_type="video/webm")


def stored_session(tmp: Path, settings: Settings, store: Any, sc: Scenario,
                   tamper: set[str] | None = None) -> Built:
    b = build(tmp, sc, settings=settings)
    upload_session(b, store, tamper)
    return b
