"""A durable job queue in the index database (SQLAlchemy Core; SQLite or PostgreSQL).

    queue = JobQueue(open_engine(settings.db_url))      # creates the `jobs` table if missing
    job, created = queue.enqueue("workcopy", session="S1", args={"height": 720}, dedupe_key="workcopy:S1:...")
    runner = JobRunner(queue, {"workcopy": build}, owner="host:pid:thread")
    runner.run(stop_event)                               # claims, runs, heartbeats, finishes

Long work the web app must not do inside a request (working copies, export packages, reports,
clips) is a row of the table `jobs`: queued → running → done | failed, with `progress` 0..1 and an
ETA written by the worker as it goes, and the result (JSON) or error when it ends.

- Claiming: on PostgreSQL the oldest claimable row is locked with ``SELECT … FOR UPDATE SKIP LOCKED``
  (concurrent workers skip each other's rows); on SQLite the claim is one conditional UPDATE in a
  write transaction (SQLite serialises writers, as ``BEGIN IMMEDIATE`` would; the WHERE re-checks the
  state, so of two workers exactly one wins the row).
- Leases: a running job belongs to its `owner` until `lease_until_ns`; the worker renews the lease by
  heartbeat (a thread, every third of the lease, besides every progress report). A worker killed
  mid-job stops renewing; after the lease the job is claimable again (attempts + 1). After
  `max_attempts` claims it fails ("worker died") instead of running forever.
- Dedupe: a job may carry a `dedupe_key` (unique among jobs that did not fail): asking again for the
  same key returns the queued, running or finished job instead of a new one (a working copy of the
  same manifest is never built twice). A failed job gives its key up, so the work can be asked again.

The table sits on its own `MetaData` (`JOBS_METADATA`) so a migration can be made for it alone.
Blocking (database I/O): call from threads, never from the event loop.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from tonglu.evidence.errors import StorageError
from tonglu.evidence.logctx import context_logger

log = context_logger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
STATES = (QUEUED, RUNNING, DONE, FAILED)
STATE_LABELS = {QUEUED: "排队中 queued", RUNNING: "进行中 running", DONE: "已完成 done", FAILED: "失败 failed"}
LEASE_S = 30.0
MAX_ATTEMPTS = 3

JOBS_METADATA = MetaData()
jobs_table = Table(
    "jobs",
    JOBS_METADATA,
    Column("id", String(32), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("session_id", String(128), nullable=True),
    Column("args", JSON, nullable=False),
    Column("dedupe_key", String(400), nullable=True, unique=True),
    Column("state", String(16), nullable=False),
    Column("progress", Float, nullable=False, default=0.0),
    Column("eta_s", Float, nullable=True),
    Column("owner", String(200), nullable=True),
    Column("lease_until_ns", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False, default=MAX_ATTEMPTS),
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_by", String(128), nullable=True),
    Column("created_ns", BigInteger, nullable=False),
    Column("started_ns", BigInteger, nullable=True),
    Column("updated_ns", BigInteger, nullable=True),
    Column("finished_ns", BigInteger, nullable=True),
    Index("ix_jobs_claim", "state", "created_ns"),
    Index("ix_jobs_session", "session_id"),
)


class JobError(StorageError):
    """A job queue operation failed (unknown job, ...)."""


class JobLost(JobError):
    """This worker no longer holds the job (its lease ran out and another worker took it)."""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    session_id: str | None
    args: dict[str, Any]
    dedupe_key: str | None
    state: str
    progress: float
    eta_s: float | None
    owner: str | None
    lease_until_ns: int | None
    attempts: int
    max_attempts: int
    result: dict[str, Any] | None
    error: str | None
    created_by: str | None
    created_ns: int
    started_ns: int | None
    updated_ns: int | None
    finished_ns: int | None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        m = row._mapping
        return cls(**{c.name: m[c.name] for c in jobs_table.columns})

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "session": self.session_id,
            "state": self.state,
            "state_label": STATE_LABELS.get(self.state, self.state),
            "progress": round(self.progress, 4),
            "percent": round(self.progress * 100, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "attempts": self.attempts,
            "result": self.result,
            "error": self.error,
            "created_by": self.created_by,
            "created": iso_utc_ns(self.created_ns),
            "started": iso_utc_ns(self.started_ns) if self.started_ns else None,
            "finished": iso_utc_ns(self.finished_ns) if self.finished_ns else None,
        }


def iso_utc_ns(ns: int) -> str:
    whole, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{frac // 1_000_000:03d}Z"


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


class JobQueue:
    def __init__(self, engine: Engine, *, clock: Callable[[], int] = time.time_ns, create: bool = True) -> None:
        self.engine = engine
        self.clock = clock
        self.postgres = engine.dialect.name == "postgresql"
        if create:
            JOBS_METADATA.create_all(engine)

    # -- asking for work -------------------------------------------------------------------------
    def enqueue(self, kind: str, *, session: str | None = None, args: Mapping[str, Any] | None = None,
                dedupe_key: str | None = None, created_by: str | None = None,
                max_attempts: int = MAX_ATTEMPTS) -> tuple[Job, bool]:
        """(job, created): the new job, or the existing one holding `dedupe_key` (created False)."""
        if dedupe_key is not None:
            found = self.by_dedupe(dedupe_key)
            if found is not None:
                return found, False
        job_id = secrets.token_hex(12)
        now = self.clock()
        row = {
            "id": job_id, "kind": kind, "session_id": session, "args": dict(args or {}), "dedupe_key": dedupe_key,
            "state": QUEUED, "progress": 0.0, "eta_s": None, "owner": None, "lease_until_ns": None, "attempts": 0,
            "max_attempts": max_attempts, "result": None, "error": None, "created_by": created_by,
            "created_ns": now, "started_ns": None, "updated_ns": now, "finished_ns": None,
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(jobs_table).values(**row))
        except IntegrityError:
            if dedupe_key is None:
                raise
            found = self.by_dedupe(dedupe_key)  # another caller enqueued the same work meanwhile
            if found is None:
                raise
            return found, False
        log.info("job %s queued: %s session=%s", job_id, kind, session)
        return self.get(job_id), True

    def get(self, job_id: str) -> Job:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.id == job_id)).first()
        if row is None:
            raise JobError(f"任务不存在 no job {job_id[:40]!r}")
        return Job.from_row(row)

    def find(self, job_id: str) -> Job | None:
        try:
            return self.get(job_id)
        except JobError:
            return None

    def by_dedupe(self, dedupe_key: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(jobs_table).where(jobs_table.c.dedupe_key == dedupe_key)).first()
        return Job.from_row(row) if row is not None else None

    def jobs(self, *, session: str | None = None, state: str | None = None, limit: int = 100) -> list[Job]:
        q = select(jobs_table)
        if session is not None:
            q = q.where(jobs_table.c.session_id == session)
        if state is not None:
            q = q.where(jobs_table.c.state == state)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(jobs_table.c.created_ns.desc()).limit(limit)).all()
        return [Job.from_row(r) for r in rows]

    def forget(self, job_id: str) -> None:
        """Give a finished job's dedupe key up (its result is gone: the work must be done again)."""
        with self.engine.begin() as conn:
            conn.execute(update(jobs_table).where(jobs_table.c.id == job_id).values(dedupe_key=None))

    # -- doing work ------------------------------------------------------------------------------
    def _claimable(self, now: int, kinds: list[str] | None) -> Any:
        c = jobs_table.c
        cond = or_(c.state == QUEUED, and_(c.state == RUNNING, c.lease_until_ns < now))
        if kinds is not None:
            cond = and_(cond, c.kind.in_(kinds))
        return cond

    def claim(self, owner: str, *, kinds: list[str] | None = None, lease_s: float = LEASE_S) -> Job | None:
        """Take the oldest queued job (or one whose worker's lease ran out) for `owner`, or None."""
        while True:
            now = self.clock()
            c = jobs_table.c
            with self.engine.begin() as conn:
                q = select(jobs_table).where(self._claimable(now, kinds)).order_by(c.created_ns).limit(1)
                if self.postgres:
                    q = q.with_for_update(skip_locked=True)
                row = conn.execute(q).first()
                if row is None:
                    return None
                job = Job.from_row(row)
                if job.attempts >= job.max_attempts:  # its workers died every time: give up on it
                    conn.execute(
                        update(jobs_table).where(and_(c.id == job.id, self._claimable(now, None))).values(
                            state=FAILED, error=f"任务执行者多次中断 worker died {job.attempts} times "
                                                f"(last owner {job.owner})",
                            dedupe_key=None, finished_ns=now, updated_ns=now, owner=None, lease_until_ns=None,
                        )
                    )
                    log.warning("job %s failed: its worker died %d times", job.id, job.attempts)
                    continue
                values = {
                    "state": RUNNING, "owner": owner, "lease_until_ns": now + int(lease_s * 1e9),
                    "attempts": job.attempts + 1, "started_ns": now, "updated_ns": now, "progress": 0.0,
                    "eta_s": None,
                }
                # the WHERE re-checks the row is still claimable: on SQLite that is the whole claim
                done = conn.execute(
                    update(jobs_table).where(and_(c.id == job.id, self._claimable(now, None))).values(**values)
                )
                if done.rowcount != 1:
                    continue  # another worker won it
            if job.state == RUNNING:
                log.warning("job %s taken over from %s (lease ran out)", job.id, job.owner)
            return self.get(job.id)

    def heartbeat(self, job_id: str, owner: str, *, progress: float | None = None, eta_s: float | None = None,
                  lease_s: float = LEASE_S) -> None:
        """Renew the lease (and record progress); JobLost when this owner no longer holds the job."""
        now = self.clock()
        values: dict[str, Any] = {"lease_until_ns": now + int(lease_s * 1e9), "updated_ns": now}
        if progress is not None:
            values["progress"] = max(0.0, min(1.0, progress))
            values["eta_s"] = eta_s
        c = jobs_table.c
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs_table).where(and_(c.id == job_id, c.owner == owner, c.state == RUNNING)).values(**values)
            )
        if done.rowcount != 1:
            raise JobLost(f"job {job_id} is no longer held by {owner}")

    def finish(self, job_id: str, owner: str, result: Mapping[str, Any]) -> None:
        self._end(job_id, owner, DONE, result=dict(result), error=None)

    def fail(self, job_id: str, owner: str, error: str) -> None:
        self._end(job_id, owner, FAILED, result=None, error=error)

    def _end(self, job_id: str, owner: str, state: str, *, result: dict[str, Any] | None, error: str | None) -> None:
        now = self.clock()
        c = jobs_table.c
        values: dict[str, Any] = {
            "state": state, "result": result, "error": error, "finished_ns": now, "updated_ns": now,
            "lease_until_ns": None,
        }
        if state == DONE:
            values.update(progress=1.0, eta_s=0.0)
        else:
            values["dedupe_key"] = None  # the same work may be asked for again
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs_table).where(and_(c.id == job_id, c.owner == owner, c.state == RUNNING)).values(**values)
            )
        if done.rowcount != 1:
            raise JobLost(f"job {job_id} is no longer held by {owner}")
        log.info("job %s %s", job_id, state)


