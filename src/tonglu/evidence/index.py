"""The index DB: a query cache over manifests and checkpoints (SQLite by default, PostgreSQL by URL).

    index = Index(settings.db_url)
    entry = record(ledger, index, sid, "marker", {"time_ns": ..., "note": "...", "by": "..."})
    index.apply(entry)                      # idempotent by (session, seq)
    index.apply_checkpoint(cp, ordinal=n)
    index.list_sessions(SessionFilter(room="r1"))  /  get_session(sid)  /  segments(sid)  /  gaps(sid)

Everything here can be rebuilt from the object store alone (`tonglu reindex`, evidence/reindex.py);
nothing is the source of truth. Tables have no prefix; the web area keeps its own `web_*` tables
in the same database, which reindex never touches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy import Index as SqlIndex
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.db import open_engine
from tonglu.evidence.errors import IndexDBError, StorageError
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import GapRecord, ManifestEntry, SegmentRecord

if TYPE_CHECKING:
    from tonglu.evidence.ledger import Ledger

log = context_logger(__name__)
_R = TypeVar("_R")

metadata = MetaData()

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("room", String(128), nullable=True),
    Column("case_number", String(128), nullable=True),
    Column("suspect", String(256), nullable=True),
    Column("interviewers", JSON, nullable=True),
    Column("reason", Text, nullable=True),
    Column("custody_out_iso", String(64), nullable=True),
    Column("custody_in_iso", String(64), nullable=True),
    Column("state", String(16), nullable=False, default="recording"),
    Column("started_ns", BigInteger, nullable=True),
    Column("stopped_ns", BigInteger, nullable=True),
    Column("stopped_by", String(128), nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("entries", Integer, nullable=False, default=0),
    Column("head", String(64), nullable=True),
    Column("final_digest", String(32), nullable=True),
    Column("start_body", JSON, nullable=True),
)
SqlIndex("sessions_room", sessions.c.room)
SqlIndex("sessions_case", sessions.c.case_number)
SqlIndex("sessions_started", sessions.c.started_ns)

sources = Table(
    "sources",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("kind", String(32), nullable=True),
    Column("label", String(256), nullable=True),
)

entries = Table(
    "entries",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

segments = Table(
    "segments",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("source", String(128), nullable=False),
    Column("track", String(64), nullable=False),
    Column("media", String(16), nullable=False),
    Column("codec", String(32), nullable=False),
    Column("container", String(32), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("key", String(512), nullable=False),
    Column("wall_first_ns", BigInteger, nullable=False),
    Column("wall_last_ns", BigInteger, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("recovered", Boolean, nullable=False, default=False),
    Column("uploaded", Boolean, nullable=False, default=False),
)
SqlIndex("segments_track", segments.c.session_id, segments.c.source, segments.c.track, segments.c.idx)
SqlIndex("segments_key", segments.c.key)

gaps = Table(
    "gaps",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("source", String(128), nullable=False),
    Column("track", String(64), nullable=False),
    Column("reason", String(32), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("body", JSON, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("body_hash", String(64), primary_key=True),
    Column("ordinal", Integer, nullable=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root", String(64), nullable=False),
    Column("head", String(64), nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("final", Boolean, nullable=False),
    Column("digest", String(32), nullable=False),
)

annotation_rows = Table(
    "annotations",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("body", JSON, nullable=False),
)
SqlIndex("annotations_kind", annotation_rows.c.session_id, annotation_rows.c.kind)

uploaded_keys = Table(
    "uploaded_keys",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("time_ns", BigInteger, nullable=False),
)

INDEX_TABLES = (sessions, sources, entries, segments, gaps, checkpoints, annotation_rows, uploaded_keys)
# -- value objects returned by queries ----------------------------------------------------------
@dataclass(frozen=True)
class SessionInfo:
    id: str
    room: str | None
    case_number: str | None
    suspect: str | None
    interviewers: list[str]
    reason: str | None
    custody_out_iso: str | None
    custody_in_iso: str | None
    state: str
    started_ns: int | None
    stopped_ns: int | None
    stopped_by: str | None
    created_by: str | None
    entries: int
    head: str | None
    final_digest: str | None
    start_body: dict[str, Any]


@dataclass(frozen=True)
class SourceInfo:
    session_id: str
    name: str
    kind: str | None
    label: str | None


@dataclass(frozen=True)
class SegmentInfo:
    session_id: str
    seq: int
    source: str
    track: str
    media: str
    codec: str
    container: str
    index: int
    key: str
    wall_first_ns: int
    wall_last_ns: int
    bytes: int
    sha256: str
    recovered: bool
    uploaded: bool


@dataclass(frozen=True)
class GapInfo:
    session_id: str
    seq: int
    source: str
    track: str
    reason: str
    start_ns: int
    end_ns: int
    body: dict[str, Any]


@dataclass(frozen=True)
class CheckpointInfo:
    session_id: str
    body_hash: str
    ordinal: int | None
    tree_size: int
    root: str
    head: str
    time_ns: int
    key_id: str
    final: bool
    digest: str


@dataclass(frozen=True)
class AnnotationInfo:
    session_id: str
    seq: int
    kind: str
    time_ns: int
    body: dict[str, Any]


@dataclass(frozen=True)
class SessionFilter:
    room: str | None = None
    case_number: str | None = None
    state: str | None = None  # "recording" | "stopped"
    text: str | None = None  # substring of case number, suspect, room or id
    started_from_ns: int | None = None
    started_to_ns: int | None = None
    limit: int = 100
    offset: int = 0


def _row(cls: type, row: Any, **rename: str) -> Any:
    data = dict(row._mapping)
    for new, old in rename.items():
        data[new] = data.pop(old)
    return cls(**data)


class Index:
    def __init__(self, url_or_engine: str | Engine) -> None:
        try:
            self.engine = open_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            raise IndexDBError(f"index DB {url_or_engine} cannot be opened: {exc}") from exc
        self._lock = threading.Lock()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def reset(self) -> None:
        """Drop and recreate the index tables (not the web_* tables)."""
        with self._lock:
            metadata.drop_all(self.engine, tables=list(INDEX_TABLES))
            metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # -- updates -------------------------------------------------------------------------------
    def _retrying(self, what: str, fn: Callable[[Connection], _R]) -> _R:
        """Run `fn` in a transaction; retry on a race with another writer (unique key, SQLite busy)."""
        for attempt in range(6):
            try:
                with self._tx() as conn:
                    return fn(conn)
            except (IntegrityError, OperationalError) as exc:
                if attempt == 5:
                    raise IndexDBError(f"index DB update for {what} failed: {exc}") from exc
                time.sleep(0.01 * (attempt + 1))
            except SQLAlchemyError as exc:
                raise IndexDBError(f"index DB update for {what} failed: {exc}") from exc
        raise AssertionError("unreachable")

    def apply(self, entry: ManifestEntry) -> bool:
        """Apply one manifest entry. Returns False if (session, seq) was already applied."""

        def fn(conn: Connection) -> bool:
            seen = conn.execute(
                select(entries.c.seq).where(
                    and_(entries.c.session_id == entry.session, entries.c.seq == entry.seq)
                )
            ).first()
            if seen is not None:
                return False
            conn.execute(
                insert(entries).values(
                    session_id=entry.session,
                    seq=entry.seq,
                    kind=entry.kind,
                    time_ns=entry.time_ns,
                    entry_hash=entry.entry_hash,
                )
            )
            self._ensure_session(conn, entry.session)
            self._apply(conn, entry)
            conn.execute(
                update(sessions)
                .where(and_(sessions.c.id == entry.session, sessions.c.entries <= entry.seq))
                .values(entries=entry.seq + 1, head=entry.entry_hash)
            )
            return True

        return self._retrying(f"{entry.session}#{entry.seq}", fn)

    def apply_many(self, batch: list[ManifestEntry]) -> int:
        """Apply entries in one transaction, the same result as `apply` one by one, with a few
        statements per batch for segment and gap entries instead of about seven each (a recorder
        seals a segment every few seconds per track). Returns how many were new."""

        def fn(conn: Connection) -> int:
            todo: dict[tuple[str, int], ManifestEntry] = {}
            for e in batch:
                todo.setdefault((e.session, e.seq), e)
            for sid in {sid for sid, _ in todo}:
                seqs = [seq for s_, seq in todo if s_ == sid]
                for (seen,) in conn.execute(
                    select(entries.c.seq).where(and_(entries.c.session_id == sid, entries.c.seq.in_(seqs)))
                ):
                    todo.pop((sid, seen), None)
            new = sorted(todo.values(), key=lambda e: (e.session, e.seq))
            if not new:
                return 0
            conn.execute(
                insert(entries),
                [
                    {"session_id": e.session, "seq": e.seq, "kind": e.kind, "time_ns": e.time_ns,
                     "entry_hash": e.entry_hash}
                    for e in new
                ],
            )
            for sid in sorted({e.session for e in new}):
                self._ensure_session(conn, sid)
            segs = [(e, SegmentRecord.from_body(e.body)) for e in new if e.kind == "segment"]
            if segs:
                keys_ = sorted({rec.key for _, rec in segs})
                found = conn.execute(select(uploaded_keys.c.key).where(uploaded_keys.c.key.in_(keys_)))
                uploaded = {k for (k,) in found}
                conn.execute(
                    insert(segments),
                    [
                        {"session_id": e.session, "seq": e.seq, "source": r.source, "track": r.track,
                         "media": r.media, "codec": r.codec, "container": r.container, "idx": r.index, "key": r.key,
                         "wall_first_ns": r.wall_first_ns, "wall_last_ns": r.wall_last_ns, "bytes": r.bytes,
                         "sha256": r.sha256, "recovered": r.recovered, "uploaded": r.key in uploaded}
                        for e, r in segs
                    ],
                )
                for sid, source in sorted({(e.session, r.source) for e, r in segs}):
                    self._upsert_source(conn, sid, source, None, None)
            gap_rows = []
            for e in new:
                if e.kind == "gap":
                    g = GapRecord.from_body(e.body)
                    gap_rows.append({"session_id": e.session, "seq": e.seq, "source": g.source, "track": g.track,
                                     "reason": g.reason, "start_ns": g.start_ns, "end_ns": g.end_ns, "body": e.body})
            if gap_rows:
                conn.execute(insert(gaps), gap_rows)
            for e in new:
                if e.kind not in ("segment", "gap"):
                    self._apply(conn, e)
            last: dict[str, ManifestEntry] = {}
            for e in new:
                last[e.session] = e  # sorted by seq within a session
            for sid, e in last.items():
                conn.execute(
                    update(sessions)
                    .where(and_(sessions.c.id == sid, sessions.c.entries <= e.seq))
                    .values(entries=e.seq + 1, head=e.entry_hash)
                )
            return len(new)

        if not batch:
            return 0
        return self._retrying(f"{len(batch)} entries", fn)

    @staticmethod
    def _ensure_session(conn: Connection, sid: str) -> None:
        if conn.execute(select(sessions.c.id).where(sessions.c.id == sid)).first() is None:
            conn.execute(insert(sessions).values(id=sid, state="recording", entries=0))

    def _apply(self, conn: Connection, e: ManifestEntry) -> None:
        b = e.body
        sid = e.session
        if e.kind == "session_start":
            conn.execute(
                update(sessions)
                .where(sessions.c.id == sid)
                .values(
                    room=b.get("room"),
                    case_number=b.get("case_number"),
                    suspect=b.get("suspect"),
                    interviewers=list(b.get("interviewers") or []),
                    reason=b.get("reason"),
                    custody_out_iso=b.get("custody_out_iso"),
                    started_ns=e.time_ns,
                    created_by=b.get("created_by"),
                    start_body=b,
                )
            )
            for name, src in (b.get("sources") or {}).items():
                src = src if isinstance(src, dict) else {}
                self._upsert_source(conn, sid, str(name), src.get("kind"), src.get("label"))
        elif e.kind == "segment":
            rec = SegmentRecord.from_body(b)
            up = conn.execute(select(uploaded_keys.c.key).where(uploaded_keys.c.key == rec.key)).first()
            conn.execute(
                insert(segments).values(
                    session_id=sid,
                    seq=e.seq,
                    source=rec.source,
                    track=rec.track,
                    media=rec.media,
                    codec=rec.codec,
                    container=rec.container,
                    idx=rec.index,
                    key=rec.key,
                    wall_first_ns=rec.wall_first_ns,
                    wall_last_ns=rec.wall_last_ns,
                    bytes=rec.bytes,
                    sha256=rec.sha256,
                    recovered=rec.recovered,
                    uploaded=up is not None,
                )
            )
            self._upsert_source(conn, sid, rec.source, None, None)
        elif e.kind == "gap":
            gap = GapRecord.from_body(b)
            conn.execute(
                insert(gaps).values(
                    session_id=sid,
                    seq=e.seq,
                    source=gap.source,
                    track=gap.track,
                    reason=gap.reason,
                    start_ns=gap.start_ns,
                    end_ns=gap.end_ns,
                    body=b,
                )
            )
        else:
            conn.execute(
                insert(annotation_rows).values(
                    session_id=sid, seq=e.seq, kind=e.kind, time_ns=e.time_ns, body=b
                )
            )
            if e.kind == "session_stop":
                conn.execute(
                    update(sessions)
                    .where(sessions.c.id == sid)
                    .values(state="stopped", stopped_ns=e.time_ns, stopped_by=b.get("stopped_by"))
                )
            elif e.kind == "custody":
                col = "custody_out_iso" if b.get("event") == "out" else "custody_in_iso"
                conn.execute(update(sessions).where(sessions.c.id == sid).values({col: b.get("time_iso")}))
            elif e.kind == "participant" and b.get("source"):
                self._upsert_source(conn, sid, str(b["source"]), "remote", b.get("name"))

    @staticmethod
    def _upsert_source(conn: Connection, sid: str, name: str, kind: str | None, label: str | None) -> None:
        where = and_(sources.c.session_id == sid, sources.c.name == name)
        row = conn.execute(select(sources).where(where)).first()
        if row is None:
            conn.execute(insert(sources).values(session_id=sid, name=name, kind=kind, label=label))
        elif (kind and row.kind != kind) or (label and row.label != label):
            conn.execute(update(sources).where(where).values(kind=kind or row.kind, label=label or row.label))

    def apply_checkpoint(self, cp: Checkpoint, ordinal: int | None = None) -> bool:
        def fn(conn: Connection) -> bool:
            seen = conn.execute(
                select(checkpoints.c.body_hash).where(
                    and_(checkpoints.c.session_id == cp.session, checkpoints.c.body_hash == cp.body_hash)
                )
            ).first()
            if seen is not None:
                return False
            self._ensure_session(conn, cp.session)
            conn.execute(
                insert(checkpoints).values(
                    session_id=cp.session,
                    body_hash=cp.body_hash,
                    ordinal=ordinal,
                    tree_size=cp.tree_size,
                    root=cp.root,
                    head=cp.head,
                    time_ns=cp.time_ns,
                    key_id=cp.key_id,
                    final=cp.final,
                    digest=cp.digest,
                )
            )
            if cp.final:
                conn.execute(
                    update(sessions).where(sessions.c.id == cp.session).values(final_digest=cp.digest)
                )
            return True

        return self._retrying(f"checkpoint of {cp.session}", fn)

    def mark_uploaded(self, key: str, now_ns: int) -> None:
        """The uploader confirmed `key` in the store."""

        def fn(conn: Connection) -> bool:
            if conn.execute(select(uploaded_keys.c.key).where(uploaded_keys.c.key == key)).first() is None:
                conn.execute(insert(uploaded_keys).values(key=key, time_ns=now_ns))
            conn.execute(update(segments).where(segments.c.key == key).values(uploaded=True))
            return True

        self._retrying(f"upload mark of {key}", fn)

    def sync_from_ledger(self, ledger: Ledger, session: str) -> int:
        """Apply every ledger entry and checkpoint of `session` not applied yet; return how many entries."""
        done = sum(1 for e in ledger.entries(session) if self.apply(e))
        for n, cp in enumerate(ledger.checkpoints(session)):
            self.apply_checkpoint(cp, ordinal=n)
        return done

    # -- queries -------------------------------------------------------------------------------
    def list_sessions(self, filters: SessionFilter | None = None) -> list[SessionInfo]:
        f = filters or SessionFilter()
        q = select(sessions)
        if f.room:
            q = q.where(sessions.c.room == f.room)
        if f.case_number:
            q = q.where(sessions.c.case_number == f.case_number)
        if f.state:
            q = q.where(sessions.c.state == f.state)
        if f.started_from_ns is not None:
            q = q.where(sessions.c.started_ns >= f.started_from_ns)
        if f.started_to_ns is not None:
            q = q.where(sessions.c.started_ns < f.started_to_ns)
        if f.text:
            like = f"%{f.text}%"
            q = q.where(
                or_(
                    sessions.c.case_number.like(like),
                    sessions.c.suspect.like(like),
                    sessions.c.room.like(like),
                    sessions.c.id.like(like),
                )
            )
        q = q.order_by(sessions.c.started_ns.desc(), sessions.c.id).limit(f.limit).offset(f.offset)
        with self.engine.connect() as conn:
            return [self._session(r) for r in conn.execute(q)]

    @staticmethod
    def _session(r: Any) -> SessionInfo:
        d = dict(r._mapping)
        d["interviewers"] = list(d.get("interviewers") or [])
        d["start_body"] = dict(d.get("start_body") or {})
        d["entries"] = int(d.get("entries") or 0)
        return SessionInfo(**d)

    def get_session(self, sid: str) -> SessionInfo | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(sessions).where(sessions.c.id == sid)).first()
        return self._session(r) if r is not None else None

    def count_sessions(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(sessions)).scalar_one())

    def sources(self, sid: str) -> list[SourceInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(sources).where(sources.c.session_id == sid).order_by(sources.c.name))
            return [_row(SourceInfo, r) for r in rows]

    def segments(self, sid: str, source: str | None = None, track: str | None = None) -> list[SegmentInfo]:
        q = select(segments).where(segments.c.session_id == sid)
        if source:
            q = q.where(segments.c.source == source)
        if track:
            q = q.where(segments.c.track == track)
        q = q.order_by(segments.c.source, segments.c.track, segments.c.idx, segments.c.seq)
        with self.engine.connect() as conn:
            return [_row(SegmentInfo, r, index="idx") for r in conn.execute(q)]

    def gaps(self, sid: str) -> list[GapInfo]:
        q = select(gaps).where(gaps.c.session_id == sid).order_by(gaps.c.start_ns, gaps.c.seq)
        with self.engine.connect() as conn:
            return [_row(GapInfo, r) for r in conn.execute(q)]

    def checkpoints(self, sid: str) -> list[CheckpointInfo]:
        q = (
            select(checkpoints)
            .where(checkpoints.c.session_id == sid)
            .order_by(checkpoints.c.tree_size, checkpoints.c.time_ns)
        )
        with self.engine.connect() as conn:
            return [_row(CheckpointInfo, r) for r in conn.execute(q)]

    def annotations(self, sid: str, kind: str | None = None) -> list[AnnotationInfo]:
        q = select(annotation_rows).where(annotation_rows.c.session_id == sid)
        if kind:
            q = q.where(annotation_rows.c.kind == kind)
        with self.engine.connect() as conn:
            return [_row(AnnotationInfo, r) for r in conn.execute(q.order_by(annotation_rows.c.seq))]

    def applied_seqs(self, sid: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(entries).where(entries.c.session_id == sid)
                ).scalar_one()
            )

    def forget_session(self, sid: str) -> None:
        with self._tx() as conn:
            for t in (sources, entries, segments, gaps, checkpoints, annotation_rows):
                conn.execute(delete(t).where(t.c.session_id == sid))
            conn.execute(delete(sessions).where(sessions.c.id == sid))


def record(
    ledger: Ledger,
    index: Index | None,
    session: str,
    kind: str,
    body: dict[str, Any],
    now_ns: int | None = None,
) -> ManifestEntry:
    """Append to the ledger (the commit point), then update the index.

    The entry is committed once the ledger returns. An index failure is logged, not raised: the
    index is a cache, caught up later by `Index.sync_from_ledger` or `tonglu reindex`.
    """
    entry = ledger.append(session, kind, body, now_ns=now_ns)
    if index is not None:
        try:
            index.apply(entry)
        except StorageError as exc:
            log.bind(session=session).error("index update failed for seq %d (%s): %s", entry.seq, kind, exc)
    return entry
