"""Tampering operations on a laid-out session; each returns the problems the verifier must report."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.verify.session_builder import BuiltSession
from tonglu.evidence import canonical, keys
from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.signing import SiteKey

Expected = list[tuple[str, str]]  # (problem code, object named)


def path_of(root: Path, key: str) -> Path:
    return root.joinpath(*key.split("/"))


def manifest_files(root: Path, sid: str) -> list[Path]:
    return sorted((root / "sessions" / sid / "manifest").glob("*.json"))


def read_entry(root: Path, sid: str, seq: int) -> ManifestEntry:
    return ManifestEntry.from_bytes(path_of(root, keys.manifest_key(sid, seq)).read_bytes())


def write_entry(root: Path, entry: ManifestEntry) -> None:
    path_of(root, keys.manifest_key(entry.session, entry.seq)).write_bytes(entry.to_bytes())


def flip_byte(path: Path, offset: int, xor: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= xor
    path.write_bytes(bytes(data))


def renumber_from(root: Path, sid: str, start: int, delta: int) -> None:
    """Rename manifest files seq >= start by `delta` (what an attacker does to hide an insert/delete)."""
    files = [p for p in manifest_files(root, sid) if int(p.stem) >= start]
    for p in sorted(files, key=lambda p: int(p.stem), reverse=delta > 0):
        p.rename(p.with_name(f"{int(p.stem) + delta:08d}.json"))


def flip_segment(root: Path, b: BuiltSession) -> Expected:
    key = b.segment_keys[1]
    flip_byte(path_of(root, key), 777, 0x40)
    return [("segment_altered", key)]


def truncate_segment(root: Path, b: BuiltSession) -> Expected:
    key = b.segment_keys[3]
    p = path_of(root, key)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return [("segment_truncated", key)]


def delete_segment(root: Path, b: BuiltSession) -> Expected:
    key = b.segment_keys[5]
    path_of(root, key).unlink()
    return [("segment_missing", key)]


def swap_segments(root: Path, b: BuiltSession) -> Expected:
    k1, k2 = b.segment_keys[1], b.segment_keys[3]  # main/video 1 and 2
    p1, p2 = path_of(root, k1), path_of(root, k2)
    tmp = p1.with_suffix(".tmp")
    p1.rename(tmp)
    p2.rename(p1)
    tmp.rename(p2)
    return [("segment_reordered", k1), ("segment_reordered", k2)]


def extra_segment(root: Path, b: BuiltSession) -> Expected:
    key = keys.segment_key(b.sid, "main", "video", 4, "webm")
    path_of(root, key).write_bytes(path_of(root, b.segment_keys[-1]).read_bytes())
    return [("segment_extra", key)]


def _forged(b: BuiltSession, seq: int, prev: str, kind: str, body: dict) -> ManifestEntry:
    return ManifestEntry(b.sid, seq, kind, 1_750_000_003_000_000_000, prev, body)


def insert_entry_renumbered(root: Path, b: BuiltSession) -> Expected:
    k = 5
    before = read_entry(root, b.sid, k - 1)
    renumber_from(root, b.sid, k, +1)
    forged = _forged(b, k, before.entry_hash, "note", {"text": "伪造 forged", "by": "mallory"})
    key = keys.manifest_key(b.sid, k)
    path_of(root, key).write_bytes(forged.to_bytes())
    return [("entry_inserted", key)]


def append_segment_and_entry(root: Path, b: BuiltSession) -> Expected:
    """An extra segment file plus a well-chained segment entry after the final checkpoint."""
    files = manifest_files(root, b.sid)
    last = read_entry(root, b.sid, len(files) - 1)
    src = path_of(root, b.segment_keys[-1]).read_bytes()
    seg_key = keys.segment_key(b.sid, "main", "video", 4, "webm")
    path_of(root, seg_key).write_bytes(src)
    body = dict(read_entry(root, b.sid, 1).body)
    body.update(index=4, key=seg_key, sha256=hashlib.sha256(src).hexdigest(), bytes=len(src))
    forged = _forged(b, len(files), last.entry_hash, "segment", body)
    key = keys.manifest_key(b.sid, len(files))
    path_of(root, key).write_bytes(forged.to_bytes())
    return [("unsigned_tail", key)]


def delete_entry(root: Path, b: BuiltSession) -> Expected:
    key = keys.manifest_key(b.sid, 3)
    path_of(root, key).unlink()
    return [("entry_missing", key)]


def delete_entry_renumbered(root: Path, b: BuiltSession) -> Expected:
    path_of(root, keys.manifest_key(b.sid, 6)).unlink()
    renumber_from(root, b.sid, 7, -1)
    return [("entry_missing", keys.manifest_key(b.sid, 6))]


def reserialise_entry(root: Path, b: BuiltSession) -> Expected:
    """Same values, different bytes (pretty-printed): still parses, not canonical."""
    key = keys.manifest_key(b.sid, 2)
    p = path_of(root, key)
    p.write_text(json.dumps(json.loads(p.read_bytes()), indent=2, ensure_ascii=False), encoding="utf-8")
    return [("entry_edited", key)]


def edit_entry_value(root: Path, b: BuiltSession) -> Expected:
    """A canonical entry with one value changed (the suspect's name)."""
    e = read_entry(root, b.sid, 0)
    body = {**e.body, "suspect": "赵六"}
    key = keys.manifest_key(b.sid, 0)
    write_entry(root, ManifestEntry(e.session, e.seq, e.kind, e.time_ns, e.prev, body))
    return [("entry_edited", key)]


def edit_segment_and_its_entry(root: Path, b: BuiltSession) -> Expected:
    """Replace a segment and rewrite its entry's hash and size to match: the chain still catches it."""
    seg_key = b.segment_keys[0]
    p = path_of(root, seg_key)
    flip_byte(p, 500, 0x10)
    data = p.read_bytes()
    seq = next(s for s in range(20) if read_entry(root, b.sid, s).body.get("key") == seg_key)
    e = read_entry(root, b.sid, seq)
    body = {**e.body, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    key = keys.manifest_key(b.sid, seq)
    write_entry(root, ManifestEntry(e.session, e.seq, e.kind, e.time_ns, e.prev, body))
    return [("entry_edited", key)]


def edit_last_entry(root: Path, b: BuiltSession) -> Expected:
    n = len(manifest_files(root, b.sid))
    e = read_entry(root, b.sid, n - 1)
    assert e.kind == "session_stop"
    key = keys.manifest_key(b.sid, n - 1)
    body = {**e.body, "reason": "设备故障"}
    write_entry(root, ManifestEntry(e.session, e.seq, e.kind, e.time_ns, e.prev, body))
    return [("entry_edited", key)]


def swap_entries(root: Path, b: BuiltSession) -> Expected:
    k1, k2 = keys.manifest_key(b.sid, 3), keys.manifest_key(b.sid, 4)
    p1, p2 = path_of(root, k1), path_of(root, k2)
    d1, d2 = p1.read_bytes(), p2.read_bytes()
    p1.write_bytes(d2)
    p2.write_bytes(d1)
    return [("entry_misplaced", k1), ("entry_misplaced", k2)]


def _rewrite_checkpoint(root: Path, key: str, signature: bytes) -> None:
    cp = Checkpoint.from_bytes(path_of(root, key).read_bytes())
    path_of(root, key).write_bytes(Checkpoint(**{**cp.__dict__, "signature": signature}).to_bytes())


def random_signature(root: Path, b: BuiltSession) -> Expected:
    key = keys.checkpoint_key(b.sid, 1)
    _rewrite_checkpoint(root, key, os.urandom(64))
    return [("checkpoint_signature_invalid", key)]


def borrowed_signature(root: Path, b: BuiltSession) -> Expected:
    """The final checkpoint carries the (valid) signature of the periodic one."""
    first = Checkpoint.from_bytes(path_of(root, keys.checkpoint_key(b.sid, 0)).read_bytes())
    key = keys.checkpoint_key(b.sid, 1)
    _rewrite_checkpoint(root, key, first.signature)
    return [("checkpoint_signature_invalid", key)]


def signature_by_other_key(root: Path, b: BuiltSession) -> Expected:
    key = keys.checkpoint_key(b.sid, 1)
    cp = Checkpoint.from_bytes(path_of(root, key).read_bytes())
    _rewrite_checkpoint(root, key, Ed25519PrivateKey.generate().sign(cp.body_bytes()))
    return [("checkpoint_signature_invalid", key)]


def edit_checkpoint(root: Path, b: BuiltSession) -> Expected:
    key = keys.checkpoint_key(b.sid, 0)
    cp = Checkpoint.from_bytes(path_of(root, key).read_bytes())
    path_of(root, key).write_bytes(Checkpoint(**{**cp.__dict__, "tree_size": cp.tree_size - 1}).to_bytes())
    return [("checkpoint_signature_invalid", key)]


def replace_public_key(root: Path, b: BuiltSession) -> Expected:
    pem_key = keys.public_key_key(b.key.key_id)
    path_of(root, pem_key).write_bytes(SiteKey(Ed25519PrivateKey.generate()).public_pem)
    return [
        ("public_key_mismatch", pem_key),
        ("checkpoint_signature_invalid", keys.checkpoint_key(b.sid, 0)),
        ("checkpoint_signature_invalid", keys.checkpoint_key(b.sid, 1)),
    ]


def delete_public_key(root: Path, b: BuiltSession) -> Expected:
    pem_key = keys.public_key_key(b.key.key_id)
    path_of(root, pem_key).unlink()
    return [("public_key_missing", pem_key)]


def delete_final_checkpoint(root: Path, b: BuiltSession) -> Expected:
    """The end of the session loses its signature: entries after the periodic checkpoint are unsigned."""
    path_of(root, keys.checkpoint_key(b.sid, 1)).unlink()
    first = Checkpoint.from_bytes(path_of(root, keys.checkpoint_key(b.sid, 0)).read_bytes())
    return [("unsigned_tail", keys.manifest_key(b.sid, first.tree_size))]


def delete_first_checkpoint(root: Path, b: BuiltSession) -> Expected:
    key = keys.checkpoint_key(b.sid, 0)
    path_of(root, key).unlink()
    return [("checkpoint_missing", key)]


def stray_object(root: Path, b: BuiltSession) -> Expected:
    key = f"sessions/{b.sid}/notes.txt"
    path_of(root, key).write_text("hello", encoding="utf-8")
    return [("object_extra", key)]


def checkpoint_bad_base64(root: Path, b: BuiltSession) -> Expected:
    """Base64 with non-zero padding bits decodes to the same signature: still an edit."""
    key = keys.checkpoint_key(b.sid, 1)
    doc = canonical.decode(path_of(root, key).read_bytes())
    sig = doc["signature"]
    assert sig.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = sig[-3]
    doc["signature"] = sig[:-3] + alphabet[alphabet.index(last) ^ 1] + "=="
    assert base64.b64decode(doc["signature"]) == base64.b64decode(sig)
    path_of(root, key).write_bytes(canonical.encode(doc))
    return [("checkpoint_malformed", key)]


TAMPERS: dict[str, Callable[[Path, BuiltSession], Expected]] = {
    f.__name__: f
    for f in (
        flip_segment,
        truncate_segment,
        delete_segment,
        swap_segments,
        extra_segment,
        insert_entry_renumbered,
        append_segment_and_entry,
        delete_entry,
        delete_entry_renumbered,
        reserialise_entry,
        edit_entry_value,
        edit_segment_and_its_entry,
        edit_last_entry,
        swap_entries,
        random_signature,
        borrowed_signature,
        signature_by_other_key,
        edit_checkpoint,
        replace_public_key,
        delete_public_key,
        delete_final_checkpoint,
        delete_first_checkpoint,
        stray_object,
        checkpoint_bad_base64,
    )
}
