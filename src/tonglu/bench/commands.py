"""`tonglu bench store|verify|recorder|report|transcribe|search|review|hearing|scale`: each prints ONE
JSON object on stdout with its figures and a baseline measured in the same run; progress goes to stderr.

Attached to the `tonglu` command line through the `tonglu.cli` entry-point group.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Annotated

import typer

from tonglu.commands.common import fail

bench_app = typer.Typer(
    help="Benchmarks: each prints one JSON object with its figures and a same-run baseline.", no_args_is_help=True
)


@bench_app.command("store")
def bench_store(
    seconds: float = typer.Option(40.0, "--seconds", help="how long to produce segments"),
    streams: int = typer.Option(64, "--streams"),
    segment_seconds: float = typer.Option(4.0, "--segment-seconds"),
    bitrate: int = typer.Option(2_000_000, "--bitrate", help="bits per second per stream"),
    threads: int = typer.Option(4, "--threads", help="upload threads"),
    verify_mb: int = typer.Option(256, "--verify-mb", help="MB hashed for the verify comparison"),
) -> None:
    """Seal latency at 64 × 2 Mbit/s (4 s segments) and verify MB/s vs sha256sum. Prints one JSON object."""
    from tonglu.bench.store import run_bench

    try:
        result = run_bench(
            seconds=seconds,
            streams=streams,
            segment_seconds=segment_seconds,
            bitrate=bitrate,
            threads=threads,
            verify_mb=verify_mb,
        )
    except Exception as exc:  # a benchmark names its failure and exits non-zero
        fail(f"bench store failed: {type(exc).__name__}: {exc}")
    sys.stdout.write(json.dumps(result) + "\n")


@bench_app.command("verify")
def bench_verify(
    mb: Annotated[int, typer.Option(help="total segment megabytes")] = 256,
    segment_kb: Annotated[int, typer.Option(help="size of one segment (4 s at 2 Mbit/s = 1000 KB)")] = 1000,
    workers: Annotated[int, typer.Option(help="hashing threads of the verifier (default: as `verify`)")] = 0,
) -> None:
    """Full `verify` of a real session directory vs `sha256sum` on the same files (one JSON object)."""
    from tonglu.bench.verify import run_bench

    typer.echo(json.dumps(run_bench(mb=mb, segment_kb=segment_kb, workers=workers or None)))


@bench_app.command("recorder")
def bench_recorder(
    steps: Annotated[str, typer.Option(help="stream counts to step through")] = "8,16,32,48,64,80",
    step_seconds: Annotated[float, typer.Option(help="measured seconds per step")] = 12.0,
    warmup_seconds: Annotated[float, typer.Option(help="seconds after connecting before measuring")] = 4.0,
    codecs: Annotated[str, typer.Option(help="vp8, h264 or vp8,h264")] = "vp8",
    baseline_streams: Annotated[int, typer.Option(help="streams for aiortc's stock MediaRecorder")] = 2,
    bitrate_kbps: Annotated[int, typer.Option(help="target bitrate of the 720p30 clip")] = 1500,
    senders_per_process: Annotated[int, typer.Option(help="aiortc senders per load process")] = 16,
    load_cores: Annotated[int, typer.Option(help="cores for the load generators (machines with > 2)")] = 1,
) -> None:
    """Streams one pinned recorder core holds (720p30 pass-through) vs aiortc's MediaRecorder."""
    from tonglu.bench.recorder import BenchConfig, run_bench

    try:
        cfg = BenchConfig(
            steps=[int(s) for s in steps.split(",") if s.strip()],
            step_seconds=step_seconds,
            warmup_seconds=warmup_seconds,
            codecs=[c.strip().lower() for c in codecs.split(",") if c.strip()],
            baseline_streams=baseline_streams,
            bitrate_kbps=bitrate_kbps,
            senders_per_process=senders_per_process,
            load_cores=load_cores,
        )
        cfg.check()
    except ValueError as exc:
        fail(str(exc), 2)
    typer.echo(json.dumps(run_bench(cfg)))


@bench_app.command("report")
def bench_report(
    hours: float = typer.Option(4.0, "--hours", help="session length to synthesise"),
    segment_mb: float = typer.Option(1.0, "--segment-mb", help="video segment size in MB"),
    keep: bool = typer.Option(False, "--keep", help="keep the temporary directory"),
) -> None:
    """Analyse + report a synthesised 4-hour two-camera session and export it, vs `zip` of the files."""
    from tonglu.bench import report

    print(json.dumps(report.run(hours=hours, segment_mb=segment_mb, keep=keep), ensure_ascii=False))


