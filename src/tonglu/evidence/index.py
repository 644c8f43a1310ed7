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
    DDL,
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
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import Index as SqlIndex
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.db import open_engine
from tonglu.evidence.errors import IndexDBError, StorageError
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import GapRecord, ManifestEntry, SegmentRecord
from tonglu.evidence.migrate import ensure_schema

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

# Session search (`Index.search`): one row per searchable text of a session, `field` saying which:
# "case", "room", "person" (suspect, interviewers, created_by, remote participants) or "line" (a line of
# the newest transcript version, with its wall-clock start). On SQLite an FTS5 table with the `trigram`
# tokenizer indexes `body` (external content, kept in step by triggers): substrings of 3+ characters,
# Chinese included, are answered from it; shorter needles use LIKE over the rows. On PostgreSQL two
# trigram GIN indexes (`pg_trgm`, one over the metadata rows, one over the transcript lines) answer
# ILIKE needles of 3+ characters the same way; shorter needles scan as on SQLite.
search_text = Table(
    "search_text",
    metadata,
    # BIGINT on PostgreSQL; INTEGER on SQLite, where only that is the autoincrementing rowid
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("session_id", String(128), nullable=False),
    Column("field", String(16), nullable=False),
    Column("start_ns", BigInteger, nullable=True),
    Column("speaker", String(128), nullable=True),
    Column("body", Text, nullable=False),
)
SqlIndex("search_text_session", search_text.c.session_id, search_text.c.field)
# metadata rows only (a few per session): a short needle scans this index, not the transcript lines
SqlIndex("search_text_meta", search_text.c.field, search_text.c.body, search_text.c.session_id,
         sqlite_where=search_text.c.field != "line", postgresql_where=search_text.c.field != "line")
# PostgreSQL only (`ddl_if`): trigram GIN indexes; the extension is created before the tables
SqlIndex("search_text_trgm_meta", search_text.c.body, postgresql_using="gin",
         postgresql_ops={"body": "gin_trgm_ops"}, postgresql_where=search_text.c.field != "line"
         ).ddl_if(dialect="postgresql")
SqlIndex("search_text_trgm_line", search_text.c.body, postgresql_using="gin",
         postgresql_ops={"body": "gin_trgm_ops"}, postgresql_where=search_text.c.field == "line"
         ).ddl_if(dialect="postgresql")
PG_TRGM_DDL = "CREATE EXTENSION IF NOT EXISTS pg_trgm"
event.listen(metadata, "before_create", DDL(PG_TRGM_DDL).execute_if(dialect="postgresql"))
SEARCH_FTS_DDL = (
    "CREATE VIRTUAL TABLE search_fts USING fts5(body, content='search_text', content_rowid='id', "
    "tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS search_text_ai AFTER INSERT ON search_text BEGIN "
    "INSERT INTO search_fts(rowid, body) VALUES (new.id, new.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_text_ad AFTER DELETE ON search_text BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', old.id, old.body); END",
    "CREATE TRIGGER IF NOT EXISTS search_text_au AFTER UPDATE ON search_text BEGIN "
    "INSERT INTO search_fts(search_fts, rowid, body) VALUES ('delete', old.id, old.body); "
    "INSERT INTO search_fts(rowid, body) VALUES (new.id, new.body); END",
)
SEARCH_FIELDS = ("case", "room", "person", "line")
TRIGRAM = 3  # the shortest needle the trigram indexes answer; shorter ones scan with (I)LIKE

# the transcript version whose lines are in `search_text` (a newer one replaces them)
search_transcripts = Table(
    "search_transcripts",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
)

# who may see a session besides the site-wide roles (web/rbac.py `may_access_session`): its creator
# and the interviewers listed on its `session_start`, by user name or display name
search_owners = Table(
    "search_owners",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("name", String(256), primary_key=True),
)
SqlIndex("search_owners_name", search_owners.c.name)

INDEX_TABLES = (sessions, sources, entries, segments, gaps, checkpoints, annotation_rows, uploaded_keys,
                search_text, search_transcripts, search_owners)
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
class IndexedEntry:
    """A manifest entry as the index holds it (`Index.entries_since`): its body rebuilt from the
    rows it was applied to (segment and gap fields, `session_start` facts, annotation bodies)."""

    session: str
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


@dataclass(frozen=True)
class SessionSearch:
    """What `Index.search` looks for; every given filter must hold (AND). Text filters are
    case-insensitive substrings; `owners` (None: no restriction) keeps sessions created by or listing
    one of these names."""

    case: str = ""
    room: str = ""
    person: str = ""  # suspect, interviewer, creator or remote participant
    text: str = ""  # words of the newest transcript version
    started_from_ns: int | None = None
    started_to_ns: int | None = None
    owners: tuple[str, ...] | None = None
    limit: int = 200
    hits_per_session: int = 5


