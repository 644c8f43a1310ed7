"""The durable job queue (SQLite under data_dir/transcribe/queue.db), shared by the dispatcher and workers.

Work units:
- *live*: per audio track, the sealed segments not yet covered by the live draft (plus the carried
  tail of the previous window). One worker holds a track's lease at a time, so windows of a track
  are transcribed in order and context is carried correctly.
- *final*: after ``session_stop``, chunks of up to `final_chunk_s` of each audio track.

Claims are leases (`lease_s`, renewed by a heartbeat while the worker runs). A worker that is killed
stops renewing; once its lease has passed another worker claims the same work. Every commit checks,
in the same transaction, that the committing worker still holds the lease, so a late commit from a
worker that lost its lease is refused (`LeaseLost`) and nothing is ever written twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tonglu.transcribe.audio import BadSpan, SegmentRef
from tonglu.transcribe.errors import LeaseLost, QueueError
from tonglu.transcribe.lines import Line, Word

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions(
  sid TEXT PRIMARY KEY, offset INTEGER NOT NULL DEFAULT 0, start_body TEXT, stopped_ns INTEGER,
  published INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS participants(sid TEXT, source TEXT, body TEXT, PRIMARY KEY(sid, source));
CREATE TABLE IF NOT EXISTS segments(
  sid TEXT, source TEXT, track TEXT, idx INTEGER, key TEXT, sha256 TEXT, wall_first_ns INTEGER,
  wall_last_ns INTEGER, sealed_ns INTEGER, live_done INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(sid, source, track, idx));
CREATE TABLE IF NOT EXISTS tracks(
  sid TEXT, source TEXT, track TEXT, carry_ns INTEGER, flush INTEGER NOT NULL DEFAULT 0, owner TEXT,
  lease_until REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(sid, source, track));
CREATE TABLE IF NOT EXISTS live_lines(
  id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT, source TEXT, track TEXT, kind TEXT, start_ns INTEGER,
  end_ns INTEGER, text TEXT, confidence REAL, words TEXT, reason TEXT, segment_key TEXT, available_ns INTEGER,
  level_db REAL, UNIQUE(sid, source, track, kind, start_ns));
CREATE INDEX IF NOT EXISTS live_lines_sid ON live_lines(sid, id);
CREATE TABLE IF NOT EXISTS final_jobs(
  id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT, source TEXT, track TEXT,
  first_idx INTEGER, last_idx INTEGER,
  state TEXT NOT NULL DEFAULT 'pending', owner TEXT, lease_until REAL NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0, result TEXT, done_ns INTEGER, UNIQUE(sid, source, track, first_idx));
CREATE TABLE IF NOT EXISTS commits(job TEXT, owner TEXT, attempt INTEGER, time_ns INTEGER);
"""


@dataclass(frozen=True)
class LiveJob:
    sid: str
    source: str
    track: str
    segments: tuple[SegmentRef, ...]
    carry_ns: int | None
    closing: bool
    attempt: int

    @property
    def name(self) -> str:
        return f"live:{self.sid}:{self.source}/{self.track}"


@dataclass(frozen=True)
class FinalJob:
    id: int
    sid: str
    source: str
    track: str
    segments: tuple[SegmentRef, ...]
    attempt: int

    @property
    def name(self) -> str:
        return f"final:{self.id}"


Job = LiveJob | FinalJob


def line_to_row(line: Line) -> dict[str, Any]:
    return {
        "start_ns": line.start_ns,
        "end_ns": line.end_ns,
        "text": line.text,
        "confidence": line.confidence,
        "level_db": line.level_db,
        "words": [[w.start_ns, w.end_ns, w.word, round(w.probability, 4)] for w in line.words],
    }


def line_from_row(source: str, track: str, row: dict[str, Any]) -> Line:
    words = tuple(Word(int(a), int(b), str(c), float(d)) for a, b, c, d in row.get("words") or [])
    return Line(
        source,
        track,
        int(row["start_ns"]),
        int(row["end_ns"]),
        str(row["text"]),
        float(row.get("confidence", 1.0)),
        words,
        None if row.get("level_db") is None else float(row["level_db"]),
    )


