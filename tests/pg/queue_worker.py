"""A queue worker for tests/pg/test_queue.py: the claim/renew/commit cycle of transcribe/worker.py
without Whisper. Each final job is held `hold_s` (its lease renewed meanwhile), then committed with
one line naming the job and this worker. A file `<owner>.<job id>` in `marks` says a job was claimed.

    python -m tests.pg.queue_worker URL OWNER HOLD_S MARKS_DIR
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tonglu.transcribe.errors import LeaseLost
from tonglu.transcribe.lines import Line
from tonglu.transcribe.queue import FinalJob, JobQueue


def main(url: str, owner: str, hold_s: float, marks: Path) -> int:
    q = JobQueue.on_database(url, lease_s=1.0)
    while not (marks / "stop").exists():
        job = q.claim(owner, live=False)
        if not isinstance(job, FinalJob):
            time.sleep(0.05)
            continue
        (marks / f"{owner}.{job.id}").touch()
        end = time.monotonic() + hold_s
        while time.monotonic() < end:
            q.renew(job, owner)
            time.sleep(0.2)
        try:
            q.commit_final(job, owner, [Line(job.source, job.track, 0, 10**9, f"job {job.id} by {owner}", 1.0)], [])
        except LeaseLost:
            (marks / f"{owner}.{job.id}.lost").touch()
    q.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), Path(sys.argv[4])))
