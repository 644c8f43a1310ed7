"""bench/scale_db.py, the database half of `tonglu bench scale`, on a small scale: the numbers it
reports come from real writes and real claim/commit cycles on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tonglu.bench.scale_db import db_write_p99_ms, job_queue_throughput_per_s
from tonglu.evidence.index import Index


@pytest.mark.parametrize("engine", ["sqlite", "pg"])
def test_scale_db_measures_real_work(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = str(request.getfixturevalue("pg_url")) if engine == "pg" else f"sqlite:///{tmp_path / 'i.db'}"
    writes = db_write_p99_ms(url, writers=2, entries_per_writer=9, batch=4)
    assert writes["writes"] == 4 and 0 < writes["p50_ms"] <= writes["p99_ms"] <= writes["max_ms"]
    index = Index(url)
    assert sorted(index.entry_counts().items()) == [("W000", 9), ("W001", 9)]
    assert len(index.segments("W001")) == 8
    queue = job_queue_throughput_per_s(url, workers=2, jobs=12, queue_dir=tmp_path / "q")
    assert queue["jobs"] == queue["done"] == 12 and queue["committed_twice"] == 0 and queue["per_s"] > 0
