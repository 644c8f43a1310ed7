"""The dispatcher: tails the session ledgers, feeds the queue, publishes versions.

It reads `ledger/<sid>/entries.log` files directly (read-only, from a stored offset, whole lines only),
so it never blocks a recorder appending. For each session it records ``session_start``,
``participant`` and audio ``segment`` entries; on ``session_stop`` the queue creates the final jobs.
When a stopped session's live draft has drained and all its final jobs are done, it publishes the
live draft as one version and the final pass as the next (`VersionStore.publish`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


class Dispatcher:
    def __init__(self, ledger_dir: Path, queue: JobQueue, versions: VersionStore, model: dict[str, str]) -> None:
        self.ledger_dir = ledger_dir
        self.queue = queue
        self.versions = versions
        self.model = model
        self._mtimes: dict[str, int] = {}

    def scan(self) -> int:
        """Read whatever the ledgers gained since the last scan; return how many entries were new."""
        n = 0
        if not self.ledger_dir.exists():
            return 0
        for d in sorted(self.ledger_dir.iterdir()):
            log_path = d / "entries.log"
            try:
                st = log_path.stat()
            except FileNotFoundError:
                continue
            if self._mtimes.get(d.name) == (st.st_mtime_ns ^ st.st_size):
                continue
            n += self._scan_session(d.name)
            self._mtimes[d.name] = st.st_mtime_ns ^ st.st_size
        return n

    def _scan_session(self, sid: str) -> int:
        offset = self.queue.offset(sid)
        entries, new_offset = read_new_entries(self.ledger_dir, sid, offset)
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

    def publish_ready(self, now_ns: int | None = None) -> list[dict[str, Any]]:
        """Publish the live and final versions of stopped sessions whose work is complete."""
        published = []
        for sid in self.queue.sessions_to_publish():
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

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.dispatcher.scan()
                self.dispatcher.publish_ready()
            except Exception as exc:  # keep dispatching; the error is logged and visible in health
                self.error = exc
                log.exception("dispatcher pass failed")
            self.stop_event.wait(self.poll_s)

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.join(timeout)