def bad_to_row(bad: BadSpan) -> dict[str, Any]:
    return {
        "start_ns": bad.start_ns,
        "end_ns": bad.end_ns,
        "reason": bad.reason,
        "segment_key": bad.segment.key,
        "source": bad.segment.source,
        "track": bad.segment.track,
    }


def _ref(row: sqlite3.Row) -> SegmentRef:
    return SegmentRef(
        row["source"],
        row["track"],
        row["idx"],
        row["key"],
        row["sha256"],
        row["wall_first_ns"],
        row["wall_last_ns"],
    )


class JobQueue:
    def __init__(
        self, path: Path, *, lease_s: float = 30.0, max_window_s: float = 28.0, final_chunk_s: float = 600.0
    ) -> None:
        self.path = path
        self.lease_s = lease_s
        self.max_window_s = max_window_s
        self.final_chunk_s = final_chunk_s
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), timeout=60.0, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=60000")
            with self._tx():
                for stmt in SCHEMA.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                columns = {r["name"] for r in self._db.execute("PRAGMA table_info(live_lines)")}
                if "level_db" not in columns:  # queues made before speech levels were recorded
                    self._db.execute("ALTER TABLE live_lines ADD COLUMN level_db REAL")
        except sqlite3.Error as exc:
            raise QueueError(f"cannot open the transcription queue {path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _q(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return list(self._db.execute(sql, args))

    # -- dispatcher side ---------------------------------------------------------------------
    def offset(self, sid: str) -> int:
        rows = self._q("SELECT offset FROM sessions WHERE sid=?", (sid,))
        return int(rows[0]["offset"]) if rows else 0

    def record_entries(
        self,
        sid: str,
        new_offset: int,
        *,
        start_body: dict[str, Any] | None = None,
        participants: Sequence[tuple[str, dict[str, Any]]] = (),
        segments: Sequence[tuple[SegmentRef, int]] = (),
        stopped_ns: int | None = None,
    ) -> None:
        """Store what the dispatcher read from a ledger, and the new read offset, atomically."""
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO sessions(sid) VALUES (?)", (sid,))
            db.execute("UPDATE sessions SET offset=? WHERE sid=?", (new_offset, sid))
            if start_body is not None:
                db.execute("UPDATE sessions SET start_body=? WHERE sid=?", (json.dumps(start_body), sid))
            for source, body in participants:
                db.execute("INSERT OR REPLACE INTO participants VALUES (?,?,?)", (sid, source, json.dumps(body)))
            for ref, sealed_ns in segments:
                db.execute(
                    "INSERT OR IGNORE INTO segments(sid,source,track,idx,key,sha256,"
                    "wall_first_ns,wall_last_ns,sealed_ns) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        sid,
                        ref.source,
                        ref.track,
                        ref.index,
                        ref.key,
                        ref.sha256,
                        ref.wall_first_ns,
                        ref.wall_last_ns,
                        sealed_ns,
                    ),
                )
                db.execute(
                    "INSERT OR IGNORE INTO tracks(sid,source,track) VALUES (?,?,?)",
                    (sid, ref.source, ref.track),
                )
            if stopped_ns is not None:
                db.execute("UPDATE sessions SET stopped_ns=? WHERE sid=? AND stopped_ns IS NULL", (stopped_ns, sid))
            stopped = db.execute("SELECT stopped_ns FROM sessions WHERE sid=?", (sid,)).fetchone()["stopped_ns"]
            if stopped is not None:
                # the tail of each track not yet committed live is flushed (carry up to the last segment end)
                db.execute(
                    "UPDATE tracks SET flush=1 WHERE sid=? AND (carry_ns IS NULL OR carry_ns < (SELECT "
                    "MAX(wall_last_ns) FROM segments s WHERE s.sid=tracks.sid AND s.source=tracks.source "
                    "AND s.track=tracks.track))",
                    (sid,),
                )
                self._create_final_jobs(db, sid)

    def _create_final_jobs(self, db: sqlite3.Connection, sid: str) -> None:
        """Chunk every audio segment not yet in a final job (idempotent)."""
        for t in list(db.execute("SELECT source, track FROM tracks WHERE sid=?", (sid,))):
            covered = list(
                db.execute(
                    "SELECT first_idx, last_idx FROM final_jobs WHERE sid=? AND source=? AND track=?",
                    (sid, t["source"], t["track"]),
                )
            )
            segs = [
                r
                for r in db.execute(
                    "SELECT * FROM segments WHERE sid=? AND source=? AND track=? ORDER BY idx",
                    (sid, t["source"], t["track"]),
                )
                if not any(c["first_idx"] <= r["idx"] <= c["last_idx"] for c in covered)
            ]
            chunk: list[sqlite3.Row] = []
            for r in [*segs, None]:
                if chunk and (
                    r is None
                    or r["idx"] != chunk[-1]["idx"] + 1
                    or (r["wall_last_ns"] - chunk[0]["wall_first_ns"]) / 1e9 > self.final_chunk_s
                ):
                    db.execute(
                        "INSERT OR IGNORE INTO final_jobs(sid,source,track,first_idx,last_idx) VALUES (?,?,?,?,?)",
                        (sid, t["source"], t["track"], chunk[0]["idx"], chunk[-1]["idx"]),
                    )
                    chunk = []
                if r is not None:
                    chunk.append(r)

    def session_info(self, sid: str) -> dict[str, Any] | None:
        rows = self._q("SELECT * FROM sessions WHERE sid=?", (sid,))
        if not rows:
            return None
        r = rows[0]
        parts = {p["source"]: json.loads(p["body"]) for p in self._q("SELECT * FROM participants WHERE sid=?", (sid,))}
        return {
            "start_body": json.loads(r["start_body"]) if r["start_body"] else None,
            "stopped_ns": r["stopped_ns"],
            "published": bool(r["published"]),
            "participants": parts,
        }

    def segments(self, sid: str) -> list[SegmentRef]:
        return [_ref(r) for r in self._q("SELECT * FROM segments WHERE sid=? ORDER BY source, track, idx", (sid,))]

    def live_rows(self, sid: str, after_id: int = 0) -> list[dict[str, Any]]:
        return [dict(r) for r in self._q("SELECT * FROM live_lines WHERE sid=? AND id>? ORDER BY id", (sid, after_id))]

    def live_line_rows_between(self, sid: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """Live lines (kind 'line') whose span meets [start_ns, end_ns], in commit order."""
        return [
            dict(r)
            for r in self._q(
                "SELECT * FROM live_lines WHERE sid=? AND kind='line' AND end_ns>=? AND start_ns<=? ORDER BY id",
                (sid, start_ns, end_ns),
            )
        ]

    def live_drained(self, sid: str) -> bool:
        pending = self._q("SELECT COUNT(*) AS n FROM segments WHERE sid=? AND live_done=0", (sid,))[0]["n"]
        flushing = self._q("SELECT COUNT(*) AS n FROM tracks WHERE sid=? AND flush=1", (sid,))[0]["n"]
        return pending == 0 and flushing == 0

    def final_results(self, sid: str) -> list[dict[str, Any]] | None:
        """Results of all final jobs of a stopped session, or None while any is missing."""
        rows = self._q("SELECT * FROM final_jobs WHERE sid=? ORDER BY source, track, first_idx", (sid,))
        if not rows or any(r["state"] != "done" for r in rows):
            return None
        return [
            {
                "source": r["source"],
                "track": r["track"],
                "first_idx": r["first_idx"],
                "last_idx": r["last_idx"],
                **json.loads(r["result"]),
            }
            for r in rows
        ]

    def sessions_to_publish(self) -> list[str]:
        return [r["sid"] for r in self._q("SELECT sid FROM sessions WHERE stopped_ns IS NOT NULL AND published=0")]

    def mark_published(self, sid: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE sessions SET published=1 WHERE sid=?", (sid,))

    def stats(self) -> dict[str, int]:
        q = self._q
        return {
            "segments_waiting": q("SELECT COUNT(*) AS n FROM segments WHERE live_done=0")[0]["n"],
            "final_pending": q("SELECT COUNT(*) AS n FROM final_jobs WHERE state='pending'")[0]["n"],
            "final_done": q("SELECT COUNT(*) AS n FROM final_jobs WHERE state='done'")[0]["n"],
            "live_lines": q("SELECT COUNT(*) AS n FROM live_lines")[0]["n"],
        }

    def live_latencies_s(self, limit: int = 1000) -> list[float]:
        """Seconds from the end of speech to its live line, for the newest `limit` lines."""
        rows = self._q("SELECT (available_ns - end_ns) / 1e9 AS s FROM live_lines WHERE available_ns IS NOT NULL "
                       "AND kind='line' ORDER BY id DESC LIMIT ?", (limit,))
        return [max(0.0, float(r["s"])) for r in rows]

    def commits(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self._q("SELECT * FROM commits ORDER BY rowid")]

    def final_jobs(self, sid: str | None = None) -> list[dict[str, Any]]:
        if sid is None:
            return [dict(r) for r in self._q("SELECT * FROM final_jobs ORDER BY id")]
        return [dict(r) for r in self._q("SELECT * FROM final_jobs WHERE sid=? ORDER BY id", (sid,))]

    # -- worker side ---------------------------------------------------------------------------
    def claim(self, owner: str, *, live: bool = True, final: bool = True) -> Job | None:
        now = time.time()
        with self._tx() as db:
            if live:
                job = self._claim_live(db, owner, now)
                if job is not None:
                    return job
            if final:
                return self._claim_final(db, owner, now)
        return None

    def claim_live_batch(self, owner: str, limit: int) -> list[LiveJob]:
        """Up to `limit` tracks' live windows at once (oldest sealed audio first), each under a lease."""
        now = time.time()
        jobs: list[LiveJob] = []
        with self._tx() as db:
            while len(jobs) < limit:
                job = self._claim_live(db, owner, now)
                if job is None:
                    break
                jobs.append(job)
        return jobs

    def _claim_live(self, db: sqlite3.Connection, owner: str, now: float) -> LiveJob | None:
        row = db.execute(
            "SELECT t.*, (SELECT MIN(sealed_ns) FROM segments s WHERE s.sid=t.sid AND s.source=t.source "
            "AND s.track=t.track AND s.live_done=0) AS oldest FROM tracks t "
            "WHERE (t.owner IS NULL OR t.lease_until < ?) AND (t.flush=1 OR EXISTS (SELECT 1 FROM segments s "
            "WHERE s.sid=t.sid AND s.source=t.source AND s.track=t.track AND s.live_done=0)) "
            "ORDER BY COALESCE(oldest, 0) LIMIT 1",
            (now,),
        ).fetchone()
        if row is None:
            return None
        sid, source, track, carry = row["sid"], row["source"], row["track"], row["carry_ns"]
        rows = list(
            db.execute(
                "SELECT * FROM segments WHERE sid=? AND source=? AND track=? "
                "AND (live_done=0 OR wall_last_ns > ?) "
                "ORDER BY idx",
                (sid, source, track, carry if carry is not None else -1),
            )
        )
        window: list[sqlite3.Row] = []
        for r in rows:
            begin = max(carry or 0, window[0]["wall_first_ns"]) if window else max(carry or 0, r["wall_first_ns"])
            if window and (r["wall_last_ns"] - begin) / 1e9 > self.max_window_s:
                break
            window.append(r)
        stopped = db.execute("SELECT stopped_ns FROM sessions WHERE sid=?", (sid,)).fetchone()["stopped_ns"]
        last_idx = db.execute(
            "SELECT MAX(idx) AS m FROM segments WHERE sid=? AND source=? AND track=?", (sid, source, track)
        ).fetchone()["m"]
        closing = stopped is not None and (not window or window[-1]["idx"] == last_idx)
        db.execute(
            "UPDATE tracks SET owner=?, lease_until=?, attempts=attempts+1 WHERE sid=? AND source=? AND track=?",
            (owner, now + self.lease_s, sid, source, track),
        )
        return LiveJob(sid, source, track, tuple(_ref(r) for r in window), carry, closing, row["attempts"] + 1)

    def _claim_final(self, db: sqlite3.Connection, owner: str, now: float) -> FinalJob | None:
        row = db.execute(
            "SELECT * FROM final_jobs WHERE state='pending' AND (owner IS NULL OR lease_until < ?) ORDER BY id LIMIT 1",
            (now,),
        ).fetchone()
        if row is None:
            return None
        db.execute(
            "UPDATE final_jobs SET owner=?, lease_until=?, attempts=attempts+1 WHERE id=?",
            (owner, now + self.lease_s, row["id"]),
        )
        segs = db.execute(
            "SELECT * FROM segments WHERE sid=? AND source=? AND track=? AND idx BETWEEN ? AND ? ORDER BY idx",
            (row["sid"], row["source"], row["track"], row["first_idx"], row["last_idx"]),
        )
        return FinalJob(
            row["id"],
            row["sid"],
            row["source"],
            row["track"],
            tuple(_ref(r) for r in segs),
            row["attempts"] + 1,
        )

    def renew(self, job: Job, owner: str) -> bool:
        until = time.time() + self.lease_s
        with self._tx() as db:
            if isinstance(job, LiveJob):
                cur = db.execute(
                    "UPDATE tracks SET lease_until=? WHERE sid=? AND source=? AND track=? AND owner=?",
                    (until, job.sid, job.source, job.track, owner),
                )
            else:
                cur = db.execute(
                    "UPDATE final_jobs SET lease_until=? WHERE id=? AND owner=? AND state='pending'",
                    (until, job.id, owner),
                )
            return cur.rowcount == 1

    def release(self, job: Job, owner: str) -> None:
        """Give a claimed job back untouched (clean stop)."""
        with self._tx() as db:
            if isinstance(job, LiveJob):
                db.execute(
                    "UPDATE tracks SET owner=NULL, lease_until=0 WHERE sid=? AND source=? AND track=? AND owner=?",
                    (job.sid, job.source, job.track, owner),
                )
            else:
                db.execute("UPDATE final_jobs SET owner=NULL, lease_until=0 WHERE id=? AND owner=?", (job.id, owner))

    def commit_live(
        self, job: LiveJob, owner: str, lines: Sequence[Line], bad: Sequence[BadSpan], carry_ns: int | None
    ) -> int:
        now_ns = time.time_ns()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE tracks SET owner=NULL, lease_until=0, carry_ns=?, "
                "flush=CASE WHEN ? THEN 0 ELSE flush END WHERE sid=? AND source=? AND track=? AND owner=?",
                (carry_ns, int(job.closing), job.sid, job.source, job.track, owner),
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"{job.name}: lease lost to another worker; result discarded")
            for seg in job.segments:
                db.execute(
                    "UPDATE segments SET live_done=1 WHERE sid=? AND source=? AND track=? AND idx=?",
                    (job.sid, seg.source, seg.track, seg.index),
                )
            added = 0
            for ln in lines:
                cur = db.execute(
                    "INSERT OR IGNORE INTO live_lines(sid,source,track,kind,start_ns,end_ns,text,"
                    "confidence,words,available_ns,level_db) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        job.sid,
                        job.source,
                        job.track,
                        "line",
                        ln.start_ns,
                        ln.end_ns,
                        ln.text,
                        ln.confidence,
                        json.dumps(line_to_row(ln)["words"]),
                        now_ns,
                        ln.level_db,
                    ),
                )
                added += cur.rowcount
            for b in bad:
                db.execute(
                    "INSERT OR IGNORE INTO live_lines(sid,source,track,kind,start_ns,end_ns,text,"
                    "reason,segment_key,available_ns) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        job.sid,
                        job.source,
                        job.track,
                        "untranscribable",
                        b.start_ns,
                        b.end_ns,
                        "",
                        b.reason,
                        b.segment.key,
                        now_ns,
                    ),
                )
            db.execute("INSERT INTO commits VALUES (?,?,?,?)", (job.name, owner, job.attempt, now_ns))
            return added

    def commit_final(self, job: FinalJob, owner: str, lines: Sequence[Line], bad: Sequence[BadSpan]) -> None:
        result = json.dumps(
            {"lines": [line_to_row(ln) for ln in lines], "bad": [bad_to_row(b) for b in bad]},
            ensure_ascii=False,
        )
        now_ns = time.time_ns()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE final_jobs SET state='done', result=?, owner=NULL, done_ns=? "
                "WHERE id=? AND owner=? AND state='pending'",
                (result, now_ns, job.id, owner),
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"{job.name}: lease lost to another worker; result discarded")
            db.execute("INSERT INTO commits VALUES (?,?,?,?)", (job.name, owner, job.attempt, now_ns))
