"""The database half of `tonglu bench scale`: index writes and job-queue cycles on PostgreSQL,
each with SQLite measured in the same run as the baseline.

    from tonglu.bench.scale_db import db_write_p99_ms, job_queue_throughput_per_s, measure

    db_write_p99_ms(url, writers=8)            -> {"p99_ms", "p50_ms", "max_ms", "writes", "entries_per_s", ...}
    job_queue_throughput_per_s(url, workers=4) -> {"per_s", "jobs", "seconds", "committed_twice", ...}
    measure(base_dir)                          -> the four numbers below, PostgreSQL from a LocalPostgres
                                                  under base_dir unless pg_url is given

`measure` returns {"db_write_p99_ms", "db_write_p99_ms_sqlite", "job_queue_throughput_per_s",
"job_queue_throughput_per_s_sqlite", "db_writers", "queue_workers", ...}. Both measurements run
their writers/workers as separate processes (as recorder and worker hosts are), each with its own
engine, started together:

- **db_write_p99_ms**: each writer is one recorder feeding the index (recorder/indexfeed.py): its
  own session, `session_start` then segment entries, applied `batch` at a time with
  `Index.apply_many` (one transaction each, as the feed does every 0.5 s). The latency of every
  transaction is kept; p99 over all writers. The URL must name an empty database.
- **job_queue_throughput_per_s**: `jobs` final-pass jobs are made (one per segment), then `workers`
  processes claim and commit them (`JobQueue.claim` + `commit_final`, an empty result) until none
  is left: jobs / seconds from the common start to the last worker's end. It also counts commits
  per job (must be 1). For a SQLite URL the file queue under `queue_dir` is used (the single-host
  default), for PostgreSQL the `tq_*` tables.

    python -m tonglu.bench.scale_db [BASE_DIR]     # prints the `measure` JSON
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tonglu.evidence.manifest import ManifestEntry

T0 = 1_700_000_000 * 10**9
START_DELAY_S = 3.0  # writers open their engines, then all start at the same moment


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def _entries(sid: str, n: int) -> list[ManifestEntry]:
    """`session_start` and n-1 audio segment entries of one session, as a recorder seals them."""
    start = {"room": f"审讯室{sid}", "case_number": f"A-{sid}", "suspect": "张三", "interviewers": ["李警官"],
             "reason": "讯问", "custody_out_iso": None, "created_by": "li",
             "sources": {"main": {"kind": "camera", "label": "近景"}}, "recorder_version": "bench"}
    out = [ManifestEntry(sid, 0, "session_start", T0, "0" * 64, start)]
    for i in range(n - 1):
        body = {"source": "main", "track": "audio", "media": "audio", "codec": "opus", "container": "webm",
                "index": i, "key": f"sessions/{sid}/segments/main/audio/{i:08d}.webm", "rtp_first": i * 192_000,
                "rtp_last": (i + 1) * 192_000, "clock_rate": 48_000, "wall_first_ns": T0 + i * 4 * 10**9,
                "wall_last_ns": T0 + (i + 1) * 4 * 10**9, "frames": 200, "bytes": 64_000, "sha256": f"{i:064x}",
                "recovered": False}
        out.append(ManifestEntry(sid, i + 1, "segment", T0 + (i + 1) * 4 * 10**9, "0" * 64, body))
    return out


def _write(url: str, sid: str, entries: int, batch: int, start_at: float) -> list[float]:
    from tonglu.evidence.index import Index

    index = Index(url)
    todo = _entries(sid, entries)
    index.apply(todo[0])  # the session exists before the timed segment writes, as when recording
    time.sleep(max(0.0, start_at - time.time()))
    latencies = []
    for i in range(1, len(todo), batch):
        t = time.perf_counter()
        index.apply_many(todo[i:i + batch])
        latencies.append((time.perf_counter() - t) * 1000)
    index.close()
    return latencies


def db_write_p99_ms(url: str, *, writers: int = 8, entries_per_writer: int = 201, batch: int = 4) -> dict[str, Any]:
    """Index write latency (ms) from `writers` concurrent processes into the empty database `url`."""
    from tonglu.evidence.migrate import prepare_database

    prepare_database(url)
    start_at = time.time() + START_DELAY_S + 0.3 * writers
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(writers, mp_context=ctx) as pool:
        futures = [pool.submit(_write, url, f"W{w:03d}", entries_per_writer, batch, start_at)
                   for w in range(writers)]
        per_writer = [f.result() for f in futures]
    elapsed = max(0.001, time.time() - start_at)
    lat = [x for lats in per_writer for x in lats]
    return {
        "p99_ms": round(_percentile(lat, 99), 2),
        "p50_ms": round(_percentile(lat, 50), 2),
        "max_ms": round(max(lat, default=0.0), 2),
        "writes": len(lat),
        "entries_per_s": round(writers * (entries_per_writer - 1) / elapsed, 1),
        "writers": writers,
        "batch": batch,
    }


def _open_queue(url: str, queue_dir: Path) -> Any:
    from tonglu.transcribe.queue import open_queue

    return open_queue(queue_dir, url, lease_s=60.0, final_chunk_s=1.0)


def _drain(url: str, queue_dir: str, owner: str, start_at: float) -> tuple[int, float]:
    from tonglu.transcribe.queue import FinalJob

    q = _open_queue(url, Path(queue_dir))
    time.sleep(max(0.0, start_at - time.time()))
    n = 0
    while (job := q.claim(owner, live=False)) is not None:
        assert isinstance(job, FinalJob)
        q.commit_final(job, owner, [], [])
        n += 1
    end = time.time()
    q.close()
    return n, end


def job_queue_throughput_per_s(url: str, *, workers: int = 4, jobs: int = 400,
                               queue_dir: Path | None = None) -> dict[str, Any]:
    """Claim + commit cycles per second of `workers` processes over `jobs` final jobs (see module doc)."""
    from tonglu.transcribe.audio import SegmentRef

    own_dir = queue_dir is None
    qdir = Path(tempfile.mkdtemp(prefix="tonglu-queue-")) if queue_dir is None else queue_dir
    try:
        q = _open_queue(url, qdir)
        refs = [(SegmentRef("main", "audio", i, f"k{i}", f"{i:064x}", T0 + i * 4 * 10**9, T0 + (i + 1) * 4 * 10**9),
                 T0) for i in range(jobs)]
        sid = f"bench-{uuid.uuid4().hex[:8]}"
        q.record_entries(sid, 1, segments=refs, stopped_ns=T0 + jobs * 4 * 10**9)
        made = len(q.final_jobs(sid))
        start_at = time.time() + START_DELAY_S + 0.3 * workers
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = [pool.submit(_drain, url, str(qdir), f"w{i}", start_at) for i in range(workers)]
            results = [f.result() for f in futures]
        seconds = max(0.001, max(end for _, end in results) - start_at)
        done = sum(n for n, _ in results)
        twice = sum(1 for n in Counter(c["job"] for c in q.commits()).values() if n > 1)
        q.close()
        return {"per_s": round(done / seconds, 1), "jobs": made, "done": done, "seconds": round(seconds, 2),
                "workers": workers, "committed_twice": twice}
    finally:
        if own_dir:
            shutil.rmtree(qdir, ignore_errors=True)


def measure(base_dir: Path, *, pg_url: str | None = None, writers: int = 8, workers: int = 4,
            jobs: int = 400, entries_per_writer: int = 201) -> dict[str, Any]:
    """Both measurements on PostgreSQL (`pg_url`'s server, or a LocalPostgres under base_dir) and
    on SQLite files under base_dir, in this run."""
    from tonglu.evidence.pgserver import LocalPostgres

    base_dir.mkdir(parents=True, exist_ok=True)
    server: LocalPostgres | None = None
    if pg_url is None:
        server = LocalPostgres(base_dir / "pg")
        server.start()

    def fresh_pg(name: str) -> str:
        if server is not None:
            return server.url(f"{name}_{uuid.uuid4().hex[:8]}")
        assert pg_url is not None
        return pg_url

    try:
        pg_writes = db_write_p99_ms(fresh_pg("bench_writes"), writers=writers, entries_per_writer=entries_per_writer)
        lite_writes = db_write_p99_ms(f"sqlite:///{base_dir / f'writes-{uuid.uuid4().hex[:8]}.db'}",
                                      writers=writers, entries_per_writer=entries_per_writer)
        pg_queue = job_queue_throughput_per_s(fresh_pg("bench_queue"), workers=workers, jobs=jobs)
        lite_queue = job_queue_throughput_per_s(f"sqlite:///{base_dir / 'unused.db'}", workers=workers, jobs=jobs,
                                                queue_dir=base_dir / f"queue-{uuid.uuid4().hex[:8]}")
    finally:
        if server is not None:
            server.stop()
    return {
        "db_write_p99_ms": pg_writes["p99_ms"],
        "db_write_p99_ms_sqlite": lite_writes["p99_ms"],
        "job_queue_throughput_per_s": pg_queue["per_s"],
        "job_queue_throughput_per_s_sqlite": lite_queue["per_s"],
        "db_writers": writers,
        "queue_workers": workers,
        "db_writes": {"postgresql": pg_writes, "sqlite": lite_writes},
        "job_queue": {"postgresql": pg_queue, "sqlite": lite_queue},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    base = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="tonglu-scale-db-"))
    print(json.dumps(measure(base), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