@dataclass(frozen=True)
class TranscriptHit:
    start_ns: int | None
    speaker: str | None
    text: str


@dataclass(frozen=True)
class SearchResult:
    session: SessionInfo
    participants: list[str]
    gaps: int
    hits: list[TranscriptHit]


def _fts_phrase(needle: str) -> str:
    return '"' + needle.replace('"', '""') + '"'


def _like_pattern(needle: str) -> str:
    return "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def transcript_lines(doc: dict[str, Any]) -> list[tuple[int | None, str | None, str]]:
    """(start_ns, speaker, text) of a transcript document's non-empty lines."""
    out = []
    for ln in doc.get("lines") or []:
        if not isinstance(ln, dict):
            continue
        text = str(ln.get("text") or "").strip()
        if not text:
            continue
        start = ln.get("start_ns")
        speaker = ln.get("speaker")
        out.append((int(start) if isinstance(start, int) else None, str(speaker) if speaker else None, text))
    return out


def _row(cls: type, row: Any, **rename: str) -> Any:
    data = dict(row._mapping)
    for new, old in rename.items():
        data[new] = data.pop(old)
    return cls(**data)


SHORT_LOOKUP_BUDGET_S = 0.025  # a 1-2 character transcript needle: per-session lookups this long, then a scan
BUDGET_CHECK_OPS = 2000  # SQLite virtual-machine steps between two looks at the clock


@contextmanager
def _budget(conn: Connection, seconds: float) -> Iterator[None]:
    """SQLite: interrupt the statements run inside after `seconds` (OperationalError 'interrupted')."""
    raw: Any = conn.connection.driver_connection
    deadline = time.monotonic() + seconds
    raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, BUDGET_CHECK_OPS)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)


