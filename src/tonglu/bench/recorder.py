"""`tonglu bench recorder`: how many 720p30 streams one pinned recorder core holds, and at what cost,
against aiortc's stock `MediaRecorder` measured in the same run.

Layout (2+ cores): one recorder worker process (`start_workers(settings, 1)`) pinned to the first
core; load generators (`recorder.bench_load`: many senders per process, each an aiortc peer whose
media is sent by `recorder.bench_sender.LeanSender` from a pre-encoded clip, `recorder.bench_media`)
and this process on the second. Steps add senders (each session
publishes two cameras, `main` and `panorama`); each step waits until all are connected, lets them
settle, then measures over `step_seconds`:

- recorder CPU: utime+stime of the worker process (all its threads) from /proc/<pid>/stat;
- event-loop lag p99: the worker's ticker (`/worker/status?since_ns=`);
- frames received vs sent: frames the recorder wrote (+ frames it skipped waiting for a first
  keyframe) against frames the senders sent in the same window, plus the loss counters
  (unrepaired RTP holes, frames dropped on a full queue) which must not move;
- RSS of the worker.

A step is *held* when the lag p99 < 50 ms, nothing was lost or dropped, at least 99 % of the sent
frames were recorded and the load generators really sent 30 fps (else the step says the load was
the limit). Stepping stops at the first step not held. The baseline runs the same senders against
`recorder.bench_stock` (MediaRecorder, decode + H.264 re-encode) pinned to the same core.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tonglu.recorder.remote import SECRET_HEADER

LAG_LIMIT_MS = 50.0
RECORDED_MIN_RATIO = 0.99
LOAD_MIN_RATIO = 0.95
TARGETS = {"max_streams": 64, "cpu_pct_per_stream": 1.5, "cpu_ratio_vs_baseline": 20.0}


def log(msg: str) -> None:
    print(f"[bench recorder] {msg}", file=sys.stderr, flush=True)


@dataclass
class BenchConfig:
    steps: list[int] = field(default_factory=lambda: [8, 16, 32, 48, 64, 80])
    step_seconds: float = 12.0
    warmup_seconds: float = 4.0
    codecs: list[str] = field(default_factory=lambda: ["vp8"])
    baseline_streams: int = 2
    bitrate_kbps: int = 1500
    senders_per_process: int = 16
    load_cores: int = 1  # cores for the load generators (after the recorder's); 1 on a 2-core machine
    width: int = 1280
    height: int = 720
    fps: int = 30

    def check(self) -> None:
        if not self.steps or any(s < 1 for s in self.steps) or self.steps != sorted(set(self.steps)):
            raise ValueError(f"steps must be increasing positive stream counts, got {self.steps}")
        if self.step_seconds <= 0 or self.warmup_seconds < 0:
            raise ValueError("step_seconds must be > 0 and warmup_seconds >= 0")
        bad = [c for c in self.codecs if c not in ("vp8", "h264")]
        if bad or not self.codecs:
            raise ValueError(f"codecs must be vp8 and/or h264, got {self.codecs}")
        if self.baseline_streams < 1 or self.senders_per_process < 1:
            raise ValueError("baseline_streams and senders_per_process must be >= 1")


# -- /proc ---------------------------------------------------------------------------------------
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime, all threads


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- load generators -----------------------------------------------------------------------------
class LoadProcess:
    def __init__(self, url: str, secret: str, clip: Path, streams: list[dict[str, str]], core: int | None) -> None:
        self.streams = streams
        self.history: list[dict[str, Any]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tonglu.bench.load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdin is not None
        cfg = {"url": url, "secret": secret, "clip": str(clip), "streams": streams, "core": core}
        self.proc.stdin.write(json.dumps(cfg).encode() + b"\n")
        self.proc.stdin.flush()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.history.append(json.loads(line))
            except ValueError:
                continue

    @property
    def latest(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {"connected": 0, "failed": 0, "frames_sent": 0, "t_ns": 0}

    def frames_at(self, t_ns: int) -> float:
        """Frames sent by time `t_ns` (interpolated between the once-a-second reports)."""
        pts = [(h["t_ns"], h["frames_sent"]) for h in self.history]
        if not pts:
            return 0.0
        for (ta, fa), (tb, fb) in itertools.pairwise(pts):
            if ta <= t_ns <= tb:
                return fa + (fb - fa) * (t_ns - ta) / max(1, tb - ta)
        return float(pts[-1][1] if t_ns > pts[-1][0] else pts[0][1])

    def stop(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_connected(procs: list[LoadProcess], timeout_s: float = 90.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        connected = sum(p.latest["connected"] for p in procs)
        failed = sum(p.latest["failed"] for p in procs)
        want = sum(len(p.streams) for p in procs)
        if connected + failed >= want or time.monotonic() > deadline:
            return connected, failed
        time.sleep(0.25)


def start_load(
    url: str, secret: str, clip: Path, streams: list[dict[str, str]], per_process: int, cores: list[int]
) -> list[LoadProcess]:
    return [
        LoadProcess(url, secret, clip, streams[i : i + per_process], cores[next(_spread) % len(cores)])
        for i in range(0, len(streams), per_process)
    ]


_spread = itertools.count()  # load processes go round the load cores


def load_cores(cfg: BenchConfig, cores: list[int]) -> list[int]:
    rest = cores[1:] or cores
    return rest[: max(1, cfg.load_cores)]


# -- one measured window ---------------------------------------------------------------------------
def worker_status(client: httpx.Client, url: str, since_ns: int | None = None) -> dict[str, Any]:
    params = {"detail": "0", **({"since_ns": str(since_ns)} if since_ns else {})}
    r = client.get(f"{url}/worker/status", params=params)
    r.raise_for_status()
    result: dict[str, Any] = r.json()
    return result


def measure(client: httpx.Client, url: str, pid: int, procs: list[LoadProcess], seconds: float) -> dict[str, Any]:
    s0 = worker_status(client, url)
    c0, l0 = cpu_seconds(pid), sum(cpu_seconds(p.proc.pid) for p in procs)
    t0 = time.time_ns()
    time.sleep(seconds)
    t1 = time.time_ns()
    c1, l1 = cpu_seconds(pid), sum(cpu_seconds(p.proc.pid) for p in procs)
    s1 = worker_status(client, url, since_ns=t0)
    rss = rss_mb(pid)
    time.sleep(1.2)  # the load generators' next reports bracket t1
    wall = (t1 - t0) / 1e9
    sent = sum(p.frames_at(t1) - p.frames_at(t0) for p in procs)
    d = {k: s1["totals"][k] - s0["totals"][k] for k in s1["totals"]}
    return {
        "seconds": round(wall, 2),
        "cpu_pct": round((c1 - c0) / wall * 100, 1),
        "load_cpu_pct": round((l1 - l0) / wall * 100, 1),
        "loop_lag_ms": s1["loop_lag_ms"],
        "frames_sent": int(sent),
        "frames_recorded": d["frames"] + d["waiting_for_keyframe_dropped"],
        "packets_lost": d["packets_lost"],
        "queue_dropped": d["queue_dropped"],
        "rss_mb": round(rss, 1),
    }


# -- the recorder under test -----------------------------------------------------------------------
def run_codec(cfg: BenchConfig, codec: str, clip_path: Path, root: Path, cores: list[int]) -> dict[str, Any]:
    from tonglu.config import Settings
    from tonglu.recorder.workers import start_workers
    from tonglu.web.services import Services

    settings = Settings(data_dir=root / f"data-{codec}", recorder_workers=1, log_level="WARNING")
    services = Services.local(settings)
    from tonglu.recorder.store import SessionStore

    store = SessionStore(services.ledger, settings.db_url)
    handle = start_workers(settings, 1)
    lcores = load_cores(cfg, cores)
    os.sched_setaffinity(0, set(lcores))  # this process with the load, after the worker took core 0
    url, pid = handle.urls[0], handle.pids[0]
    assert pid is not None
    procs: list[LoadProcess] = []
    steps: list[dict[str, Any]] = []
    try:
        with httpx.Client(headers={SECRET_HEADER: handle.secret}, timeout=30) as client:
            time.sleep(1.0)
            idle = measure(client, url, pid, [], 3.0)
            have = 0
            for target in cfg.steps:
                streams: list[dict[str, str]] = []
                while have + len(streams) < target:
                    sid, tokens = store.create(
                        {
                            "room": f"bench-{len(streams)}",
                            "case_number": "BENCH",
                            "suspect": "-",
                            "interviewers": ["甲", "乙"],
                            "reason": "bench",
                        },
                        "bench",
                    )
                    for source in ("main", "panorama"):
                        if have + len(streams) < target:
                            streams.append({"sid": sid, "source": source, "token": tokens[source]})
                t = time.monotonic()
                procs += start_load(url, handle.secret, clip_path, streams, cfg.senders_per_process, lcores)
                connected, failed = wait_connected(procs)
                log(f"{codec}: {connected}/{target} streams connected in {time.monotonic() - t:.1f} s")
                have = target
                time.sleep(cfg.warmup_seconds)
                m = measure(client, url, pid, procs, cfg.step_seconds)
                m.update(streams=target, connected=connected, failed=failed)
                m["fps_sent_per_stream"] = round(m["frames_sent"] / m["seconds"] / max(1, target), 2)
                m["held"], m["why_not"] = judge(m, target, cfg.fps)
                log(
                    f"{codec} {target} streams: cpu {m['cpu_pct']} %, lag p99 {m['loop_lag_ms']['p99_ms']} ms, "
                    f"recorded {m['frames_recorded']}/{m['frames_sent']}, load cpu {m['load_cpu_pct']} % "
                    f"-> {'held' if m['held'] else 'NOT held: ' + m['why_not']}"
                )
                steps.append(m)
                if not m["held"]:
                    break
    finally:
        for p in procs:
            p.stop()
        handle.stop(timeout_s=60)
        os.sched_setaffinity(0, set(cores))
    return summarize(codec, idle, steps)


def judge(m: dict[str, Any], streams: int, fps: int) -> tuple[bool, str]:
    if m["connected"] < streams:
        return False, f"only {m['connected']} of {streams} senders connected"
    if m["fps_sent_per_stream"] < LOAD_MIN_RATIO * fps:
        return False, f"load generators sent {m['fps_sent_per_stream']} fps per stream (load core is the limit)"
    if m["loop_lag_ms"]["p99_ms"] >= LAG_LIMIT_MS:
        return False, f"event-loop lag p99 {m['loop_lag_ms']['p99_ms']} ms"
    if m["packets_lost"] or m["queue_dropped"]:
        return False, f"{m['packets_lost']} packets lost, {m['queue_dropped']} frames dropped"
    if m["frames_recorded"] < RECORDED_MIN_RATIO * m["frames_sent"]:
        return False, f"recorded {m['frames_recorded']} of {m['frames_sent']} frames sent"
    return True, ""


def summarize(codec: str, idle: dict[str, Any], steps: list[dict[str, Any]]) -> dict[str, Any]:
    held = [s for s in steps if s["held"]]
    best = held[-1] if held else None
    out: dict[str, Any] = {
        "codec": codec,
        "max_streams": best["streams"] if best else 0,
        "cpu_pct_idle": idle["cpu_pct"],
        "rss_mb_idle": idle["rss_mb"],
        "steps": steps,
    }
    if best is not None:
        out["cpu_pct_at_max"] = best["cpu_pct"]
        out["cpu_pct_per_stream"] = round(best["cpu_pct"] / best["streams"], 3)
        out["loop_lag_p99_ms"] = best["loop_lag_ms"]["p99_ms"]
        out["rss_mb_per_stream"] = round((best["rss_mb"] - idle["rss_mb"]) / best["streams"], 2)
    if len(held) >= 2:  # marginal cost per stream (least squares over the held steps)
        xs, ys = [s["streams"] for s in held], [s["cpu_pct"] for s in held]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        out["cpu_pct_per_stream_marginal"] = round(slope, 3)
        out["cpu_pct_base_fit"] = round(my - slope * mx, 1)
    return out


# -- baseline: aiortc's MediaRecorder ---------------------------------------------------------------
def run_baseline(cfg: BenchConfig, clip_path: Path, root: Path, cores: list[int]) -> dict[str, Any]:
    import secrets as _secrets

    from tonglu.recorder.workers import listen_socket

    out_dir = root / "stock"
    out_dir.mkdir()
    secret = _secrets.token_urlsafe(16)
    sock = listen_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tonglu.bench.stock"], stdin=subprocess.PIPE, pass_fds=(sock.fileno(),)
    )
    assert proc.stdin is not None
    cfg_line = {"secret": secret, "fd": sock.fileno(), "core": cores[0], "out_dir": str(out_dir)}
    proc.stdin.write(json.dumps(cfg_line).encode() + b"\n")
    proc.stdin.flush()
    procs: list[LoadProcess] = []
    try:
        with httpx.Client(headers={SECRET_HEADER: secret}, timeout=30) as client:
            deadline = time.monotonic() + 60
            while client.get(f"{url}/worker/health").status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("stock MediaRecorder process did not start")
                time.sleep(0.2)
            streams = [{"sid": f"stock{i}", "source": "main", "token": "-"} for i in range(cfg.baseline_streams)]
            procs = start_load(url, secret, clip_path, streams, cfg.senders_per_process, load_cores(cfg, cores))
            connected, _ = wait_connected(procs)
            time.sleep(cfg.warmup_seconds)
            m = measure(client, url, proc.pid, procs, cfg.step_seconds)
    finally:
        for p in procs:
            p.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        sock.close()
    n = cfg.baseline_streams
    kept_up = min(1.0, m["frames_recorded"] / max(1, m["frames_sent"]))
    return {
        "what": "aiortc MediaRecorder per stream (decode VP8, re-encode H.264 into MP4), one pinned core",
        "streams": n,
        "connected": connected,
        "cpu_pct": m["cpu_pct"],
        "frames_sent": m["frames_sent"],
        "frames_recorded": m["frames_recorded"],
        # what it used (the headline, conservative) and what it would need at the full frame rate:
        # a recorder that fell behind did only part of the work
        "cpu_pct_per_stream": round(m["cpu_pct"] / n, 2),
        "kept_up": round(kept_up, 3),
        "cpu_pct_per_stream_full_rate": round(m["cpu_pct"] / n / max(kept_up, 0.01), 2),
        "saturated": m["cpu_pct"] >= 95.0,  # then the per-stream figure understates its real cost
        "loop_lag_p99_ms": m["loop_lag_ms"]["p99_ms"],
        "rss_mb": m["rss_mb"],
        "fps_sent_per_stream": round(m["frames_sent"] / m["seconds"] / n, 2),
    }


# -- the whole run ---------------------------------------------------------------------------------
def clip_file(codec: str, cfg: BenchConfig) -> Path:
    """Encoded once per machine and parameters (encoding 720p takes a while on a busy machine)."""
    import av

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tonglu" / "bench"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"{codec}-{cfg.width}x{cfg.height}-{cfg.fps}fps-{cfg.bitrate_kbps}k-av{av.__version__}.clip"


def run_bench(cfg: BenchConfig) -> dict[str, Any]:
    from tonglu.bench.media import encode_clip, load, save

    cfg.check()
    started = time.monotonic()
    load_start = os.getloadavg()
    cores = sorted(os.sched_getaffinity(0))
    root = Path(tempfile.mkdtemp(prefix="tonglu-bench-recorder-"))
    try:
        clips: dict[str, Path] = {}
        kbps: dict[str, int] = {}
        for codec in dict.fromkeys(["vp8", *cfg.codecs]):
            t = time.monotonic()
            clips[codec] = clip_file(codec, cfg)
            if clips[codec].exists():
                clip = load(clips[codec])
            else:
                clip = encode_clip(codec, cfg.width, cfg.height, cfg.fps, 3.0, cfg.bitrate_kbps)
                save(clip, clips[codec])
            kbps[codec] = clip.kbps
            log(f"{codec} clip: {len(clip.packets)} frames, {clip.kbps} kbps, ready in {time.monotonic() - t:.1f} s")
        baseline = run_baseline(cfg, clips["vp8"], root, cores)
        log(f"baseline: {baseline['cpu_pct_per_stream']} % per stream ({baseline['streams']} streams)")
        results = {codec: run_codec(cfg, codec, clips[codec], root, cores) for codec in cfg.codecs}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    main = results[cfg.codecs[0]]
    ours = main.get("cpu_pct_per_stream")
    ratio = round(baseline["cpu_pct_per_stream"] / ours, 1) if ours else None
    out: dict[str, Any] = {
        "benchmark": "recorder",
        "codec": main["codec"],
        "resolution": f"{cfg.width}x{cfg.height}",
        "fps": cfg.fps,
        "bitrate_kbps": kbps[main["codec"]],
        "max_streams": main["max_streams"],
        "cpu_pct_per_stream": ours,
        "cpu_pct_per_stream_marginal": main.get("cpu_pct_per_stream_marginal"),
        "baseline_cpu_pct_per_stream": baseline["cpu_pct_per_stream"],
        "cpu_ratio_vs_baseline": ratio,
        "loop_lag_p99_ms": main.get("loop_lag_p99_ms"),
        "rss_mb_per_stream": main.get("rss_mb_per_stream"),
        "recorder_core": cores[0],
        "load_core": load_cores(cfg, cores)[0],
        "load_cores": load_cores(cfg, cores),
        "ncpu": len(cores),
        "streams_are": "video only, one per camera; each session = 2 cameras (main + panorama)",
        "load_generator": "aiortc peers (ICE, DTLS, SRTP keys, RTCP); RTP from a clip packetised once, SRTP + "
        "sendto per packet; NACK answered with RTX, PLI with the keyframe; frames paced at the clip rate",
        "held_means": f"lag p99 < {LAG_LIMIT_MS} ms, 0 lost/dropped, >= {RECORDED_MIN_RATIO:.0%} of sent frames "
        f"recorded, load sent >= {LOAD_MIN_RATIO:.0%} of {cfg.fps} fps",
        "targets": TARGETS,
        "baseline": baseline,
        "codecs": {c: {**r, "bitrate_kbps": kbps[c]} for c, r in results.items()},
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "duration_s": round(time.monotonic() - started, 1),
    }
    out["targets_met"] = {
        "max_streams": out["max_streams"] >= TARGETS["max_streams"],
        "cpu_pct_per_stream": ours is not None and ours <= TARGETS["cpu_pct_per_stream"],
        "cpu_ratio_vs_baseline": ratio is not None and ratio >= TARGETS["cpu_ratio_vs_baseline"],
    }
    return out
