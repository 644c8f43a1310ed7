"""Index DB updates for segment and gap entries, off the seal path and in batches.

The index is a query cache (`evidence.index`, rebuilt from the store by `tonglu reindex`). Applying
one segment entry costs about seven statements; a recorder core seals 16 segments a second at 64
streams, and that was the largest share of its sealing CPU. Here the sealer only queues the entry;
one low-priority thread applies what gathered every `interval_s` with `Index.apply_many` (a few
statements per batch). Other entries (session start and stop, participants, ...) are applied at
once, after everything queued before them (`flush`), and `RecorderContext.drain` flushes too, so a
stopped session's index is complete when the stop returns. A failed batch is logged and the
recording goes on: the ledger and the store hold the truth; `tonglu reindex` repairs the cache.
"""

from __future__ import annotations

import threading
from typing import Any

from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.recorder.priority import INDEX_NICE, lower_this_thread

log = context_logger(__name__)

DEFERRED_KINDS = frozenset({"segment", "gap"})


class IndexFeed:
    def __init__(self, index: Any, interval_s: float = 0.5) -> None:
        self.index = index
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._applied_cond = threading.Condition(self._lock)
        self._queue: list[ManifestEntry] = []
        self._queued = 0
        self._applied = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed_batches = 0

    def put(self, entry: ManifestEntry) -> None:
        with self._lock:
            self._queue.append(entry)
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="index-feed", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float = 60.0) -> bool:
        """Block until every entry queued before this call was applied (or failed); False on timeout."""
        with self._lock:
            target = self._queued
            if self._applied >= target:
                return True
        self._wake.set()
        with self._lock:
            return self._applied_cond.wait_for(lambda: self._applied >= target, timeout_s)

    def _run(self) -> None:
        lower_this_thread(INDEX_NICE)
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            with self._lock:
                batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                self.index.apply_many(batch)
            except Exception:
                self.failed_batches += 1
                log.exception(
                    "index DB update of %d entries failed (the ledger and the store have them; reindex repairs)",
                    len(batch),
                )
            with self._lock:
                self._applied += len(batch)
                self._applied_cond.notify_all()
