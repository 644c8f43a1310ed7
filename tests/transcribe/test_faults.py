"""Faults: a worker SIGKILLed mid-job (the job is retried by another worker, nothing is written twice),
and the queue refusing a late commit from a worker that lost its lease."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from tests.transcribe.conftest import LIBRIVOX, Env, compose
from tests.transcribe.test_session import T0, wait_for
from tonglu.bench.simulate import SimSession
from tonglu.transcribe.audio import BadSpan, SegmentRef
from tonglu.transcribe.errors import LeaseLost
from tonglu.transcribe.lines import Line
from tonglu.transcribe.queue import JobQueue, LiveJob
from tonglu.transcribe.workers import start_workers


def test_lease_lost_commit_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    q = JobQueue(tmp_path / "q.db", lease_s=0.3)
    ref = SegmentRef("main", "audio", 0, "k0", "0" * 64, T0, T0 + 4 * 10**9)
    q.record_entries("S", 10, start_body={"sources": {}}, segments=[(ref, T0)])
    job_a = q.claim("A")
    assert isinstance(job_a, LiveJob) and job_a.segments == (ref,)
    assert q.claim("B") is None  # leased
    time.sleep(0.4)
    job_b = q.claim("B")  # A's lease passed: B takes the same work
    assert isinstance(job_b, LiveJob) and job_b.attempt == 2
    line = Line("main", "audio", T0, T0 + 10**9, "hello", 0.9)
    with pytest.raises(LeaseLost):
        q.commit_live(job_a, "A", [line], [], T0 + 4 * 10**9)
    assert q.commit_live(job_b, "B", [line], [BadSpan(T0, T0 + 1, ref, "decode_error: x")], T0 + 4 * 10**9) == 1
    assert [r["text"] for r in q.live_rows("S") if r["kind"] == "line"] == ["hello"]
    assert q.claim("C") is None  # nothing left
    # a stop creates the final job; the same records again create nothing new (idempotent)
    q.record_entries("S", 20, stopped_ns=T0 + 10 * 10**9)
    q.record_entries("S", 20, stopped_ns=T0 + 10 * 10**9)
    assert [(j["first_idx"], j["last_idx"]) for j in q.final_jobs("S")] == [(0, 0)]


@pytest.mark.whisper
@pytest.mark.slow
def test_worker_killed_mid_job_is_retried_once_by_another(env: Env) -> None:
    sid = "S-kill"
    clips = [(w, 1.5) for w in LIBRIVOX] + [(w, 1.5) for w in LIBRIVOX[:3]]
    audio, placed = compose(clips)
    sim = SimSession(env.spool, env.ledger, sid)
    sim.add_track("panorama", audio, T0)
    sim.seal_all(4.0)
    sim.stop()
    handle = start_workers(env.settings, workers=2, model="tiny.en", lease_s=3, spool=env.spool, ledger=env.ledger)
    try:

        def running_final():  # type: ignore[no-untyped-def]
            jobs = [j for j in handle.queue.final_jobs(sid) if j["owner"] and j["state"] == "pending"]
            return jobs[0] if jobs else None

        job = wait_for(running_final, 120, "a worker to start the final job", step=0.05)
        victim_id = job["owner"].rsplit(".", 1)[0]
        time.sleep(0.3)  # well inside the job (it takes seconds)
        os.kill(handle.procs[victim_id].pid, signal.SIGKILL)
        killed_owner = job["owner"]
        published = wait_for(
            lambda: [v for v in env.ledger.entries(sid) if v.kind == "transcript" and v.body["origin"] == "final"],
            180,
            "the final version after the kill",
        )
        assert len(published) == 1
        final_job = next(j for j in handle.queue.final_jobs(sid) if j["id"] == job["id"])
        assert final_job["state"] == "done" and final_job["attempts"] >= 2
        commits = [c for c in handle.queue.commits() if c["job"] == f"final:{job['id']}"]
        assert len(commits) == 1 and commits[0]["owner"] != killed_owner  # done once, by another worker
        doc_lines = __import__("json").loads(
            (
                env.settings.data_dir / "transcribe" / "versions" / sid / f"{published[0].body['version']:04d}.json"
            ).read_text()
        )["lines"]
        starts = [ln["start_ns"] for ln in doc_lines]
        assert len(starts) == len(set(starts)), "a line was transcribed twice into the version"
        # every clip is there exactly once (first word within 0.5 s)
        for p in placed:
            truth = T0 + round(p.speech_start_s * 1e9)
            assert sum(abs(s - truth) < 500_000_000 for s in starts) == 1, p.wav.name
        assert handle.restarts >= 1  # the supervisor brought the killed worker back
    finally:
        handle.stop()
    assert np.isfinite(audio).all()


@pytest.mark.whisper
def test_a_worker_writes_nothing_on_stdout(env: Env) -> None:
    """Benchmarks print one JSON object on stdout; workers inherit it, so they must log to stderr only."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "tonglu.transcribe.worker", "--data-dir", str(env.settings.data_dir)]
    proc = subprocess.Popen(
        [*argv, "--worker-id", "w-out", "--model", "tiny.en", "--language", "en"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TONGLU_DATA_DIR": str(env.settings.data_dir)},
    )
    import threading

    seen: list[bytes] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stderr.readline, b"")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any(b"w-out ready" in line for line in seen) and time.monotonic() < deadline:
            assert proc.poll() is None, b"".join(seen)
            time.sleep(0.1)
        assert any(b"w-out ready" in line for line in seen), b"".join(seen)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert out == b""