Handler = Callable[["Job", Callable[[float], None]], Mapping[str, Any]]


class Progress:
    """The callback a handler reports progress with (0..1): heartbeats at most every `every_s`, with an
    ETA from the elapsed time and the fraction done; raises JobLost if the job was taken over."""

    def __init__(self, queue: JobQueue, job: Job, owner: str, lease_s: float, every_s: float = 1.0) -> None:
        self.queue, self.job, self.owner, self.lease_s, self.every_s = queue, job, owner, lease_s, every_s
        self.t0 = time.monotonic()
        self.last = 0.0
        self.frac = 0.0
        self.lost = False

    def eta(self, frac: float) -> float | None:
        elapsed = time.monotonic() - self.t0
        if frac <= 0.001 or elapsed <= 0:
            return None
        return max(0.0, elapsed * (1 - frac) / frac)

    def __call__(self, frac: float) -> None:
        self.frac = max(self.frac, min(1.0, frac))
        now = time.monotonic()
        if self.lost:
            raise JobLost(f"job {self.job.id} was taken over")
        if now - self.last >= self.every_s or frac >= 1.0:
            self.last = now
            try:
                self.queue.heartbeat(self.job.id, self.owner, progress=self.frac, eta_s=self.eta(self.frac),
                                     lease_s=self.lease_s)
            except JobLost:
                self.lost = True
                raise


