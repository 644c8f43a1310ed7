"""Where segment bytes come from: the spool while pending, else the object store (evidence.reader)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tonglu.config import Settings
from tonglu.evidence.reader import EvidenceReader
from tonglu.evidence.spool import Spool

log = logging.getLogger(__name__)


def evidence_reader(settings: Settings) -> Callable[[str], bytes]:
    store = None
    try:
        from tonglu.evidence.objectstore import ObjectStore

        store = ObjectStore.from_settings(settings, role="recorder")
    except Exception as exc:  # no store configured or not started yet: the spool alone is read
        log.info("transcription reads the spool only (%s)", exc)
    reader = EvidenceReader(Spool(settings.spool_dir), store)
    return reader.read
