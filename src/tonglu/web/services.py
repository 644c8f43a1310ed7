"""The long-lived objects the web app works with, built once by `tonglu up` (or a test).

Fields typed `Any` are filled by the area that owns them; each area documents its own type:
- store: storage.objectstore.ObjectStore
- index: storage.index.Index
- recorder: recorder.router.RecorderRouter
- transcripts: transcribe.service.TranscriptService
- audit: web.audit.AuditLog
- accounts: web.accounts.Accounts
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tonglu.config import Settings
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool


@dataclass
class Services:
    settings: Settings
    spool: Spool
    ledger: Ledger
    site_key: SiteKey
    store: Any = None
    index: Any = None
    recorder: Any = None
    transcripts: Any = None
    audit: Any = None
    accounts: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def local(cls, settings: Settings) -> Services:
        """The parts that need nothing but the data directory."""
        spool = Spool(settings.spool_dir)
        key = SiteKey.load_or_create(settings.keys_dir)
        return cls(settings=settings, spool=spool, ledger=Ledger(settings.ledger_dir, spool, key), site_key=key)
