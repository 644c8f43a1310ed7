"""A synthesized long session for the clip's cost test: hours of 2 s segments of two cameras (video +
audio each), written straight into the ledger's files (the same canonical lines and signed
checkpoints `Ledger.append` writes, without an fsync per entry), the media being the checked-in
fixture segments reused in turn. `CountingFiles` records which objects a clip reads."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tests.integrity.builder import AUDIO_RATE, SOURCES, VIDEO_RATE, media_file
from tonglu.config import Settings
from tonglu.evidence import keys, merkle
from tonglu.evidence.checkpoint import sign_checkpoint
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import GENESIS, HashChain, SegmentRecord
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.evidence import STORE
from tonglu.integrity.service import Review

S = 1_000_000_000
T0 = 1_714_543_200 * S
SEG_S = 2


@dataclass
class CountingFiles:
    objects: dict[str, Path]
    opened: list[str] = field(default_factory=list)
    primed: list[str] = field(default_factory=list)

    def open(self, key: str) -> IO[bytes]:
        self.opened.append(key)
        return open(self.objects[key], "rb")

    def where(self, key: str) -> str:
        return STORE

    def prime(self, keys: list[str]) -> None:
        self.primed = list(keys)

    def open_exact(self, key: str) -> IO[bytes]:
        return self.open(key)


def synthesize(tmp: Path, hours: float, sid: str = "long-001") -> tuple[Review, CountingFiles]:
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp / "data")})
    key = SiteKey.load_or_create(settings.keys_dir)
    spool = Spool(settings.spool_dir)
    fixtures = {
        (s, t, i): (p, p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        for s in SOURCES
        for t in ("video", "audio")
        for i in range(3)
        for p in [media_file(s, t, i)]
    }
    chain = HashChain(sid)
    lines: list[bytes] = []
    objects: dict[str, Path] = {}

    def add(kind: str, body: dict, now_ns: int) -> None:  # type: ignore[type-arg]
        lines.append(chain.append(kind, body, now_ns).to_bytes())

    add("session_start", {"room": "讯问室 3", "case_number": "A-2024-0501", "sources": SOURCES}, T0)
    steps = int(hours * 3600 / SEG_S)
    for k in range(steps):
        first, last = T0 + k * SEG_S * S, T0 + (k + 1) * SEG_S * S
        for source in SOURCES:
            for track, rate in (("video", VIDEO_RATE), ("audio", AUDIO_RATE)):
                path, size, digest = fixtures[(source, track, k % 3)]
                seg_key = keys.segment_key(sid, source, track, k, "webm")
                objects[seg_key] = path
                rec = SegmentRecord(
                    source, track, track, "vp8" if track == "video" else "opus", "webm", k, seg_key,
                    k * SEG_S * rate, (k + 1) * SEG_S * rate - 1, rate, first, last,
                    50 if track == "video" else 100, size, digest,
                )  # fmt: skip
                add("segment", rec.to_body(), last + 1000)
    stop = T0 + steps * SEG_S * S + S
    add("session_stop", {"stopped_by": "interviewer1", "reason": "讯问结束"}, stop)
    ledger_dir = settings.ledger_dir / sid
    ledger_dir.mkdir(parents=True, exist_ok=True)
    (ledger_dir / "entries.log").write_bytes(b"".join(line + b"\n" for line in lines))
    leaves = [merkle.leaf_hash(line) for line in lines]
    mid = len(lines) // 2
    cp0 = sign_checkpoint(
        key, session=sid, tree_size=mid, root=merkle.root_from_leaf_hashes(leaves[:mid]),
        head=hashlib.sha256(lines[mid - 1]).hexdigest(), now_ns=T0 + mid * S,
    )  # fmt: skip
    cp1 = sign_checkpoint(
        key, session=sid, tree_size=len(lines), root=merkle.root_from_leaf_hashes(leaves),
        head=chain.head, now_ns=stop, prev_checkpoint=cp0.body_hash, final=True,
    )  # fmt: skip
    assert GENESIS != chain.head
    (ledger_dir / "checkpoints.log").write_bytes(cp0.to_bytes() + b"\n" + cp1.to_bytes() + b"\n")
    files = CountingFiles(objects)
    ledger = Ledger(settings.ledger_dir, spool, key)
    return Review(settings, ledger, key, files, config=AnalysisConfig.from_settings(settings)), files
