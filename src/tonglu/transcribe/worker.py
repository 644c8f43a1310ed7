"""A transcription worker process: claims jobs from the queue, transcribes, commits (one CPU thread).

    python -m transcribe.worker --data-dir D --worker-id w1 [--model base] [--language zh] ...

Started by `transcribe.workers.start_workers`. SIGTERM stops it after giving back the job in hand.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tonglu.evidence.logctx import configure_logging, context_logger
from tonglu.transcribe import packing
from tonglu.transcribe.audio import RATE, Window, assemble
from tonglu.transcribe.engine import VAD_PARAMETERS, Engine, speech_chunks
from tonglu.transcribe.errors import LeaseLost
from tonglu.transcribe.guards import RawLine
from tonglu.transcribe.levels import line_level_db
from tonglu.transcribe.lines import to_wall
from tonglu.transcribe.live import plan_cut
from tonglu.transcribe.models import resolve_model
from tonglu.transcribe.queue import FinalJob, Job, JobQueue, LiveJob, open_queue


def queue_path(data_dir: Path) -> Path:
    return data_dir / "transcribe" / "queue.db"


class _Heartbeat(threading.Thread):
    def __init__(self, queue: JobQueue, jobs: Sequence[Job], owner: str, every_s: float) -> None:
        super().__init__(daemon=True)
        self.queue, self.jobs, self.owner, self.every_s = queue, list(jobs), owner, every_s
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            for job in self.jobs:
                self.queue.renew(job, self.owner)


def process_live(job: LiveJob, engine: Engine, read: Callable[[str], bytes], queue: JobQueue, owner: str) -> int:
    return process_live_batch([job], engine, read, queue, owner)


def process_live_batch(
    jobs: Sequence[LiveJob], engine: Engine, read: Callable[[str], bytes], queue: JobQueue, owner: str
) -> int:
    """Transcribe several tracks' live windows with as few Whisper calls as possible (see `packing`)."""
    windows: list[tuple[LiveJob, Window, float]] = []
    for job in jobs:
        if not job.segments:
            queue.commit_live(job, owner, [], [], job.carry_ns)
            continue
        window = assemble(job.segments, read, start_ns=max(job.carry_ns or 0, job.segments[0].wall_first_ns))
        cut_s = plan_cut(speech_chunks(window.audio), window.duration_s, closing=job.closing)
        windows.append((job, window, cut_s))
    spans = []
    for _, window, cut_s in windows:
        head = window.audio[: round(cut_s * RATE)]
        spans.append(packing.regions(speech_chunks(head, **VAD_PARAMETERS)) if len(head) >= RATE // 10 else [])
    results: dict[int, list[RawLine]] = {}
    for audio, pieces in packing.pack([w.audio for _, w, _ in windows], spans):
        raw, language = engine.transcribe(audio)
        for owner_index, lines in packing.unpack(raw, pieces, language).items():
            results.setdefault(owner_index, []).extend(lines)
    added = 0
    for i, (job, window, cut_s) in enumerate(windows):
        wall_lines = [
            to_wall(r, window.start_ns, job.source, job.track, r.text, line_level_db(window.audio, r))
            for r in results.get(i, [])
        ]
        try:
            added += queue.commit_live(job, owner, wall_lines, window.bad, window.wall_ns(cut_s))
        except LeaseLost as exc:
            context_logger(__name__, session=job.sid, track=f"{job.source}/{job.track}").warning("%s", exc)
    return added


def process_final(job: FinalJob, engine: Engine, read: Callable[[str], bytes], queue: JobQueue, owner: str) -> int:
    window = assemble(job.segments, read)
    raw, _ = engine.transcribe(window.audio, thorough=True)
    lines = [to_wall(r, window.start_ns, job.source, job.track, r.text, line_level_db(window.audio, r)) for r in raw]
    queue.commit_final(job, owner, lines, window.bad)
    return len(lines)


def run(
    data_dir: Path,
    worker_id: str,
    engine: Engine,
    read: Callable[[str], bytes],
    *,
    lease_s: float,
    stop: threading.Event,
    poll_s: float = 0.1,
    live_batch: int = 4,
    db_url: str | None = None,
) -> None:
    log = context_logger("tonglu.transcribe.worker")
    # PostgreSQL (TONGLU_DATABASE_URL): the queue every host's workers share; else this host's file
    queue = open_queue(data_dir, db_url or "", lease_s=lease_s)
    while not stop.is_set():
        jobs: list[Job] = list(queue.claim_live_batch(worker_id, live_batch))
        if not jobs:
            final = queue.claim(worker_id, live=False)
            jobs = [final] if final is not None else []
        if not jobs:
            stop.wait(poll_s)
            continue
        first = jobs[0]
        jlog = log.bind(
            session=first.sid if len(jobs) == 1 else ",".join(sorted({j.sid for j in jobs})),
            track=f"{first.source}/{first.track}" if len(jobs) == 1 else f"{len(jobs)} tracks",
            segment=f"{first.segments[0].index}-{first.segments[-1].index}" if first.segments else "-",
        )
        name = first.name if len(jobs) == 1 else f"live batch of {len(jobs)}"
        beat = _Heartbeat(queue, jobs, worker_id, max(0.2, lease_s / 3))
        beat.start()
        t0 = time.monotonic()
        try:
            if isinstance(first, FinalJob):
                n = process_final(first, engine, read, queue, worker_id)
            else:
                n = process_live_batch([j for j in jobs if isinstance(j, LiveJob)], engine, read, queue, worker_id)
            jlog.info(
                "%s done: %d lines in %.2f s (attempt %d, worker %s)",
                name,
                n,
                time.monotonic() - t0,
                first.attempt,
                worker_id,
            )
        except LeaseLost as exc:
            jlog.warning("%s", exc)
        except Exception:
            jlog.exception("%s failed (attempt %d); it will be retried after its lease", name, first.attempt)
            stop.wait(1.0)
        finally:
            beat.done.set()
    queue.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tonglu.transcribe.worker")
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--worker-id", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--language", default="zh")
    ap.add_argument("--lease-s", type=float, default=30.0)
    args = ap.parse_args(argv)
    from tonglu.config import Settings
    from tonglu.transcribe.source import evidence_reader

    env = dict(os.environ)
    env["TONGLU_DATA_DIR"] = str(args.data_dir)
    settings = Settings.from_env(env)
    configure_logging(settings.log_level)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # its lines carry no session ids
    engine = Engine(resolve_model(args.model), compute_type=args.compute_type, language=args.language or None)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log = context_logger("tonglu.transcribe.worker")
    log.info("worker %s ready (model %s)", args.worker_id, engine.model.name)  # stderr
    run(args.data_dir, args.worker_id, engine, evidence_reader(settings), lease_s=args.lease_s, stop=stop,
        db_url=settings.db_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
