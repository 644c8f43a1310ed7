"""Building a `Review` outside the web app (CLI, benchmarks): local ledger, spool, site key and,
when one is configured and reachable, the object store (read-only reviewer identity)."""

from __future__ import annotations

from typing import Any

from tonglu.config import Settings
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.evidence import SpoolStoreEvidence
from tonglu.integrity.service import Review


def open_store(settings: Settings) -> Any:
    """The configured object store, or None when there is none (embedded store never started)."""
    if not settings.s3_endpoint and not (settings.store_dir / "endpoint.json").exists():
        return None
    try:
        from tonglu.evidence.objectstore import ObjectStore

        try:
            return ObjectStore.from_settings(settings, role="reviewer")
        except Exception:
            return ObjectStore.from_settings(settings)
    except Exception:
        return None


def review_from_settings(settings: Settings, *, store: Any = "auto", audit: Any = None) -> Review:
    spool = Spool(settings.spool_dir)
    key = SiteKey.load(settings.keys_dir)
    ledger = Ledger(settings.ledger_dir, spool, key)
    if store == "auto":
        store = open_store(settings)
    return Review(
        settings=settings,
        ledger=ledger,
        site_key=key,
        files=SpoolStoreEvidence(spool, store),
        audit=audit,
        config=AnalysisConfig.from_settings(settings),
    )
