"""The dispatcher: follows the sessions' manifest entries, feeds the queue, publishes versions.

Where the entries come from (`EntrySource`):
- `LedgerFiles` (one host, the SQLite default): `ledger/<sid>/entries.log` read directly (read-only,
  from a stored byte offset, whole lines only), so it never blocks a recorder appending.
- `IndexEntries` (several hosts, PostgreSQL): the manifest entries in the index database, which
  every recorder host writes (recorder/indexfeed.py). The stored offset is the next seq; only the
  contiguous run from it is taken, so an entry still in flight from another writer is waited for,
  never skipped. A worker host needs no ledger files: segment entries carry the object key and
  SHA-256, and workers fetch the audio from the object store and check the hash (audio.assemble).

For each session it records ``session_start``, ``participant`` and audio ``segment`` entries; on
``session_stop`` the queue creates the final jobs. When a stopped session's live draft has drained
and all its final jobs are done, it publishes the live draft as one version and the final pass as
the next (`VersionStore.publish`, which appends to the session's ledger: the dispatcher runs where
that ledger is). On PostgreSQL only the queue's leader dispatches (`JobQueue.is_leader`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.transcribe import documents
from tonglu.transcribe.audio import SegmentRef
from tonglu.transcribe.errors import TranscribeError
from tonglu.transcribe.queue import JobQueue, line_from_row
from tonglu.transcribe.versions import VersionStore

log = context_logger(__name__)


def read_new_entries(ledger_dir: Path, sid: str, offset: int) -> tuple[list[ManifestEntry], int]:
    path = ledger_dir / sid / "entries.log"
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return [], offset
    complete = data.rfind(b"\n") + 1
    entries = [ManifestEntry.from_bytes(line) for line in data[:complete].splitlines() if line]
    return entries, offset + complete


def segment_ref(body: dict[str, Any]) -> SegmentRef:
    return SegmentRef(
        body["source"],
        body["track"],
        int(body["index"]),
        body["key"],
        body["sha256"],
        int(body["wall_first_ns"]),
        int(body["wall_last_ns"]),
    )


class Fact(Protocol):
    """What the dispatcher reads of an entry (a `ManifestEntry` or an index `IndexedEntry`)."""

    @property
    def seq(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def time_ns(self) -> int: ...
    @property
    def body(self) -> dict[str, Any]: ...


class EntrySource(Protocol):
    def changed(self, queue: JobQueue) -> list[str]:
        """Sessions that may have entries past their queue offset."""

    def read(self, sid: str, offset: int) -> tuple[Sequence[Fact], int]:
        """Entries from `offset` on and the offset after them."""

    def seen(self, sid: str) -> None:
        """`sid` was read up to what `changed` saw."""


class LedgerFiles:
    """The entries of the ledger files on this host (offset: bytes into `entries.log`)."""

    def __init__(self, ledger_dir: Path) -> None:
        self.ledger_dir = ledger_dir
        self._mtimes: dict[str, int] = {}
        self._pending: dict[str, int] = {}

    def changed(self, queue: JobQueue) -> list[str]:
        out: list[str] = []
        if not self.ledger_dir.exists():
            return out
        for d in sorted(self.ledger_dir.iterdir()):
            try:
                st = (d / "entries.log").stat()
            except FileNotFoundError:
                continue
            if self._mtimes.get(d.name) != (st.st_mtime_ns ^ st.st_size):
                self._pending[d.name] = st.st_mtime_ns ^ st.st_size
                out.append(d.name)
        return out

    def read(self, sid: str, offset: int) -> tuple[Sequence[Fact], int]:
        return read_new_entries(self.ledger_dir, sid, offset)

    def seen(self, sid: str) -> None:
        if sid in self._pending:
            self._mtimes[sid] = self._pending.pop(sid)


class IndexEntries:
    """The entries in the index database (offset: the next seq), for workers on any host."""

    HOLE_WARN_S = 60.0

    def __init__(self, index: Any, batch: int = 1000) -> None:
        self.index = index  # evidence.index.Index
        self.batch = batch
        self._holes: dict[tuple[str, int], float] = {}

    def changed(self, queue: JobQueue) -> list[str]:
        offsets = queue.offsets()
        return sorted(sid for sid, n in self.index.entry_counts().items() if n > offsets.get(sid, 0))

    def read(self, sid: str, offset: int) -> tuple[Sequence[Fact], int]:
        got: list[Fact] = []
        for e in self.index.entries_since(sid, offset, self.batch):
            if e.seq != offset + len(got):
                break
            got.append(e)
        new_offset = offset + len(got)
        if len(got) < self.batch and new_offset < self.index.entry_counts().get(sid, 0):
            first = self._holes.setdefault((sid, new_offset), time.monotonic())
            if time.monotonic() - first > self.HOLE_WARN_S:
                log.bind(session=sid).warning(
                    "entry %d is not in the index yet; transcription of the session waits for it "
                    "(`tonglu reindex` repairs an index that lost it)", new_offset)
                self._holes[(sid, new_offset)] = time.monotonic()
        return got, new_offset

    def seen(self, sid: str) -> None:
        pass


class Dispatcher:
    def __init__(
        self, source: Path | EntrySource, queue: JobQueue, versions: VersionStore, model: dict[str, str]
    ) -> None:
        self.source: EntrySource = LedgerFiles(source) if isinstance(source, Path) else source
        self.queue = queue
        self.versions = versions
        self.model = model

    def scan(self) -> int:
        """Read whatever the sessions gained since the last scan; return how many entries were new."""
        if not self.queue.is_leader():
            return 0
        n = 0
        for sid in self.source.changed(self.queue):
            n += self._scan_session(sid)
            self.source.seen(sid)
        return n

    def _scan_session(self, sid: str) -> int:
        offset = self.queue.offset(sid)
        entries, new_offset = self.source.read(sid, offset)
        if new_offset == offset:
            return 0
        start_body = None
        participants = []
        segments = []
        stopped_ns = None
        for e in entries:
            if e.kind == "session_start":
                start_body = e.body
            elif e.kind == "participant" and e.body.get("event") == "joined":
                participants.append((str(e.body.get("source")), e.body))
            elif e.kind == "segment" and e.body.get("media") == "audio":
                try:
                    segments.append((segment_ref(e.body), e.time_ns))
                except (KeyError, TypeError, ValueError) as exc:
                    log.bind(session=sid).warning("segment entry %d unusable for transcription: %s", e.seq, exc)
            elif e.kind == "session_stop":
                stopped_ns = e.time_ns
        self.queue.record_entries(
            sid,
            new_offset,
            start_body=start_body,
            participants=participants,
            segments=segments,
            stopped_ns=stopped_ns,
        )
        return len(entries)

    def publish_ready(self, now_ns: int | None = None, *, leader_only: bool = True) -> list[dict[str, Any]]:
        """Publish the live and final versions of stopped sessions whose work is complete.

        Only sessions whose ledger this host holds: a transcript version is an entry of the session's
        own hash chain, appended where that chain lives (the recorder host that recorded it, see
        `TranscriptPublisher`); another host appending would fork the chain. `leader_only=False` is
        for those publishers, which publish only their own sessions and need no leadership."""
        published: list[dict[str, Any]] = []
        if leader_only and not self.queue.is_leader():
            return published
        for sid in self.queue.sessions_to_publish():
            if not self.versions.ledger.has(sid):
                continue  # recorded on another host: its publisher appends it there
            if not self.queue.live_drained(sid):
                continue
            results = self.queue.final_results(sid)
            if results is None:
                continue
            try:
                published.extend(self._publish(sid, results, now_ns or time.time_ns()))
            except TranscribeError as exc:
                log.bind(session=sid).error("cannot publish the transcript: %s", exc)
                continue
            self.queue.mark_published(sid)
        return published

    def _publish(self, sid: str, results: list[dict[str, Any]], now_ns: int) -> list[dict[str, Any]]:
        info = self.queue.session_info(sid) or {}
        segments = self.queue.segments(sid)
        out = []
        live_rows = self.queue.live_rows(sid)
        if live_rows:
            doc = live_document(sid, live_rows, segments, self.model, info, now_ns)
            pub = self.versions.publish(sid, doc, by="asr", skip_if=_has_origin("live"))
            if pub:
                out.append(pub)
        lines = [line_from_row(r["source"], r["track"], row) for r in results for row in r["lines"]]
        bad = [b for r in results for b in r["bad"]]
        doc = documents.build(
            sid=sid,
            origin="final",
            lines=lines,
            bad=bad,
            segments=segments,
            model=self.model,
            session_start=info.get("start_body"),
            participants=info.get("participants"),
            created_by="asr",
            now_ns=now_ns,
        )
        pub = self.versions.publish(sid, doc, by="asr", skip_if=_has_origin("final"))
        if pub:
            out.append(pub)
            log.bind(session=sid).info(
                "final transcript version %d: %d lines, %d untranscribable spans",
                pub["version"],
                len(lines),
                len(bad),
            )
        return out


def _has_origin(origin: str) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda entries: any(e.get("origin") == origin for e in entries)


def live_document(
    sid: str,
    rows: list[dict[str, Any]],
    segments: list[SegmentRef],
    model: dict[str, str],
    info: dict[str, Any],
    now_ns: int,
) -> dict[str, Any]:
    import json

    lines = [
        line_from_row(r["source"], r["track"], {**r, "words": json.loads(r["words"] or "[]")})
        for r in rows
        if r["kind"] == "line"
    ]
    bad = [
        {
            "start_ns": r["start_ns"],
            "end_ns": r["end_ns"],
            "reason": r["reason"],
            "segment_key": r["segment_key"],
            "source": r["source"],
            "track": r["track"],
        }
        for r in rows
        if r["kind"] == "untranscribable"
    ]
    return documents.build(
        sid=sid,
        origin="live",
        lines=lines,
        bad=bad,
        segments=segments,
        model=model,
        session_start=info.get("start_body"),
        participants=info.get("participants"),
        created_by="asr",
        now_ns=now_ns,
    )


class DispatcherThread(threading.Thread):
    def __init__(self, dispatcher: Dispatcher, poll_s: float = 0.2) -> None:
        super().__init__(name="transcribe-dispatcher", daemon=True)
        self.dispatcher = dispatcher
        self.poll_s = poll_s
        self.stop_event = threading.Event()
        self.error: BaseException | None = None

    def step(self) -> None:
        self.dispatcher.scan()
        self.dispatcher.publish_ready()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.step()
                self.error = None
            except Exception as exc:  # keep going; the error is logged and visible in health
                self.error = exc
                log.exception("%s pass failed", self.name)
            self.stop_event.wait(self.poll_s)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.join(timeout)


class TranscriptPublisher(DispatcherThread):
    """On a recorder host with the shared (PostgreSQL) queue: publishes the finished transcripts of
    the sessions this host's ledger holds, every `poll_s`. Workers on any host did the work; the
    version is appended to the session's own chain here, where that chain lives."""

    def __init__(self, dispatcher: Dispatcher, poll_s: float = 1.0) -> None:
        super().__init__(dispatcher, poll_s)
        self.name = "transcript-publisher"

    def step(self) -> None:
        self.dispatcher.publish_ready(leader_only=False)
