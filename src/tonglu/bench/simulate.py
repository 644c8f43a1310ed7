"""Simulated recording sessions for tests and the benchmark: speech -> Opus -> WebM segments + manifest.

Segments are written the way the recorder writes them (`recorder.muxer.SegmentWriter`: Opus packets
passed through into WebM, 20 ms frames on a 48 kHz RTP clock), spooled, and announced with
``segment`` manifest entries carrying the same fields (`SegmentRecord`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tonglu.evidence import keys
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import SegmentRecord
from tonglu.evidence.spool import EVIDENCE, Spool

CLOCK = 48_000
FRAME = 960  # 20 ms


def opus_packets(pcm: np.ndarray, rate: int = 16_000) -> list[bytes]:
    """Encode mono float PCM to 20 ms Opus packets (48 kHz, as WebRTC sends them)."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=CLOCK)
    frame = av.AudioFrame.from_ndarray(pcm.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = rate
    up = np.concatenate([f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]])
    pad = (-len(up)) % FRAME
    up = np.concatenate([up, np.zeros(pad, dtype=np.float32)])
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate = CLOCK
    enc.layout = "mono"
    enc.format = "flt"
    enc.options = {"application": "voip"}
    enc.open()
    out: list[bytes] = []
    for i in range(0, len(up), FRAME):
        f = av.AudioFrame.from_ndarray(up[i : i + FRAME].reshape(1, -1), format="flt", layout="mono")
        f.sample_rate = CLOCK
        f.pts = i
        out += [bytes(p) for p in enc.encode(f)]
    out += [bytes(p) for p in enc.encode(None)]
    return out


@dataclass
class SimTrack:
    source: str
    packets: list[bytes]
    wall_start_ns: int
    track: str = "audio"
    rtp0: int = 1000
    next_packet: int = 0
    index: int = 0
    sealed: list[SegmentRecord] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.next_packet >= len(self.packets)


class SimSession:
    def __init__(
        self,
        spool: Spool,
        ledger: Ledger,
        sid: str,
        start_body: dict[str, Any] | None = None,
        now_ns: int | None = None,
    ) -> None:
        self.spool, self.ledger, self.sid = spool, ledger, sid
        body = start_body or {
            "room": "room-1",
            "case_number": "A-2024-001",
            "suspect": "张三",
            "interviewers": ["李四", "王五"],
            "reason": "test",
            "custody_out_iso": None,
            "sources": {
                "main": {"kind": "camera", "label": "近景 close-up"},
                "panorama": {"kind": "camera", "label": "全景 panorama"},
            },
            "created_by": "test",
            "recorder_version": "sim",
        }
        self.ledger.append(sid, "session_start", body, now_ns=now_ns)
        self.tracks: dict[str, SimTrack] = {}

    def add_track(self, source: str, pcm: np.ndarray, wall_start_ns: int) -> SimTrack:
        t = SimTrack(source, opus_packets(pcm), wall_start_ns)
        self.tracks[source] = t
        return t

    def seal_next(
        self, source: str, seconds: float = 4.0, *, corrupt: bool = False, now_ns: int | None = None
    ) -> SegmentRecord | None:
        """Write the next `seconds` of a track into one segment, spool it, append its manifest entry."""
        t = self.tracks[source]
        if t.done:
            return None
        from tonglu.recorder.muxer import SegmentWriter

        n = max(1, round(seconds * CLOCK / FRAME))
        first = t.next_packet
        chunk = t.packets[first : first + n]
        rtp_first = t.rtp0 + first * FRAME
        key = keys.segment_key(self.sid, source, t.track, t.index, "webm")
        path = self.spool.staging_path(f"{self.sid}/{source}-{t.index:08d}.webm")
        writer = SegmentWriter(path, "opus", CLOCK, rtp_first)
        for i, payload in enumerate(chunk):
            writer.write(payload, rtp_first + i * FRAME, True, duration=FRAME)
        written = writer.finish()
        if corrupt:  # damage the media after the header: the recorder hashed what it wrote, so it "matches"
            damaged = bytearray(path.read_bytes())
            rng = np.random.default_rng(t.index)
            start = min(len(damaged) - 1, 200)
            damaged[start:] = rng.integers(0, 256, len(damaged) - start, dtype=np.uint8).tobytes()
            path.write_bytes(bytes(damaged))
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        wall_first = t.wall_start_ns + (rtp_first - t.rtp0) * 1_000_000_000 // CLOCK
        wall_last = t.wall_start_ns + (written.rtp_end - t.rtp0) * 1_000_000_000 // CLOCK
        rec = SegmentRecord(
            source=source,
            track=t.track,
            media="audio",
            codec="opus",
            container="webm",
            index=t.index,
            key=key,
            rtp_first=rtp_first,
            rtp_last=written.rtp_end,
            clock_rate=CLOCK,
            wall_first_ns=wall_first,
            wall_last_ns=wall_last,
            frames=written.frames,
            bytes=len(data),
            sha256=digest,
        )
        self.spool.put_file(key, path, sha256=digest, size=len(data), content_type="audio/webm", bucket=EVIDENCE)
        self.ledger.append(self.sid, "segment", rec.to_body(), now_ns=now_ns)
        t.next_packet += len(chunk)
        t.index += 1
        t.sealed.append(rec)
        return rec

    def seal_all(self, seconds: float = 4.0) -> None:
        for source in self.tracks:
            while self.seal_next(source, seconds) is not None:
                pass

    def stop(self, now_ns: int | None = None) -> None:
        self.ledger.append(self.sid, "session_stop", {"stopped_by": "test", "reason": "end"}, now_ns=now_ns)
