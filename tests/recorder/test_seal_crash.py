"""Sealing a segment is crash-consistent: a crash at any instant of `seal_file` loses nothing and
never leaves a spooled segment without its manifest entry (an "extra object" to the verifier).

In process, each failpoint of the seal path raises (`recorder.faults`, action `raise`) and
start-up recovery runs on what is left. End to end, a recorder worker process SIGKILLs itself
right after moving a segment into the spool (action `kill`); the supervisor restarts it, the
publisher reconnects, and the session still verifies with `storage.verify_core`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.recorder.conftest import make_settings
from tests.recorder.evidence import laid_out, segments
from tests.recorder.peers import WhipPublisher
from tests.recorder.workerfix import cluster, run, staged_files
from tonglu.evidence import keys
from tonglu.evidence.evidence_dir import spooled_objects
from tonglu.evidence.fsutil import write_durable
from tonglu.evidence.logctx import context_logger
from tonglu.recorder.context import RecorderContext
from tonglu.recorder.faults import ENV, ONCE_ENV, POINTS, SimulatedCrash
from tonglu.recorder.recovery import recover_session
from tonglu.recorder.store import SessionStore
from tonglu.recorder.track import SIDECAR, seal_file, staged_sidecars
from tonglu.web.services import Services

REQUEST = {
    "room": "第一审讯室",
    "case_number": "A-2024-001",
    "suspect": "张三",
    "interviewers": ["李四", "王五"],
    "reason": "讯问",
}


def stage(ctx: RecorderContext, sid: str, index: int) -> tuple[dict[str, Any], Path]:
    """A finished segment file in staging with the sidecar `PeerTrack._open` writes."""
    key = keys.segment_key(sid, "main", "video", index, "webm")
    path = ctx.spool.staging_path(f"{sid}/main/video/{index:08d}.webm")
    t0 = 1_714_521_600_000_000_000 + index * 2_000_000_000
    record = {
        "source": "main", "track": "video", "media": "video", "codec": "vp8", "container": "webm",
        "index": index, "key": key, "rtp_first": index * 180000, "rtp_last": (index + 1) * 180000,
        "clock_rate": 90000, "wall_first_ns": t0, "wall_last_ns": t0 + 2_000_000_000, "frames": 30,
        "bytes": 0, "sha256": "", "recovered": False,
    }  # fmt: skip
    write_durable(path.with_name(path.name + SIDECAR), json.dumps({"session": sid, "record": record}).encode())
    path.write_bytes(f"segment {index} ".encode() * 5000)
    return record, path


@pytest.mark.parametrize("point", sorted(POINTS))
def test_a_crash_anywhere_in_the_seal_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    settings = make_settings(tmp_path)
    services = Services.local(settings)
    sid, _ = SessionStore(services.ledger, settings.db_url).create(dict(REQUEST), "tester")
    ctx = RecorderContext(settings, services.spool, services.ledger)
    log = context_logger(__name__, session=sid)
    seal_file(ctx, sid, *stage(ctx, sid, 0), "video/webm", log)
    record, path = stage(ctx, sid, 1)
    monkeypatch.setenv(ENV, f"{point}=raise")
    with pytest.raises(SimulatedCrash):
        seal_file(ctx, sid, record, path, "video/webm", log)
    monkeypatch.delenv(ENV)
    if point == "seal.after_spool":
        # the defect this guards against: the object is spooled, the manifest does not know it
        orphan = laid_out(services, sid, tmp_path / "before")
        assert "segment_extra" in orphan.codes() or "object_extra" in orphan.codes(), orphan.codes()

    recovered = recover_session(ctx, sid, "第一审讯室")  # what a restarted recorder does first
    assert [r.index for r in recovered] == ([] if point == "seal.after_append" else [1])
    assert all(r.recovered for r in recovered)
    assert staged_sidecars(ctx.spool.staging, sid) == [] and staged_files(settings) == []
    assert recover_session(ctx, sid) == []  # idempotent

    ctx.append(sid, "session_stop", {"stopped_by": "tester", "reason": "test"})
    services.ledger.checkpoint(sid, final=True)
    segs = segments(services.ledger.entries(sid), "main", "video")
    assert [b["index"] for b in segs] == [0, 1]  # each once
    assert segs[1]["frames"] == 30 and segs[1]["wall_last_ns"] == record["wall_last_ns"]
    assert segs[1]["recovered"] is (point != "seal.after_append")
    result = laid_out(services, sid, tmp_path / "after")
    assert result.ok and not result.warnings, [f"{p.code}: {p.message}" for p in result.problems]
    assert set(spooled_objects(services.spool, sid)) == {b["key"] for b in segs}


@pytest.mark.slow
def test_worker_killed_between_spool_and_ledger_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    once = tmp_path / "failpoints"
    once.mkdir()
    monkeypatch.setenv(ENV, "seal.after_spool=kill")  # inherited by the worker processes
    monkeypatch.setenv(ONCE_ENV, str(once))  # ... and fired once: the restarted worker goes on
    settings = make_settings(tmp_path)
    with cluster(settings, 1) as (server, handle):
        s = server.create_session()
        sid, main = s["id"], s["sources"]["main"]
        old_pid = handle.pids[0]

        async def scenario() -> int:
            pub = WhipPublisher(main["whip_url"], main["token"])
            await pub.start()
            await pub.wait_connected()
            deadline = time.monotonic() + 60
            while handle.pids[0] == old_pid:  # it kills itself at its first seal (2 s segments)
                assert time.monotonic() < deadline, "the worker did not reach the failpoint"
                await asyncio.sleep(0.1)
            await pub.close()
            pub2 = WhipPublisher(main["whip_url"], main["token"])
            posted = time.time_ns()
            await pub2.start()  # waits in the socket backlog until the new worker has recovered
            await pub2.wait_connected()
            await asyncio.sleep(3.0)
            with server.api() as c:
                assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
            await pub2.close()
            return posted

        posted = run(scenario())
        assert (once / "seal.after_spool").exists() and handle.restarts == 1
    assert staged_files(settings) == []
    entries = server.services.ledger.entries(sid)
    result = laid_out(server.services, sid, tmp_path / "evidence")
    assert result.ok, [f"{p.code}: {p.message}" for p in result.errors]
    assert not result.objects("segment_extra") and not result.objects("object_extra")
    keys_in_manifest = {b["key"] for t in ("video", "audio") for b in segments(entries, "main", t)}
    assert set(spooled_objects(server.services.spool, sid)) == keys_in_manifest
    appended = [b for t in ("video", "audio") for b in segments(entries, "main", t) if b["recovered"]]
    assert appended, "no entry was completed by recovery"
    for track in ("video", "audio"):
        segs = segments(entries, "main", track)
        assert [b["index"] for b in segs] == list(range(len(segs)))
        assert any(b["wall_first_ns"] >= posted - 100_000_000 and b["frames"] > 10 for b in segs), track
    restarts = [e.body for e in entries if e.kind == "gap" and e.body["reason"] == "recorder_restart"]
    assert sorted(g["track"] for g in restarts) == ["audio", "video"], restarts
