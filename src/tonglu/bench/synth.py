"""Synthesised long sessions of real media for the review benchmark and tests.

`make_media(dir)` encodes a few short real segments with the ffmpeg binary (two cameras, VP8/WebM
video and Opus/WebM audio, 2 s each, as the recorder stores them: one file per track). `synthesize`
writes a session of `duration_s` of them, reused in turn, into a ledger: the same canonical entry
lines, entry index and signed checkpoints `Ledger.append` writes (without an fsync per entry), with optional
gaps (segments left out, a `gap` entry recorded) and markers. `upload` puts chosen segment objects
into the object store as their first version (optionally tampered: a flipped byte, so the store no
longer matches the signed manifest), in parallel.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonglu.config import Settings
from tonglu.evidence import entryindex, keys, merkle
from tonglu.evidence.checkpoint import sign_checkpoint
from tonglu.evidence.manifest import HashChain, SegmentRecord
from tonglu.evidence.signing import SiteKey

S = 1_000_000_000
SEG_S = 2
FILES = 3
SOURCES = {
    "main": {"kind": "camera", "label": "近景 close-up"},
    "panorama": {"kind": "camera", "label": "全景 panorama"},
}
RATES = {"video": 90_000, "audio": 48_000}
PATTERN = {"main": ("testsrc2", 440), "panorama": ("testsrc", 660)}


def ffmpeg() -> str:
    from tonglu.integrity.workcopy import ffmpeg_binary

    return ffmpeg_binary()


def make_media(out: Path) -> dict[tuple[str, str], list[Path]]:
    """3 × 2 s real segments per (source, track) in `out` (made once; reused if present)."""
    media: dict[tuple[str, str], list[Path]] = {}
    for source, (pattern, hz) in PATTERN.items():
        for track in ("video", "audio"):
            d = out / source / track
            if not (d / f"{FILES - 1:08d}.webm").exists():
                d.mkdir(parents=True, exist_ok=True)
                if track == "video":
                    src = ["-f", "lavfi", "-i", f"{pattern}=size=320x180:rate=25:duration={SEG_S * FILES}",
                           "-c:v", "libvpx", "-b:v", "120k", "-g", "50", "-keyint_min", "50", "-auto-alt-ref", "0",
                           "-deadline", "realtime", "-cpu-used", "8"]
                else:
                    src = ["-f", "lavfi", "-i", f"sine=frequency={hz}:sample_rate=48000:duration={SEG_S * FILES}",
                           "-ac", "1", "-c:a", "libopus", "-b:a", "24k", "-frame_duration", "20"]
                subprocess.run(
                    [ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *src, "-f", "segment",
                     "-segment_time", str(SEG_S), "-segment_format", "webm", "-reset_timestamps", "1",
                     str(d / "%08d.webm")],
                    check=True, timeout=120,
                )
            media[(source, track)] = [d / f"{i:08d}.webm" for i in range(FILES)]
    return media


@dataclass
class Synth:
    sid: str
    t0_ns: int
    stop_ns: int
    objects: dict[str, Path] = field(default_factory=dict)  # segment key -> media file with its bytes
    by_track: dict[str, list[str]] = field(default_factory=dict)  # "source/track" -> keys in order
    entries: int = 0


def synthesize(
    settings: Settings,
    key: SiteKey,
    sid: str,
    duration_s: int,
    media: dict[tuple[str, str], list[Path]],
    *,
    t0_ns: int,
    gaps: Iterable[tuple[str, int, int]] = (),  # (source, start_s, end_s): no segments, a gap entry
    markers: Iterable[tuple[int, str]] = (),  # (at_s, note)
    interviewer: str = "interviewer",
) -> Synth:
    info = {k: [(p, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()) for p in v] for k, v in media.items()}
    gap_list = list(gaps)
    chain = HashChain(sid)
    lines: list[bytes] = []

    def add(kind: str, body: dict[str, Any], now_ns: int) -> None:
        lines.append(chain.append(kind, body, now_ns).to_bytes())

    add("session_start", {
        "room": "讯问室 3", "case_number": f"A-2026-{sid}", "suspect": "张三", "interviewers": ["李警官", "王警官"],
        "reason": "合成会话 synthesised", "custody_out_iso": None, "sources": SOURCES, "created_by": interviewer,
        "recorder_version": "bench",
    }, t0_ns)
    out = Synth(sid, t0_ns, t0_ns + duration_s * S)
    pending_markers = sorted(markers)
    index = {(s, t): 0 for s in SOURCES for t in ("video", "audio")}
    steps = duration_s // SEG_S
    for k in range(steps):
        first, last = t0_ns + k * SEG_S * S, t0_ns + (k + 1) * SEG_S * S
        while pending_markers and pending_markers[0][0] * S <= first:
            at, note = pending_markers.pop(0)
            add("marker", {"time_ns": t0_ns + at * S, "note": note, "by": "李警官"}, t0_ns + at * S)
        for source in SOURCES:
            for g_source, a, b in gap_list:
                if g_source == source and k * SEG_S == b:  # the gap ends here: record it as the recorder does
                    for track in ("video", "audio"):
                        add("gap", {"source": source, "track": track, "reason": "peer_disconnect",
                                    "start_ns": t0_ns + a * S, "end_ns": t0_ns + b * S, "rtp_start": None,
                                    "rtp_end": None, "packets_lost": None, "detail": "合成缺口 synthesised gap"},
                            t0_ns + b * S)
            if any(g_source == source and a <= k * SEG_S < b for g_source, a, b in gap_list):
                continue
            for track in ("video", "audio"):
                path, size, digest = info[(source, track)][k % FILES]
                n = index[(source, track)]
                index[(source, track)] = n + 1
                seg_key = keys.segment_key(sid, source, track, n, "webm")
                out.objects[seg_key] = path
                out.by_track.setdefault(f"{source}/{track}", []).append(seg_key)
                rate = RATES[track]
                rec = SegmentRecord(
                    source, track, track, "vp8" if track == "video" else "opus", "webm", n, seg_key,
                    k * SEG_S * rate, (k + 1) * SEG_S * rate - 1, rate, first, last,
                    50 if track == "video" else 100, size, digest,
                )  # fmt: skip
                add("segment", rec.to_body(), last + 1000)
    add("session_stop", {"stopped_by": interviewer, "reason": "讯问结束"}, out.stop_ns)
    ledger_dir = settings.ledger_dir / sid
    ledger_dir.mkdir(parents=True, exist_ok=True)
    (ledger_dir / "entries.log").write_bytes(b"".join(line + b"\n" for line in lines))
    entryindex.sync(ledger_dir)  # the entry index Ledger.append keeps beside the ledger
    leaves = [merkle.leaf_hash(line) for line in lines]
    cp = sign_checkpoint(
        key, session=sid, tree_size=len(lines), root=merkle.root_from_leaf_hashes(leaves), head=chain.head,
        now_ns=out.stop_ns, final=True,
    )  # fmt: skip
    (ledger_dir / "checkpoints.log").write_bytes(cp.to_bytes() + b"\n")
    out.entries = len(lines)
    return out


def flipped(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]


def upload(store: Any, objects: dict[str, Path], wanted: Iterable[str] | None = None, *,
           tamper: Iterable[str] = (), workers: int = 8) -> int:
    """Put segment objects into the store's evidence bucket (first version); `tamper`: flip a byte."""
    bad = set(tamper)
    cache: dict[Path, bytes] = {}

    def put(k: str) -> None:
        path = objects[k]
        data = cache.get(path)
        if data is None:
            data = cache[path] = path.read_bytes()
        if k in bad:
            data = flipped(data)
        store.put_if_absent(k, data, hashlib.sha256(data).hexdigest(), content_type="video/webm")

    todo = list(objects if wanted is None else wanted)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, todo))
    return len(todo)
