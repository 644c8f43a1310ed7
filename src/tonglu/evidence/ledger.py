"""One session's manifest, appended by any process on this host, spooled entry by entry.

The ledger file `ledger/<sid>/entries.log` (canonical entry bytes, one per line, fsynced) is the
commit point: an entry is appended there first, then spooled for upload. A crash between the two
is healed by `recover()`, which re-spools the newest entries; the uploader treats an identical
object already in the store as confirmed, so nothing is uploaded twice. A line cut short by a
crash was never spooled and is dropped on the next open.

Writers in several processes serialise on an flock of `ledger/<sid>/lock` and catch up with what
other processes appended before writing.

Beside the ledger, `ledger/<sid>/entries.idx` (`entryindex`) holds one fixed-size record per entry
(seq, byte offset, kind, segment track and wall times) so playback finds entries by time without
parsing the JSON. It is derived from entries.log (rebuilt when missing or out of step) and never
read for verification.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonglu.evidence import entryindex, keys, merkle
from tonglu.evidence.checkpoint import Checkpoint, sign_checkpoint
from tonglu.evidence.errors import ManifestError, SpoolError
from tonglu.evidence.fsutil import append_durable
from tonglu.evidence.manifest import GENESIS, HashChain, ManifestEntry, sha256_hex
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import EVIDENCE, Spool

JSON = "application/json"
_log = logging.getLogger(__name__)


@dataclass
class _State:
    offset: int = 0
    entries: list[ManifestEntry] = field(default_factory=list)
    leaves: list[bytes] = field(default_factory=list)
    head: str = GENESIS
    checkpoints: list[Checkpoint] = field(default_factory=list)
    cp_offset: int = 0

    @property
    def stopped(self) -> bool:
        return any(e.kind == "session_stop" for e in reversed(self.entries))


class Ledger:
    def __init__(self, root: Path, spool: Spool, key: SiteKey) -> None:
        self.root = root
        self.spool = spool
        self.key = key
        self._states: dict[str, _State] = {}
        root.mkdir(parents=True, exist_ok=True)

    # -- files ---------------------------------------------------------------------------------
    def _dir(self, session: str) -> Path:
        return self.root / keys.safe_id(session, "session id")

    @contextmanager
    def _flock(self, session: str) -> Iterator[Path]:
        d = self._dir(session)
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield d
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @contextmanager
    def _locked(self, session: str) -> Iterator[_State]:
        with self._flock(session):
            yield self._catch_up(session)

    def _catch_up(self, session: str) -> _State:
        state = self._states.setdefault(session, _State())
        log = self._dir(session) / "entries.log"
        if log.exists():
            with open(log, "rb") as fh:
                fh.seek(state.offset)
                data = fh.read()
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                # A torn final line (crash mid-append) was never spooled: cut it off.
                with open(log, "r+b") as fh:
                    fh.truncate(state.offset + complete)
                    os.fsync(fh.fileno())
                data = data[:complete]
            for line in data.splitlines():
                entry = ManifestEntry.from_bytes(line)
                if entry.seq != len(state.entries) or entry.prev != state.head:
                    raise ManifestError(f"local ledger for {session} is inconsistent at seq {entry.seq}")
                state.entries.append(entry)
                state.leaves.append(merkle.leaf_hash(line))
                state.head = sha256_hex(line)  # = entry.entry_hash: from_bytes accepts canonical bytes only
            state.offset += complete
        cps = self._dir(session) / "checkpoints.log"
        if cps.exists():
            with open(cps, "rb") as fh:
                fh.seek(state.cp_offset)
                data = fh.read()
            complete = data.rfind(b"\n") + 1
            for line in data[:complete].splitlines():
                state.checkpoints.append(Checkpoint.from_bytes(line))
            state.cp_offset += complete
        return state

    # -- public API ----------------------------------------------------------------------------
    def append(self, session: str, kind: str, body: dict[str, Any], now_ns: int | None = None, *,
               while_recording: bool = False) -> ManifestEntry:
        """Append one entry. After the session stopped (explanations, transcript versions, ...),
        every append is immediately covered by a new final checkpoint, so a stopped session never
        has unsigned entries. `while_recording=True` appends only before `session_stop` (checked
        under the lock; `ManifestError` otherwise), e.g. for live alerts that must not change the
        final digest the participants signed."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        with self._locked(session) as state:
            was_stopped = state.stopped
            if while_recording and was_stopped:
                raise ManifestError(f"session {session} is stopped: {kind} not appended")
            chain = HashChain(session, len(state.entries), state.head)
            entry = chain.append(kind, body, now_ns)
            line = entry.to_bytes()
            append_durable(self._dir(session) / "entries.log", line + b"\n")
            self._index_append(session, entry, state.offset, len(line))
            state.offset += len(line) + 1
            state.entries.append(entry)
            state.leaves.append(merkle.leaf_hash(line))
            state.head = entry.entry_hash
            self.spool.put_bytes(keys.manifest_key(session, entry.seq), line, content_type=JSON, bucket=EVIDENCE)
            if was_stopped:
                self._checkpoint_locked(session, state, final=True, now_ns=now_ns)
            return entry

    def _index_append(self, session: str, entry: ManifestEntry, offset: int, length: int) -> None:
        # the entry is committed: the derived index must never fail the append (rebuilt when read)
        try:
            entryindex.append(self._dir(session), entry, offset, length)
        except (OSError, ManifestError) as exc:
            _log.warning("entry index of %s not updated (rebuilt on the next read): %s", session, exc)

    def entry_index(self, session: str, *, rebuild: bool = False) -> tuple[Path, bytes]:
        """The session's directory and its entry index (`evidence.entryindex`), brought in line with
        the ledger first (extended, or rebuilt from the ledger when missing, torn, out of step or
        `rebuild`), under the lock. Not evidence: for finding entries."""
        with self._flock(session) as d:
            if rebuild:
                (d / entryindex.INDEX_NAME).unlink(missing_ok=True)
            return d, entryindex.sync(d)

    def log_size(self, session: str) -> int:
        """Bytes in the session's entries.log (grows with every append; 0 if none)."""
        try:
            return (self._dir(session) / "entries.log").stat().st_size
        except FileNotFoundError:
            return 0

    def checkpoint(self, session: str, *, final: bool = False, now_ns: int | None = None) -> Checkpoint:
        now_ns = time.time_ns() if now_ns is None else now_ns
        with self._locked(session) as state:
            return self._checkpoint_locked(session, state, final=final, now_ns=now_ns)

    def _checkpoint_locked(self, session: str, state: _State, *, final: bool, now_ns: int) -> Checkpoint:
        if state.checkpoints and state.checkpoints[-1].tree_size == len(state.entries) and (
            state.checkpoints[-1].final or not final
        ):
            return state.checkpoints[-1]  # nothing new to sign
        prev = state.checkpoints[-1].body_hash if state.checkpoints else GENESIS
        cp = sign_checkpoint(
            self.key,
            session=session,
            tree_size=len(state.entries),
            root=merkle.root_from_leaf_hashes(state.leaves),
            head=state.head,
            now_ns=now_ns,
            prev_checkpoint=prev,
            final=final,
        )
        data = cp.to_bytes()
        append_durable(self._dir(session) / "checkpoints.log", data + b"\n")
        state.cp_offset += len(data) + 1
        state.checkpoints.append(cp)
        # Two checkpoints over the same tree size (e.g. a final one right after a periodic
        # one) get distinct keys: the n-th checkpoint is stored under its ordinal.
        self.spool.put_bytes(
            keys.checkpoint_key(session, len(state.checkpoints) - 1), data, content_type=JSON, bucket=EVIDENCE
        )
        return cp

    def entries(self, session: str) -> list[ManifestEntry]:
        with self._locked(session) as state:
            return list(state.entries)

    def leaf_hashes(self, session: str) -> list[bytes]:
        """RFC 9162 leaf hashes of every entry, in order (kept as entries are read: no re-encoding)."""
        with self._locked(session) as state:
            return list(state.leaves)

    def checkpoints(self, session: str) -> list[Checkpoint]:
        with self._locked(session) as state:
            return list(state.checkpoints)

    def head(self, session: str) -> tuple[int, str]:
        with self._locked(session) as state:
            return len(state.entries), state.head

    def sessions(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if (p / "entries.log").exists())

    def has(self, session: str) -> bool:
        return (self._dir(session) / "entries.log").exists()

    def recover(self, session: str, tail: int = 2) -> None:
        """Re-spool the newest entries and checkpoint (idempotent for the uploader)."""
        with self._locked(session) as state:
            try:
                for entry in state.entries[-tail:]:
                    self.spool.put_bytes(
                        keys.manifest_key(session, entry.seq), entry.to_bytes(), content_type=JSON, bucket=EVIDENCE
                    )
                if state.checkpoints:
                    n = len(state.checkpoints) - 1
                    self.spool.put_bytes(
                        keys.checkpoint_key(session, n), state.checkpoints[-1].to_bytes(), content_type=JSON,
                        bucket=EVIDENCE,
                    )
            except SpoolError:
                raise
