"""The storage half of `tonglu bench scale`: seal latency with several recorder hosts writing into a
SeaweedFS cluster, against one host writing into the embedded `weed mini`, in the same run.

    from tonglu.bench.scale_seal import SealLoad, measure
    measure(base_dir, SealLoad(...), hosts=2) -> {"seal_p99_ms", "seal_p99_ms_baseline", ...}

Each recorder host is a separate process (`python -m tonglu.bench.scale_seal`, its config as one
JSON line on stdin, its result as one JSON line on stdout) with its own data directory (spool,
ledger) that runs the real seal path of `bench store` (`bench.store.seal_load`: segment file
closed -> `Spool.put_file` (hash + fsync) -> `Ledger.append` -> the `Uploader` stores segment and
manifest entry in the Object-Locked evidence bucket) against the store's S3 with the recorder
identity. A segment's seal latency runs from the moment its file was closed until both the
object and its ledger entry are confirmed stored. The hosts start at the same moment; their
latencies are pooled for the percentiles. Each host also reports its CPU time (all its threads:
writing and hashing the segment files, spool, ledger, uploader); `seal_host_cpu_ms_per_mb` is that
per MB sealed in the cluster run, an upper bound of what sealing and uploading cost a recorder
host beyond its recorder worker (which already writes and hashes its segments itself).

- cluster: `SeaweedCluster` (`tonglu store up --cluster`): master, 2 volume servers (replication
  001, every object on both), filer and S3 gateway as separate processes; `hosts` writers.
- baseline: `EmbeddedStore` (`weed mini`, the single-host default), 1 writer with the same load.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tonglu.bench.store import percentile

START_DELAY_S = 4.0  # the host processes import and open their stores, then start together


@dataclass(frozen=True)
class SealLoad:
    """What one recorder host seals: `streams` tracks (2 cameras x video/audio per session), each
    closing a `bitrate_bps/8 * segment_seconds` byte segment every `segment_seconds`."""

    seconds: float = 40.0
    streams: int = 32
    segment_seconds: float = 4.0
    bitrate_bps: int = 2_000_000
    upload_threads: int = 4


def log(msg: str) -> None:
    print(f"[bench scale] {msg}", file=sys.stderr, flush=True)


def _env(data_dir: Path, endpoint: str, access: str, secret: str) -> dict[str, str]:
    return {
        "TONGLU_DATA_DIR": str(data_dir),
        "TONGLU_S3_ENDPOINT": endpoint,
        "TONGLU_S3_ACCESS_KEY": access,
        "TONGLU_S3_SECRET_KEY": secret,
        "TONGLU_RETENTION_SECONDS": "3600",
    }


def _bootstrap(base: Path, endpoint: str, store_dir: Path) -> Path:
    """Locked evidence bucket + work bucket (admin identity); returns the site's keys directory."""
    from tonglu.config import Settings
    from tonglu.evidence.bootstrap import bootstrap
    from tonglu.evidence.objectstore import ObjectStore
    from tonglu.evidence.seaweed import load_identities
    from tonglu.evidence.signing import SiteKey

    admin = load_identities(store_dir)["admin"]
    settings = Settings.from_env(_env(base / "site", endpoint, admin.access_key, admin.secret_key))
    bootstrap(ObjectStore.from_settings(settings, role="admin"), settings, SiteKey.load_or_create(settings.keys_dir))
    return settings.keys_dir


