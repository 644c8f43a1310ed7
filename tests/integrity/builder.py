"""Build real sessions for the integrity tests: the checked-in media segments (VP8/WebM video and
Opus/WebM audio of two cameras, 3 × 2 s per track) entered into a real Ledger with the wall-clock
and RTP bounds a scenario needs, and laid out in an evidence directory (object keys as paths)."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tonglu.config import Settings
from tonglu.evidence import keys
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import GapRecord, SegmentRecord
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.evidence import DirEvidence
from tonglu.integrity.service import Review

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "integrity" / "media"
S = 1_000_000_000
T0 = 1_714_543_200 * S  # 2024-05-01T06:00:00Z = 14:00:00 Beijing time
SEG_S = 2
VIDEO_FRAMES, VIDEO_RATE, VIDEO_TICKS = 50, 90_000, 3600
AUDIO_FRAMES, AUDIO_RATE, AUDIO_TICKS = 100, 48_000, 960
SOURCES = {
    "main": {"kind": "camera", "label": "近景 close-up"},
    "panorama": {"kind": "camera", "label": "全景 panorama"},
}


def media_file(source: str, track: str, index: int) -> Path:
    return MEDIA / source / track / f"{index:08d}.webm"


@dataclass
class SegSpec:
    source: str
    track: str
    index: int  # manifest index
    file_index: int  # which fixture file
    wall_first_ns: int
    wall_last_ns: int
    rtp_first: int
    rtp_last: int


def default_segments(start_ns: int = T0) -> list[SegSpec]:
    out = []
    for source in SOURCES:
        for track, frames, ticks in (
            ("video", VIDEO_FRAMES, VIDEO_TICKS),
            ("audio", AUDIO_FRAMES, AUDIO_TICKS),
        ):
            for k in range(3):
                rtp0 = 1000 + k * frames * ticks
                out.append(
                    SegSpec(
                        source,
                        track,
                        k,
                        k,
                        start_ns + k * SEG_S * S,
                        start_ns + (k + 1) * SEG_S * S,
                        rtp0,
                        rtp0 + (frames - 1) * ticks,
                    )
                )
    return out


def find(segs: list[SegSpec], source: str, track: str, index: int) -> SegSpec:
    return next(s for s in segs if (s.source, s.track, s.index) == (source, track, index))


@dataclass
class Scenario:
    sid: str = "case-001"
    start_ns: int = T0
    stop_ns: int | None = T0 + 6 * S
    sources: dict[str, Any] = field(default_factory=lambda: dict(SOURCES))
    segments: list[SegSpec] = field(default_factory=default_segments)
    gaps: list[GapRecord] = field(default_factory=list)
    annotations: list[tuple[str, dict[str, Any], int]] = field(default_factory=list)  # kind, body, time


@dataclass
class Built:
    settings: Settings
    ledger: Ledger
    key: SiteKey
    spool: Spool
    evidence_dir: Path
    review: Review
    sid: str

    def seg_key(self, source: str, track: str, index: int) -> str:
        return keys.segment_key(self.sid, source, track, index, "webm")


def build(tmp: Path, sc: Scenario, settings: Settings | None = None, spool_segments: bool = False) -> Built:
    """`spool_segments`: also put the segment bytes in the spool (as the recorder does), for tests
    that read the session the way the CLI and web app do (spool, then store)."""
    settings = settings or Settings.from_env({"TONGLU_DATA_DIR": str(tmp / "data")})
    spool = Spool(settings.spool_dir)
    key = SiteKey.load_or_create(settings.keys_dir)
    ledger = Ledger(settings.ledger_dir, spool, key)
    evidence = tmp / "evidence"
    sid = sc.sid
    ledger.append(
        sid,
        "session_start",
        {
            "room": "讯问室 3",
            "case_number": "A-2024-0501",
            "suspect": "张三",
            "interviewers": ["李警官", "王警官"],
            "reason": "涉嫌盗窃 讯问",
            "custody_out_iso": "2024-05-01T05:50:00Z",
            "sources": sc.sources,
            "created_by": "interviewer1",
            "recorder_version": "test",
        },
        now_ns=sc.start_ns,
    )
    events: list[tuple[int, str, dict[str, Any]]] = []
    for s in sc.segments:
        data = media_file(s.source, s.track, s.file_index).read_bytes()
        k = keys.segment_key(sid, s.source, s.track, s.index, "webm")
        path = evidence.joinpath(*k.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if spool_segments:
            spool.put_bytes(k, data, content_type="video/webm")
        video = s.track == "video"
        rec = SegmentRecord(
            source=s.source,
            track=s.track,
            media="video" if video else "audio",
            codec="vp8" if video else "opus",
            container="webm",
            index=s.index,
            key=k,
            rtp_first=s.rtp_first,
            rtp_last=s.rtp_last,
            clock_rate=VIDEO_RATE if video else AUDIO_RATE,
            wall_first_ns=s.wall_first_ns,
            wall_last_ns=s.wall_last_ns,
            frames=VIDEO_FRAMES if video else AUDIO_FRAMES,
            bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        events.append((s.wall_last_ns, "segment", rec.to_body()))
    for g in sc.gaps:
        events.append((g.end_ns, "gap", g.to_body()))
    for kind, body, t in sc.annotations:
        events.append((t, kind, body))
    for t, kind, body in sorted(events, key=lambda e: (e[0], e[1])):
        ledger.append(sid, kind, body, now_ns=max(t, sc.start_ns))
    ledger.checkpoint(sid, now_ns=sc.start_ns + 3 * S)
    if sc.stop_ns is not None:
        ledger.append(
            sid, "session_stop", {"stopped_by": "interviewer1", "reason": "讯问结束"}, now_ns=sc.stop_ns
        )
        ledger.checkpoint(sid, final=True, now_ns=sc.stop_ns)
    (evidence / "site" / "keys").mkdir(parents=True, exist_ok=True)
    (evidence / "site" / "keys" / f"{key.key_id}.pem").write_bytes(key.public_pem)
    review = Review(
        settings, ledger, key, DirEvidence(evidence), config=AnalysisConfig.from_settings(settings)
    )
    return Built(settings, ledger, key, spool, evidence, review, sid)


def copy_media_tree(dest: Path) -> None:
    shutil.copytree(MEDIA, dest)
