"""The durable job queue, shared by the dispatcher and workers: a SQLite file
(data_dir/transcribe/queue.db) on one host, or the PostgreSQL database of `TONGLU_DATABASE_URL`
(tables `tq_*`) when workers on several hosts take jobs (`open_queue` picks).

Work units:
- *live*: per audio track, the sealed segments not yet covered by the live draft (plus the carried
  tail of the previous window). One worker holds a track's lease at a time, so windows of a track
  are transcribed in order and context is carried correctly.
- *final*: after ``session_stop``, chunks of up to `final_chunk_s` of each audio track.

Claims are leases (`lease_s`, renewed by a heartbeat while the worker runs). A worker that is killed
stops renewing; once its lease has passed another worker claims the same work. Every commit checks,
in the same transaction, that the committing worker still holds the lease, so a late commit from a
worker that lost its lease is refused (`LeaseLost`) and nothing is ever written twice.

On PostgreSQL the same statements run with three differences: a claim locks the row it takes with
`SELECT … FOR UPDATE SKIP LOCKED` (workers on other hosts skip it instead of waiting, and two never
take the same track or chunk), lease times come from the database server's clock (hosts' clocks
differ), and only the process holding an advisory lock runs the dispatcher (`is_leader`; the lock
ends with its session, so another host takes over when that process dies).

Why our own SKIP LOCKED queue and not procrastinate: procrastinate is an asyncio worker framework
with its own schema, job model (one JSON-argument task per row, retries by the library) and
PostgreSQL-only storage. Our units are not independent tasks: a live window is "the next sealed
audio of this track", claimed per track so windows stay in order with their carried context; the
final pass is chunks created on `session_stop`; and every commit must check, in the transaction that
writes the lines, that the worker still holds the lease. Those semantics, and the SQLite file queue
that single-host installs keep, would have to be rebuilt on top of procrastinate anyway; the
PostgreSQL variant here is the existing queue's SQL plus row locks (~100 lines), tested against the
same cases on both engines (tests/pg/test_queue.py).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy import Index as SqlIndex

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

def open_queue(data_dir: Path, db_url: str, **kwargs: Any) -> JobQueue:
    """The queue workers on any host share: PostgreSQL when `db_url` names it, else the file queue."""
    from tonglu.evidence.db import is_postgres

    if is_postgres(db_url):
        return JobQueue.on_database(db_url, **kwargs)
    return JobQueue(data_dir / "transcribe" / "queue.db", **kwargs)


# The same queue on PostgreSQL (`JobQueue.on_database`): the tables above, prefixed `tq_` (the index
# has its own `sessions` and `segments`), with BIGINT nanoseconds and DOUBLE PRECISION lease times.
# Created by the migrations (evidence/migrations), never by this module.
PG_PREFIX = "tq_"
PG_METADATA = MetaData()
_zero = text("0")
Table(
    "tq_sessions", PG_METADATA,
    Column("sid", Text, primary_key=True),
    Column("offset", BigInteger, nullable=False, server_default=_zero),
    Column("start_body", Text), Column("stopped_ns", BigInteger),
    Column("published", Integer, nullable=False, server_default=_zero),
)
Table(
    "tq_participants", PG_METADATA,
    Column("sid", Text), Column("source", Text), Column("body", Text),
    PrimaryKeyConstraint("sid", "source"),
)
Table(
    "tq_segments", PG_METADATA,
    Column("sid", Text), Column("source", Text), Column("track", Text), Column("idx", BigInteger),
    Column("key", Text), Column("sha256", Text), Column("wall_first_ns", BigInteger),
    Column("wall_last_ns", BigInteger), Column("sealed_ns", BigInteger),
    Column("live_done", Integer, nullable=False, server_default=_zero),
    PrimaryKeyConstraint("sid", "source", "track", "idx"),
)
Table(
    "tq_tracks", PG_METADATA,
    Column("sid", Text), Column("source", Text), Column("track", Text), Column("carry_ns", BigInteger),
    Column("flush", Integer, nullable=False, server_default=_zero), Column("owner", Text),
    Column("lease_until", Double, nullable=False, server_default=_zero),
    Column("attempts", Integer, nullable=False, server_default=_zero),
    PrimaryKeyConstraint("sid", "source", "track"),
)
_live_lines = Table(
    "tq_live_lines", PG_METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("sid", Text), Column("source", Text), Column("track", Text), Column("kind", Text),
    Column("start_ns", BigInteger), Column("end_ns", BigInteger), Column("text", Text),
    Column("confidence", Double), Column("words", Text), Column("reason", Text), Column("segment_key", Text),
    Column("available_ns", BigInteger), Column("level_db", Double),
    UniqueConstraint("sid", "source", "track", "kind", "start_ns"),
)
SqlIndex("tq_live_lines_sid", _live_lines.c.sid, _live_lines.c.id)
Table(
    "tq_final_jobs", PG_METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("sid", Text), Column("source", Text), Column("track", Text),
    Column("first_idx", BigInteger), Column("last_idx", BigInteger),
    Column("state", Text, nullable=False, server_default=text("'pending'")), Column("owner", Text),
    Column("lease_until", Double, nullable=False, server_default=_zero),
    Column("attempts", Integer, nullable=False, server_default=_zero),
    Column("result", Text), Column("done_ns", BigInteger),
    UniqueConstraint("sid", "source", "track", "first_idx"),
)
Table(
    "tq_commits", PG_METADATA,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("job", Text), Column("owner", Text), Column("attempt", Integer), Column("time_ns", BigInteger),
)


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


def _ref(row: Row) -> SegmentRef:
    return SegmentRef(
        row["source"],
        row["track"],
        row["idx"],
        row["key"],
        row["sha256"],
        row["wall_first_ns"],
        row["wall_last_ns"],
    )


Row = Mapping[str, Any]
PG_ROW_LOCK = " FOR UPDATE SKIP LOCKED"
PG_TRACK_LOCK = " FOR UPDATE OF t SKIP LOCKED"
PG_LEADER_LOCK = 0x746F6E67_6C7571  # the dispatcher's advisory lock: one dispatcher at a time


@lru_cache(maxsize=256)
def _translate(sql: str, pg: bool) -> str:
    """The queue's SQL for one engine: `{p}` is the table prefix, `{lock}`/`{lock_t}` the row locks
    a claim takes (PostgreSQL only), `?` the parameters."""
    if not pg:
        return sql.replace("{p}", "").replace("{lock_t}", "").replace("{lock}", "")
    sql = sql.replace("{p}", PG_PREFIX).replace("{lock_t}", PG_TRACK_LOCK).replace("{lock}", PG_ROW_LOCK)
    return sql.replace("?", "%s")


class _Db:
    """The connection of one transaction: sqlite3 (the file queue) or psycopg (PostgreSQL)."""

    def __init__(self, conn: Any, pg: bool) -> None:
        self.conn = conn
        self.pg = pg

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        if self.pg:
            from psycopg.rows import dict_row

            cur = self.conn.cursor(row_factory=dict_row)
            cur.execute(_translate(sql, True), tuple(args))
            return cur
        return self.conn.execute(_translate(sql, False), args)


class JobQueue:
    """The queue on SQLite (`JobQueue(path)`, one host) or PostgreSQL (`JobQueue.on_database(url)`)."""

    def __init__(
        self, path: Path, *, lease_s: float = 30.0, max_window_s: float = 28.0, final_chunk_s: float = 600.0
    ) -> None:
        self.path: Path | None = path
        self.lease_s = lease_s
        self.max_window_s = max_window_s
        self.final_chunk_s = final_chunk_s
        self._pg = False
        self._engine: Any = None
        self._leader: Any = None
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

    @classmethod
    def on_database(
        cls, url: str, *, lease_s: float = 30.0, max_window_s: float = 28.0, final_chunk_s: float = 600.0
    ) -> JobQueue:
        """The queue in the PostgreSQL database `url` (tables `tq_*`, made by the migrations)."""
        from sqlalchemy.exc import SQLAlchemyError

        from tonglu.evidence.db import is_postgres, open_engine
        from tonglu.evidence.errors import StorageError
        from tonglu.evidence.migrate import ensure_schema

        if not is_postgres(url):
            raise QueueError("the transcription queue runs on PostgreSQL or in its SQLite file (data_dir), "
                             f"not on {url.split(':', 1)[0]}")
        self = cls.__new__(cls)
        self.path = None
        self.lease_s, self.max_window_s, self.final_chunk_s = lease_s, max_window_s, final_chunk_s
        self._pg = True
        self._leader = None
        try:
            self._engine = open_engine(url)
            ensure_schema(self._engine)
        except (SQLAlchemyError, StorageError) as exc:
            raise QueueError(f"cannot open the transcription queue on the database: {exc}") from exc
        return self

    @property
    def on_postgres(self) -> bool:
        return self._pg

    def close(self) -> None:
        if self._pg:
            if self._leader is not None:
                self._leader.invalidate()  # closes the session: the advisory lock goes with it
                self._leader = None
            return
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[_Db]:
        if self._pg:
            fairy = self._engine.raw_connection()
            try:
                yield _Db(fairy.driver_connection, True)
                fairy.commit()
            except BaseException:
                fairy.rollback()
                raise
            finally:
                fairy.close()  # back to the pool
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield _Db(self._db, False)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _q(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        if self._pg:
            with self._tx() as db:
                return list(db.execute(sql, args).fetchall())
        return list(_Db(self._db, False).execute(sql, args))

    def _now(self, db: _Db) -> float:
        """Lease clock: this host's on SQLite (one host), the database server's on PostgreSQL, so
        workers on hosts whose clocks differ agree on when a lease has passed."""
        if not db.pg:
            return time.time()
        return float(db.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp()) AS now").fetchone()["now"])

    def is_leader(self) -> bool:
        """Whether this process runs the dispatcher: always on SQLite; on PostgreSQL the holder of an
        advisory lock (released when its session ends, so a dead dispatcher's host is taken over)."""
        if not self._pg:
            return True
        try:
            if self._leader is None:
                fairy = self._engine.raw_connection()
                conn = fairy.driver_connection
                conn.autocommit = True
                if not conn.execute("SELECT pg_try_advisory_lock(%s)", (PG_LEADER_LOCK,)).fetchone()[0]:
                    conn.autocommit = False
                    fairy.close()
                    return False
                self._leader = fairy
            self._leader.driver_connection.execute("SELECT 1")
            return True
        except Exception:  # the connection broke: the lock is gone with it; try again next pass
            if self._leader is not None:
                with suppress(Exception):
                    self._leader.invalidate()
            self._leader = None
            return False

    # -- dispatcher side ---------------------------------------------------------------------
    def offset(self, sid: str) -> int:
        rows = self._q("SELECT \"offset\" FROM {p}sessions WHERE sid=?", (sid,))
        return int(rows[0]["offset"]) if rows else 0

    def offsets(self) -> dict[str, int]:
        """Every session's read offset."""
        return {str(r["sid"]): int(r["offset"]) for r in self._q("SELECT sid, \"offset\" FROM {p}sessions")}

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
            db.execute("INSERT INTO {p}sessions(sid) VALUES (?) ON CONFLICT DO NOTHING", (sid,))
            db.execute("UPDATE {p}sessions SET \"offset\"=? WHERE sid=?", (new_offset, sid))
            if start_body is not None:
                db.execute("UPDATE {p}sessions SET start_body=? WHERE sid=?", (json.dumps(start_body), sid))
            for source, body in participants:
                db.execute(
                    "INSERT INTO {p}participants(sid, source, body) VALUES (?,?,?) "
                    "ON CONFLICT(sid, source) DO UPDATE SET body=excluded.body",
                    (sid, source, json.dumps(body)),
                )
            for ref, sealed_ns in segments:
                db.execute(
                    "INSERT INTO {p}segments(sid,source,track,idx,key,sha256,"
                    "wall_first_ns,wall_last_ns,sealed_ns) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
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
                    "INSERT INTO {p}tracks(sid,source,track) VALUES (?,?,?) ON CONFLICT DO NOTHING",
                    (sid, ref.source, ref.track),
                )
            if stopped_ns is not None:
                db.execute("UPDATE {p}sessions SET stopped_ns=? WHERE sid=? AND stopped_ns IS NULL", (stopped_ns, sid))
            stopped = db.execute("SELECT stopped_ns FROM {p}sessions WHERE sid=?", (sid,)).fetchone()["stopped_ns"]
            if stopped is not None:
                # the tail of each track not yet committed live is flushed (carry up to the last segment end)
                db.execute(
                    "UPDATE {p}tracks SET flush=1 WHERE sid=? AND (carry_ns IS NULL OR carry_ns < (SELECT "
                    "MAX(wall_last_ns) FROM {p}segments s WHERE s.sid={p}tracks.sid AND s.source={p}tracks.source "
                    "AND s.track={p}tracks.track))",
                    (sid,),
                )
                self._create_final_jobs(db, sid)

    def _create_final_jobs(self, db: _Db, sid: str) -> None:
        """Chunk every audio segment not yet in a final job (idempotent)."""
        for t in list(db.execute("SELECT source, track FROM {p}tracks WHERE sid=?", (sid,))):
            covered = list(
                db.execute(
                    "SELECT first_idx, last_idx FROM {p}final_jobs WHERE sid=? AND source=? AND track=?",
                    (sid, t["source"], t["track"]),
                )
            )
            segs = [
                r
                for r in db.execute(
                    "SELECT * FROM {p}segments WHERE sid=? AND source=? AND track=? ORDER BY idx",
                    (sid, t["source"], t["track"]),
                )
                if not any(c["first_idx"] <= r["idx"] <= c["last_idx"] for c in covered)
            ]
            chunk: list[Row] = []
            for r in [*segs, None]:
                if chunk and (
                    r is None
                    or r["idx"] != chunk[-1]["idx"] + 1
                    or (r["wall_last_ns"] - chunk[0]["wall_first_ns"]) / 1e9 > self.final_chunk_s
                ):
                    db.execute(
                        "INSERT INTO {p}final_jobs(sid,source,track,first_idx,last_idx) VALUES (?,?,?,?,?) "
                        "ON CONFLICT DO NOTHING",
                        (sid, t["source"], t["track"], chunk[0]["idx"], chunk[-1]["idx"]),
                    )
                    chunk = []
                if r is not None:
                    chunk.append(r)

    def session_info(self, sid: str) -> dict[str, Any] | None:
        rows = self._q("SELECT * FROM {p}sessions WHERE sid=?", (sid,))
        if not rows:
            return None
        r = rows[0]
        joined = self._q("SELECT * FROM {p}participants WHERE sid=?", (sid,))
        parts = {p["source"]: json.loads(p["body"]) for p in joined}
        return {
            "start_body": json.loads(r["start_body"]) if r["start_body"] else None,
            "stopped_ns": r["stopped_ns"],
            "published": bool(r["published"]),
            "participants": parts,
        }

    def segments(self, sid: str) -> list[SegmentRef]:
        return [_ref(r) for r in self._q("SELECT * FROM {p}segments WHERE sid=? ORDER BY source, track, idx", (sid,))]

    def live_rows(self, sid: str, after_id: int = 0) -> list[dict[str, Any]]:
        rows = self._q("SELECT * FROM {p}live_lines WHERE sid=? AND id>? ORDER BY id", (sid, after_id))
        return [dict(r) for r in rows]

    def live_line_rows_between(self, sid: str, start_ns: int, end_ns: int) -> list[dict[str, Any]]:
        """Live lines (kind 'line') whose span meets [start_ns, end_ns], in commit order."""
        return [
            dict(r)
            for r in self._q(
                "SELECT * FROM {p}live_lines WHERE sid=? AND kind='line' AND end_ns>=? AND start_ns<=? ORDER BY id",
                (sid, start_ns, end_ns),
            )
        ]

    def live_drained(self, sid: str) -> bool:
        pending = self._q("SELECT COUNT(*) AS n FROM {p}segments WHERE sid=? AND live_done=0", (sid,))[0]["n"]
        flushing = self._q("SELECT COUNT(*) AS n FROM {p}tracks WHERE sid=? AND flush=1", (sid,))[0]["n"]
        return pending == 0 and flushing == 0

    def final_results(self, sid: str) -> list[dict[str, Any]] | None:
        """Results of all final jobs of a stopped session, or None while any is missing."""
        rows = self._q("SELECT * FROM {p}final_jobs WHERE sid=? ORDER BY source, track, first_idx", (sid,))
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
        return [r["sid"] for r in self._q("SELECT sid FROM {p}sessions WHERE stopped_ns IS NOT NULL AND published=0")]

    def mark_published(self, sid: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE {p}sessions SET published=1 WHERE sid=?", (sid,))

    def stats(self) -> dict[str, int]:
        q = self._q
        return {
            "segments_waiting": q("SELECT COUNT(*) AS n FROM {p}segments WHERE live_done=0")[0]["n"],
            "final_pending": q("SELECT COUNT(*) AS n FROM {p}final_jobs WHERE state='pending'")[0]["n"],
            "final_done": q("SELECT COUNT(*) AS n FROM {p}final_jobs WHERE state='done'")[0]["n"],
            "live_lines": q("SELECT COUNT(*) AS n FROM {p}live_lines")[0]["n"],
        }

    def live_latencies_s(self, limit: int = 1000) -> list[float]:
        """Seconds from the end of speech to its live line, for the newest `limit` lines."""
        rows = self._q("SELECT (available_ns - end_ns) / 1e9 AS s FROM {p}live_lines WHERE available_ns IS NOT NULL "
                       "AND kind='line' ORDER BY id DESC LIMIT ?", (limit,))
        return [max(0.0, float(r["s"])) for r in rows]

    def commits(self) -> list[dict[str, Any]]:
        order = "id" if self._pg else "rowid"
        return [dict(r) for r in self._q(f"SELECT job, owner, attempt, time_ns FROM {{p}}commits ORDER BY {order}")]

    def final_jobs(self, sid: str | None = None) -> list[dict[str, Any]]:
        if sid is None:
            return [dict(r) for r in self._q("SELECT * FROM {p}final_jobs ORDER BY id")]
        return [dict(r) for r in self._q("SELECT * FROM {p}final_jobs WHERE sid=? ORDER BY id", (sid,))]

    # -- worker side ---------------------------------------------------------------------------
    def claim(self, owner: str, *, live: bool = True, final: bool = True) -> Job | None:
        with self._tx() as db:
            now = self._now(db)
            if live:
                job = self._claim_live(db, owner, now)
                if job is not None:
                    return job
            if final:
                return self._claim_final(db, owner, now)
        return None

    def claim_live_batch(self, owner: str, limit: int) -> list[LiveJob]:
        """Up to `limit` tracks' live windows at once (oldest sealed audio first), each under a lease."""
        jobs: list[LiveJob] = []
        with self._tx() as db:
            now = self._now(db)
            while len(jobs) < limit:
                job = self._claim_live(db, owner, now)
                if job is None:
                    break
                jobs.append(job)
        return jobs

    def _claim_live(self, db: _Db, owner: str, now: float) -> LiveJob | None:
        row = db.execute(
            "SELECT t.* FROM {p}tracks t "
            "WHERE (t.owner IS NULL OR t.lease_until < ?) AND (t.flush=1 OR EXISTS (SELECT 1 FROM {p}segments s "
            "WHERE s.sid=t.sid AND s.source=t.source AND s.track=t.track AND s.live_done=0)) "
            "ORDER BY COALESCE((SELECT MIN(sealed_ns) FROM {p}segments s WHERE s.sid=t.sid AND s.source=t.source "
            "AND s.track=t.track AND s.live_done=0), 0) LIMIT 1{lock_t}",
            (now,),
        ).fetchone()
        if row is None:
            return None
        sid, source, track, carry = row["sid"], row["source"], row["track"], row["carry_ns"]
        rows = list(
            db.execute(
                "SELECT * FROM {p}segments WHERE sid=? AND source=? AND track=? "
                "AND (live_done=0 OR wall_last_ns > ?) "
                "ORDER BY idx",
                (sid, source, track, carry if carry is not None else -1),
            )
        )
        window: list[Row] = []
        for r in rows:
            begin = max(carry or 0, window[0]["wall_first_ns"]) if window else max(carry or 0, r["wall_first_ns"])
            if window and (r["wall_last_ns"] - begin) / 1e9 > self.max_window_s:
                break
            window.append(r)
        stopped = db.execute("SELECT stopped_ns FROM {p}sessions WHERE sid=?", (sid,)).fetchone()["stopped_ns"]
        last_idx = db.execute(
            "SELECT MAX(idx) AS m FROM {p}segments WHERE sid=? AND source=? AND track=?", (sid, source, track)
        ).fetchone()["m"]
        closing = stopped is not None and (not window or window[-1]["idx"] == last_idx)
        db.execute(
            "UPDATE {p}tracks SET owner=?, lease_until=?, attempts=attempts+1 WHERE sid=? AND source=? AND track=?",
            (owner, now + self.lease_s, sid, source, track),
        )
        return LiveJob(sid, source, track, tuple(_ref(r) for r in window), carry, closing, row["attempts"] + 1)

    def _claim_final(self, db: _Db, owner: str, now: float) -> FinalJob | None:
        row = db.execute(
            "SELECT * FROM {p}final_jobs WHERE state='pending' AND (owner IS NULL OR lease_until < ?) "
            "ORDER BY id LIMIT 1{lock}",
            (now,),
        ).fetchone()
        if row is None:
            return None
        db.execute(
            "UPDATE {p}final_jobs SET owner=?, lease_until=?, attempts=attempts+1 WHERE id=?",
            (owner, now + self.lease_s, row["id"]),
        )
        segs = db.execute(
            "SELECT * FROM {p}segments WHERE sid=? AND source=? AND track=? AND idx BETWEEN ? AND ? ORDER BY idx",
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
        with self._tx() as db:
            until = self._now(db) + self.lease_s
            if isinstance(job, LiveJob):
                cur = db.execute(
                    "UPDATE {p}tracks SET lease_until=? WHERE sid=? AND source=? AND track=? AND owner=?",
                    (until, job.sid, job.source, job.track, owner),
                )
            else:
                cur = db.execute(
                    "UPDATE {p}final_jobs SET lease_until=? WHERE id=? AND owner=? AND state='pending'",
                    (until, job.id, owner),
                )
            return cur.rowcount == 1

    def release(self, job: Job, owner: str) -> None:
        """Give a claimed job back untouched (clean stop)."""
        with self._tx() as db:
            if isinstance(job, LiveJob):
                db.execute(
                    "UPDATE {p}tracks SET owner=NULL, lease_until=0 WHERE sid=? AND source=? AND track=? AND owner=?",
                    (job.sid, job.source, job.track, owner),
                )
            else:
                db.execute("UPDATE {p}final_jobs SET owner=NULL, lease_until=0 WHERE id=? AND owner=?", (job.id, owner))

    def commit_live(
        self, job: LiveJob, owner: str, lines: Sequence[Line], bad: Sequence[BadSpan], carry_ns: int | None
    ) -> int:
        now_ns = time.time_ns()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE {p}tracks SET owner=NULL, lease_until=0, carry_ns=?, "
                "flush=CASE WHEN ?=1 THEN 0 ELSE flush END WHERE sid=? AND source=? AND track=? AND owner=?",
                (carry_ns, int(job.closing), job.sid, job.source, job.track, owner),
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"{job.name}: lease lost to another worker; result discarded")
            for seg in job.segments:
                db.execute(
                    "UPDATE {p}segments SET live_done=1 WHERE sid=? AND source=? AND track=? AND idx=?",
                    (job.sid, seg.source, seg.track, seg.index),
                )
            added = 0
            for ln in lines:
                cur = db.execute(
                    "INSERT INTO {p}live_lines(sid,source,track,kind,start_ns,end_ns,text,"
                    "confidence,words,available_ns,level_db) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
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
                    "INSERT INTO {p}live_lines(sid,source,track,kind,start_ns,end_ns,text,"
                    "reason,segment_key,available_ns) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
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
            db.execute("INSERT INTO {p}commits(job, owner, attempt, time_ns) VALUES (?,?,?,?)",
                       (job.name, owner, job.attempt, now_ns))
            return added

    def commit_final(self, job: FinalJob, owner: str, lines: Sequence[Line], bad: Sequence[BadSpan]) -> None:
        result = json.dumps(
            {"lines": [line_to_row(ln) for ln in lines], "bad": [bad_to_row(b) for b in bad]},
            ensure_ascii=False,
        )
        now_ns = time.time_ns()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE {p}final_jobs SET state='done', result=?, owner=NULL, done_ns=? "
                "WHERE id=? AND owner=? AND state='pending'",
                (result, now_ns, job.id, owner),
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"{job.name}: lease lost to another worker; result discarded")
            db.execute("INSERT INTO {p}commits(job, owner, attempt, time_ns) VALUES (?,?,?,?)",
                       (job.name, owner, job.attempt, now_ns))
