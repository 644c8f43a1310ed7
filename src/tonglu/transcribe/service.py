"""`TranscriptService` (services.transcripts): what the web routes and the CLI call.

svc = TranscriptService(settings, spool, ledger, read=evidence_reader(settings))
svc.current(sid)          # newest stored version, or the live draft (version 0) while recording
svc.version(sid, 3)       # one stored version
svc.versions(sid)         # the list, oldest first
svc.live_lines(sid, after_id)  # live lines committed after an id (for server-sent events)
svc.correct(sid, lines, by=user, verified=False, note="")   # a person's correction: new version
svc.transcribe_now(sid)   # final pass in this process (CLI), stored as a new version ("rerun")
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tonglu.config import Settings
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.spool import Spool
from tonglu.transcribe import documents
from tonglu.transcribe.dispatcher import live_document, segment_ref
from tonglu.transcribe.errors import CorrectionError, VersionNotFound
from tonglu.transcribe.lines import Line, iso
from tonglu.transcribe.queue import line_from_row, open_queue
from tonglu.transcribe.versions import VersionStore


class TranscriptService:
    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        ledger: Ledger,
        read: Callable[[str], bytes] | None = None,
        model: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.spool = spool
        self.read = read
        self.versions_store = VersionStore(settings.data_dir / "transcribe" / "versions", spool, ledger, read)
        self.queue = open_queue(settings.data_dir, settings.db_url)
        self._model = model

    @property
    def model(self) -> dict[str, str]:
        if self._model is None:
            from tonglu.transcribe.workers import model_identity

            self._model = model_identity(self.settings)
        return self._model

    def has_session(self, sid: str) -> bool:
        return self.ledger.has(sid)

    def session_facts(self, sid: str) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], bool]:
        start: dict[str, Any] | None = None
        participants: dict[str, dict[str, Any]] = {}
        stopped = False
        for e in self.ledger.entries(sid):
            if e.kind == "session_start":
                start = e.body
            elif e.kind == "participant" and e.body.get("event") == "joined":
                participants[str(e.body.get("source"))] = e.body
            elif e.kind == "session_stop":
                stopped = True
        return start, participants, stopped

    def versions(self, sid: str) -> list[dict[str, Any]]:
        return [
            {
                "version": e["version"],
                "origin": e.get("origin", ""),
                "draft": e.get("draft", True),
                "by": e.get("by", ""),
                "model": e.get("model"),
                "key": e["key"],
                "sha256": e["sha256"],
                "created": iso(e["time_ns"]),
                "manifest_seq": e["seq"],
            }
            for e in self.versions_store.entries(sid)
        ]

    def version(self, sid: str, version: int) -> dict[str, Any]:
        return self.versions_store.load(sid, version)

    def live_draft(self, sid: str) -> dict[str, Any]:
        info = self.queue.session_info(sid) or {}
        doc = live_document(sid, self.queue.live_rows(sid), self.queue.segments(sid), self.model, info, time.time_ns())
        doc["version"] = 0
        doc["live"] = True
        return doc

    def current(self, sid: str) -> dict[str, Any]:
        """While recording: the live draft (version 0, not stored yet). After stop: the newest version."""
        _, _, stopped = self.session_facts(sid)
        entries = self.versions_store.entries(sid)
        if entries and (stopped or entries[-1].get("origin") == "correction"):
            doc = self.versions_store.load(sid, entries[-1]["version"])
            doc["live"] = False
            return doc
        return self.live_draft(sid)

    def live_lines(self, sid: str, after_id: int = 0) -> list[tuple[int, dict[str, Any]]]:
        """Live rows committed after `after_id`, in commit order, for a stream that cannot retract a line.

        Cross-talk (`crosstalk.live_marks`, over the lines around the new ones): a line that repeats one
        heard better on another track has kind ``duplicate`` and ``duplicate_of`` (the kept line's id); a
        kept line carries ``heard_on`` and ``replaces`` (ids of copies sent earlier that it supersedes).
        """
        from tonglu.transcribe.crosstalk import live_marks
        from tonglu.transcribe.speakers import speaker_for

        new_rows = self.queue.live_rows(sid, after_id)
        if not new_rows:
            return []
        start, participants, _ = self.session_facts(sid)
        spans = [(r["start_ns"], r["end_ns"]) for r in new_rows if r["kind"] == "line"]
        marks = {}
        if spans:
            context = self.queue.live_line_rows_between(
                sid, min(a for a, _ in spans) - LIVE_CONTEXT_NS, max(b for _, b in spans) + LIVE_CONTEXT_NS
            )
            marks = live_marks({int(r["id"]): _row_line(r) for r in context})
        out = []
        for r in new_rows:
            sp = speaker_for(r["source"], start, participants)
            item = {
                "start": iso(r["start_ns"]),
                "end": iso(r["end_ns"]),
                "start_ns": r["start_ns"],
                "end_ns": r["end_ns"],
                "speaker": sp["label"],
                "role": sp["role"],
                "source": r["source"],
                "track": r["track"],
                "text": r["text"],
                "kind": r["kind"],
            }
            if r["kind"] == "line":
                item["confidence"] = round(r["confidence"] or 0.0, 3)
                item["level_db"] = None if r["level_db"] is None else round(r["level_db"], 1)
                mark = marks.get(int(r["id"]))
                item["heard_on"] = list(mark.heard_on) if mark else []
                if mark and mark.duplicate_of is not None:
                    item["kind"] = "duplicate"
                    item["duplicate_of"] = mark.duplicate_of
                elif mark and mark.replaces:
                    item["replaces"] = list(mark.replaces)
            else:
                item["reason"] = r["reason"]
            out.append((int(r["id"]), item))
        return out

    def latest_version_number(self, sid: str) -> int:
        entries = self.versions_store.entries(sid)
        return int(entries[-1]["version"]) if entries else 0

    def correct(
        self,
        sid: str,
        lines: Any,
        *,
        by: str,
        verified: bool = False,
        note: str = "",
        base_version: int | None = None,
    ) -> dict[str, Any]:
        entries = self.versions_store.entries(sid)
        if base_version is None:
            base = self.current(sid)
        else:
            try:
                base = self.versions_store.load(sid, int(base_version))
            except (VersionNotFound, ValueError) as exc:
                raise CorrectionError(f"base_version {base_version!r}: {exc}") from exc
        asr_entries = [e for e in entries if e.get("origin") in documents.ASR_ORIGINS]
        asr = self.versions_store.load(sid, asr_entries[-1]["version"]) if asr_entries else None
        if base.get("version") == 0:
            asr = asr or base
        doc = documents.correct(base, lines, by=by, verified=verified, note=note, now_ns=time.time_ns(), asr=asr)
        doc.pop("live", None)
        published = self.versions_store.publish(sid, doc, by=by)
        assert published is not None
        return published

    def transcribe_now(self, sid: str, engine: Any | None = None) -> dict[str, Any]:
        """Re-transcribe every audio segment of the session here and store the result as a new version."""
        from tonglu.transcribe.audio import assemble
        from tonglu.transcribe.engine import Engine
        from tonglu.transcribe.levels import line_level_db
        from tonglu.transcribe.lines import to_wall
        from tonglu.transcribe.models import resolve_model
        from tonglu.transcribe.queue import bad_to_row

        if engine is None:
            engine = Engine(
                resolve_model(self.settings.whisper_model),
                compute_type=self.settings.whisper_compute_type,
                language=self.settings.whisper_language,
            )
        start, participants, _ = self.session_facts(sid)
        segs = [
            segment_ref(e.body)
            for e in self.ledger.entries(sid)
            if e.kind == "segment" and e.body.get("media") == "audio"
        ]
        if not segs:
            raise VersionNotFound(f"session {sid} has no audio segments to transcribe")
        if self.read is None:
            raise VersionNotFound("no evidence reader configured")
        lines, bad = [], []
        for track in sorted({(s.source, s.track) for s in segs}):
            track_segs = sorted((s for s in segs if (s.source, s.track) == track), key=lambda s: s.index)
            window = assemble(track_segs, self.read)
            raw, _ = engine.transcribe(window.audio, thorough=True)
            lines += [
                to_wall(r, window.start_ns, track[0], track[1], r.text, line_level_db(window.audio, r)) for r in raw
            ]
            bad += [bad_to_row(b) for b in window.bad]
        doc = documents.build(
            sid=sid,
            origin="rerun",
            lines=lines,
            bad=bad,
            segments=segs,
            model=engine.describe(),
            session_start=start,
            participants=participants,
            created_by="asr",
            now_ns=time.time_ns(),
        )
        published = self.versions_store.publish(sid, doc, by="asr")
        assert published is not None
        return published


LIVE_CONTEXT_NS = 60_000_000_000  # live lines this close to the new ones are compared for cross-talk


def _row_line(r: dict[str, Any]) -> Line:
    return line_from_row(r["source"], r["track"], {**r, "words": json.loads(r["words"] or "[]")})


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False)
