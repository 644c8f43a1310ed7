"""Legal holds and retention by case category, applied to a session's objects in the store.

    holds = Holds(ledger, store, RetentionPolicy.from_settings(settings))
    hold, applied = holds.place(sid, reason="排非申请", case_reference="(2026)京01刑初1号", by="sup1")
    req = holds.request_lift(sid, hold.hold_id, reason="判决生效", by="sup1")
    holds.approve_lift(sid, req.request_id, by="admin2")      # a different person, or TwoPersonRule
    holds.set_category(sid, "homicide", by="sup1")             # extends retention, never shortens
    holds.report()                                             # what expires when

Order of every step: the manifest entry is appended first (the ledger is the commit point and
the uploader reads the lock state from it, so objects uploaded from then on are created with the
hold ON and the category's retention), then every stored version of the session (segments,
manifest entries, checkpoints, transcripts: all of `sessions/{sid}/` in the evidence bucket) is
changed in a thread pool, in batches. The uploader re-reads the state after each PUT, so an
object in flight while a hold is placed or lifted is corrected as well.

If the store fails part-way the answer says how many objects were done (`ApplyReport`); the
manifest already says what must be, and `sync` (idempotent) applies it again.

Identity: these calls need PutObjectLegalHold and PutObjectRetention. The embedded store's
`recorder` identity has both (evidence/seaweed.py); S3 does not separate "hold ON" from "hold
OFF", so the two-person rule for lifting is the application's (checked here, audited, and
written into the manifest), not the store's.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tonglu.evidence import keys
from tonglu.evidence.errors import (
    ConfigError,
    HoldNotFound,
    ObjectNotFound,
    RetentionShortening,
    StoreError,
)
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.objectstore import ObjectInfo, ObjectStore, VersionInfo
from tonglu.evidence.retention import DEFAULT_CATEGORY, Hold, LiftRequest, LockState, RetentionPolicy

BATCH = 64


@dataclass
class ApplyReport:
    """What one pass over a session's stored versions did."""

    total: int = 0
    changed: int = 0  # set (a hold is set on every version, whatever it was)
    unchanged: int = 0  # already as wanted (retention already as long)
    failed: list[str] = field(default_factory=list)  # "key@version: error"

    @property
    def complete(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {"objects": self.total, "changed": self.changed, "unchanged": self.unchanged,
                "failed": len(self.failed), "errors": self.failed[:20], "complete": self.complete}


@dataclass
class ObjectsSummary:
    count: int = 0
    held: int = 0
    earliest_until: datetime | None = None
    latest_until: datetime | None = None
    unreadable: int = 0

    def to_json(self) -> dict[str, Any]:
        def iso(d: datetime | None) -> str | None:
            return d.isoformat().replace("+00:00", "Z") if d else None

        return {"objects": self.count, "objects_held": self.held, "earliest_retain_until": iso(self.earliest_until),
                "latest_retain_until": iso(self.latest_until), "unreadable": self.unreadable}


def _iso_ns(time_ns: int, plus_s: int) -> str:
    when = datetime.fromtimestamp(time_ns / 1e9, tz=UTC) + timedelta(seconds=plus_s)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


class Holds:
    def __init__(self, ledger: Ledger, store: ObjectStore | None, policy: RetentionPolicy, *,
                 threads: int = 8, batch: int = BATCH) -> None:
        self.ledger = ledger
        self.store = store
        self.policy = policy
        self.threads = max(1, threads)
        self.batch = max(1, batch)

    # -- state -----------------------------------------------------------------------------------
    def _check_session(self, sid: str) -> None:
        try:
            keys.safe_id(sid, "session id")
        except ValueError as exc:
            raise HoldNotFound(f"讯问记录不存在 (no session {sid!r})") from exc
        if not self.ledger.has(sid):
            raise HoldNotFound(f"讯问记录不存在 (no session {sid!r})")

    def state(self, sid: str) -> LockState:
        self._check_session(sid)
        entries = self.ledger.entries(sid)
        if not entries or entries[0].kind != "session_start":
            raise HoldNotFound(f"讯问记录不存在 (no session_start for {sid!r})")
        return LockState.from_entries(entries)

    @contextmanager
    def _exclusive(self, sid: str) -> Iterator[LockState]:
        """Check-then-append of hold steps is serialised per session (also across processes)."""
        self._check_session(sid)
        path = self.ledger.root / sid / "holds.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield self.state(sid)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- legal hold ------------------------------------------------------------------------------
    def place(self, sid: str, *, reason: str, case_reference: str, by: str, role: str = "",
              now_ns: int | None = None) -> tuple[Hold, bool, ApplyReport]:
        """Place a hold (returns it, whether it is new, and the store pass). Placing again with
        the same case reference returns the active hold and applies it to the store again."""
        self._store()  # no store configured: refuse before recording anything
        with self._exclusive(sid) as st:
            hold = st.active_hold_for(case_reference)
            new = hold is None
            if hold is None:
                body = {"hold_id": _new_id("hold"), "reason": reason, "case_reference": case_reference,
                        "by": by, "role": role}
                entry = self.ledger.append(sid, "legal_hold", body, now_ns=now_ns)
                st.apply(entry.seq, entry.kind, entry.body, entry.time_ns)
                hold = st.holds[body["hold_id"]]
        return hold, new, self.apply_hold(sid, True)

    def request_lift(self, sid: str, *, hold_id: str | None, reason: str, by: str, role: str = "",
                     now_ns: int | None = None) -> LiftRequest:
        with self._exclusive(sid) as st:
            hold = st.check_lift_request(hold_id)
            body = {"action": "request", "request_id": _new_id("lift"), "hold_id": hold.hold_id,
                    "reason": reason, "by": by, "role": role}
            entry = self.ledger.append(sid, "legal_hold_lift", body, now_ns=now_ns)
            st.apply(entry.seq, entry.kind, entry.body, entry.time_ns)
            return st.requests[body["request_id"]]

    def approve_lift(self, sid: str, request_id: str, *, by: str, role: str = "",
                     now_ns: int | None = None) -> tuple[LiftRequest, bool, ApplyReport | None]:
        """Approve a pending lift request (TwoPersonRule if `by` requested it). Returns the request,
        whether the session is still held by other holds, and the store pass (None while held)."""
        self._store()
        with self._exclusive(sid) as st:
            req = st.check_approval(request_id, by)
            body = {"action": "approve", "request_id": req.request_id, "hold_id": req.hold_id,
                    "requested_by": req.requested_by, "by": by, "role": role}
            entry = self.ledger.append(sid, "legal_hold_lift", body, now_ns=now_ns)
            st.apply(entry.seq, entry.kind, entry.body, entry.time_ns)
            still_held = st.held
        return req, still_held, None if still_held else self.apply_hold(sid, False)

    def sync(self, sid: str) -> tuple[LockState, ApplyReport, ApplyReport]:
        """Apply what the manifest says again (after a store failure): hold state and retention."""
        st = self.state(sid)
        held = self.apply_hold(sid, st.held)
        ret = self.extend_retention(sid, st.category)
        return st, held, ret

    # -- retention by category -------------------------------------------------------------------
    def set_category(self, sid: str, category: str, *, by: str, role: str = "", reason: str = "",
                     now_ns: int | None = None) -> ApplyReport:
        """Set or change the session's case category: retention of every stored version is
        extended to (its upload time + the category's retention). A category with a shorter
        retention than the current one is refused (RetentionShortening): COMPLIANCE retention
        can only be extended."""
        new = self.policy.rule(category)
        self._store()
        with self._exclusive(sid) as st:
            current = self.policy.effective(st.category)
            if new.seconds < current.seconds:
                raise RetentionShortening(
                    f"保存期限只能延长不能缩短：{current.label}（{current.describe()}）不能改为 "
                    f"{new.label}（{new.describe()}）(COMPLIANCE retention can only be extended: "
                    f"{st.category or DEFAULT_CATEGORY!r} -> {category!r} would shorten it)"
                )
            if st.category != category:
                self.ledger.append(sid, "retention", {
                    "category": category, "previous_category": st.category, "retention_seconds": new.seconds,
                    "permanent": new.permanent, "by": by, "role": role, "reason": reason,
                }, now_ns=now_ns)
        return self.extend_retention(sid, category)

    # -- the store -------------------------------------------------------------------------------
    def _store(self) -> ObjectStore:
        if self.store is None:
            raise ConfigError("未配置对象存储 (no object store configured: holds cannot be applied)")
        return self.store

    def versions(self, sid: str) -> list[VersionInfo]:
        store = self._store()
        return [v for v in store.versions(keys.session_prefix(sid)) if not v.delete_marker]

    def _each(self, sid: str, fn: Callable[[ObjectStore, VersionInfo], bool]) -> ApplyReport:
        """Run `fn` (True: changed) on every stored version, `threads` at once, in batches."""
        store = self._store()
        report = ApplyReport()
        try:
            versions = self.versions(sid)
        except StoreError as exc:  # the manifest already says what must be: report, `sync` later
            report.failed.append(f"LIST sessions/{sid}/: {exc}")
            return report
        report.total = len(versions)

        def one(v: VersionInfo) -> tuple[bool | None, str]:
            try:
                return fn(store, v), ""
            except StoreError as exc:
                return None, f"{v.key}@{v.version_id}: {exc}"

        with ThreadPoolExecutor(min(self.threads, max(1, len(versions))), thread_name_prefix="tonglu-hold") as pool:
            for start in range(0, len(versions), self.batch):
                for changed, err in pool.map(one, versions[start:start + self.batch]):
                    if changed is None:
                        report.failed.append(err)
                    elif changed:
                        report.changed += 1
                    else:
                        report.unchanged += 1
        return report

    def apply_hold(self, sid: str, on: bool) -> ApplyReport:
        """Turn the legal hold ON (or OFF) on every stored version of the session."""

        def fn(store: ObjectStore, v: VersionInfo) -> bool:
            # Set without reading first (idempotent): one request per version, not two.
            store.set_legal_hold(v.key, on, version_id=v.version_id)
            return True

        return self._each(sid, fn)

    def extend_retention(self, sid: str, category: str | None) -> ApplyReport:
        """Retain every stored version at least until its upload time + the category's retention."""
        rule = self.policy.effective(category)

        def fn(store: ObjectStore, v: VersionInfo) -> bool:
            info = store.stat(v.key, version_id=v.version_id)
            base = info.last_modified or datetime.now(UTC)
            want = base + timedelta(seconds=rule.seconds)
            if info.retain_until is not None and info.retain_until >= want - timedelta(seconds=1):
                return False  # already as long (or longer: never shortened)
            store.set_retention(v.key, want, version_id=v.version_id)
            return True

        return self._each(sid, fn)

    def objects(self, sid: str) -> ObjectsSummary:
        """Count, holds and retain-until range of the session's stored versions (one HEAD each)."""
        store = self._store()
        summary = ObjectsSummary()
        versions = self.versions(sid)

        def one(v: VersionInfo) -> ObjectInfo | None:
            try:
                return store.stat(v.key, version_id=v.version_id)
            except (ObjectNotFound, StoreError):
                return None

        with ThreadPoolExecutor(min(self.threads, max(1, len(versions))), thread_name_prefix="tonglu-hold") as pool:
            for info in pool.map(one, versions):
                if info is None:
                    summary.unreadable += 1
                    continue
                summary.count += 1
                summary.held += int(info.legal_hold)
                if info.retain_until is not None:
                    if summary.earliest_until is None or info.retain_until < summary.earliest_until:
                        summary.earliest_until = info.retain_until
                    if summary.latest_until is None or info.retain_until > summary.latest_until:
                        summary.latest_until = info.retain_until
        return summary

    # -- report ----------------------------------------------------------------------------------
    def report(self, sids: list[str] | None = None, *, with_store: bool = True) -> list[dict[str, Any]]:
        """Per session: category, retention, hold state, stored objects and when they expire,
        sorted by the earliest expiry (sessions under hold last: nothing of theirs expires)."""
        rows = []
        for sid in sids if sids is not None else self.ledger.sessions():
            try:
                self._check_session(sid)
                entries = self.ledger.entries(sid)
            except HoldNotFound:
                continue
            if not entries or entries[0].kind != "session_start":
                continue
            st = LockState.from_entries(entries)
            start = entries[0]
            rule = self.policy.effective(st.category)
            row: dict[str, Any] = {
                "session": sid, "case_number": start.body.get("case_number"), "room": start.body.get("room"),
                "started_ns": start.time_ns, "category": rule.name, "category_label": rule.label,
                "category_known": rule.name in self.policy.rules, "retention_seconds": rule.seconds,
                "permanent": rule.permanent, "retention": rule.describe(), "held": st.held,
                "active_holds": [h.to_json() for h in st.active_holds],
                "pending_lift_requests": [r.to_json() for r in st.pending_requests],
                # From the manifest: objects are retained from their upload (≈ their entry's time).
                "expected_earliest_retain_until": _iso_ns(start.time_ns, rule.seconds),
                "expected_latest_retain_until": _iso_ns(entries[-1].time_ns, rule.seconds),
                "store_checked": False,
            }
            if with_store and self.store is not None:
                try:
                    row.update(self.objects(sid).to_json())
                    row["store_checked"] = True
                except StoreError as exc:
                    row["store_error"] = str(exc)
            rows.append(row)

        def order(r: dict[str, Any]) -> tuple[int, str, str]:
            first = r.get("earliest_retain_until") or r["expected_earliest_retain_until"]
            return (1 if r["held"] else 0, first, r["session"])

        return sorted(rows, key=order)
