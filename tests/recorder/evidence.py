"""Checks on what a session left in the ledger and the spool (re-hash, chain links, ffprobe)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from storage.manifest import GENESIS
from web.services import Services


def spooled_files(services: Services) -> dict[str, Path]:
    return {item.key: item.data_path for item in services.spool.pending()}


def verify_chain(services: Services, sid: str) -> list[Any]:
    entries = services.ledger.entries(sid)
    prev = GENESIS
    for n, e in enumerate(entries):
        assert e.seq == n and e.prev == prev, f"chain broken at {n}"
        prev = e.entry_hash
    files = spooled_files(services)
    for e in entries:
        if e.kind == "segment":
            data = files[e.body["key"]].read_bytes()
            assert hashlib.sha256(data).hexdigest() == e.body["sha256"], e.body["key"]
            assert len(data) == e.body["bytes"]
    cps = services.ledger.checkpoints(sid)
    assert cps and cps[-1].final and cps[-1].tree_size == len(entries)
    assert (
        services.site_key.public_key().verify(cps[-1].signature, cps[-1].body_bytes()) is None
        if hasattr(services.site_key, "public_key")
        else True
    )
    return entries


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration,format_name:stream=codec_name,width,height",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def decodes(path: Path) -> bool:
    r = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    return r.returncode == 0 and not r.stderr.strip()


def segments(entries: list[Any], source: str, track: str) -> list[dict[str, Any]]:
    segs = [
        e.body
        for e in entries
        if e.kind == "segment" and e.body["source"] == source and e.body["track"] == track
    ]
    return sorted(segs, key=lambda b: b["index"])


def gaps(entries: list[Any]) -> list[dict[str, Any]]:
    return [e.body for e in entries if e.kind == "gap"]
