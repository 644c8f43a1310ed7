"""Recorder worker processes: the internal API, end to end through a worker, routing, checkpoints."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
from pathlib import Path

import httpx
import pytest

from tests.recorder.conftest import ADMIN, make_settings
from tests.recorder.evidence import decodes, ffprobe, gaps, segments, verify_chain
from tests.recorder.peers import WhipPublisher
from tests.recorder.workerfix import cluster, run, session_for_worker, staged_files, web_app
from tonglu.evidence.signing import verify_signature
from tonglu.recorder.remote import SECRET_HEADER, HttpRecorder
from tonglu.recorder.router import RecorderRouter, owner_index
from tonglu.recorder.workers import start_workers
from tonglu.web.services import Services

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_internal_api_needs_the_secret_and_the_owner(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    handle = start_workers(settings, 2)
    try:
        url0 = handle.urls[0]
        cores = sorted(os.sched_getaffinity(0))
        for i, pid in enumerate(handle.pids):
            assert pid is not None
            assert os.sched_getaffinity(pid) == {cores[i % len(cores)]}  # pinned, one core each
        with httpx.Client(timeout=10) as c:
            for headers in ({}, {SECRET_HEADER: "wrong"}, {"Authorization": f"Bearer {handle.secret}"}):
                assert c.post(f"{url0}/rpc/status", json={"sid": "x"}, headers=headers).status_code == 401
                assert c.get(f"{url0}/worker/status", headers=headers).status_code == 401
            ok = {SECRET_HEADER: handle.secret}
            st = c.get(f"{url0}/worker/status", headers=ok).json()
            assert st["index"] == 0 and st["count"] == 2 and st["pid"] == handle.pids[0] and st["ready"]
            # only recorder methods are callable; close/start are not
            r = c.post(f"{url0}/rpc/close", json={}, headers=ok)
            assert r.status_code == 404 and "close" in r.json()["detail"]
            # a session another worker owns is refused (421), not recorded twice
            sid = next(f"20240101-{i:012x}" for i in range(100) if owner_index(f"20240101-{i:012x}", 2) == 1)
            r = c.post(f"{url0}/rpc/status", json={"sid": sid}, headers=ok)
            assert r.status_code == 421, r.text
            r = c.post(f"{handle.urls[1]}/rpc/status", json={"sid": sid}, headers=ok)
            assert r.status_code == 404 and r.json()["error"] == "SessionNotFound"
            r = c.post(f"{handle.urls[1]}/rpc/status", content=b"{not json", headers=ok)
            assert r.status_code == 400
    finally:
        handle.stop()
    assert not any(p is not None and _alive(p) for p in handle.pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_unreachable_worker_is_503_with_a_reason(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    services = Services.local(settings)
    dead = f"http://127.0.0.1:{free_port()}"
    services.recorder = RecorderRouter([HttpRecorder(dead, "secret", name=f"0@{dead}")])
    with web_app(services) as server, server.api() as c:
        r = c.get("/api/sessions/20240101-abcdef012345")
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "WorkerUnavailable" and dead in r.json()["detail"]
        r = c.post(
            "/whip/20240101-abcdef012345/main",
            content="v=0\r\n",
            headers={"Content-Type": "application/sdp", "Authorization": "Bearer tok"},
        )
        assert r.status_code == 503


def test_vp8_opus_end_to_end_through_a_worker_with_periodic_checkpoints(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TONGLU_CHECKPOINT_INTERVAL_S="1")
    with cluster(settings, 1) as (server, handle):
        s = server.create_session()
        sid, main = s["id"], s["sources"]["main"]

        async def scenario() -> None:
            pub = WhipPublisher(main["whip_url"], main["token"])
            await pub.start()
            await pub.wait_connected()
            await asyncio.sleep(6.0)
            with server.api() as c:
                st = c.get(f"/api/sessions/{sid}").json()
                assert st["state"] == "recording" and st["sources"]["main"]["connected"] is True
                # errors from the worker keep their status and reason through the web app
                r = c.post(
                    f"/whip/{sid}/main",
                    content=pub.pc.localDescription.sdp,
                    headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {main['token']}"},
                )
                assert r.status_code == 409 and "already" in r.json()["detail"]
                r = c.post(
                    f"/whip/{sid}/panorama",
                    content="v=0\r\n",
                    headers={"Content-Type": "application/sdp", "Authorization": "Bearer wrong"},
                )
                assert r.status_code == 403 and r.json()["error"] == "TokenInvalid"
                r = c.post(f"/api/sessions/{sid}/stop", json={"reason": "讯问结束"})
                assert r.status_code == 200, r.text
                assert len(r.json()["digest"]) == 23
                assert c.post(f"/api/sessions/{sid}/stop").status_code == 409
            await pub.close()

        run(scenario())
        worker_pid = handle.pids[0]
    assert worker_pid is not None and not _alive(worker_pid)
    assert staged_files(settings) == []
    services = server.services
    entries = verify_chain(services, sid)
    for track, codec in (("video", "vp8"), ("audio", "opus")):
        segs = segments(entries, "main", track)
        assert len(segs) >= 2 and [b["index"] for b in segs] == list(range(len(segs)))
        total = 0.0
        for b in segs:
            p = {i.key: i.data_path for i in services.spool.pending()}[b["key"]]
            info = ffprobe(p)
            assert info["streams"][0]["codec_name"] == codec and decodes(p)
            total += float(info["format"]["duration"])
        wall = (segs[-1]["wall_last_ns"] - segs[0]["wall_first_ns"]) / 1e9
        assert abs(total - wall) <= (1 / 15 if track == "video" else 0.02) + 0.002, (track, total, wall)
    assert {(g["source"], g["reason"]) for g in gaps(entries)} == {("panorama", "not_connected")}
    # periodic checkpoints, signed in the worker process, every ~1 s while recording
    cps = services.ledger.checkpoints(sid)
    periodic = [cp for cp in cps if not cp.final]
    assert len(periodic) >= 3, [(cp.tree_size, cp.time_ns) for cp in cps]
    assert cps[-1].final and cps[-1].tree_size == len(entries)
    for prev, cp in itertools.pairwise(cps):
        assert cp.prev_checkpoint == prev.body_hash and cp.tree_size >= prev.tree_size
        assert cp.time_ns - prev.time_ns >= 500_000_000 or cp.final
    for cp in cps:
        assert verify_signature(services.site_key.public, cp.signature, cp.body_bytes())
        assert cp.head == entries[cp.tree_size - 1].entry_hash


def test_two_workers_each_session_on_its_owner(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with cluster(settings, 2) as (server, handle):
        sessions = [session_for_worker(server, i, 2) for i in (0, 1)]

        async def scenario() -> list[dict[str, object]]:
            pubs = []
            for s in sessions:
                for source in ("main", "panorama"):
                    spec = s["sources"][source]
                    pub = WhipPublisher(spec["whip_url"], spec["token"], video=False)
                    await pub.start()
                    pubs.append(pub)
            for pub in pubs:
                await pub.wait_connected()
            await asyncio.sleep(1.5)
            states = []
            for i, url in enumerate(handle.urls):
                states.append(await HttpRecorder(url, handle.secret).worker_status())
                assert states[-1]["index"] == i
            for s in sessions:
                with server.api() as c:
                    assert c.post(f"/api/sessions/{s['id']}/stop").status_code == 200
            for pub in pubs:
                await pub.close()
            return states

        states = run(scenario())
        with server.api() as c:  # listing needs no worker: the web process reads the ledger
            listed = {x["id"]: x["state"] for x in c.get("/api/sessions").json()}
    for i, st in enumerate(states):
        live = st["sessions"]
        assert set(live) == {sessions[i]["id"]}, (i, live)
        peers = live[sessions[i]["id"]]
        assert set(peers) == {"main", "panorama"}  # all sources of a session on its one worker
        assert all(p["tracks"]["audio"]["frames"] > 0 for p in peers.values())
    assert all(listed[s["id"]] == "stopped" for s in sessions)
    for s in sessions:
        entries = verify_chain(server.services, s["id"])
        for source in ("main", "panorama"):
            assert segments(entries, source, "audio")


def test_worker_cli_reports_a_free_port(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    env = {
        **os.environ,
        "TONGLU_DATA_DIR": str(tmp_path / "data"),
        "TONGLU_RETENTION_SECONDS": "60",
        "TONGLU_ADMIN_TOKEN": ADMIN,
    }
    env.pop("TONGLU_RECORDER_SECRET", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tonglu.cli", "recorder", "worker", "--index", "0", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        assert line["event"] == "ready" and line["pid"] == proc.pid and line["secret"]
        r = httpx.get(f"{line['url']}/worker/health", headers={SECRET_HEADER: line["secret"]}, timeout=10)
        assert r.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    bad = subprocess.run(
        [sys.executable, "-m", "tonglu.cli", "recorder", "worker", "--index", "3", "--count", "2"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "--index 3" in bad.stderr
