"""The server-side risk timer: evaluates the risk rules over every running session once a tick,
writes each new alert as an `alert` manifest entry and pushes it to the pages listening (SSE).

The timer is an asyncio task of the web process (started with the app, see
`web/routes/alerts.py`); each tick's ledger and audit-trail reads and the appends run in a worker
thread, never on the event loop. The pure part (facts, rules, dedup) is `tonglu.integrity.risk`.

`offset_ns` shifts the engine's clock (tests: reach a 12-hour limit without waiting 12 hours);
it never changes the time stamps of the entries written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tonglu.evidence.errors import ManifestError
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.integrity.risk.engine import pending
from tonglu.integrity.risk.facts import LiveView, SessionFacts
from tonglu.integrity.risk.ruleset import RuleSet, load_rules
from tonglu.web.audit import AuditLog

log = logging.getLogger(__name__)
QUEUE_SIZE = 256


def alert_event(sid: str, entry: ManifestEntry, acks: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    body = dict(entry.body)
    ack = (acks or {}).get(str(body.get("alert_id")))
    return {"session": sid, "seq": entry.seq, "time_ns": entry.time_ns, **body, "ack": ack}


def ack_view(entry: ManifestEntry) -> dict[str, Any]:
    return {"seq": entry.seq, "time_ns": entry.time_ns, **entry.body}


def session_alerts(ledger: Ledger, sid: str) -> list[dict[str, Any]]:
    """The session's alerts in manifest order, each with its acknowledgement (or None). Blocking."""
    entries = ledger.entries(sid)
    acks = {str(e.body.get("alert_id")): ack_view(e) for e in entries if e.kind == "alert_ack"}
    return [alert_event(sid, e, acks) for e in entries if e.kind == "alert"]


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


@dataclass
class RiskMonitor:
    ledger: Ledger
    audit: AuditLog | None
    ruleset: RuleSet
    tick_s: float = 0.5  # half the 2 s the console may wait for an alert
    clock: Callable[[], int] = time.time_ns
    offset_ns: int = 0
    _facts: dict[str, SessionFacts] = field(default_factory=dict)
    _audit_seq: dict[str, tuple[int, int]] = field(default_factory=dict)  # sid -> (last seq, its time)
    _stopped: set[str] = field(default_factory=set)
    _failing: set[str] = field(default_factory=set)
    _subscribers: set[asyncio.Queue[dict[str, Any]]] = field(default_factory=set)
    _task: asyncio.Task[None] | None = None
    ticks: int = 0

    @classmethod
    def from_settings(cls, settings: Any, ledger: Ledger, audit: AuditLog | None) -> RiskMonitor:
        """Loads the rule file (a site's `TONGLU_RISK_RULES` or the shipped default): a bad file
        raises `RuleFileError` naming the file and line, so the server does not start."""
        return cls(ledger, audit, load_rules(settings.risk_rules))

    def now_ns(self) -> int:
        return self.clock() + self.offset_ns

    # -- the tick (blocking: runs in a worker thread) -------------------------------------------
    def active_sessions(self) -> list[str]:
        return sorted(sid for sid, f in list(self._facts.items()) if f.recording)

    def tick(self) -> list[dict[str, Any]]:
        """Evaluate every running session once; append and return the new alerts (as events)."""
        out: list[dict[str, Any]] = []
        for sid in self.ledger.sessions():
            if sid in self._stopped:
                continue
            try:
                out += self._tick_session(sid)
                self._failing.discard(sid)
            except Exception:  # one unreadable session never stops the others' alarms
                if sid not in self._failing:  # logged once, retried every tick
                    self._failing.add(sid)
                    log.exception("risk rules: session %s", sid)
        self.ticks += 1
        return out

    def _tick_session(self, sid: str) -> list[dict[str, Any]]:
        facts = self._facts.get(sid)
        if facts is None:
            facts = self._facts[sid] = SessionFacts(sid)
        entries = self.ledger.entries(sid)
        facts.feed(entries[facts.entries_seen:])
        if facts.start_ns is None:
            return []
        if not facts.recording:
            # Stopped: alerts are live safeguards, never appended after the final digest was
            # signed (what was left unexplained, the integrity report still lists).
            self._stopped.add(sid)
            self._facts.pop(sid, None)
            return []
        self._live_views(sid, facts)
        now = self.now_ns()
        events = []
        for alert in pending(self.ruleset, facts, now):
            try:
                body = {**alert.body(self.ruleset, now),
                        "case_number": facts.facts.get("case_number"), "room": facts.facts.get("room")}
                entry = self.ledger.append(sid, "alert", body, while_recording=True)
            except ManifestError:  # stopped meanwhile: the final digest is signed; the report lists the rest
                facts.stop_ns = facts.stop_ns or now
                break
            facts.alert_ids.add(alert.alert_id)
            events.append({"type": "alert", "alert": alert_event(sid, entry)})
        return events

    def _live_views(self, sid: str, facts: SessionFacts) -> None:
        if self.audit is None:
            return
        last, since = self._audit_seq.get(sid, (-1, 0))
        rows = self.audit.query(action="watch_start", obj=f"/whep/{sid}/", since_ns=since)
        for row in rows:
            if row["seq"] <= last:
                continue
            last, since = max(last, row["seq"]), max(since, int(row["time_ns"]))
            detail = _json(row.get("detail"))
            if row.get("outcome") != "ok" or detail.get("session") != sid:
                continue
            facts.add_live_view(LiveView(str(detail.get("viewer") or row["seq"]), str(row["user"]), str(row["role"]),
                                         str(detail.get("source", "")), int(row["time_ns"])))
        self._audit_seq[sid] = (last, since)

    # -- the asyncio side -------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                events = await asyncio.to_thread(self.tick)
            except Exception:
                log.exception("risk rules tick failed")
                events = []
            for ev in events:
                self.publish(ev)
            await asyncio.sleep(max(0.05, self.tick_s - (time.monotonic() - started)))

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="risk-rules")
        return self._task

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(q)

    def publish(self, event: dict[str, Any]) -> None:
        """Hand an event to every listening page (on the loop). A page too slow to keep up loses
        its oldest events and is told to reload (`resync`), never blocks the timer."""
        for q in list(self._subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        q.get_nowait()
                q.put_nowait({"type": "resync"})
            q.put_nowait(event)
