"""The long-lived parts the web app works with, built once at startup by `tonglu.app` (or a test)
and handed to every route through the FastAPI dependencies in `web/deps.py`.

`Services.local` builds what needs nothing but the data directory and the index database (spool,
ledger, site key, DB engine, accounts, audit trail, source-token store). The parts that need a
running server or worker processes (object store, index cache, recorder router, transcription
service, evidence reader) are attached by `tonglu.app` before the web app starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from tonglu.config import Settings
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.recorder.store import SessionStore
from tonglu.web import tables
from tonglu.web.accounts import Accounts
from tonglu.web.audit import AuditLog
from tonglu.web.risk import RiskMonitor

if TYPE_CHECKING:
    from tonglu.evidence.index import Index
    from tonglu.evidence.objectstore import ObjectStore
    from tonglu.evidence.reader import EvidenceReader
    from tonglu.recorder.api import RecorderAPI
    from tonglu.transcribe.service import TranscriptService


@dataclass
class Services:
    settings: Settings
    spool: Spool
    ledger: Ledger
    site_key: SiteKey
    engine: Engine
    accounts: Accounts
    audit: AuditLog
    capture_tokens: SessionStore  # source tokens, kept hashed in the index DB
    store: ObjectStore | None = None
    index: Index | None = None
    reader: EvidenceReader | None = None
    recorder: RecorderAPI | None = None
    transcripts: TranscriptService | None = None
    # ownership facts (created_by, interviewers, room) of each session's `session_start`, which never
    # changes: read once per process by the guard (web/guard.py)
    session_owners: dict[str, dict[str, Any]] = field(default_factory=dict)
    risk: RiskMonitor | None = None  # risk rules timer (its task starts with the web app)
    jobs: Any = None  # web.jobs.JobService: background jobs (working copies, exports, clips)

    @classmethod
    def local(cls, settings: Settings) -> Services:
        """The parts that need nothing but the data directory and the index database."""
        spool = Spool(settings.spool_dir)
        key = SiteKey.load_or_create(settings.keys_dir)
        ledger = Ledger(settings.ledger_dir, spool, key)
        engine = tables.engine_for(settings.db_url)
        audit = AuditLog(engine, settings.data_dir / "audit", spool, site_key=key)  # signs the WORM batches
        return cls(
            settings=settings,
            spool=spool,
            ledger=ledger,
            site_key=key,
            engine=engine,
            accounts=Accounts(engine),
            audit=audit,
            capture_tokens=SessionStore(ledger, settings.db_url, engine=engine),
            risk=RiskMonitor.from_settings(settings, ledger, audit),
        )