class Index:
    def __init__(self, url_or_engine: str | Engine) -> None:
        try:
            self.engine = open_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
            self.fts = self.engine.dialect.name == "sqlite"
            ensure_schema(self.engine)  # evidence/migrations: these tables, the web_* ones and more
            self._create_search_text()
            self._backfill_search()
        except SQLAlchemyError as exc:
            raise IndexDBError(f"index DB {url_or_engine} cannot be opened: {exc}") from exc
        self._lock = threading.Lock()
        # reads a stored object (a transcript version) by key, to index the lines of `transcript`
        # entries as they are applied; None: only `index_transcript` indexes lines
        self.transcript_reader: Callable[[str], bytes] | None = None

    def _backfill_search(self) -> None:
        """Sessions indexed before session search existed get their metadata rows from the index
        itself (`start_body`, participant annotations); their transcript lines come with the next
        version or `tonglu reindex`."""
        t = search_text
        has_rows = exists().where(and_(t.c.session_id == sessions.c.id, t.c.field != "line"))
        with self.engine.begin() as conn:
            todo = conn.execute(
                select(sessions.c.id, sessions.c.start_body).where(and_(sessions.c.start_body.is_not(None), ~has_rows))
            ).all()
            for sid, body in todo:
                self._index_start(conn, sid, dict(body or {}))
                for (b,) in conn.execute(
                    select(annotation_rows.c.body).where(
                        and_(annotation_rows.c.session_id == sid, annotation_rows.c.kind == "participant")
                    )
                ):
                    if str((b or {}).get("name") or "").strip():
                        self._add_search_text(conn, sid, "person", str(b["name"]).strip())
        if todo:
            log.warning("session search: metadata of %d sessions indexed; `tonglu reindex` adds their transcripts",
                        len(todo))

    def _create_search_text(self) -> None:
        """SQLite: the FTS5 index over `search_text` (built from the rows if it is new). Others
        (PostgreSQL): nothing, `search_text` is searched with ILIKE."""
        if not self.fts:
            return
        with self.engine.begin() as conn:
            have = conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'search_fts'").first()
            if have is None:
                for ddl in SEARCH_FTS_DDL:
                    conn.exec_driver_sql(ddl)
                conn.exec_driver_sql("INSERT INTO search_fts(search_fts) VALUES ('rebuild')")

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def reset(self) -> None:
        """Drop and recreate the index tables (not the web_* tables)."""
        with self._lock:
            if self.fts:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql("DROP TABLE IF EXISTS search_fts")
            metadata.drop_all(self.engine, tables=list(INDEX_TABLES))
            metadata.create_all(self.engine)
            self._create_search_text()

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
            self._index_start(conn, sid, b)
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
            if e.kind == "participant" and str(b.get("name") or "").strip():
                self._add_search_text(conn, sid, "person", str(b["name"]).strip())
            elif e.kind == "transcript" and self.transcript_reader is not None:
                self._index_transcript_entry(conn, sid, b)

    # -- session search: keeping it in step ----------------------------------------------------
    def _add_search_text(self, conn: Connection, sid: str, field: str, value: str) -> None:
        t = search_text
        where = and_(t.c.session_id == sid, t.c.field == field, t.c.body == value)
        if conn.execute(select(t.c.id).where(where).limit(1)).first() is None:
            conn.execute(insert(t).values(session_id=sid, field=field, body=value))

    def _index_start(self, conn: Connection, sid: str, b: dict[str, Any]) -> None:
        t = search_text
        conn.execute(delete(t).where(and_(t.c.session_id == sid, t.c.field.in_(("case", "room", "person")))))
        conn.execute(delete(search_owners).where(search_owners.c.session_id == sid))
        listed = b.get("interviewers")
        named: list[Any] = [*(listed if isinstance(listed, list) else []), b.get("created_by")]
        staff = sorted({n.strip() for n in named if isinstance(n, str) and n.strip()})
        suspect = [b["suspect"].strip()] if isinstance(b.get("suspect"), str) and b["suspect"].strip() else []
        rows = [{"session_id": sid, "field": field, "body": str(value)}
                for field, value in (("case", b.get("case_number")), ("room", b.get("room"))) if value]
        rows += [{"session_id": sid, "field": "person", "body": name} for name in sorted({*suspect, *staff})]
        if rows:
            conn.execute(insert(t), rows)
        if staff:
            conn.execute(insert(search_owners), [{"session_id": sid, "name": name} for name in staff])

    def _index_transcript_entry(self, conn: Connection, sid: str, b: dict[str, Any]) -> None:
        import hashlib
        import json

        reader = self.transcript_reader
        key, digest = b.get("key"), b.get("sha256")
        if reader is None or not isinstance(key, str) or not isinstance(b.get("version"), int):
            return
        try:
            data = reader(key)
            if hashlib.sha256(data).hexdigest() != digest:
                raise ValueError("content does not match the entry's SHA-256")
            doc = json.loads(data)
        except Exception as exc:  # a cache: the lines come with the next version, or `tonglu reindex`
            log.bind(session=sid).warning("transcript %s not indexed for search: %s", key, exc)
            return
        self._index_lines(conn, sid, int(b["version"]), doc)

    def _index_lines(self, conn: Connection, sid: str, version: int, doc: dict[str, Any]) -> bool:
        row = conn.execute(
            select(search_transcripts.c.version).where(search_transcripts.c.session_id == sid)
        ).first()
        if row is not None and int(row.version) >= version:
            return False
        t = search_text
        conn.execute(delete(t).where(and_(t.c.session_id == sid, t.c.field == "line")))
        lines = transcript_lines(doc)
        if lines:
            conn.execute(insert(t), [
                {"session_id": sid, "field": "line", "start_ns": start, "speaker": speaker, "body": text}
                for start, speaker, text in lines
            ])
        if row is None:
            conn.execute(insert(search_transcripts).values(session_id=sid, version=version))
        else:
            conn.execute(
                update(search_transcripts).where(search_transcripts.c.session_id == sid).values(version=version)
            )
        return True

    def index_transcripts(self, batch: list[tuple[str, int, dict[str, Any]]]) -> int:
        """`index_transcript` for many (session, version, document) in one transaction (bulk loads);
        returns how many replaced the indexed lines."""

        def fn(conn: Connection) -> int:
            return sum(1 for sid, version, doc in batch if self._index_lines(conn, sid, version, doc))

        return self._retrying(f"{len(batch)} transcripts", fn) if batch else 0

    def index_transcript(self, sid: str, version: int, doc: dict[str, Any]) -> bool:
        """Make `doc` (transcript `version` of `sid`) the lines searched for `sid`, unless a newer
        version is indexed already. Returns whether the lines were replaced."""
        return self._retrying(f"transcript {version} of {sid}", lambda conn: self._index_lines(conn, sid, version, doc))

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

    def catch_up(self, ledger: Ledger, session: str, batch: int = 500) -> int:
        """Apply the ledger entries of `session` missing from the index, wherever they are (a
        killed recorder loses the segment entries its index feed had queued, while the ledger holds
        them); a few statements per `batch` entries. Returns how many were applied."""
        with self.engine.connect() as conn:
            have = {int(seq) for (seq,) in conn.execute(select(entries.c.seq).where(entries.c.session_id == session))}
        todo = [e for e in ledger.entries(session) if e.seq not in have]
        done = sum(self.apply_many(todo[i:i + batch]) for i in range(0, len(todo), batch))
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

    # -- session search ------------------------------------------------------------------------
    def _matching(self, field: str, needle: str, scan: bool = False) -> Any:
        """A condition on `sessions`: a `field` text of the session contains `needle` (case-insensitive)."""
        t = search_text
        if len(needle) >= TRIGRAM:
            if self.fts:
                name = f"phrase_{field}"  # one bound phrase per field of the query
                fts = text(f"SELECT rowid FROM search_fts WHERE search_fts MATCH :{name}").bindparams(
                    **{name: _fts_phrase(needle)}
                )
                rows = and_(t.c.field == field, t.c.id.in_(fts))
            else:  # PostgreSQL: ILIKE over a partial trigram GIN index (metadata or lines)
                part = t.c.field == "line" if field == "line" else t.c.field != "line"
                rows = and_(part, t.c.field == field, self._like(needle))
            return sessions.c.id.in_(select(t.c.session_id).where(rows))
        if field != "line":  # metadata: a scan of the partial index `search_text_meta`
            meta = and_(t.c.field != "line", t.c.field == field, self._like(needle))
            return sessions.c.id.in_(select(t.c.session_id).where(meta))
        # transcript lines, a 1-2 character needle (below the trigram). `scan`: one sequential pass
        # over the rows (about 40 ms at 10,000 sessions x 20 lines, found or not); else a lookup per
        # session, newest first, until the limit (0.1 ms for a needle found everywhere, 130 ms for
        # one found nowhere). `search` tries the lookups within a budget, then scans.
        if scan:
            return sessions.c.id.in_(select(t.c.session_id).where(and_(t.c.field == field, self._like(needle))))
        return exists().where(and_(t.c.session_id == sessions.c.id, t.c.field == field, self._like(needle)))

    def _like(self, needle: str) -> Any:
        if self.fts:  # SQLite's LIKE ignores ASCII case already
            if not any(c.isascii() and c.isalpha() for c in needle):
                # no letter that has a case: a plain substring test, a byte search several times
                # cheaper than LIKE's pattern walk (the 1-2 character Chinese needles scan rows)
                return func.instr(search_text.c.body, needle) > 0
            return search_text.c.body.like(_like_pattern(needle), escape="\\")
        return search_text.c.body.ilike(_like_pattern(needle), escape="\\")

    def search(self, f: SessionSearch) -> list[SearchResult]:
        """Sessions matching every filter of `f`, newest first, with up to `hits_per_session`
        transcript lines containing `f.text` (in time order). Answered from the index alone."""
        with self.engine.connect() as conn:
            short_text = self.fts and 0 < len(f.text.strip()) < TRIGRAM
            if short_text:
                try:
                    with _budget(conn, SHORT_LOOKUP_BUDGET_S):
                        found = [self._session(r) for r in conn.execute(self._search_query(f, scan=False))]
                except OperationalError as exc:
                    if "interrupt" not in str(exc):
                        raise
                    conn.rollback()
                    found = [self._session(r) for r in conn.execute(self._search_query(f, scan=True))]
            else:
                found = [self._session(r) for r in conn.execute(self._search_query(f, scan=False))]
            return self._results(conn, f, found)

    def _search_query(self, f: SessionSearch, *, scan: bool) -> Any:
        q = select(sessions).where(sessions.c.started_ns.is_not(None))
        for field, needle in (("case", f.case), ("room", f.room), ("person", f.person), ("line", f.text)):
            needle = needle.strip()
            if needle:
                q = q.where(self._matching(field, needle, scan))
        if f.started_from_ns is not None:
            q = q.where(sessions.c.started_ns >= f.started_from_ns)
        if f.started_to_ns is not None:
            q = q.where(sessions.c.started_ns < f.started_to_ns)
        if f.owners is not None:
            names = sorted({n.strip() for n in f.owners if n and n.strip()})
            q = q.where(sessions.c.id.in_(select(search_owners.c.session_id).where(search_owners.c.name.in_(names))))
        return q.order_by(sessions.c.started_ns.desc(), sessions.c.id).limit(f.limit)

    def _results(self, conn: Connection, f: SessionSearch, found: list[SessionInfo]) -> list[SearchResult]:
        """The found sessions with their gap counts, remote participants and transcript hits."""
        ids = [s.id for s in found]
        if not ids:
            return []
        counted = select(gaps.c.session_id, func.count()).where(gaps.c.session_id.in_(ids))
        gap_counts: dict[str, int] = {
            str(sid): int(n) for sid, n in conn.execute(counted.group_by(gaps.c.session_id))
        }
        people: dict[str, set[str]] = {}
        for sid, body in conn.execute(
            select(annotation_rows.c.session_id, annotation_rows.c.body).where(
                and_(annotation_rows.c.session_id.in_(ids), annotation_rows.c.kind == "participant")
            )
        ):
            name = str((body or {}).get("name") or "").strip()
            if name:
                people.setdefault(sid, set()).add(name)
        hits: dict[str, list[TranscriptHit]] = {}
        text = f.text.strip()
        if text:
            t = search_text
            lines = (
                select(t.c.session_id, t.c.start_ns, t.c.speaker, t.c.body)
                .where(and_(t.c.session_id.in_(ids), t.c.field == "line", self._like(text)))
                .order_by(t.c.session_id, t.c.start_ns, t.c.id)
            )
            for sid, start_ns, speaker, body in conn.execute(lines):
                got = hits.setdefault(sid, [])
                if len(got) < f.hits_per_session:
                    got.append(TranscriptHit(int(start_ns) if start_ns is not None else None, speaker, body))
        return [
            SearchResult(s, sorted(people.get(s.id, ())), int(gap_counts.get(s.id, 0)), hits.get(s.id, []))
            for s in found
        ]

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

    def entry_counts(self) -> dict[str, int]:
        """Per session, one past the highest seq applied (`sessions.entries`)."""
        with self.engine.connect() as conn:
            return {str(sid): int(n) for sid, n in conn.execute(select(sessions.c.id, sessions.c.entries))}

    def entries_since(self, sid: str, seq: int, limit: int = 1000) -> list[IndexedEntry]:
        """Entries of `sid` from `seq` on, in seq order (there may be holes: entries not applied yet,
        a batch still in flight from another writer). Segment bodies carry what `SegmentRecord`
        needs (source, track, media, index, key, sha256, wall times...); other kinds carry the
        body they were applied with."""
        e, sg = entries, segments
        q = (
            select(e.c.seq, e.c.kind, e.c.time_ns, sg.c.source, sg.c.track, sg.c.media, sg.c.codec, sg.c.container,
                   sg.c.idx, sg.c.key, sg.c.wall_first_ns, sg.c.wall_last_ns, sg.c.bytes, sg.c.sha256,
                   sg.c.recovered, gaps.c.body.label("gap_body"), annotation_rows.c.body.label("note_body"))
            .select_from(
                e.outerjoin(sg, and_(sg.c.session_id == e.c.session_id, sg.c.seq == e.c.seq))
                .outerjoin(gaps, and_(gaps.c.session_id == e.c.session_id, gaps.c.seq == e.c.seq))
                .outerjoin(annotation_rows, and_(annotation_rows.c.session_id == e.c.session_id,
                                                 annotation_rows.c.seq == e.c.seq))
            )
            .where(and_(e.c.session_id == sid, e.c.seq >= seq))
            .order_by(e.c.seq)
            .limit(limit)
        )
        out: list[IndexedEntry] = []
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
            start_body: dict[str, Any] | None = None
            if any(r.kind == "session_start" for r in rows):
                start_body = dict(conn.execute(select(sessions.c.start_body).where(sessions.c.id == sid)).scalar()
                                  or {})
        for r in rows:
            if r.kind == "segment" and r.key is not None:
                body: dict[str, Any] = {
                    "source": r.source, "track": r.track, "media": r.media, "codec": r.codec,
                    "container": r.container, "index": int(r.idx), "key": r.key, "wall_first_ns": int(r.wall_first_ns),
                    "wall_last_ns": int(r.wall_last_ns), "bytes": int(r.bytes), "sha256": r.sha256,
                    "recovered": bool(r.recovered),
                }
            elif r.kind == "gap":
                body = dict(r.gap_body or {})
            elif r.kind == "session_start":
                body = dict(start_body or {})
            else:
                body = dict(r.note_body or {})
            out.append(IndexedEntry(sid, int(r.seq), str(r.kind), int(r.time_ns), body))
        return out

    def applied_seqs(self, sid: str) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(entries).where(entries.c.session_id == sid)
                ).scalar_one()
            )

    def forget_session(self, sid: str) -> None:
        with self._tx() as conn:
            for t in (sources, entries, segments, gaps, checkpoints, annotation_rows, search_transcripts,
                      search_owners, search_text):
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
