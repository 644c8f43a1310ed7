"""`tonglu bench verify`: the whole offline verifier over a real session vs `sha256sum`.

A session of `mb` megabytes of `segment_kb` segments (random bytes: hashing cost does not depend
on content) is written with the real Ledger and site key and laid out as an evidence directory.
Then, page cache warm, best of 3 each, alternating: `sha256sum` over the segment files (one
process, the baseline), `verify` with its default hashing threads, and `verify` with one thread.
The verifier does more than hash (manifest, chain, Merkle roots, signatures, track order), so the
ratio is end to end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tonglu.evidence import keys
from tonglu.evidence.evidence_dir import write_session_dir
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import SegmentRecord
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.evidence.verify_core import Verifier, open_source

T0 = 1_750_000_000_000_000_000
SEG_NS = 4_000_000_000


def build_bench_session(root: Path, *, mb: int, segment_kb: int) -> tuple[Path, list[Path]]:
    sid = "bench-verify"
    key = SiteKey.load_or_create(root / "keys")
    ledger = Ledger(root / "ledger", Spool(root / "spool"), key)
    dest = root / "evidence"
    ledger.append(sid, "session_start", {"room": "bench", "sources": {}}, now_ns=T0)
    n = max(1, mb * 1024 // segment_kb)
    files = []
    for i in range(n):
        data = os.urandom(segment_kb * 1024)
        seg_key = keys.segment_key(sid, "main", "video", i, "webm")
        path = dest.joinpath(*seg_key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(path)
        rec = SegmentRecord(
            source="main",
            track="video",
            media="video",
            codec="vp8",
            container="webm",
            index=i,
            key=seg_key,
            rtp_first=i * 360_000,
            rtp_last=(i + 1) * 360_000 - 3600,
            clock_rate=90_000,
            wall_first_ns=T0 + i * SEG_NS,
            wall_last_ns=T0 + (i + 1) * SEG_NS,
            frames=100,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        ledger.append(sid, "segment", rec.to_body(), now_ns=T0 + (i + 1) * SEG_NS)
        if i % 75 == 74:  # a checkpoint every 5 minutes of 4 s segments
            ledger.checkpoint(sid, now_ns=T0 + (i + 1) * SEG_NS + 1)
    ledger.append(
        sid, "session_stop", {"stopped_by": "bench", "reason": "bench"}, now_ns=T0 + (n + 1) * SEG_NS
    )
    ledger.checkpoint(sid, final=True, now_ns=T0 + (n + 1) * SEG_NS + 1)
    write_session_dir(ledger.entries(sid), ledger.checkpoints(sid), {}, key.public_pem, dest)
    return dest, files


def _best(fn: Any, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run_bench(*, mb: int = 256, segment_kb: int = 1000, workers: int | None = None) -> dict[str, Any]:
    sha256sum = shutil.which("sha256sum")
    with tempfile.TemporaryDirectory(prefix="tonglu-bench-verify-") as tmp:
        evidence, files = build_bench_session(Path(tmp), mb=mb, segment_kb=segment_kb)
        total = sum(f.stat().st_size for f in files)
        for f in files:  # warm the page cache for everyone
            f.read_bytes()
        results: dict[str, float] = {}
        verdict: dict[str, Any] = {}

        def verify(n_workers: int | None) -> None:
            source = open_source(str(evidence))
            if n_workers:
                source.hash_workers = n_workers
            result = Verifier(source).verify()
            verdict["ok"] = result.ok
            verdict["workers"] = source.hash_workers
            verdict["entries"] = result.sessions[0].entries

        def baseline() -> None:
            assert sha256sum
            subprocess.run([sha256sum, *map(str, files)], check=True, stdout=subprocess.DEVNULL)

        for _ in range(3):
            if sha256sum:
                results["sha256sum"] = min(results.get("sha256sum", 1e9), _best(baseline, 1))
            results["verify"] = min(results.get("verify", 1e9), _best(lambda: verify(workers), 1))
            default_workers = verdict["workers"]
            results["verify1"] = min(results.get("verify1", 1e9), _best(lambda: verify(1), 1))
        mb_total = total / 1e6
        out: dict[str, Any] = {
            "bench": "verify",
            "segments": len(files),
            "entries": verdict["entries"],
            "mb": round(mb_total, 1),
            "verify_ok": verdict["ok"],
            "verify_workers": default_workers,
            "verify_mb_s": round(mb_total / results["verify"], 1),
            "verify_1thread_mb_s": round(mb_total / results["verify1"], 1),
            "sha256sum_mb_s": round(mb_total / results["sha256sum"], 1) if sha256sum else None,
            "cpus": os.cpu_count(),
        }
        if sha256sum:
            out["ratio"] = round(out["verify_mb_s"] / out["sha256sum_mb_s"], 2)
            out["ratio_1thread"] = round(out["verify_1thread_mb_s"] / out["sha256sum_mb_s"], 2)
        return out
