"""`tonglu bench store`: seal latency under the recorder's write rate, and verify throughput.

Seal latency: `streams` tracks (16 sessions x main/panorama x video/audio at the default 64) each
close one segment of `bitrate/8 * segment_seconds` bytes every `segment_seconds`, staggered
evenly as real streams are. Each closed file goes through `Spool.put_file` (hash + fsync) and
`Ledger.append` (a manifest entry, itself spooled); the `Uploader` (a few threads) stores both in
the locked bucket of an embedded SeaweedFS with COMPLIANCE retention. A segment is sealed when
the file AND its manifest entry are confirmed; latency runs from the moment the file was
closed.

Verify throughput: the verifier's own hashing routine (`evidence.verify_core.DirSource.digest`,
else `evidence.spool.sha256_file`) over `verify_mb` MB of files, one thread, against
`sha256sum` on the same files in the same run (page cache warmed first, best of 3 each).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tonglu.config import Settings
from tonglu.evidence import keys
from tonglu.evidence.bootstrap import bootstrap
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import SegmentRecord
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.seaweed import EmbeddedStore
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool, SpoolItem, sha256_file
from tonglu.evidence.uploader import Uploader

SOURCES = (("main", "video"), ("main", "audio"), ("panorama", "video"), ("panorama", "audio"))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def _hash_routine() -> tuple[str, Callable[[Path], str]]:
    try:
        from tonglu.evidence.verify_core import DirSource
    except ImportError:
        return "tonglu.evidence.spool.sha256_file", lambda p: sha256_file(p)[0]

    def digest(p: Path) -> str:
        d = DirSource(str(p.parent)).digest(p.name)
        if d.error:
            raise OSError(d.error)
        return d.sha256

    return "tonglu.evidence.verify_core.DirSource.digest", digest


def bench_verify(root: Path, total_mb: int, file_mb: int = 4, rounds: int = 3) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    files = []
    block = os.urandom(file_mb << 20)
    for i in range(max(1, total_mb // file_mb)):
        p = root / f"seg{i:05d}.bin"
        p.write_bytes(i.to_bytes(8, "big") + block[8:])
        files.append(p)
    size_mb = sum(p.stat().st_size for p in files) / 1e6
    name, routine = _hash_routine()
    sha256sum = shutil.which("sha256sum")
    for p in files:  # warm the page cache so both read from memory
        p.read_bytes()
    openssl = shutil.which("openssl")
    ours: list[float] = []
    theirs: list[float] = []
    ossl: list[float] = []
    expected: dict[str, str] = {}
    for _ in range(rounds):
        t = time.perf_counter()
        for p in files:
            expected[p.name] = routine(p)
        ours.append(size_mb / (time.perf_counter() - t))
        if sha256sum:
            t = time.perf_counter()
            out = subprocess.run(
                [sha256sum, *map(str, files)], check=True, capture_output=True, text=True
            ).stdout
            theirs.append(size_mb / (time.perf_counter() - t))
            got = {Path(line.split()[1]).name: line.split()[0] for line in out.splitlines()}
            if got != expected:
                raise RuntimeError("sha256sum and the verifier disagree on the same files")
        if openssl:  # a second, SHA-NI-capable baseline (coreutils 9.1 sha256sum has no SHA-NI)
            t = time.perf_counter()
            subprocess.run([openssl, "dgst", "-sha256", *map(str, files)], check=True, capture_output=True)
            ossl.append(size_mb / (time.perf_counter() - t))
    return {
        "verify_mb_s": round(max(ours), 1),
        "sha256sum_mb_s": round(max(theirs), 1) if theirs else None,
        "verify_ratio": round(max(ours) / max(theirs), 3) if theirs else None,
        "openssl_sha256_mb_s": round(max(ossl), 1) if ossl else None,
        "verify_routine": name,
        "verify_total_mb": round(size_mb, 1),
    }


def bench_seal(
    tmp: Path, *, seconds: float, streams: int, segment_seconds: float, bitrate: int, threads: int
) -> dict[str, Any]:
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp / "data"), "TONGLU_RETENTION_SECONDS": "3600"})
    store_proc = EmbeddedStore(settings.store_dir)
    store_proc.start()
    try:
        key = SiteKey.load_or_create(settings.keys_dir)
        bootstrap(ObjectStore.from_settings(settings, role="admin"), settings, key)
        result = seal_load(
            settings, seconds=seconds, streams=streams, segment_seconds=segment_seconds, bitrate=bitrate,
            threads=threads,
        )  # fmt: skip
        result["store"] = "embedded SeaweedFS (weed mini), loopback"
        return result
    finally:
        store_proc.stop()


def seal_load(
    settings: Settings,
    *,
    seconds: float,
    streams: int,
    segment_seconds: float,
    bitrate: int,
    threads: int,
    sid_prefix: str = "bench",
    start_at: float | None = None,
    keep_latencies: bool = False,
) -> dict[str, Any]:
    """The seal measurement against the (bootstrapped) store `settings` names: the recorder's spool,
    ledger and uploader in this process. `sid_prefix` keeps the session ids of several such
    processes (recorder hosts) apart; `start_at` (time.time()) lets them start together;
    `keep_latencies` adds every seal latency (`latencies_s`) for pooling across processes."""
    key = SiteKey.load_or_create(settings.keys_dir)
    spool = Spool(settings.spool_dir)
    ledger = Ledger(settings.ledger_dir, spool, key)
    confirmed: dict[str, int] = {}
    lock = threading.Lock()

    def on_confirmed(item: SpoolItem, now_ns: int) -> None:
        with lock:
            confirmed[item.key] = now_ns

    store = ObjectStore.from_settings(settings, pool_size=max(4, threads * 2))
    uploader = Uploader(spool, store, settings, ledger=ledger, threads=threads, on_confirmed=on_confirmed)
    stop_up = threading.Event()
    up_thread = threading.Thread(target=uploader.run, args=(stop_up,), name="bench-uploader", daemon=True)
    up_thread.start()

    seg_bytes = int(bitrate / 8 * segment_seconds)
    payload = os.urandom(seg_bytes)
    n_sessions = max(1, streams // len(SOURCES))
    sids = [f"{sid_prefix}-{i:03d}" for i in range(n_sessions)]
    for sid in sids:
        ledger.append(sid, "session_start", {"room": sid, "case_number": "BENCH", "sources": {}})
    # (close_ns, segment key, manifest key)
    sealed: list[tuple[int, str, str]] = []
    spool_lat: list[float] = []  # close -> segment and manifest entry fsynced in the spool
    lag_max = [0.0]
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    t0 = time.monotonic() + 0.5
    n_rounds = max(1, int(seconds / segment_seconds))

    def close_one(stream: int, idx: int) -> None:
        sid = sids[stream % n_sessions]
        source, track = SOURCES[(stream // n_sessions) % len(SOURCES)]
        source = (
            f"{source}{stream // (n_sessions * len(SOURCES))}" if stream >= n_sessions * 4 else source
        )
        key = keys.segment_key(sid, source, track, idx, "webm")
        path = spool.staging_path(f"{sid}-{source}-{track}-{idx}.webm")
        with open(path, "wb") as fh:
            fh.write(stream.to_bytes(4, "big") + idx.to_bytes(4, "big") + payload[8:])
        close_ns = time.time_ns()
        wall_first = close_ns - int(segment_seconds * 1e9)
        digest, size = sha256_file(path)
        spool.put_file(key, path, sha256=digest, size=size, content_type="video/webm")
        rec = SegmentRecord(
            source=source,
            track=track,
            media=track,
            codec="vp8",
            container="webm",
            index=idx,
            key=key,
            rtp_first=idx * 360000,
            rtp_last=idx * 360000 + 359999,
            clock_rate=90000,
            wall_first_ns=wall_first,
            wall_last_ns=close_ns,
            frames=100,
            bytes=size,
            sha256=digest,
        )
        entry = ledger.append(sid, "segment", rec.to_body())
        spooled_ns = time.time_ns()
        with lock:
            sealed.append((close_ns, key, keys.manifest_key(sid, entry.seq)))
            spool_lat.append((spooled_ns - close_ns) / 1e9)

    def producer(mine: list[int]) -> None:
        schedule = sorted(
            (t0 + (s / streams) * segment_seconds + r * segment_seconds, s, r)
            for s in mine
            for r in range(n_rounds)
        )
        for due, s, r in schedule:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                lag_max[0] = max(lag_max[0], -delay)
            close_one(s, r)

    n_prod = 4
    producers = [
        threading.Thread(
            target=producer,
            args=([s for s in range(streams) if s % n_prod == p],),
            name=f"bench-producer-{p}",
        )
        for p in range(n_prod)
    ]
    started = time.monotonic()
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    produced_s = time.monotonic() - started
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            done = all(k in confirmed and m in confirmed for _, k, m in sealed)
        if done:
            break
        time.sleep(0.05)
    stop_up.set()
    up_thread.join(30)
    uploader.close()
    latencies = []
    missing = 0
    for close_ns, k, m in sealed:
        if k in confirmed and m in confirmed:
            latencies.append((max(confirmed[k], confirmed[m]) - close_ns) / 1e9)
        else:
            missing += 1
    versions = store.versions("sessions/")
    one_each = len({v.key for v in versions}) == len(versions)
    result: dict[str, Any] = {
        "seal_p50_s": round(percentile(latencies, 50), 4),
        "seal_p99_s": round(percentile(latencies, 99), 4),
        "seal_max_s": round(max(latencies), 4) if latencies else None,
        "spool_p50_s": round(percentile(spool_lat, 50), 4),
        "spool_p99_s": round(percentile(spool_lat, 99), 4),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "segments": len(sealed),
        "segments_not_sealed": missing,
        "one_version_per_key": one_each,
        "segment_bytes": seg_bytes,
        "write_mb_s": round(len(sealed) * seg_bytes / 1e6 / produced_s, 2),
        "producer_lag_max_s": round(lag_max[0], 3),
        "upload_threads": threads,
    }
    if keep_latencies:
        result["latencies_s"] = latencies
    return result


def run_bench(
    *,
    seconds: float = 40.0,
    streams: int = 64,
    segment_seconds: float = 4.0,
    bitrate: int = 2_000_000,
    threads: int = 4,
    verify_mb: int = 256,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tonglu-bench-store-") as tmp:
        result: dict[str, Any] = {
            "bench": "store",
            "streams": streams,
            "segment_seconds": segment_seconds,
            "bitrate_bps": bitrate,
            "seconds": seconds,
            "cpu_count": os.cpu_count(),
        }
        result.update(
            bench_seal(
                Path(tmp),
                seconds=seconds,
                streams=streams,
                segment_seconds=segment_seconds,
                bitrate=bitrate,
                threads=threads,
            )
        )
        result.update(bench_verify(Path(tmp) / "verify", verify_mb))
        result["targets"] = {"seal_p99_s_max": 1.0, "verify_ratio_min": 0.8}
        ratio = result.get("verify_ratio")
        result["ok"] = bool(
            result["seal_p99_s"] <= 1.0
            and result["segments_not_sealed"] == 0
            and (ratio is None or ratio >= 0.8)
        )
        return result