def run_hosts(base: Path, endpoint: str, store_dir: Path, load: SealLoad, hosts: int) -> dict[str, Any]:
    """`hosts` recorder-host processes sealing into the store at `endpoint`, started together."""
    from tonglu.evidence.seaweed import load_identities

    keys_dir = _bootstrap(base, endpoint, store_dir)
    rec = load_identities(store_dir)["recorder"]
    start_at = time.time() + START_DELAY_S
    procs = []
    for h in range(hosts):
        data_dir = base / f"host{h + 1}"
        shutil.copytree(keys_dir, data_dir / "keys")  # one site key, as the hosts of a site share it
        cfg = {"env": _env(data_dir, endpoint, rec.access_key, rec.secret_key), "load": asdict(load),
               "sid_prefix": f"host{h + 1}", "start_at": start_at}
        proc = subprocess.Popen([sys.executable, "-m", "tonglu.bench.scale_seal"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(cfg) + "\n")
        proc.stdin.close()
        procs.append(proc)
    results = []
    for proc in procs:
        assert proc.stdout is not None
        out = proc.stdout.read()  # the host ends by itself: its store waits at most 120 s after the load
        proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"recorder host process exited {proc.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    latencies = [x for r in results for x in r.pop("latencies_s")]
    mb = sum(r["segments"] * r["segment_bytes"] for r in results) / 1e6
    return {
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "max_ms": round(max(latencies, default=float("nan")) * 1000, 1),
        "segments": sum(r["segments"] for r in results),
        "segments_not_sealed": sum(r["segments_not_sealed"] for r in results),
        "write_mb_s": round(sum(r["write_mb_s"] for r in results), 2),
        "host_cpu_ms_per_mb": round(sum(r["cpu_s"] for r in results) * 1000 / max(mb, 1e-9), 2),
        "hosts": [{k: r[k] for k in ("seal_p99_s", "segments", "spool_p99_s", "producer_lag_max_s", "cpu_s")}
                  for r in results],
    }


def measure(base_dir: Path, load: SealLoad, *, hosts: int = 2) -> dict[str, Any]:
    """Baseline (1 host, `weed mini`) then the cluster (`hosts` hosts), each in its own directory."""
    from tonglu.evidence.seaweed import EmbeddedStore, SeaweedCluster

    mini_dir = base_dir / "mini"
    mini = EmbeddedStore(mini_dir / "store")
    ep = mini.start()
    try:
        log(f"seal baseline: 1 host -> weed mini at {ep.s3_url}")
        baseline = run_hosts(mini_dir, ep.s3_url, mini_dir / "store", load, 1)
    finally:
        mini.stop()
    log(f"seal baseline p99 {baseline['p99_ms']} ms over {baseline['segments']} segments")
    cluster_dir = base_dir / "cluster"
    cluster = SeaweedCluster(cluster_dir / "store")
    ep = cluster.start()
    try:
        log(f"seal cluster: {hosts} hosts -> SeaweedFS cluster ({', '.join(cluster.procs)}) at {ep.s3_url}")
        result = run_hosts(cluster_dir, ep.s3_url, cluster_dir / "store", load, hosts)
    finally:
        cluster.stop()
    log(f"seal cluster p99 {result['p99_ms']} ms over {result['segments']} segments")
    return {
        "seal_p99_ms": result["p99_ms"],
        "seal_p99_ms_baseline": baseline["p99_ms"],
        "seal_p50_ms": result["p50_ms"],
        "seal_p50_ms_baseline": baseline["p50_ms"],
        "seal_recorder_hosts": hosts,
        "seal_segments": result["segments"],
        "seal_segments_baseline": baseline["segments"],
        "seal_segments_not_sealed": result["segments_not_sealed"] + baseline["segments_not_sealed"],
        "seal_load_per_host": asdict(load),
        "seal_host_cpu_ms_per_mb": result["host_cpu_ms_per_mb"],
        "seal": {"cluster": result, "baseline": baseline,
                 "cluster_is": "SeaweedFS master + 2 volume servers (replication 001) + filer + S3, separate "
                               "processes on this machine",
                 "baseline_is": "weed mini (embedded single store), 1 recorder host"},
    }


def host_main() -> int:
    """One recorder host: config on stdin, `seal_load`'s result (with its latencies) on stdout."""
    from tonglu.bench.store import seal_load
    from tonglu.config import Settings

    cfg = json.loads(sys.stdin.readline())
    load = SealLoad(**cfg["load"])
    settings = Settings.from_env(cfg["env"])
    cpu0 = time.process_time()  # every thread of this host: producers, spool, ledger, uploader
    result = seal_load(settings, seconds=load.seconds, streams=load.streams, segment_seconds=load.segment_seconds,
                       bitrate=load.bitrate_bps, threads=load.upload_threads, sid_prefix=cfg["sid_prefix"],
                       start_at=cfg["start_at"], keep_latencies=True)
    result["cpu_s"] = round(time.process_time() - cpu0, 3)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(host_main())
