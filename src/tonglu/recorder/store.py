"""Sessions as the evidence store knows them, usable from any process.

The manifest (ledger) is the source of truth for a session's facts and state: `session_start`
holds the case facts and expected sources, `session_stop` ends it. WHIP source tokens are kept
hashed (SHA-256) in the `recorder_source_tokens` table of the index database (`settings.db_url`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, select
from sqlalchemy.engine import Engine

from tonglu.evidence import keys
from tonglu.evidence.db import open_engine
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.migrate import ensure_schema
from tonglu.evidence.retention import valid_category_name
from tonglu.recorder import participants
from tonglu.recorder.errors import (
    BadRequest,
    SessionNotFound,
    SourceNotFound,
    TokenInvalid,
    TokenMissing,
    TokenRevoked,
)

log = context_logger(__name__)

RECORDER_VERSION = "tonglu-recorder/0.1"
DEFAULT_SOURCES = {
    "main": {"kind": "camera", "label": "近景 close-up"},
    "panorama": {"kind": "camera", "label": "全景 panorama"},
}
_metadata = MetaData()
tokens_table = Table(
    "recorder_source_tokens",
    _metadata,
    Column("session_id", String(128), primary_key=True),
    Column("source", String(128), primary_key=True),
    Column("token_sha256", String(64), nullable=False),
    Column("created_ns", BigInteger, nullable=False),  # nanoseconds: BIGINT on PostgreSQL
)


# A source whose token stops working at `not_after_ns` (a remote participant's invitation expiry,
# or the moment it was revoked), with the reason WHIP answers.
limits_table = Table(
    "recorder_source_limits",
    _metadata,
    Column("session_id", String(128), primary_key=True),
    Column("source", String(128), primary_key=True),
    Column("not_after_ns", BigInteger, nullable=False),
    Column("reason", String(64), nullable=False),
)
LIMIT_REASONS = {
    "invitation_revoked": "邀请已撤销 (invitation revoked)",
    "invitation_expired": "邀请已过期 (invitation expired)",
    "participant_left": "远程参与人已退出 (the participant left; join again)",
}


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class SessionFacts:
    id: str
    start: ManifestEntry
    stop: ManifestEntry | None
    segments: int = 0
    gaps: list[dict[str, Any]] = field(default_factory=list)
    last_segments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    participant_entries: list[dict[str, Any]] = field(default_factory=list)  # `participant` bodies
    consultation_entries: list[dict[str, Any]] = field(default_factory=list)  # `consultation` bodies

    @property
    def sources(self) -> dict[str, Any]:
        """The sources named at start, and those remote participants added (`remote-<id>`)."""
        return {**participants.source_specs(self.participant_entries), **(self.start.body.get("sources") or {})}

    def source_start_ns(self, source: str) -> int:
        """When `source` became part of the session (a remote participant's first join)."""
        joined = self.sources.get(source, {}).get("joined_ns")
        return int(joined) if isinstance(joined, int) else self.start.time_ns

    @property
    def room(self) -> str:
        return str(self.start.body.get("room", ""))

    @property
    def state(self) -> str:
        return "stopped" if self.stop else "recording"

    def summary(self) -> dict[str, Any]:
        b = self.start.body
        return {
            "id": self.id,
            "kind": b.get("kind", "interrogation"),
            "state": self.state,
            "room": b.get("room"),
            "case_number": b.get("case_number"),
            "suspect": b.get("suspect"),
            "interviewers": b.get("interviewers"),
            "reason": b.get("reason"),
            "custody_out_iso": b.get("custody_out_iso"),
            "created_by": b.get("created_by"),
            "started_ns": self.start.time_ns,
            "stopped_ns": self.stop.time_ns if self.stop else None,
            "stopped_by": self.stop.body.get("stopped_by") if self.stop else None,
            "sources": self.sources,
            "segments_sealed": self.segments,
            "gaps": len(self.gaps),
        }


def _text(req: dict[str, Any], name: str, required: bool = True) -> str:
    v = req.get(name)
    if v is None or (isinstance(v, str) and not v.strip()):
        if required:
            raise BadRequest(f"缺少字段 {name} (missing field {name!r})")
        return ""
    if not isinstance(v, str):
        raise BadRequest(f"字段 {name} 必须是文本 (field {name!r} must be a string)")
    return v.strip()


def _iso_time(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{name} 必须是 ISO 时间 ({name} must be an ISO 8601 time)")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{name} 不是 ISO 时间 ({name} is not an ISO 8601 time: {value!r})") from exc
    if parsed.tzinfo is None:
        raise BadRequest(f"{name} 必须带时区 ({name} needs a timezone, e.g. +08:00)")
    return parsed.isoformat()


def _risk_facts(req: dict[str, Any]) -> dict[str, Any]:
    """Optional facts the risk rules read (kept only when given): the suspect's age, the appropriate
    adult of a minor (合适成年人), the serious-case extension (24 h), a reason for questioning at
    night, the detention time, and viewers authorised to watch live."""
    out: dict[str, Any] = {}
    age = req.get("suspect_age")
    if age not in (None, ""):
        if isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= 150:
            raise BadRequest("suspect_age 必须是 0–150 的整数 (suspect_age must be an integer 0-150)")
        out["suspect_age"] = age
    for name in ("appropriate_adult", "night_reason"):
        text = _text(req, name, required=False)
        if text:
            out[name] = text
    serious = req.get("serious_case")
    if serious not in (None, ""):
        if not isinstance(serious, bool):
            raise BadRequest("serious_case 必须是 true/false (serious_case must be a boolean)")
        out["serious_case"] = serious
    if req.get("detained_at") not in (None, ""):
        out["detained_at_iso"] = _iso_time(req["detained_at"], "detained_at")
    viewers = req.get("authorised_viewers")
    if viewers not in (None, []):
        if not isinstance(viewers, list) or not all(isinstance(v, str) and v.strip() for v in viewers):
            raise BadRequest("authorised_viewers 必须是用户名列表 (authorised_viewers must be a list of user names)")
        out["authorised_viewers"] = [v.strip() for v in viewers]
    return out


SESSION_KINDS = {"interrogation": "讯问", "hearing": "速裁庭审"}
HEARING_SOURCES = {
    "main": {"kind": "camera", "label": "被告人席 近景 defendant close-up", "role": "defendant"},
    "panorama": {"kind": "camera", "label": "羁押场所全景 panorama", "role": "defendant"},
}


def validate_request(req: dict[str, Any]) -> dict[str, Any]:
    kind = req.get("kind") or "interrogation"
    if kind not in SESSION_KINDS:
        raise BadRequest(f"会话类型无效 (kind must be one of {', '.join(SESSION_KINDS)}, got {kind!r})")
    hearing = kind == "hearing"
    if hearing and req.get("defendant") not in (None, "") and req.get("suspect") in (None, ""):
        req = {**req, "suspect": req["defendant"]}
    body: dict[str, Any] = {
        "kind": kind,
        "room": _text(req, "room"),
        "case_number": _text(req, "case_number"),
        "suspect": _text(req, "suspect"),
        "reason": _text(req, "reason", required=False),
    }
    if hearing:
        body["defendant"] = body["suspect"]
    category = _text(req, "case_category", required=False)
    if category:
        if not valid_category_name(category):
            raise BadRequest(f"案件类别无效 (case_category {category!r}: lower-case letters, digits, _ or -)")
        body["case_category"] = category  # its retention: evidence.retention (optional; later: /retention)
    interviewers = req.get("interviewers") or []
    if not isinstance(interviewers, list) or not all(isinstance(i, str) and i.strip() for i in interviewers):
        raise BadRequest("interviewers 必须是姓名列表 (interviewers must be a list of names)")
    body["interviewers"] = [i.strip() for i in interviewers]
    if not hearing and len(set(body["interviewers"])) < 2:
        # Criminal Procedure Law art. 118: an interrogation is conducted by no fewer than two officers.
        raise BadRequest("讯问人员不得少于二人 (at least two distinct interviewers are required)")
    custody = req.get("custody_out", req.get("custody_out_iso"))
    if custody not in (None, ""):
        if not isinstance(custody, str):
            raise BadRequest("custody_out 必须是 ISO 时间 (custody_out must be an ISO 8601 time)")
        try:
            parsed = dt.datetime.fromisoformat(custody.replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadRequest(f"custody_out 不是 ISO 时间 (custody_out is not an ISO 8601 time: {custody!r})") from exc
        if parsed.tzinfo is None:
            raise BadRequest("custody_out 必须带时区 (custody_out needs a timezone, e.g. +08:00)")
        body["custody_out_iso"] = parsed.isoformat()
    else:
        body["custody_out_iso"] = None
    body.update(_risk_facts(req))
    sources = dict(HEARING_SOURCES if hearing else DEFAULT_SOURCES)
    extra = req.get("sources") or {}
    if not isinstance(extra, dict):
        raise BadRequest("sources 必须是对象 (sources must be an object name -> {kind, label})")
    for name, spec in extra.items():
        try:
            keys.safe_id(name, "source")
        except ValueError as exc:
            raise BadRequest(f"信号源名称无效 (invalid source name {name!r})") from exc
        spec = spec or {}
        if not isinstance(spec, dict):
            raise BadRequest(f"信号源 {name} 格式错误 (source {name!r} must be an object)")
        sources[name] = {"kind": str(spec.get("kind", "camera")), "label": str(spec.get("label", name))}
    body["sources"] = sources
    return body


class SessionStore:
    def __init__(self, ledger: Ledger, db_url: str, engine: Engine | None = None) -> None:
        self.ledger = ledger
        self.engine = engine or open_engine(db_url)
        self._index_db: Any = None  # evidence.index.Index on the same engine, made on first use
        ensure_schema(self.engine)  # evidence/migrations creates the token tables

    # -- blocking API: call from a thread --------------------------------------------------
    def create(self, req: dict[str, Any], created_by: str) -> tuple[str, dict[str, str]]:
        body = validate_request(req)
        body["created_by"] = created_by
        body["recorder_version"] = RECORDER_VERSION
        sid = f"{dt.datetime.now(dt.UTC):%Y%m%d}-{secrets.token_hex(6)}"
        tokens = {name: secrets.token_urlsafe(24) for name in body["sources"]}
        now = time.time_ns()
        with self.engine.begin() as conn:
            for name, tok in tokens.items():
                conn.execute(
                    tokens_table.insert().values(session_id=sid, source=name, token_sha256=_hash(tok), created_ns=now)
                )
            # inside the transaction: a session_start the ledger refuses leaves no token rows behind
            entry = self.ledger.append(sid, "session_start", body)
        self._index(entry)
        return sid, tokens

    def _index(self, entry: ManifestEntry) -> None:
        """The session's first entry into the index DB at once: searchable, and on PostgreSQL the
        transcription dispatcher on another host reads the session from there (it waits for seq 0).
        The index is a cache: a failure is logged and `tonglu reindex` catches up."""
        from tonglu.evidence.index import Index

        try:
            if self._index_db is None:
                self._index_db = Index(self.engine)
            self._index_db.apply(entry)
        except Exception as exc:
            log.bind(session=entry.session).error("index update failed for session_start: %s", exc)

    def facts(self, sid: str) -> SessionFacts:
        try:
            keys.safe_id(sid, "session id")
        except ValueError as exc:
            raise SessionNotFound(f"会话不存在 (unknown session {sid!r})") from exc
        if not self.ledger.has(sid):
            raise SessionNotFound(f"会话不存在 (unknown session {sid!r})")
        entries = self.ledger.entries(sid)
        if not entries or entries[0].kind != "session_start":
            raise SessionNotFound(f"会话不存在 (no session_start for {sid!r})")
        facts = SessionFacts(sid, entries[0], None)
        for e in entries:
            if e.kind == "session_stop":
                facts.stop = e
            elif e.kind == "segment":
                facts.segments += 1
                k = (e.body["source"], e.body["track"])
                prev = facts.last_segments.get(k)
                if prev is None or e.body["index"] > prev["index"]:
                    facts.last_segments[k] = e.body
            elif e.kind == "gap":
                facts.gaps.append(e.body)
            elif e.kind == "participant":
                facts.participant_entries.append(e.body)
            elif e.kind == "consultation":
                facts.consultation_entries.append(e.body)
        return facts

    def check_token(self, sid: str, source: str, token: str | None) -> None:
        if not token:
            raise TokenMissing("缺少信号源令牌 (missing Bearer source token)")
        with self.engine.connect() as conn:
            row = conn.execute(
                select(tokens_table.c.token_sha256).where(
                    tokens_table.c.session_id == sid, tokens_table.c.source == source
                )
            ).first()
        if row is None:
            raise SourceNotFound(f"会话 {sid} 没有信号源 {source} (session has no source {source!r})")
        if not hmac.compare_digest(row[0], _hash(token)):
            raise TokenInvalid(f"信号源令牌错误 (wrong token for source {source!r})")
        limit = self.source_limit(sid, source)
        if limit is not None and time.time_ns() >= limit[0]:
            why = LIMIT_REASONS.get(limit[1], limit[1])
            raise TokenRevoked(f"信号源令牌已失效: {why} (source token of {source!r} no longer valid)")

    def source_limit(self, sid: str, source: str) -> tuple[int, str] | None:
        """(not_after_ns, reason) when `source`'s token stops working at some time, else None."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(limits_table.c.not_after_ns, limits_table.c.reason).where(
                    limits_table.c.session_id == sid, limits_table.c.source == source
                )
            ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def limit_source(self, sid: str, source: str, not_after_ns: int, reason: str) -> None:
        """The token of `source` stops working at `not_after_ns` (an earlier limit is kept)."""
        old = self.source_limit(sid, source)
        if old is not None and old[0] <= not_after_ns:
            return
        with self.engine.begin() as conn:
            conn.execute(limits_table.delete().where(limits_table.c.session_id == sid, limits_table.c.source == source))
            conn.execute(limits_table.insert().values(session_id=sid, source=source, not_after_ns=not_after_ns,
                                                      reason=reason[:64]))

    def add_source_token(self, sid: str, source: str, not_after_ns: int | None = None, reason: str = "") -> str:
        """Issue a (new) WHIP token for a source added during the session (a remote participant);
        a previous token of that source stops working. With `not_after_ns`, the new token stops
        working then (`reason`: a key of LIMIT_REASONS); a revoked source gets no new token."""
        keys.safe_id(source, "source")
        token = secrets.token_urlsafe(24)
        now = time.time_ns()
        limit = self.source_limit(sid, source)
        if limit is not None and limit[1] == "invitation_revoked":
            raise TokenRevoked(f"信号源已被撤销: {LIMIT_REASONS[limit[1]]} (source {source!r} was revoked)")
        with self.engine.begin() as conn:
            conn.execute(limits_table.delete().where(limits_table.c.session_id == sid, limits_table.c.source == source))
            if not_after_ns is not None:
                conn.execute(limits_table.insert().values(session_id=sid, source=source, not_after_ns=not_after_ns,
                                                          reason=reason[:64] or "invitation_expired"))
            conn.execute(tokens_table.delete().where(tokens_table.c.session_id == sid, tokens_table.c.source == source))
            conn.execute(
                tokens_table.insert().values(session_id=sid, source=source, token_sha256=_hash(token), created_ns=now)
            )
        return token

    def list(self) -> list[dict[str, Any]]:
        out = []
        for sid in self.ledger.sessions():
            try:
                out.append(self.facts(sid).summary())
            except Exception:  # a session someone else is still creating, or unreadable: skip
                continue
        return out
