"""`tonglu bench scale --quick` end to end: real aiortc senders into a real recorder worker, 2
recorder-host processes sealing into a real SeaweedFS cluster (and 1 into weed mini), a real
PostgreSQL (and SQLite); one JSON object with every figure, exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

NUMBERS = (
    "sessions_per_recorder_host", "cpu_pct_per_session", "idle_cpu_pct", "core_budget_pct",
    "seal_p99_ms", "seal_p99_ms_baseline",
    "db_write_p99_ms", "db_write_p99_ms_sqlite", "job_queue_throughput_per_s", "job_queue_throughput_per_s_sqlite",
    "frames_recorded_ratio", "sessions_per_recorder_host_with_upload", "upload_cpu_pct_per_session_max",
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_bench_scale_quick_prints_every_figure() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGLU_")}  # the bench's own stores only
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "tonglu.cli", "bench", "scale", "--quick"], env=env,
                       capture_output=True, text=True, timeout=380)
    took = time.monotonic() - t
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, r.stdout[-2000:]  # ONE JSON object; progress went to stderr
    out = json.loads(lines[0])
    missing = [k for k in NUMBERS if k not in out]
    assert not missing, missing
    for k in NUMBERS:
        assert isinstance(out[k], int | float) and out[k] == out[k], (k, out[k])  # a number, not NaN
    for k in NUMBERS:
        if k != "idle_cpu_pct":  # an idle worker may well round to 0.0 %
            assert out[k] > 0, (k, out[k])
    assert out["idle_cpu_pct"] >= 0
    assert out["frames_recorded_ratio"] >= 0.95, out
    assert out["seal_segments_not_sealed"] == 0 and out["seal_recorder_hosts"] == 2
    assert out["seal_segments"] == 2 * out["seal_segments_baseline"] > 0
    # the host figure follows from the documented formula
    budget = out["host"]["cores"] * 100 * out["host"]["utilisation"]
    expected = int((budget - out["idle_cpu_pct"] * out["host"]["cores"]) // out["cpu_pct_per_session"])
    assert abs(out["sessions_per_recorder_host"] - expected) <= 1, (out["sessions_per_recorder_host"], expected)
    assert out["sessions_per_recorder_host_with_upload"] <= out["sessions_per_recorder_host"]
    assert out["job_queue"]["postgresql"]["committed_twice"] == 0
    assert out["job_queue"]["sqlite"]["committed_twice"] == 0
    assert out["quick"] is True and out["settings"]["sessions"] >= 1
    print(f"bench scale --quick took {took:.0f} s: {json.dumps({k: out[k] for k in NUMBERS})}")
