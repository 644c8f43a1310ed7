"""The transcription queue on both engines (the SQLite file queue and PostgreSQL), and on
PostgreSQL: two worker processes, one SIGKILLed mid-job, its lease taken over, nothing written
twice; one dispatcher at a time (advisory lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tonglu.transcribe.audio import BadSpan, SegmentRef
from tonglu.transcribe.errors import LeaseLost, QueueError
from tonglu.transcribe.lines import Line
from tonglu.transcribe.queue import FinalJob, JobQueue, LiveJob, open_queue

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000 * 10**9
S = 10**9


def seg(i: int, track: str = "audio", source: str = "main") -> SegmentRef:
    return SegmentRef(source, track, i, f"sessions/S/{source}/{i:08d}.webm", f"{i:064x}", T0 + 4 * i * S,
                      T0 + 4 * (i + 1) * S)


QueueFactory = Callable[..., JobQueue]


@pytest.fixture(params=["sqlite", "pg"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueFactory]:
    made: list[JobQueue] = []
    url = str(request.getfixturevalue("pg_url")) if request.param == "pg" else ""

    def make(**kw: float) -> JobQueue:
        q = JobQueue.on_database(url, **kw) if url else JobQueue(tmp_path / "q.db", **kw)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()


def test_lease_lost_commit_is_refused(make_queue: QueueFactory) -> None:
    q = make_queue(lease_s=0.3)
    ref = seg(0)
    q.record_entries("S", 10, start_body={"sources": {}}, segments=[(ref, T0)])
    job_a = q.claim("A")
    assert isinstance(job_a, LiveJob) and job_a.segments == (ref,)
    assert q.claim("B") is None  # leased
    time.sleep(0.4)
    job_b = q.claim("B")  # A's lease passed: B takes the same work
    assert isinstance(job_b, LiveJob) and job_b.attempt == 2
    line = Line("main", "audio", T0, T0 + S, "你好", 0.9)
    with pytest.raises(LeaseLost):
        q.commit_live(job_a, "A", [line], [], T0 + 4 * S)
    assert q.commit_live(job_b, "B", [line], [BadSpan(T0, T0 + 1, ref, "decode_error: x")], T0 + 4 * S) == 1
    with pytest.raises(LeaseLost):
        q.commit_live(job_b, "B", [line], [], T0 + 4 * S)  # a second commit of the same claim
    assert [r["text"] for r in q.live_rows("S") if r["kind"] == "line"] == ["你好"]
    assert q.claim("C") is None  # nothing left
    q.record_entries("S", 20, stopped_ns=T0 + 10 * S)
    q.record_entries("S", 20, stopped_ns=T0 + 10 * S)  # the same records again create nothing new
    assert [(j["first_idx"], j["last_idx"]) for j in q.final_jobs("S")] == [(0, 0)]
    assert [c["owner"] for c in q.commits()] == ["B"]


def test_a_session_through_the_queue(make_queue: QueueFactory) -> None:
    q = make_queue(lease_s=30, max_window_s=10, final_chunk_s=9)
    q.record_entries("S", 3, start_body={"room": "审讯室1"}, participants=[("remote-1", {"name": "赵律师"})],
                     segments=[(seg(i), T0 + 4 * (i + 1) * S) for i in range(5)])
    q.record_entries("S", 4, participants=[("remote-1", {"name": "赵律师", "role": "lawyer"})])
    assert q.offset("S") == 4 and q.offsets() == {"S": 4}
    info = q.session_info("S")
    assert info is not None and info["start_body"] == {"room": "审讯室1"} and not info["published"]
    assert info["participants"] == {"remote-1": {"name": "赵律师", "role": "lawyer"}}  # replaced, not doubled
    (live,) = q.claim_live_batch("w", 4)
    assert [s.index for s in live.segments] == [0, 1] and not live.closing  # a window of <= 10 s
    q.commit_live(live, "w", [Line("main", "audio", T0, T0 + S, "第一句", 0.8, (), -20.5)], [], T0 + 8 * S)
    assert q.stats()["segments_waiting"] == 3 and q.stats()["live_lines"] == 1
    q.record_entries("S", 9, stopped_ns=T0 + 30 * S)
    assert not q.live_drained("S") and q.sessions_to_publish() == ["S"]
    assert [(j["first_idx"], j["last_idx"]) for j in q.final_jobs("S")] == [(0, 1), (2, 3), (4, 4)]
    while (job := q.claim("w")) is not None:
        if isinstance(job, LiveJob):
            q.commit_live(job, "w", [], [], job.segments[-1].wall_last_ns if job.segments else job.carry_ns)
        else:
            assert isinstance(job, FinalJob)
            q.commit_final(job, "w", [Line("main", "audio", T0, T0 + S, f"定稿{job.id}", 0.9)], [])
    assert q.live_drained("S")
    results = q.final_results("S")
    assert results is not None and [r["first_idx"] for r in results] == [0, 2, 4]
    assert all(len(r["lines"]) == 1 for r in results)
    rows = q.live_line_rows_between("S", T0, T0 + S)
    assert [r["text"] for r in rows] == ["第一句"] and rows[0]["level_db"] == -20.5
    assert len(q.live_latencies_s()) == 1
    q.mark_published("S")
    assert q.sessions_to_publish() == []
    finals = Counter(c["job"] for c in q.commits() if c["job"].startswith("final:"))
    assert sorted(finals.values()) == [1, 1, 1]
    assert sum(1 for c in q.commits() if c["job"] == "live:S:main/audio") == 3  # one per window


def test_concurrent_workers_take_each_job_once(make_queue: QueueFactory) -> None:
    """Four threads, each with its own queue object, drain 12 tracks and their final chunks."""
    feeder = make_queue(lease_s=30, final_chunk_s=5)
    for t in range(12):
        feeder.record_entries(f"S{t}", 3, segments=[(seg(i, source=f"cam{t}"), T0) for i in range(3)],
                              stopped_ns=T0 + 20 * S)
    workers = [make_queue(lease_s=30, final_chunk_s=5) for _ in range(4)]
    errors: list[BaseException] = []

    def drain(q: JobQueue, owner: str) -> None:
        try:
            while (job := q.claim(owner)) is not None:
                if isinstance(job, LiveJob):
                    q.commit_live(job, owner, [], [], job.segments[-1].wall_last_ns if job.segments else None)
                else:
                    q.commit_final(job, owner, [], [])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(q, f"w{i}")) for i, q in enumerate(workers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    jobs = Counter(c["job"] for c in feeder.commits())
    finals = [j for j in feeder.final_jobs() if j["state"] == "done"]
    assert len(finals) == 36 and all(j["attempts"] == 1 for j in finals)  # 12 tracks x 3 chunks, each once
    assert max(jobs.values()) == 1
    assert all(feeder.live_drained(f"S{t}") for t in range(12))


def test_the_file_queue_stays_on_sqlite(tmp_path: Path) -> None:
    q = open_queue(tmp_path, f"sqlite:///{tmp_path / 'index.db'}")
    assert not q.on_postgres and q.path == tmp_path / "transcribe" / "queue.db"
    q.close()
    with pytest.raises(QueueError):
        JobQueue.on_database(f"sqlite:///{tmp_path / 'index.db'}")


def test_one_dispatcher_at_a_time(pg_url: str) -> None:
    a, b = JobQueue.on_database(pg_url), JobQueue.on_database(pg_url)
    assert a.is_leader() and a.is_leader()
    assert not b.is_leader()
    a.close()  # its session ends (a dead dispatcher's host): the lock goes with it
    assert b.is_leader()
    b.close()


def _wait(cond: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_two_workers_one_killed_mid_job(pg_url: str, tmp_path: Path) -> None:
    """Worker A is SIGKILLed holding a job; once its lease passes worker B takes it over; every job
    is committed exactly once, the killed one by B."""
    q = JobQueue.on_database(pg_url, lease_s=1.0, final_chunk_s=5)
    q.record_entries("S", 7, segments=[(seg(i), T0) for i in range(6)], stopped_ns=T0 + 30 * S)
    assert len(q.final_jobs("S")) == 6
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}

    def worker(owner: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "tests.pg.queue_worker", pg_url, owner, "1.5", str(marks)],
                                cwd=ROOT, env=env)

    a = worker("A")
    try:
        _wait(lambda: list(marks.glob("A.*")), 60, "worker A to claim a job")
        b = worker("B")
        try:
            time.sleep(0.3)  # A is well inside its job (1.5 s)
            a.send_signal(signal.SIGKILL)
            a.wait(10)
            (killed,) = [int(p.name.split(".")[1]) for p in marks.glob("A.*")]
            _wait(lambda: q.final_results("S") is not None, 90, "every final job done")
        finally:
            (marks / "stop").touch()
            b.wait(30)
    finally:
        if a.poll() is None:
            a.kill()
    commits = q.commits()
    per_job = Counter(c["job"] for c in commits)
    assert sorted(per_job) == sorted(f"final:{j['id']}" for j in q.final_jobs("S"))
    assert set(per_job.values()) == {1}  # nothing written twice
    (taken_over,) = [c for c in commits if c["job"] == f"final:{killed}"]
    assert taken_over["owner"] == "B" and taken_over["attempt"] >= 2
    job = next(j for j in q.final_jobs("S") if j["id"] == killed)
    assert job["state"] == "done" and job["attempts"] >= 2
    results = q.final_results("S")
    assert results is not None
    assert [r["lines"][0]["text"] for r in results if r["first_idx"] == job["first_idx"]] == [f"job {killed} by B"]
    assert not list(marks.glob("*.lost"))  # B never lost a lease; A never committed
    q.close()
