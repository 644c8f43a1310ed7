"""A compact index of one session's ledger, so a reader finds entries by time without parsing JSON.

`ledger/<sid>/entries.idx` holds one fixed-size little-endian record per ledger entry, in manifest
order (`RECORD`, 96 bytes):

    seq u64 | offset u64 (of the entry's line in entries.log) | length u32 (without the newline) |
    kind u8 (SEGMENT or OTHER) | 3 pad | index i64 | start_ns i64 | end_ns i64 | track 48 bytes

For a ``segment`` entry whose body is well formed and whose ``source/track`` fits in 48 bytes of
UTF-8, kind is SEGMENT and index, start_ns (``wall_first_ns``), end_ns (``wall_last_ns``) and track
are filled in; every other entry is OTHER (start_ns = its time_ns): a reader parses its line.

The index is derived, never evidence: `Ledger.append` writes one record after the entry's line
(without an fsync: a record lost in a crash is rebuilt), `sync` rebuilds or extends it whenever it
is missing, torn, shorter than the ledger or inconsistent with it, and the verifiers never read it
(nor is it exported). A reader that takes an entry's bytes from the offset checks the seq in them.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from tonglu.evidence.errors import ManifestError
from tonglu.evidence.manifest import ManifestEntry, SegmentRecord

INDEX_NAME = "entries.idx"
LOG_NAME = "entries.log"
RECORD = struct.Struct("<QQIB3xqqq48s")
SIZE = RECORD.size  # 96
OTHER, SEGMENT = 0, 1
TRACK_BYTES = 48
_I64 = (-(1 << 63), (1 << 63) - 1)


def record(seq: int, offset: int, length: int, kind: str, time_ns: Any, body: Any) -> bytes:
    """The index record of one entry (its fields as in the ledger line)."""
    if kind == "segment" and isinstance(body, dict):
        try:
            rec = SegmentRecord.from_body(dict(body))
            label = rec.track_id.encode("utf-8")
            ints = (rec.index, rec.wall_first_ns, rec.wall_last_ns)
            if len(label) <= TRACK_BYTES and all(isinstance(v, int) and _I64[0] <= v <= _I64[1] for v in ints):
                return RECORD.pack(seq, offset, length, SEGMENT, *ints, label)
        except (ManifestError, TypeError, AttributeError):
            pass
    t = time_ns if isinstance(time_ns, int) and _I64[0] <= time_ns <= _I64[1] else 0
    return RECORD.pack(seq, offset, length, OTHER, 0, t, t, b"")


def entry_record(entry: ManifestEntry, offset: int, length: int) -> bytes:
    return record(entry.seq, offset, length, entry.kind, entry.time_ns, entry.body)


def records_from_log(data: bytes, base_offset: int, first_seq: int) -> bytes:
    """Records for the complete lines of `data` (read from `base_offset` of entries.log)."""
    out = bytearray()
    pos = 0
    seq = first_seq
    end = data.rfind(b"\n") + 1
    while pos < end:
        nl = data.index(b"\n", pos)
        line = data[pos:nl]
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise ManifestError(f"ledger line at byte {base_offset + pos} is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("seq") != seq:
            raise ManifestError(f"ledger line at byte {base_offset + pos} is not entry {seq}")
        out += record(seq, base_offset + pos, nl - pos, str(doc.get("kind")), doc.get("time_ns"), doc.get("body"))
        seq += 1
        pos = nl + 1
    return bytes(out)


def read_line(ledger_dir: Path, offset: int, length: int) -> bytes:
    with open(ledger_dir / LOG_NAME, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


def entry_at(ledger_dir: Path, seq: int, offset: int, length: int) -> ManifestEntry:
    """The entry at `offset` (from the index), parsed from the ledger's own bytes; its seq must match."""
    entry = ManifestEntry.from_bytes(read_line(ledger_dir, offset, length))
    if entry.seq != seq:
        raise ManifestError(f"entry index out of step with the ledger: entry {entry.seq} where {seq} was expected")
    return entry


def _write(path: Path, data: bytes, *, append: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def append(ledger_dir: Path, entry: ManifestEntry, offset: int, length: int) -> None:
    """After `entry` was appended to the ledger (caller holds the ledger lock): one more record, or
    a `sync` when the index is not exactly one record short (missing, torn or behind)."""
    path = ledger_dir / INDEX_NAME
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = -1
    if size == entry.seq * SIZE:
        _write(path, entry_record(entry, offset, length), append=True)
    else:
        sync(ledger_dir)


def _valid_tail(ledger_dir: Path, data: bytes, log_size: int) -> bool:
    """The last record points at a complete line of the ledger holding that very entry."""
    n = len(data) // SIZE
    seq, offset, length, *_ = RECORD.unpack_from(data, (n - 1) * SIZE)
    if seq != n - 1 or offset + length + 1 > log_size:
        return False
    line = read_line(ledger_dir, offset, length + 1)
    if not line.endswith(b"\n"):
        return False
    try:
        doc = json.loads(line)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("seq") == seq


def sync(ledger_dir: Path) -> bytes:
    """Make the index match the ledger's complete lines (caller holds the ledger lock); its bytes.

    Kept when its last record points at the ledger's entry of that seq; extended by the ledger's
    newer lines; rebuilt from the whole ledger when missing, torn or out of step."""
    log = ledger_dir / LOG_NAME
    path = ledger_dir / INDEX_NAME
    try:
        log_size = log.stat().st_size
    except FileNotFoundError:
        return b""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    stored = len(data)
    data = data[: len(data) - len(data) % SIZE]
    if data and not _valid_tail(ledger_dir, data, log_size):
        data = b""
    end = 0
    if data:
        _seq, offset, length, *_ = RECORD.unpack_from(data, len(data) - SIZE)
        end = offset + length + 1
    extra = b""
    if end < log_size:
        with open(log, "rb") as fh:
            fh.seek(end)
            extra = records_from_log(fh.read(log_size - end), end, len(data) // SIZE)
    if not extra and stored == len(data):
        return data
    data += extra
    _write(path, data, append=False)
    return data
