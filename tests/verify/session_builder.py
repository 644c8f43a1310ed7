"""Build a real recorded session (Ledger + Spool + SiteKey, real VP8/Opus segments) for the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tonglu.evidence import keys
from tonglu.evidence.evidence_dir import spooled_objects, write_session_dir
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import GapRecord, ManifestEntry, SegmentRecord
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool

MEDIA = Path(__file__).resolve().parents[1] / "fixtures" / "verify" / "media"
T0 = 1_750_000_000_000_000_000
SECOND = 1_000_000_000


@dataclass
class BuiltSession:
    sid: str
    ledger: Ledger
    spool: Spool
    key: SiteKey
    entries: list[ManifestEntry]
    segment_keys: list[str]  # in manifest order

    def segment_entries(self) -> list[ManifestEntry]:
        return [e for e in self.entries if e.kind == "segment"]


def _segment(
    ledger: Ledger,
    spool: Spool,
    sid: str,
    source: str,
    track: str,
    index: int,
    path: Path,
    first_ns: int,
    last_ns: int,
    codec: str,
    clock_rate: int,
) -> str:
    key = keys.segment_key(sid, source, track, index, "webm")
    staged = spool.staging_path(f"{sid}-{source}-{track}-{index}.webm")
    staged.write_bytes(path.read_bytes())
    item = spool.put_file(key, staged)
    record = SegmentRecord(
        source=source,
        track=track,
        media=track,
        codec=codec,
        container="webm",
        index=index,
        key=key,
        rtp_first=(first_ns - T0) * clock_rate // SECOND,
        rtp_last=(last_ns - T0) * clock_rate // SECOND,
        clock_rate=clock_rate,
        wall_first_ns=first_ns,
        wall_last_ns=last_ns,
        frames=15 if track == "video" else 50,
        bytes=item.size,
        sha256=item.sha256,
    )
    ledger.append(sid, "segment", record.to_body(), now_ns=last_ns + 50_000_000)
    return key


def build_session(root: Path, sid: str = "S20250101-room1-0001", *, stop: bool = True) -> BuiltSession:
    """A session of two tracks (main/video: 4 segments, main/audio: 3), a gap, a marker, a periodic
    checkpoint after the first segments and (when `stop`) session_stop plus the final checkpoint."""
    spool = Spool(root / "spool")
    key = SiteKey.load_or_create(root / "keys")
    ledger = Ledger(root / "ledger", spool, key)
    ledger.append(
        sid,
        "session_start",
        {
            "room": "room1",
            "case_number": "A-2025-001",
            "suspect": "张三",
            "interviewers": ["李四", "王五"],
            "reason": "询问",
            "custody_out_iso": None,
            "sources": {"main": {"kind": "camera", "label": "近景 close-up"}},
            "created_by": "operator",
            "recorder_version": "test",
        },
        now_ns=T0,
    )
    video = sorted((MEDIA / "main" / "video").glob("*.webm"))
    audio = sorted((MEDIA / "main" / "audio").glob("*.webm"))
    seg_keys = []
    # Interleave the tracks in wall-clock order as the recorder seals them.
    for i in range(4):
        seg_keys.append(
            _segment(
                ledger,
                spool,
                sid,
                "main",
                "video",
                i,
                video[i],
                T0 + i * SECOND,
                T0 + (i + 1) * SECOND,
                "vp8",
                90_000,
            )
        )
        if i % 2 == 1:
            j = i // 2
            seg_keys.append(
                _segment(
                    ledger,
                    spool,
                    sid,
                    "main",
                    "audio",
                    j,
                    audio[j],
                    T0 + j * 2 * SECOND,
                    T0 + (j + 1) * 2 * SECOND,
                    "opus",
                    48_000,
                )
            )
        if i == 1:
            ledger.checkpoint(sid, now_ns=T0 + 2 * SECOND + 100_000_000)
    ledger.append(
        sid,
        "gap",
        GapRecord(
            source="main",
            track="audio",
            reason="no_packets",
            start_ns=T0 + 4 * SECOND,
            end_ns=T0 + 4 * SECOND + 300_000_000,
            detail="test",
        ).to_body(),
        now_ns=T0 + 4 * SECOND + 400_000_000,
    )
    seg_keys.append(
        _segment(
            ledger,
            spool,
            sid,
            "main",
            "audio",
            2,
            audio[2],
            T0 + 4 * SECOND + 300_000_000,
            T0 + 4 * SECOND + 320_000_000,
            "opus",
            48_000,
        )
    )
    ledger.append(
        sid,
        "marker",
        {"time_ns": T0 + 3 * SECOND, "note": "出示证据 exhibit 1", "by": "李四"},
        now_ns=T0 + 4 * SECOND + 500_000_000,
    )
    if stop:
        ledger.append(
            sid, "session_stop", {"stopped_by": "李四", "reason": "询问结束"}, now_ns=T0 + 5 * SECOND
        )
        ledger.checkpoint(sid, final=True, now_ns=T0 + 5 * SECOND + 1)
    return BuiltSession(sid, ledger, spool, key, ledger.entries(sid), seg_keys)


def lay_out(built: BuiltSession, dest: Path) -> Path:
    return write_session_dir(
        built.ledger.entries(built.sid),
        built.ledger.checkpoints(built.sid),
        spooled_objects(built.spool, built.sid),
        built.key.public_pem,
        dest,
    )
