"""The durable job queue on SQLite and on a real PostgreSQL: claims never double up under concurrent
workers, leases are renewed by heartbeat, a killed worker's job is taken again after its lease (and
failed after too many deaths), dedupe keys return the existing job, progress and ETA are recorded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tonglu.evidence.db import open_engine
from tonglu.evidence.jobs import DONE, FAILED, QUEUED, RUNNING, JobLost, JobQueue, JobRunner

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_round_trip_progress_eta_result(db_url: str) -> None:
    q = JobQueue(open_engine(db_url))
    job, created = q.enqueue("workcopy", session="S1", args={"height": 720}, created_by="reviewer")
    assert created and job.state == QUEUED and job.args == {"height": 720}
    seen: list[tuple[float, float | None]] = []

    def handler(j: Any, progress: Any) -> dict[str, Any]:
        assert j.id == job.id and j.state == RUNNING and j.attempts == 1
        for k in range(1, 5):
            time.sleep(0.3)
            progress(k / 4 * 0.9)
            now = q.get(j.id)
            seen.append((now.progress, now.eta_s))
        return {"mp4": "x.mp4"}

    runner = JobRunner(q, {"workcopy": handler}, owner="w1")
    ended = runner.run_one()
    assert ended is not None and ended.state == DONE and ended.result == {"mp4": "x.mp4"}
    assert ended.progress == 1.0 and ended.finished_ns and ended.started_ns
    assert any(p > 0 and eta is not None and eta > 0 for p, eta in seen), seen
    doc = ended.to_json()
    assert doc["percent"] == 100.0 and doc["state_label"].startswith("已完成")
    assert runner.run_one() is None  # nothing left


def test_handler_error_fails_the_job_and_frees_its_dedupe_key(db_url: str) -> None:
    q = JobQueue(open_engine(db_url))
    job, _ = q.enqueue("export", session="S1", dedupe_key="export:S1:10")

    def boom(_j: Any, _p: Any) -> dict[str, Any]:
        raise RuntimeError("ffmpeg exploded")

    ended = JobRunner(q, {"export": boom}, owner="w1").run_one()
    assert ended is not None and ended.state == FAILED and "ffmpeg exploded" in (ended.error or "")
    again, created = q.enqueue("export", session="S1", dedupe_key="export:S1:10")
    assert created and again.id != job.id


def test_dedupe_returns_the_existing_job(db_url: str) -> None:
    q = JobQueue(open_engine(db_url))
    a, ca = q.enqueue("workcopy", session="S1", dedupe_key="workcopy:S1:head1")
    b, cb = q.enqueue("workcopy", session="S1", dedupe_key="workcopy:S1:head1")
    assert ca and not cb and a.id == b.id
    JobRunner(q, {"workcopy": lambda j, p: {"ok": True}}, owner="w").run_one()
    c, cc = q.enqueue("workcopy", session="S1", dedupe_key="workcopy:S1:head1")
    assert not cc and c.id == a.id and c.state == DONE  # finished: the cached result, not a rebuild
    d, cd = q.enqueue("workcopy", session="S1", dedupe_key="workcopy:S1:head2")  # a new manifest
    assert cd and d.id != a.id


def test_concurrent_enqueue_of_one_key_makes_one_job(db_url: str) -> None:
    q = JobQueue(open_engine(db_url))
    ids: list[str] = []
    barrier = threading.Barrier(6)

    def ask() -> None:
        barrier.wait()
        job, _ = q.enqueue("clip", session="S1", dedupe_key="clip:S1:a")
        ids.append(job.id)

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 6


def test_concurrent_workers_never_run_a_job_twice(db_url: str) -> None:
    q = JobQueue(open_engine(db_url))
    for i in range(30):
        q.enqueue("report", session=f"S{i}")
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    def handler(j: Any, _p: Any) -> dict[str, Any]:
        with lock:
            runs[j.id] += 1
        time.sleep(0.01)
        return {}

    stop = threading.Event()
    runners = [JobRunner(q, {"report": handler}, owner=f"w{i}", poll_s=0.05) for i in range(4)]
    threads = [threading.Thread(target=r.run, args=(stop,)) for r in runners]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(q.jobs(state=DONE, limit=1000)) < 30:
        time.sleep(0.1)
    stop.set()
    for r in runners:
        r.wake.set()
    for t in threads:
        t.join(10)
    assert len(q.jobs(state=DONE, limit=1000)) == 30
    assert len(runs) == 30 and set(runs.values()) == {1}, runs


WORKER = """
import sys, time
from tonglu.evidence.db import open_engine
from tonglu.evidence.jobs import JobQueue, JobRunner
q = JobQueue(open_engine(sys.argv[1]))
def slow(job, progress):
    progress(0.25)
    print("running", job.id, flush=True)
    time.sleep(3600)
    return {}
JobRunner(q, {"workcopy": slow}, owner="doomed", lease_s=1.0).run_one()
"""


def test_killed_worker_job_is_taken_again_after_its_lease(db_url: str) -> None:
    q = JobQueue(open_engine(db_url))
    job, _ = q.enqueue("workcopy", session="S1", dedupe_key="workcopy:S1:h")
    proc = subprocess.Popen([sys.executable, "-c", WORKER, db_url], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("running"), line
        running = q.get(job.id)
        assert running.state == RUNNING and running.owner == "doomed" and running.progress == 0.25
        time.sleep(1.5)  # its heartbeat thread keeps the lease while it lives
        assert q.claim("thief", kinds=["workcopy"], lease_s=1.0) is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    survivor = JobRunner(q, {"workcopy": lambda j, p: {"by": "survivor", "attempt": j.attempts}}, owner="w2",
                         lease_s=1.0)
    deadline = time.monotonic() + 10
    ended = None
    while ended is None and time.monotonic() < deadline:
        ended = survivor.run_one()
        time.sleep(0.2)
    assert ended is not None and ended.id == job.id and ended.state == DONE
    assert ended.result == {"by": "survivor", "attempt": 2}
    with pytest.raises(JobLost):  # the dead owner's late writes are refused
        q.heartbeat(job.id, "doomed", progress=0.5)


def test_a_job_whose_workers_keep_dying_fails(db_url: str) -> None:
    now = [10**18]
    q = JobQueue(open_engine(db_url), clock=lambda: now[0])
    job, _ = q.enqueue("workcopy", session="S1", max_attempts=2)
    for owner in ("a", "b"):
        claimed = q.claim(owner, lease_s=1.0)
        assert claimed is not None and claimed.id == job.id
        now[0] += 2 * 10**9  # the lease runs out: the owner died
    assert q.claim("c", lease_s=1.0) is None
    dead = q.get(job.id)
    assert dead.state == FAILED and "worker died 2 times" in (dead.error or "")