@bench_app.command("transcribe")
def bench_transcribe(
    model: Annotated[str, typer.Option(help="model for the figures (base by default)")] = "base",
    sessions: Annotated[int, typer.Option(help="sessions recording at once for the live latency")] = 4,
    live_seconds: Annotated[float, typer.Option(help="seconds each simulated session records")] = 60.0,
    rtf_seconds: Annotated[float, typer.Option(help="seconds of speech per worker for the RTF runs")] = 240.0,
) -> None:
    """RTF (1 and 2 workers), CER zh, WER en, silence lines, live latency while N sessions record."""
    from tonglu.bench.transcribe import run_bench

    result = run_bench(model=model, sessions=sessions, live_seconds=live_seconds, rtf_seconds=rtf_seconds)
    typer.echo(json.dumps(result, ensure_ascii=False, default=float))


@bench_app.command("search")
def bench_search(
    sessions: Annotated[int, typer.Option(help="sessions in the index DB")] = 10_000,
    queries: Annotated[int, typer.Option(help="timed searches (a mix of filters, in rotation)")] = 50,
    sample: Annotated[int, typer.Option(help="real ledger sessions for the ledger-scan baseline")] = 200,
    lines: Annotated[int, typer.Option(help="transcript lines per session")] = 20,
) -> None:
    """Session search from the index DB (p50/p95 ms) vs the old ledger scan (extrapolated from a sample)."""
    from tonglu.bench.search import run_bench

    typer.echo(json.dumps(run_bench(sessions=sessions, queries_n=queries, sample=sample, lines=lines),
                          ensure_ascii=False))


@bench_app.command("review")
def bench_review(
    hours: Annotated[float, typer.Option(help="length of the synthesised two-camera session")] = 24.0,
    quick: Annotated[bool, typer.Option("--quick", help="1 h session, 30 s workcopy, 1,000 search sessions")] = False,
) -> None:
    """Playback from the masters (playlist, segment serve vs raw GET), 10-min clip, working copy job, search."""
    from tonglu.bench.review import run_bench

    if quick:
        result = run_bench(hours=1.0, samples=50, workcopy_s=30, search_sessions=1000, clip_s=60)
    else:
        result = run_bench(hours=hours)
    typer.echo(json.dumps(result, ensure_ascii=False))


@bench_app.command("hearing")
def bench_hearing(seconds: float = typer.Option(15.0, "--seconds", help="how long to measure")) -> None:
    """Glass-to-glass delay room <-> remote through the relay (1 room + 3 parties), server re-encodes,
    recorder CPU, and an aiortc peer-to-peer baseline. Prints one JSON object."""
    from tonglu.bench.hearing import run_bench

    try:
        result = run_bench(seconds=seconds)
    except Exception as exc:  # a benchmark names its failure and exits non-zero
        fail(f"bench hearing failed: {type(exc).__name__}: {exc}")
    sys.stdout.write(json.dumps(result) + "\n")


@bench_app.command("scale")
def bench_scale(
    quick: Annotated[bool, typer.Option("--quick", help="short run (~1.5 min): fewer sessions, seconds, jobs")] = False,
    sessions: Annotated[int, typer.Option(help="2-camera sessions for the recorder CPU measurement")] = 16,
    host_cores: Annotated[int, typer.Option(help="cores of the recorder host of the figure (0: this machine's)")] = 0,
    utilisation: Annotated[float, typer.Option(help="share of each core the recorder may plan to use")] = 0.8,
) -> None:
    """Sessions per recorder host (CPU per 2-camera session), seal p99 with 2 hosts into a SeaweedFS
    cluster vs 1 into weed mini, PostgreSQL index writes and job queue vs SQLite. One JSON object."""
    from tonglu.bench.scale import ScaleConfig, run_bench

    if sessions < 1 or host_cores < 0 or not 0 < utilisation <= 1:
        fail("--sessions must be >= 1, --host-cores >= 0 and --utilisation in (0, 1]", 2)
    base = ScaleConfig.quick() if quick else ScaleConfig(sessions=sessions)
    cfg = dataclasses.replace(base, host_cores=host_cores, utilisation=utilisation)
    try:
        result = run_bench(cfg, quick=quick)
    except Exception as exc:  # a benchmark names its failure and exits non-zero
        fail(f"bench scale failed: {type(exc).__name__}: {exc}")
    sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")


def register(app: typer.Typer) -> None:
    """Entry point of the `tonglu.cli` group: adds `tonglu bench ...`."""
    app.add_typer(bench_app, name="bench")
