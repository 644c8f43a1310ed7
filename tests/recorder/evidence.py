"""Checks on what a session left in the ledger and the spool (re-hash, chain links, ffprobe)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from tonglu.evidence.evidence_dir import spooled_objects, write_session_dir
from tonglu.evidence.manifest import GENESIS
from tonglu.evidence.verify import verify_path
from tonglu.evidence.verify_core import Result
from tonglu.web.services import Services


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


def decode_counts(path: Path) -> tuple[int, int, list[str]]:
    """(packets, frames, errors) from decoding every packet of the file's first stream with PyAV.

    Errors are exceptions and the decoder's own error log lines (it conceals some damage without
    raising). Unlike `ffmpeg -f null`, nothing here guesses a frame rate: two of Chromium's frames
    in one tick of a guessed rate are fine."""
    import av
    import av.logging

    packets = frames = 0
    errors: list[str] = []
    old_level, old_skip = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)
    av.logging.set_skip_repeated(False)  # the same error in the next file must be seen too
    try:
        with av.logging.Capture() as logs:
            try:
                with av.open(str(path)) as c:
                    stream = c.streams[0]
                    for pkt in c.demux(stream):
                        if pkt.size:
                            packets += 1
                        frames += len(pkt.decode())  # the empty packet at the end flushes
            except (av.FFmpegError, OSError, IndexError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        av.logging.set_level(old_level)
        av.logging.set_skip_repeated(old_skip)
    errors += [f"{name}: {msg.strip()}" for level, name, msg in logs if level <= av.logging.ERROR]
    return packets, frames, errors


def decodes(path: Path) -> bool:
    """Every packet decodes without an error; for video each packet is exactly one frame (audio
    decoders may hold back or drop pre-skip samples, so there only errors count)."""
    packets, frames, errors = decode_counts(path)
    if errors or packets == 0:
        return False
    media = ffprobe(path)["streams"][0].get("width") is not None
    return frames == packets if media else frames > 0


def segments(entries: list[Any], source: str, track: str) -> list[dict[str, Any]]:
    segs = [e.body for e in entries if e.kind == "segment" and e.body["source"] == source and e.body["track"] == track]
    return sorted(segs, key=lambda b: b["index"])


def gaps(entries: list[Any]) -> list[dict[str, Any]]:
    return [e.body for e in entries if e.kind == "gap"]


def laid_out(services: Services, sid: str, dest: Path, digests: list[str] | None = None) -> Result:
    """The standalone verifier's result over the session laid out as in the bucket (site key anchored)."""
    write_session_dir(
        services.ledger.entries(sid),
        services.ledger.checkpoints(sid),
        spooled_objects(services.spool, sid),
        services.site_key.public_pem,
        dest,
    )
    return verify_path(str(dest), trusted_keys=[services.site_key.public_pem], expected_digests=digests or [])