class JobRunner:
    """Runs jobs of the kinds it has handlers for, one at a time, until `stop` is set. Usable in any
    process that can open the database (threads of `tonglu up`, worker processes)."""

    def __init__(self, queue: JobQueue, handlers: Mapping[str, Handler], *, owner: str | None = None,
                 lease_s: float = LEASE_S, poll_s: float = 0.5) -> None:
        self.queue = queue
        self.handlers = dict(handlers)
        self.owner = owner or default_owner()
        self.lease_s = lease_s
        self.poll_s = poll_s
        self.wake = threading.Event()

    def run_one(self) -> Job | None:
        """Claim and run one job; the finished (or failed) job, or None when nothing was claimable."""
        job = self.queue.claim(self.owner, kinds=list(self.handlers), lease_s=self.lease_s)
        if job is None:
            return None
        jlog = context_logger(__name__, session=job.session_id or "-")
        progress = Progress(self.queue, job, self.owner, self.lease_s)
        beating = threading.Event()

        def beat() -> None:  # keeps the lease while the handler runs without reporting progress
            while not beating.wait(self.lease_s / 3):
                try:
                    self.queue.heartbeat(job.id, self.owner, lease_s=self.lease_s)
                except JobLost:
                    progress.lost = True
                    return
                except Exception:
                    jlog.exception("job %s heartbeat failed", job.id)

        hb = threading.Thread(target=beat, name=f"job-heartbeat-{job.id[:8]}", daemon=True)
        hb.start()
        try:
            result = self.handlers[job.kind](job, progress)
        except JobLost:
            jlog.warning("job %s (%s) lost: another worker took it over", job.id, job.kind)
            return self.queue.find(job.id)
        except Exception as exc:
            beating.set()
            jlog.exception("job %s (%s) failed", job.id, job.kind)
            try:
                self.queue.fail(job.id, self.owner, f"{type(exc).__name__}: {exc}"[:4000])
            except JobLost:
                pass
            return self.queue.find(job.id)
        finally:
            beating.set()
            hb.join(5)
        try:
            self.queue.finish(job.id, self.owner, result)
        except JobLost:
            jlog.warning("job %s (%s) finished after it was taken over; result dropped", job.id, job.kind)
        return self.queue.find(job.id)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                job = self.run_one()
            except Exception:
                log.exception("job runner %s: claim failed", self.owner)
                job = None
            if job is None:
                self.wake.wait(self.poll_s)
                self.wake.clear()


@dataclass
class RunnerThreads:
    runners: list[JobRunner]
    threads: list[threading.Thread]
    stop_event: threading.Event

    def notify(self) -> None:
        for r in self.runners:
            r.wake.set()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self.threads)

    def stop(self, timeout: float = 30) -> None:
        self.stop_event.set()
        self.notify()
        for t in self.threads:
            t.join(timeout)


def start_runner_threads(queue: JobQueue, handlers: Mapping[str, Handler], n: int = 1, *,
                         lease_s: float = LEASE_S, poll_s: float = 0.5) -> RunnerThreads:
    stop = threading.Event()
    runners, threads = [], []
    for i in range(max(1, n)):
        runner = JobRunner(queue, handlers, owner=f"{socket.gethostname()}:{os.getpid()}:jobs-{i}",
                           lease_s=lease_s, poll_s=poll_s)
        t = threading.Thread(target=runner.run, args=(stop,), name=f"jobs-{i}", daemon=True)
        t.start()
        runners.append(runner)
        threads.append(t)
    return RunnerThreads(runners, threads, stop)
