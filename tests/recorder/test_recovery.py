"""Recorder restarts: a worker killed mid-recording (SIGKILL) and one stopped cleanly (SIGTERM).

Either way the session goes on: the restarted worker seals what the dead one left in staging
(`recovered: true`), the publisher reconnects with the same token, and one `recorder_restart` gap
per track spans from the last sealed segment to the first media after the restart.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.recorder.conftest import Server, make_settings
from tests.recorder.evidence import decodes, gaps, segments, spooled_files, verify_chain
from tests.recorder.peers import WhipPublisher
from tests.recorder.workerfix import cluster, run, staged_files

pytestmark = pytest.mark.slow
TOL_NS = 100_000_000


async def publish(server: Server, spec: dict[str, str], seconds: float) -> tuple[WhipPublisher, int, int]:
    pub = WhipPublisher(spec["whip_url"], spec["token"])
    posted = time.time_ns()
    await pub.start()
    await pub.wait_connected()
    connected = time.time_ns()
    await asyncio.sleep(seconds)
    return pub, posted, connected


def stop_session(server: Server, sid: str) -> None:
    with server.api() as c:
        r = c.post(f"/api/sessions/{sid}/stop")
        assert r.status_code == 200, r.text


def check_restart(entries: list[Any], posted: int, *, recovered: bool, ended: tuple[int, int]) -> None:
    """One recorder_restart gap per main track, from the last segment sealed before the restart
    to the first media after it; numbering continues; media resumes after the gap."""
    main_gaps = [g for g in gaps(entries) if g["source"] == "main"]
    assert sorted((g["track"], g["reason"]) for g in main_gaps) == [
        ("audio", "recorder_restart"),
        ("video", "recorder_restart"),
    ], main_gaps
    for g in main_gaps:
        segs = segments(entries, "main", g["track"])
        assert [b["index"] for b in segs] == list(range(len(segs)))
        before = [b for b in segs if b["wall_first_ns"] < g["start_ns"]]
        after = [b for b in segs if b["wall_first_ns"] >= g["end_ns"] - TOL_NS]
        assert before and after and len(before) + len(after) == len(segs), (g, segs)
        assert g["start_ns"] == max(b["wall_last_ns"] for b in before)  # the last sealed segment
        assert g["rtp_start"] == max(before, key=lambda b: b["index"])["rtp_last"]
        assert posted - TOL_NS <= g["end_ns"] <= after[0]["wall_first_ns"] + TOL_NS, (g, posted, after[0])
        assert sum(b["frames"] for b in after) > 20
        last = max(before, key=lambda b: b["index"])
        assert last["recovered"] is recovered, last
        assert ended[0] <= last["wall_last_ns"] <= ended[1], (last, ended)  # media up to the end was kept
        assert not any(b["recovered"] for b in after)


def test_killed_worker_is_restarted_and_the_session_continues(tmp_path: Path) -> None:
    # WebM clusters hold up to 1 s (DESIGN: a kill loses <= 1 s): kill 3 s into a 4 s segment
    settings = make_settings(tmp_path, TONGLU_SEGMENT_SECONDS="4")
    with cluster(settings, 1) as (server, handle):
        s = server.create_session()
        sid, main = s["id"], s["sources"]["main"]
        old_pid = handle.pids[0]

        async def scenario() -> tuple[int, int]:
            pub, _, _ = await publish(server, main, 3.0)
            handle.kill(0)  # SIGKILL: no chance to seal anything
            killed = time.time_ns()
            await pub.close()
            await asyncio.sleep(0.5)
            # the room computer reconnects with the same token; the POST waits for the new process
            pub2, posted, _ = await publish(server, main, 4.0)
            stop_session(server, sid)
            await pub2.close()
            return killed, posted

        killed, posted = run(scenario())
        assert handle.restarts == 1 and handle.pids[0] != old_pid and handle.alive()
    assert staged_files(settings) == []
    entries = verify_chain(server.services, sid)
    check_restart(entries, posted, recovered=True, ended=(killed - 1_500_000_000, killed + TOL_NS))
    files = spooled_files(server.services)
    for track in ("video", "audio"):
        rec = [b for b in segments(entries, "main", track) if b["recovered"]]
        assert len(rec) == 1 and rec[0]["frames"] > 0, rec
        path = files[rec[0]["key"]]  # what the killed process wrote is playable (no duration header)
        assert packets(path) == rec[0]["frames"] and decodes(path)


def test_worker_stopped_cleanly_seals_open_segments_then_continues(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with cluster(settings, 1) as (server, handle):
        s = server.create_session()
        sid, main = s["id"], s["sources"]["main"]

        async def first() -> tuple[WhipPublisher, int]:
            pub, _, _ = await publish(server, main, 3.0)
            return pub, time.time_ns()

        loop = asyncio.new_event_loop()
        try:
            pub, stopping = loop.run_until_complete(first())
            handle.stop()  # SIGTERM: the worker seals every open segment before it exits
            stopped = time.time_ns()
            loop.run_until_complete(pub.close())
        finally:
            loop.close()
        assert staged_files(settings) == []
        sealed = verify_chain_open(server.services, sid)
        for track in ("video", "audio"):
            segs = segments(sealed, "main", track)
            assert segs and not any(b["recovered"] for b in segs)
            assert max(b["wall_last_ns"] for b in segs) >= stopping - 1_000_000_000
    with cluster(settings, 1) as (server, handle):

        async def second() -> int:
            spec = {**main, "whip_url": f"{server.url}/whip/{sid}/main"}  # the web app has a new port
            pub, posted, _ = await publish(server, spec, 4.0)
            stop_session(server, sid)
            await pub.close()
            return posted

        posted = run(second())
    entries = verify_chain(server.services, sid)
    check_restart(entries, posted, recovered=False, ended=(stopping - 1_000_000_000, stopped))


def packets(path: Path) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_entries", "stream=nb_read_packets",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return int(json.loads(out.stdout)["streams"][0]["nb_read_packets"])


def verify_chain_open(services: Any, sid: str) -> list[Any]:
    """The chain links of a session that is still recording (no final checkpoint yet)."""
    from tonglu.evidence.manifest import GENESIS

    entries = services.ledger.entries(sid)
    prev = GENESIS
    for n, e in enumerate(entries):
        assert e.seq == n and e.prev == prev
        prev = e.entry_hash
    return list(entries)
