"""`tonglu bench report`: analyse + report a synthesised 4-hour two-camera session and build its
export package, against `zip` (Debian Info-ZIP, `-0`: stored, like the export's media) of the same
files in the same run; Python's `zipfile` (ZIP_STORED) as a second baseline.

The session: 2 cameras × (video + audio), 4 s segments → 3600 segments per track, 14,400 segment
entries, video segments of `segment_mb` MB and audio of 16 kB (32 kbit/s Opus), as sparse files of
real size (a few random bytes each so every hash differs). The manifest and checkpoints are real
(canonical, hash-chained, Ed25519-signed). The working copy is left out (re-encoding 4 hours is
not what this measures).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from tonglu.config import Settings
from tonglu.evidence import keys, merkle
from tonglu.evidence.checkpoint import sign_checkpoint
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import GENESIS, HashChain, SegmentRecord
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.integrity import html, report
from tonglu.integrity.analysis import analyse
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.evidence import DirEvidence
from tonglu.integrity.export import export_session
from tonglu.integrity.service import Review

S = 1_000_000_000
SEG_S = 4
T0 = 1_714_543_200 * S


def _sparse(path: Path, size: int, seed: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    head = hashlib.sha256(seed).digest() * 2
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    h = hashlib.sha256(head)
    h.update(bytes(size - len(head)))
    return h.hexdigest()


def synthesise(root: Path, hours: float, segment_mb: float) -> tuple[Settings, str, int]:
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(root / "data")})
    key = SiteKey.load_or_create(settings.keys_dir)
    sid = "bench-4h"
    evidence = root / "evidence"
    n = int(hours * 3600 / SEG_S)
    chain = HashChain(sid)
    lines: list[bytes] = []

    def add(kind: str, body: dict[str, Any], t: int) -> None:
        entry = chain.append(kind, body, t)
        line = entry.to_bytes()
        lines.append(line)
        p = evidence / keys.manifest_key(sid, entry.seq)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(line)

    add(
        "session_start",
        {
            "room": "R1",
            "case_number": "BENCH",
            "suspect": "-",
            "interviewers": ["a", "b"],
            "reason": "bench",
            "custody_out_iso": None,
            "created_by": "bench",
            "recorder_version": "bench",
            "sources": {
                "main": {"kind": "camera", "label": "近景"},
                "panorama": {"kind": "camera", "label": "全景"},
            },
        },
        T0,
    )
    video_size = int(segment_mb * 1_000_000)
    audio_size = 16_000
    total = 0
    for k in range(n):
        for source in ("main", "panorama"):
            for track, size, rate, frames, ticks in (
                ("video", video_size, 90_000, 100, 3600),
                ("audio", audio_size, 48_000, 200, 960),
            ):
                k_key = keys.segment_key(sid, source, track, k, "webm")
                digest = _sparse(evidence / k_key, size, k_key.encode())
                rtp0 = k * frames * ticks
                rec = SegmentRecord(
                    source,
                    track,
                    track,
                    "vp8" if track == "video" else "opus",
                    "webm",
                    k,
                    k_key,
                    rtp0,
                    rtp0 + (frames - 1) * ticks,
                    rate,
                    T0 + k * SEG_S * S,
                    T0 + (k + 1) * SEG_S * S,
                    frames,
                    size,
                    digest,
                )
                add("segment", rec.to_body(), T0 + (k + 1) * SEG_S * S)
                total += size
    add("session_stop", {"stopped_by": "bench", "reason": "done"}, T0 + n * SEG_S * S)
    ledger_dir = settings.ledger_dir / sid
    ledger_dir.mkdir(parents=True, exist_ok=True)
    (ledger_dir / "entries.log").write_bytes(b"\n".join(lines) + b"\n")
    cp = sign_checkpoint(
        key,
        session=sid,
        tree_size=len(lines),
        root=merkle.root(lines),
        head=chain.head,
        now_ns=T0 + n * SEG_S * S,
        prev_checkpoint=GENESIS,
        final=True,
    )
    (ledger_dir / "checkpoints.log").write_bytes(cp.to_bytes() + b"\n")
    cp_path = evidence / keys.checkpoint_key(sid, 0)
    cp_path.parent.mkdir(parents=True, exist_ok=True)
    cp_path.write_bytes(cp.to_bytes())
    pk = evidence / keys.public_key_key(key.key_id)
    pk.parent.mkdir(parents=True, exist_ok=True)
    pk.write_bytes(key.public_pem)
    return settings, sid, total


def run(hours: float = 4.0, segment_mb: float = 1.0, keep: bool = False) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="tonglu-bench-report-", dir=os.environ.get("TONGLU_BENCH_DIR")))
    try:
        t = time.perf_counter()
        settings, sid, media_bytes = synthesise(root, hours, segment_mb)
        synth_s = time.perf_counter() - t
        spool = Spool(settings.spool_dir)
        key = SiteKey.load(settings.keys_dir)
        review = Review(
            settings,
            Ledger(settings.ledger_dir, spool, key),
            key,
            DirEvidence(root / "evidence"),
            config=AnalysisConfig.from_settings(settings),
        )
        # Baselines first (they also bring the files into the page cache for everyone).
        zip_path = root / "baseline.zip"
        t = time.perf_counter()
        proc = subprocess.run(
            ["zip", "-0", "-q", "-r", str(zip_path), "sessions", "site"],
            cwd=root / "evidence",
            capture_output=True,
        )
        zip_s = time.perf_counter() - t
        zip_ok = proc.returncode == 0
        zip_path.unlink(missing_ok=True)
        t = time.perf_counter()
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for dirpath, _, files in os.walk(root / "evidence"):
                for name in files:
                    full = Path(dirpath) / name
                    zf.write(full, full.relative_to(root / "evidence").as_posix())
        zipfile_s = time.perf_counter() - t
        zip_path.unlink(missing_ok=True)
        # Analyse + report: load the ledger, verify (re-hash every segment), analyse, JSON + HTML.
        t = time.perf_counter()
        loaded = review.load(sid)
        load_s = time.perf_counter() - t
        t1 = time.perf_counter()
        summary = review.verify(loaded)
        verify_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        where = {s.rec.key: review.files.where(s.rec.key) for s in loaded.view.segments}
        analysis = analyse(loaded.view, review.config, verification=summary, where=where)
        doc = report.build(analysis)
        page = html.render(doc, analysis)
        pure_s = time.perf_counter() - t2
        analyse_s = time.perf_counter() - t
        # Export package (no working copy).
        out = root / "export.zip"
        t = time.perf_counter()
        result = export_session(review, sid, out, with_workcopy=False)
        export_s = time.perf_counter() - t
        package_bytes = out.stat().st_size
        out.unlink(missing_ok=True)
        return {
            "bench": "report",
            "hours": hours,
            "segments": len(loaded.view.segments),
            "entries": len(loaded.entries),
            "media_bytes": media_bytes,
            "synthesise_s": round(synth_s, 2),
            "analyse_s": round(analyse_s, 3),
            "analyse_load_s": round(load_s, 3),
            "analyse_verify_s": round(verify_s, 3),
            "analyse_findings_report_s": round(pure_s, 3),
            "report_html_bytes": len(page.encode()),
            "verified": summary.ok,
            "findings": len(analysis.findings),
            "export_s": round(export_s, 3),
            "export_includes_analysis_s": True,
            "export_bytes": package_bytes,
            "export_files": result.files,
            "zip_baseline_s": round(zip_s, 3),
            "zip_baseline": "Debian zip -0 -r (stored), same evidence files" if zip_ok else "zip failed",
            "zipfile_stored_baseline_s": round(zipfile_s, 3),
            "export_vs_zip": round(export_s / zip_s, 2) if zip_s > 0 else None,
            "note": "export_s includes a full re-verification and the report; media stored (ZIP_STORED); "
            "working copy excluded",
        }
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
