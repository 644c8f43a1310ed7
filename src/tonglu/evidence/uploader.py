"""Moves spooled items into the object store, oldest first, and forgets them only once stored.

    up = Uploader(spool, store, settings, ledger=ledger)
    up.recover()                 # finish half-spooled items, re-spool ledger tails
    report = up.drain_once()     # one pass over what is pending now
    up.run(stop_event)           # loop until stop_event is set (a thread, or `tonglu store upload`)

Per item: `spool.check` (corrupt -> quarantined, logged, never deleted), then `put_if_absent`
with COMPLIANCE retention for evidence items (none for work items), then `spool.confirm`.
Retention follows the session's case category and a session under legal hold gets its objects
created with the hold ON (both read from the session's manifest in the ledger, see
`evidence.retention`); after each PUT the hold state is read again and the new version
corrected if a hold was placed or lifted meanwhile. An
identical object already in the store (a retry after a crash) counts as stored, so every key
arrives exactly once. When the store is unavailable the pass stops and `run` retries with
exponential backoff, forever: nothing is dropped. A different object under the same key
(`ObjectConflict`) is quarantined and logged as an error.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tonglu.evidence.errors import (
    ObjectConflict,
    ObjectNotFound,
    SpoolCorrupt,
    StorageError,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
)
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.retention import LockState, RetentionPolicy
from tonglu.evidence.spool import EVIDENCE, Spool, SpoolItem

if TYPE_CHECKING:
    from tonglu.config import Settings
    from tonglu.evidence.ledger import Ledger

log = context_logger(__name__)


@dataclass
class UploadReport:
    uploaded: int = 0  # newly created in the store
    already_present: int = 0  # identical object was already there (confirmed)
    quarantined: int = 0
    pending_left: int = 0  # items not stored on this pass (store unavailable / refused)
    skipped: int = 0  # not tried on this pass because the store had just failed
    bytes: int = 0
    seal_latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unavailable: str | None = None  # last StoreUnavailable/StoreAuthError message, if any
    auth_failed: bool = False

    @property
    def confirmed(self) -> int:
        return self.uploaded + self.already_present


def _ids_of(key: str) -> dict[str, Any]:
    """session/track/segment ids from an object key, for log lines."""
    parts = key.split("/")
    ids: dict[str, Any] = {}
    if len(parts) >= 2 and parts[0] == "sessions":
        ids["session"] = parts[1]
    if len(parts) >= 6 and parts[2] == "segments":
        ids["track"] = f"{parts[3]}/{parts[4]}"
        ids["segment"] = parts[5].split(".")[0]
    return ids


class Uploader:
    def __init__(
        self,
        spool: Spool,
        store: ObjectStore,
        settings: Settings,
        *,
        ledger: Ledger | None = None,
        threads: int = 4,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 10.0,
        poll_interval_s: float = 0.05,
        on_confirmed: Callable[[SpoolItem, int], None] | None = None,
    ) -> None:
        self.spool = spool
        self.store = store
        self.settings = settings
        self.ledger = ledger
        self.threads = max(1, threads)
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.poll_interval_s = poll_interval_s
        self.on_confirmed = on_confirmed
        self.latencies_s: deque[float] = deque(maxlen=100_000)
        self.totals = UploadReport()  # what `run` did so far (latencies are in `latencies_s`)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.policy = RetentionPolicy.from_settings(settings)
        self._lock_states: dict[str, LockState] = {}
        self._lock_states_lock = threading.Lock()

    def recover(self) -> None:
        """Start-up: complete interrupted spool writes, re-spool each ledger session's tail."""
        n = self.spool.recover()
        if n:
            log.info("spool recovery completed %d item(s)", n)
        if self.ledger is not None:
            for sid in self.ledger.sessions():
                self.ledger.recover(sid)

    # -- one item ------------------------------------------------------------------------------
    def _lock_state(self, item: SpoolItem) -> LockState | None:
        """The hold/category state of the item's session, from the ledger (None: not a session's
        evidence object, or no ledger here)."""
        if item.bucket != EVIDENCE or self.ledger is None:
            return None
        sid = _ids_of(item.key).get("session")
        if not sid or not self.ledger.has(sid):
            return None
        try:
            entries = self.ledger.entries(sid)
        except StorageError as exc:
            log.error("cannot read the ledger of %s for its hold/category: %s", sid, exc)
            return None
        with self._lock_states_lock:
            state = self._lock_states.setdefault(sid, LockState())
            if len(entries) > state.entries_seen:
                state.extend(entries[state.entries_seen:])
            return state

    def _recheck_hold(self, item: SpoolItem, held: bool, version_id: str | None, bucket: str) -> None:
        """A hold placed or lifted while this PUT was in flight (its bulk pass may have listed the
        session's versions before this one existed): set the new version as the manifest says."""
        now = self._lock_state(item)
        if now is None or now.held == held:
            return
        try:
            self.store.set_legal_hold(item.key, now.held, version_id=version_id, bucket=bucket)
        except StoreError as exc:
            log.error("legal hold %s on %s failed (run `tonglu hold sync`): %s",
                      "ON" if now.held else "OFF", item.key, exc)

    def _retain_until(self, item: SpoolItem, state: LockState | None = None) -> datetime | None:
        if item.bucket != EVIDENCE:
            return None
        now = datetime.now(UTC)
        if state is None:
            return now + timedelta(seconds=self.settings.object_lock_retention_seconds)
        return self.policy.retain_until(state.category, now)

    def _already_stored(self, item: SpoolItem) -> bool:
        bucket = self.store.evidence_bucket if item.bucket == EVIDENCE else self.store.work_bucket
        try:
            info = self.store.stat(item.key, bucket=bucket)
        except ObjectNotFound:
            return False
        return info.sha256 == item.sha256 and info.size == item.size

    def _one(self, item: SpoolItem, report: UploadReport, abort: threading.Event) -> None:
        if abort.is_set():
            with self._lock:
                report.pending_left += 1
                report.skipped += 1
            return
        ilog = log.bind(**_ids_of(item.key))
        try:
            self.spool.check(item)
        except SpoolCorrupt as exc:
            try:
                stored = not item.data_path.exists() and self._already_stored(item)
            except (StoreUnavailable, StoreAuthError) as store_exc:
                abort.set()
                with self._lock:
                    report.pending_left += 1
                    report.unavailable = str(store_exc)
                return
            if stored:
                # A crash inside `spool.confirm` (data unlinked, sidecar not yet): finish the confirm.
                self.spool.confirm(item)
                with self._lock:
                    report.already_present += 1
                return
            where = self.spool.quarantine(item, str(exc))
            msg = f"corrupt spool file quarantined to {where}: {exc}"
            ilog.error(msg)
            with self._lock:
                report.quarantined += 1
                report.errors.append(msg)
            return
        bucket = self.store.evidence_bucket if item.bucket == EVIDENCE else self.store.work_bucket
        try:
            state = self._lock_state(item)
            held = state is not None and state.held
            result = self.store.put_if_absent(
                item.key,
                item.data_path,
                item.sha256,
                item.content_type,
                self._retain_until(item, state),
                bucket=bucket,
                legal_hold=held,
            )
            if result.created and state is not None:
                self._recheck_hold(item, held, result.version_id, bucket)
        except ObjectConflict as exc:
            where = self.spool.quarantine(item, f"object store conflict: {exc}")
            msg = f"{exc}; local copy kept in {where}"
            ilog.error(msg)
            with self._lock:
                report.quarantined += 1
                report.errors.append(msg)
            return
        except (StoreUnavailable, StoreAuthError) as exc:
            abort.set()
            with self._lock:
                report.pending_left += 1
                report.unavailable = str(exc)
                report.auth_failed = report.auth_failed or isinstance(exc, StoreAuthError)
            return
        except StoreError as exc:
            ilog.error("upload of %s refused, kept in spool: %s", item.key, exc)
            with self._lock:
                report.pending_left += 1
                report.errors.append(str(exc))
            return
        except FileNotFoundError:
            # Confirmed by a concurrent uploader between check and read: nothing to do.
            return
        self.spool.confirm(item)
        now = time.time_ns()
        latency = (now - item.created_ns) / 1e9
        with self._lock:
            if result.created:
                report.uploaded += 1
            else:
                report.already_present += 1
            report.bytes += item.size
            report.seal_latencies_s.append(latency)
            self.latencies_s.append(latency)
        ilog.debug(
            "stored %s (%d bytes, %s)", item.key, item.size, "new" if result.created else "already there"
        )
        if self.on_confirmed is not None:
            self.on_confirmed(item, now)

    # -- passes --------------------------------------------------------------------------------
    def drain_once(self) -> UploadReport:
        """Try every item pending now, in order. Stops early (leaving items spooled) if the store is down."""
        report = UploadReport()
        items = self.spool.pending()
        if not items:
            return report
        abort = threading.Event()
        if self.threads == 1 or len(items) == 1:
            for item in items:
                self._one(item, report, abort)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tonglu-upload")
            # Start uploads in spool order; at most `threads` run at once.
            futures = [self._pool.submit(self._one, item, report, abort) for item in items]
            for f in futures:
                f.result()
        if report.unavailable:
            log.warning(
                "object store unavailable, %d item(s) stay spooled: %s",
                report.pending_left,
                report.unavailable,
            )
        return report

    def drain(self, stop: threading.Event | None = None, max_wait_s: float | None = None) -> UploadReport:
        """Repeat passes with backoff until the spool is empty (or `max_wait_s` of failures)."""
        total = UploadReport()
        delay = self.backoff_initial_s
        failing_since: float | None = None
        while stop is None or not stop.is_set():
            r = self.drain_once()
            total.uploaded += r.uploaded
            total.already_present += r.already_present
            total.quarantined += r.quarantined
            total.bytes += r.bytes
            total.seal_latencies_s += r.seal_latencies_s
            total.errors += r.errors
            total.pending_left = r.pending_left
            total.unavailable = r.unavailable
            total.auth_failed = r.auth_failed
            if not r.unavailable:
                if r.pending_left == 0 or r.confirmed == 0:
                    return total
                delay, failing_since = self.backoff_initial_s, None
                continue
            now = time.monotonic()
            failing_since = failing_since or now
            if max_wait_s is not None and now - failing_since >= max_wait_s:
                return total
            self._sleep(stop, delay)
            delay = min(self.backoff_max_s, delay * 2)
        return total

    def _one_report(self, item: SpoolItem, abort: threading.Event) -> UploadReport:
        r = UploadReport()
        self._one(item, r, abort)
        return r

    def run(self, stop: threading.Event) -> None:
        """Upload until `stop` is set; never gives up on an item.

        Pipelined: new spool items are started as soon as they appear (at most `threads` at once,
        in spool order), without waiting for a whole pass. On StoreUnavailable/StoreAuthError the
        in-flight items are let finish, then everything waits with exponential backoff.
        """
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="tonglu-upload")
        inflight: dict[str, Future[UploadReport]] = {}
        retry_at: dict[str, float] = {}  # items a store refused (not unavailable): retried slowly
        abort = threading.Event()
        delay = self.backoff_initial_s
        while not stop.is_set():
            failure: UploadReport | None = None
            for name in [n for n, f in inflight.items() if f.done()]:
                r = inflight.pop(name).result()
                self._add(self.totals, r)
                if r.unavailable:
                    failure = r
                elif r.pending_left > r.skipped:
                    retry_at[name] = time.monotonic() + self.backoff_max_s
                else:
                    retry_at.pop(name, None)
                if r.confirmed:
                    delay = self.backoff_initial_s
            if failure is not None or abort.is_set():
                abort.set()
                for f in inflight.values():
                    self._add(self.totals, f.result())
                inflight.clear()
                if failure is not None and failure.auth_failed:
                    log.error(
                        "object store refuses our credentials; items stay spooled: %s", failure.unavailable
                    )
                elif failure is not None:
                    log.warning("object store unavailable, items stay spooled: %s", failure.unavailable)
                self._sleep(stop, delay)
                delay = min(self.backoff_max_s, delay * 2)
                abort = threading.Event()
                continue
            try:
                items = self.spool.pending()
            except StoreError as exc:  # keep everything, retry slowly
                log.error("cannot list the spool, retrying: %s", exc)
                self._sleep(stop, delay)
                continue
            now = time.monotonic()
            for item in items:
                if item.name in inflight or retry_at.get(item.name, 0.0) > now:
                    continue
                inflight[item.name] = self._pool.submit(self._one_report, item, abort)
            self._sleep(stop, self.poll_interval_s)
        abort.set()
        for f in inflight.values():
            self._add(self.totals, f.result())

    @staticmethod
    def _add(total: UploadReport, r: UploadReport) -> None:
        total.uploaded += r.uploaded
        total.already_present += r.already_present
        total.quarantined += r.quarantined
        total.bytes += r.bytes
        total.errors += r.errors

    @staticmethod
    def _sleep(stop: threading.Event | None, seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        else:
            stop.wait(seconds)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
