"""Several hosts on this machine: `tonglu up --role web` + two `--role recorder` hosts + one
`--role worker` host (own data dirs, ports, spools, ledgers; recorders with certified host keys)
over the SeaweedFS cluster and one PostgreSQL (index, accounts, audit, the shared job queue).
Eight sessions are placed across both recorders and recorded by real aiortc publishers; one
recorder host is SIGKILLed mid-session (the whole host: its process group), declared dead by the
web tier, started again: its spool is recovered and uploaded, its sessions continue after a
bounded `recorder_restart` gap. The web tier's annotations (a marker) go to the chain on the
recorder host that holds the session (recorder.hostledger). The worker host transcribes every
session from the store (fed by the index, not by ledger files) and each recorder host appends the
finished versions to its own sessions' chains; every session verifies from the store against the site key."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SeaweedServer
from tests.recorder.peers import WhipPublisher

TOKEN = "multihost-admin-token-0123456789abcdef"
SECRET = "multihost-registration-secret-0123456789"
TONGLU = str(Path(sys.executable).with_name("tonglu"))
SECOND = 1_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Host:
    def __init__(self, name: str, root: Path, env: dict[str, str], args: list[str]) -> None:
        self.name = name
        self.data = root / name / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "TONGLU_DATA_DIR": str(self.data), "TONGLU_HTTP_PORT": str(self.port)}
        self.args = args
        self.logpath = root / name / "up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([TONGLU, "up", *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # its own process group: a whole host to kill
        log.close()

    def cli(self, *args: str) -> str:
        r = subprocess.run([TONGLU, *args], env=self.env, capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def kill_host(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return None

    def logtext(self) -> str:
        return self.logpath.read_text(errors="replace")[-3000:]

    def spool_pending(self) -> list[Path]:
        return sorted((self.data / "spool" / "ready").glob("*.meta.json"))


def base_env(cluster: SeaweedServer, settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGLU_")}
    access, secret = cluster.credentials["recorder"]
    env.update(
        TONGLU_ADMIN_TOKEN=TOKEN, TONGLU_REGISTRATION_SECRET=SECRET, TONGLU_HEARTBEAT_S="0.5",
        TONGLU_S3_ENDPOINT=cluster.endpoint, TONGLU_S3_ACCESS_KEY=access, TONGLU_S3_SECRET_KEY=secret,
        TONGLU_EVIDENCE_BUCKET=settings.evidence_bucket, TONGLU_WORK_BUCKET=settings.work_bucket,
        TONGLU_RETENTION_SECONDS="120", TONGLU_RECORDER_WORKERS="1", TONGLU_TRANSCRIBE_WORKERS="0",
        TONGLU_WHISPER_MODEL="tiny.en", TONGLU_SEGMENT_SECONDS="1", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    return env


def wait_for(what: str, check: Any, limit_s: float, hosts: list[Host]) -> Any:
    deadline = time.monotonic() + limit_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = exc
        for h in hosts:
            assert h.proc is None or h.proc.poll() is None, f"{h.name} exited: {h.logtext()}"
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {limit_s}s (last: {last})\n" + "\n".join(h.logtext() for h in hosts))


def api(web: Host, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, web.base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60, **kw)


def recorders(web: Host) -> dict[str, dict[str, Any]]:
    return {h["host"]: h for h in api(web, "GET", "/api/recorders").json()["hosts"]}


async def publish(sessions: dict[str, dict[str, Any]]) -> dict[str, WhipPublisher]:
    pubs = {sid: WhipPublisher(s["sources"]["main"]["whip_url"], s["sources"]["main"]["token"], fps=10)
            for sid, s in sessions.items()}
    for p in pubs.values():
        await p.start()
    await asyncio.gather(*(p.wait_connected() for p in pubs.values()))
    return pubs


def entries(host: Host, sid: str) -> list[dict[str, Any]]:
    log = host.data / "ledger" / sid / "entries.log"
    return [json.loads(line) for line in log.read_bytes().splitlines() if line.strip()]


@pytest.mark.slow
def test_web_and_two_recorder_hosts_survive_a_killed_host(
    seaweed_cluster: SeaweedServer, tmp_path: Path, pg_url: str
) -> None:
    web_settings = seaweed_cluster.settings(tmp_path / "web" / "data", retention_seconds=120)  # buckets + site key
    env = {**base_env(seaweed_cluster, web_settings), "TONGLU_DATABASE_URL": pg_url}
    # the web host bootstraps the buckets (admin identity); recorder hosts write with the recorder one
    admin_access, admin_secret = seaweed_cluster.credentials["admin"]
    web = Host("web", tmp_path, {**env, "TONGLU_S3_ACCESS_KEY": admin_access, "TONGLU_S3_SECRET_KEY": admin_secret},
               ["--role", "web"])
    recs = [Host(f"rec-{i}", tmp_path, env, []) for i in (1, 2)]
    worker = Host("worker", tmp_path, {**env, "TONGLU_TRANSCRIBE_WORKERS": "1"}, ["--role", "worker"])
    hosts = [web, *recs, worker]
    try:
        for r in recs:  # each host's own key, certified by the site key on the web host
            r.args = ["--role", "recorder", "--web", web.base, "--advertise", r.base, "--capacity", "5"]
            pub = r.cli("host", "keygen").split()[0]
            cert = tmp_path / f"{r.name}-cert.json"
            web.cli("host", "certify", "--host", r.name, "--public-key", pub, "-o", str(cert))
            shutil.copy(cert, r.data / "keys" / "host-cert.json")
        web.start()
        wait_for("web ready", lambda: httpx.get(web.base + "/readyz", timeout=2).status_code == 200, 90, hosts)
        for r in recs:
            r.start()
        worker.start()
        wait_for("2 recorders registered", lambda: sum(h["alive"] for h in recorders(web).values()) == 2, 90, hosts)

        sessions: dict[str, dict[str, Any]] = {}
        for i in range(8):
            r = api(web, "POST", "/api/sessions", json={
                "room": f"讯问室{i}", "case_number": f"MH-{i}", "suspect": "张三",
                "interviewers": ["李警官", "王警官"], "reason": "讯问", "custody_out": "2026-11-27T01:00:00Z",
            })  # fmt: skip
            assert r.status_code == 201, r.text
            sessions[r.json()["id"]] = r.json()
        # placed 4 + 4 by capacity; the counts come back with the hosts' heartbeats (one sent just
        # before a session was created still counts it out until the next one)
        wait_for("4 sessions recording on each host",
                 lambda: [recorders(web)[h]["recording"] for h in ("rec-1", "rec-2")] == [4, 4], 10, hosts)
        on = {name: {sid for sid in sessions if (recs[i].data / "ledger" / sid).exists()}
              for i, name in enumerate(("rec-1", "rec-2"))}
        assert len(on["rec-1"]) == 4 and len(on["rec-2"]) == 4 and not on["rec-1"] & on["rec-2"]
        # the web tier annotates a session on the host that holds its chain, never in a chain of its own
        sid_a = sorted(on["rec-1"])[0]
        r = api(web, "POST", f"/api/sessions/{sid_a}/markers", json={"note": "出示证据 exhibit 1"})
        assert r.status_code == 201, r.text
        assert any(e["kind"] == "marker" and e["seq"] == r.json()["seq"] for e in entries(recs[0], sid_a))
        assert not (web.data / "ledger" / sid_a / "entries.log").exists()
        shown = api(web, "GET", f"/api/sessions/{sid_a}/events").json()["events"]
        assert [e["body"]["note"] for e in shown if e["kind"] == "marker"] == ["出示证据 exhibit 1"]
        r = api(web, "POST", "/api/sessions/20261205-0123456789ab/markers", json={"note": "x"})
        assert r.status_code == 404 and not (web.data / "ledger" / "20261205-0123456789ab" / "entries.log").exists()

        async def record_kill_restart() -> None:
            pubs = await publish(sessions)
            await asyncio.sleep(4)
            victim = recs[1]
            before = list((victim.data / "spool").rglob("*.webm"))
            victim.kill_host()
            t_kill = time.time_ns()
            await asyncio.to_thread(wait_for, "rec-2 declared dead",
                                    lambda: not recorders(web)["rec-2"]["alive"], 15, [web, recs[0]])
            sid_b = sorted(on["rec-2"])[0]
            assert api(web, "GET", f"/api/sessions/{sid_b}").status_code == 503
            # a new session goes to the live host
            r = api(web, "POST", "/api/sessions", json={
                "room": "讯问室9", "case_number": "MH-9", "suspect": "李四", "interviewers": ["李警官", "王警官"],
                "reason": "讯问", "custody_out": "2026-11-27T01:00:00Z"})  # fmt: skip
            assert r.status_code == 201 and (recs[0].data / "ledger" / r.json()["id"]).exists()
            api(web, "POST", f"/api/sessions/{r.json()['id']}/stop")
            for sid in on["rec-2"]:
                await pubs[sid].close()
            victim.start()
            await asyncio.to_thread(wait_for, "rec-2 back", lambda: recorders(web)["rec-2"]["alive"], 60, hosts)
            # nothing spooled before the kill is lost: recovery sealed staging files; everything uploads
            assert before, "the killed host had spooled nothing"
            again = await publish({sid: sessions[sid] for sid in on["rec-2"]})
            await asyncio.sleep(3)
            for p in [*again.values(), *(pubs[s] for s in on["rec-1"])]:
                assert await p.delete() == 200
                await p.close()
            for sid in sessions:
                assert api(web, "POST", f"/api/sessions/{sid}/stop").status_code == 200
            gaps = [e["body"] for sid in on["rec-2"] for e in entries(victim, sid) if e["kind"] == "gap"
                    and e["body"]["reason"] == "recorder_restart"]
            assert gaps, "no recorder_restart gap on the killed host's sessions"
            for g in gaps:  # bounded: from about the kill to the reconnect, not open-ended
                assert g["start_ns"] >= t_kill - 10 * SECOND and g["end_ns"] - g["start_ns"] < 120 * SECOND, g

        asyncio.run(record_kill_restart())
        for r in recs:
            wait_for(f"{r.name} spool drained", lambda r=r: not r.spool_pending(), 90, hosts)
        # transcripts: made on the worker host, appended on the host that holds each session's chain
        holder = {sid: r for r in recs for sid in sessions if (r.data / "ledger" / sid).exists()}
        assert len(holder) == len(sessions)

        def transcribed() -> bool:
            return all(any(e["kind"] == "transcript" and e["body"].get("origin") == "final"
                           for e in entries(holder[sid], sid)) for sid in sessions)

        wait_for("every session's final transcript", transcribed, 180, hosts)
        assert not (worker.data / "ledger").exists() or not any((worker.data / "ledger").iterdir())
        for r in recs:
            wait_for(f"{r.name} spool drained", lambda r=r: not r.spool_pending(), 90, hosts)
        for sid in sessions:
            out = web.cli("verify", "--session", sid, "--json")
            result = json.loads(out)
            assert result["ok"] is True, out[:3000]
            assert any("certifies host" in a for a in result["anchors"]), result["anchors"]
            assert result["sessions"][0]["segments"] >= 2
    finally:
        for h in reversed(hosts):
            h.stop()
