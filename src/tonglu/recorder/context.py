"""What a recording needs from the evidence store, shared by all sessions of one process."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tonglu.config import Settings
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.spool import Spool
from tonglu.recorder.indexfeed import DEFERRED_KINDS, IndexFeed
from tonglu.recorder.priority import SEAL_NICE, lower_this_thread

_background: set[asyncio.Future[Any]] = set()


def spawn(coro: Any) -> None:
    """Run a coroutine in the background, keeping a reference until it is done."""
    fut = asyncio.ensure_future(coro)
    _background.add(fut)
    fut.add_done_callback(_background.discard)


@dataclass
class RecorderContext:
    settings: Settings
    spool: Spool
    ledger: Ledger
    index: Any = None  # evidence.index.Index
    relay: Any = None  # recorder.relay.Relay: live fan-out to WHEP viewers (set by LocalRecorder)
    sealer: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="seal", initializer=lower_this_thread, initargs=(SEAL_NICE,)
        )
    )
    _pending: set[Future[Any]] = field(default_factory=set)
    index_feed: IndexFeed | None = field(init=False, default=None)
    _plock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.index_feed = IndexFeed(self.index) if self.index is not None else None

    def append(self, session: str, kind: str, body: dict[str, Any], now_ns: int | None = None,
               while_recording: bool = False) -> ManifestEntry:
        """Blocking (fsync): call from a thread."""
        entry = self.ledger.append(session, kind, body, now_ns, while_recording=while_recording)
        feed = self.index_feed
        if feed is not None:
            if kind in DEFERRED_KINDS:
                feed.put(entry)  # applied in a batch within `feed.interval_s`
            else:
                feed.flush()
                self.index.apply(entry)
        return entry

    async def append_async(self, session: str, kind: str, body: dict[str, Any]) -> ManifestEntry:
        fut = self.submit(self.append, session, kind, body)
        return await asyncio.wrap_future(fut)

    def submit(self, fn: Any, *args: Any) -> Future[Any]:
        fut = self.sealer.submit(fn, *args)
        with self._plock:
            self._pending.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut: Future[Any]) -> None:
        with self._plock:
            self._pending.discard(fut)

    async def drain(self) -> None:
        """Wait until every seal and ledger write submitted so far is done, and indexed."""
        while True:
            with self._plock:
                pending = list(self._pending)
            if not pending:
                break
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)
        if self.index_feed is not None:
            await asyncio.to_thread(self.index_feed.flush)
