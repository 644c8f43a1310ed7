"""The recorder half of `tonglu bench scale`: the recorder's CPU per real 2-camera session, and from
it how many sessions one recorder host holds.

    from tonglu.bench.scale_load import HostBudget, measure
    measure(base_dir, sessions=16, seconds=15.0, budget=HostBudget(cores=2)) -> {"sessions_per_recorder_host", ...}

The measurement is `bench recorder`'s, at one load step: a real recorder worker process
(`recorder.workers.start_workers(settings, 1)`, pinned to the first core) receives `sessions`
sessions made through the session store, each with its two cameras (`main`, `panorama`)
published over the worker's internal WebRTC API by real aiortc peers (`bench.load`: ICE, DTLS,
SRTP, RTCP; the RTP of a pre-encoded 720p30 VP8 clip sent by `bench.sender.LeanSender`, NACKs
answered with RTX). The load generators run on the other core(s). First the idle worker is
measured, then all senders connect, settle for `warmup_s`, and the worker's utime+stime (all its
threads, /proc/<pid>/stat) is measured over `seconds`, with the frames the senders sent and the
frames the recorder wrote in the same window.

    cpu_pct_per_session        = (cpu_pct - idle_cpu_pct) / sessions
    sessions_per_recorder_host = floor((core_budget_pct - idle_cpu_pct * cores) / cpu_pct_per_session)
    core_budget_pct            = cores * 100 % * utilisation

with one recorder worker per core (`TONGLU_RECORDER_WORKERS`, each idling at `idle_cpu_pct`) and
`utilisation` (0.8 by default) the share of each core the recorder may plan to use (the rest is
headroom for the web app, the uploader's bursts and the OS). `cores` defaults to this machine's.
The recorder worker writes, hashes and spools its segments itself; the upload to the object
store runs in the `tonglu up` process and is not in `cpu_pct_per_session`. `bench.scale` adds an
upper bound of it from the seal hosts' CPU per MB (`upload_cpu_pct_per_session_max`,
`sessions_per_recorder_host_with_upload`). Caveats: the senders send video only (the audio
tracks of a real session add their share, small against 720p video); the per-session cost is the
average over `sessions`, fixed costs included.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

UTILISATION = 0.8
AUDIO_KBPS = 32  # Opus per microphone track of a session (the load generators send video only)


@dataclass(frozen=True)
class HostBudget:
    """The recorder host the figure is for: `cores` (one recorder worker each) x `utilisation`."""

    cores: int
    utilisation: float = UTILISATION

    @property
    def core_budget_pct(self) -> float:
        return self.cores * 100.0 * self.utilisation


def log(msg: str) -> None:
    print(f"[bench scale] {msg}", file=sys.stderr, flush=True)


def sessions_per_host(budget: HostBudget, idle_cpu_pct: float, cpu_pct_per_session: float) -> int:
    """floor((core budget - idle of every worker) / per-session CPU); 0 if nothing fits."""
    if cpu_pct_per_session <= 0:
        raise ValueError(f"per-session CPU must be > 0, got {cpu_pct_per_session}")
    return max(0, math.floor((budget.core_budget_pct - idle_cpu_pct * budget.cores) / cpu_pct_per_session))


def session_mb_per_s(video_kbps: int, audio_kbps: int = AUDIO_KBPS) -> float:
    """MB a 2-camera session seals per second: 2 x (video + audio)."""
    return 2 * (video_kbps + audio_kbps) / 8 / 1000


def upload_cpu_pct(cpu_ms_per_mb: float, mb_per_s: float) -> float:
    """% of a core that sealing + uploading `mb_per_s` costs at `cpu_ms_per_mb`."""
    return cpu_ms_per_mb / 1000 * mb_per_s * 100


def _clip(codec: str, cfg: Any) -> Path:
    from tonglu.bench.media import encode_clip, save
    from tonglu.bench.recorder import clip_file

    path = clip_file(codec, cfg)
    if not path.exists():
        t = time.monotonic()
        save(encode_clip(codec, cfg.width, cfg.height, cfg.fps, 3.0, cfg.bitrate_kbps), path)
        log(f"{codec} clip encoded in {time.monotonic() - t:.1f} s (cached at {path})")
    return path


def measure(base_dir: Path, *, sessions: int, seconds: float, warmup_s: float, budget: HostBudget,
            bitrate_kbps: int = 1500) -> dict[str, Any]:
    """Recorder CPU per 2-camera session at `sessions` sessions and the sessions one host holds."""
    from tonglu.bench.recorder import BenchConfig, run_codec

    if sessions < 1:
        raise ValueError("sessions must be >= 1")
    cfg = BenchConfig(steps=[2 * sessions], step_seconds=seconds, warmup_seconds=warmup_s, codecs=["vp8"],
                      bitrate_kbps=bitrate_kbps, senders_per_process=16)
    cfg.check()
    clip = _clip("vp8", cfg)
    cores = sorted(os.sched_getaffinity(0))
    log(f"recorder CPU: {sessions} sessions x 2 cameras, {seconds:.0f} s measured, worker on core {cores[0]}")
    run = run_codec(cfg, "vp8", clip, base_dir, cores)
    step = run["steps"][0] if run["steps"] else None
    if step is None:
        raise RuntimeError("the load step did not run")
    idle = float(run["cpu_pct_idle"])
    per_session = max(0.001, (step["cpu_pct"] - idle) / sessions)
    ratio = step["frames_recorded"] / max(1, step["frames_sent"])
    held = sessions_per_host(budget, idle, per_session)
    log(f"recorder CPU {step['cpu_pct']} % at {sessions} sessions (idle {idle} %): {per_session:.2f} % per session "
        f"-> {held} sessions per {budget.cores}-core host; recorded {ratio:.3f} of frames sent")
    return {
        "sessions_per_recorder_host": held,
        "cpu_pct_per_session": round(per_session, 3),
        "idle_cpu_pct": idle,
        "cpu_pct_at_load": step["cpu_pct"],
        "core_budget_pct": round(budget.core_budget_pct, 1),
        "frames_recorded_ratio": round(ratio, 4),
        "frames_sent": step["frames_sent"],
        "frames_recorded": step["frames_recorded"],
        "load_sessions": sessions,
        "load_streams_connected": step["connected"],
        "load_held": step["held"],
        "load_why_not_held": step["why_not"],
        "loop_lag_p99_ms": step["loop_lag_ms"]["p99_ms"],
        "packets_lost": step["packets_lost"],
        "fps_sent_per_stream": step["fps_sent_per_stream"],
        "host": asdict(budget),
        "session_mb_s": round(session_mb_per_s(bitrate_kbps), 4),
        "formula": "sessions_per_recorder_host = floor((cores*100*utilisation - idle_cpu_pct*cores) / "
                   "cpu_pct_per_session); cpu_pct_per_session = (cpu_pct_at_load - idle_cpu_pct) / load_sessions",
        "media": f"{cfg.width}x{cfg.height} {cfg.fps} fps VP8 at {bitrate_kbps} kbps per camera, video only",
    }
