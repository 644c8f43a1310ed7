"""H.264 masters (MPEG-TS, as the recorder writes them) are stream-copied into the clip's MP4, not
re-encoded; a clip of a session still recording proves against its latest signed checkpoint, and a
range that reaches past that checkpoint is refused until the next one."""

from __future__ import annotations

import hashlib
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import pytest

from tests.clip.helpers import both
from tests.integrity.builder import T0, Scenario, build, media_file
from tonglu.config import Settings
from tonglu.evidence import keys
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import SegmentRecord
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.integrity.clip import export_clip
from tonglu.integrity.errors import ClipNotSigned
from tonglu.integrity.evidence import DirEvidence
from tonglu.integrity.service import Review

S = 1_000_000_000
MS = 1_000_000


def _h264_ts(src: Path, dst: Path) -> None:
    """The VP8 fixture as an H.264 MPEG-TS segment opening with a keyframe, no B-frames (as WebRTC)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mpegts") as o:
        s = o.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 180, "yuv420p"
        s.options = {"preset": "ultrafast", "bf": "0", "g": "250"}
        for k, frame in enumerate(i.decode(video=0)):
            f = frame.reformat(format="yuv420p")
            f.pts, f.time_base = k, Fraction(1, 25)
            for p in s.encode(f):
                o.mux(p)
        for p in s.encode(None):
            o.mux(p)


@pytest.fixture(scope="module")
def h264_session(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("clip-h264")
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp / "data")})
    key = SiteKey.load_or_create(settings.keys_dir)
    ledger = Ledger(settings.ledger_dir, Spool(settings.spool_dir), key)
    evidence = tmp / "evidence"
    sid = "h264-001"
    ledger.append(sid, "session_start", {"room": "讯问室 3", "sources": {"main": {"kind": "camera"}}}, now_ns=T0)
    for k in range(3):
        first, last = T0 + k * 2 * S, T0 + (k + 1) * 2 * S
        for track, codec, container in (("video", "h264", "mpegts"), ("audio", "opus", "webm")):
            k_ = keys.segment_key(sid, "main", track, k, container)
            path = evidence.joinpath(*k_.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            if track == "video":
                _h264_ts(media_file("main", "video", k), path)
            else:
                path.write_bytes(media_file("main", "audio", k).read_bytes())
            data = path.read_bytes()
            rate = 90_000 if track == "video" else 48_000
            rec = SegmentRecord(
                "main", track, track, codec, container, k, k_, k * 2 * rate, (k + 1) * 2 * rate - 1, rate,
                first, last, 50 if track == "video" else 100, len(data), hashlib.sha256(data).hexdigest(),
            )  # fmt: skip
            ledger.append(sid, "segment", rec.to_body(), now_ns=last)
    ledger.append(sid, "session_stop", {"stopped_by": "t", "reason": "end"}, now_ns=T0 + 6 * S)
    ledger.checkpoint(sid, final=True, now_ns=T0 + 6 * S)
    (evidence / "site" / "keys").mkdir(parents=True)
    pem = tmp / "site.pem"
    pem.write_bytes(key.public_pem)
    return Review(settings, ledger, key, DirEvidence(evidence)), sid, pem


def test_h264_is_stream_copied(h264_session, tmp_path: Path) -> None:
    review, sid, pem = h264_session
    out = tmp_path / "clip.zip"
    lo, hi = T0 + 2500 * MS, T0 + 5500 * MS
    result = export_clip(review, sid, lo, hi, out)
    [media] = result.media
    assert media["video"] == "copy" and media["origin_ns"] == T0 + 2 * S  # the keyframe opening segment 1
    with zipfile.ZipFile(out) as zf:
        (tmp_path / "main.mp4").write_bytes(zf.read("clip/main.mp4"))
        readme = zf.read("README.txt").decode()
        masters = {n: zf.read(n) for n in zf.namelist() if n.endswith(".ts")}
    assert "stream-copied, not re-encoded" in readme
    assert len(masters) == 2  # video segments 1 and 2, whole
    with av.open(str(tmp_path / "main.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        packets = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
        duration = c.duration / av.time_base
    with av.open(str(tmp_path / "main.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == len(packets)
    assert abs(duration - (hi - lo) / S) <= 2.0
    assert 2.5 * 25 <= len(packets) <= 3.5 * 25 + 1  # 2.0 s .. 5.5 s at 25 fps, cut at `to`
    ra, rb = both(out, pem)
    assert ra["ok"] and rb["ok"], (ra["problems"], rb["problems"])


def test_recording_session_proves_against_its_latest_checkpoint(tmp_path: Path) -> None:
    b = build(tmp_path, Scenario(stop_ns=None))  # checkpoint over everything so far, no stop
    pem = tmp_path / "site.pem"
    pem.write_bytes(b.key.public_pem)
    out = tmp_path / "clip.zip"
    result = export_clip(b.review, b.sid, T0 + 1 * S, T0 + 3 * S, out, with_media=False)
    assert result.final is False
    ra, rb = both(out, pem)
    for r in (ra, rb):
        assert r["ok"], r["problems"]
        assert r["sessions"][0]["checkpoints"][0]["final"] is False
    # New segments after the last checkpoint: their minutes wait for the next checkpoint.
    for track, rate in (("video", 90_000), ("audio", 48_000)):
        data = media_file("main", track, 0).read_bytes()
        k = b.seg_key("main", track, 3)
        b.evidence_dir.joinpath(*k.split("/")).write_bytes(data)
        rec = SegmentRecord(
            "main", track, track, "vp8" if track == "video" else "opus", "webm", 3, k, 0, 1, rate,
            T0 + 6 * S, T0 + 8 * S, 50, len(data), hashlib.sha256(data).hexdigest(),
        )  # fmt: skip
        b.ledger.append(b.sid, "segment", rec.to_body(), now_ns=T0 + 8 * S)
    late = tmp_path / "late.zip"
    with pytest.raises(ClipNotSigned, match="next checkpoint"):
        export_clip(b.review, b.sid, T0 + 6500 * MS, T0 + 7500 * MS, late, sources=["main"])
    assert not late.exists()
    b.ledger.checkpoint(b.sid, now_ns=T0 + 9 * S)
    export_clip(b.review, b.sid, T0 + 6500 * MS, T0 + 7500 * MS, late, sources=["main"], with_media=False)
    ra, rb = both(late, pem)
    assert ra["ok"] and rb["ok"], (ra["problems"], rb["problems"])
    assert ra["clip"]["checkpoint"] == keys.checkpoint_key(b.sid, 1) and ra["clip"]["tree_size"] == len(
        b.ledger.entries(b.sid)
    )


def test_a_failed_mp4_leaves_the_proof_intact(tmp_path: Path) -> None:
    """Masters that MP4 cannot take as labelled (here: entries saying h264 over VP8 WebM files) make
    no playable copy; the clip is still made, verifies, and its README says what is missing."""
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data")})
    key = SiteKey.load_or_create(settings.keys_dir)
    ledger = Ledger(settings.ledger_dir, Spool(settings.spool_dir), key)
    evidence, sid = tmp_path / "evidence", "odd-001"
    ledger.append(sid, "session_start", {"room": "讯问室 3"}, now_ns=T0)
    data = media_file("main", "video", 0).read_bytes()
    k = keys.segment_key(sid, "main", "video", 0, "webm")
    evidence.joinpath(*k.split("/")).parent.mkdir(parents=True)
    evidence.joinpath(*k.split("/")).write_bytes(data)
    rec = SegmentRecord(
        "main", "video", "video", "h264", "webm", 0, k, 0, 1, 90_000, T0, T0 + 2 * S, 50, len(data),
        hashlib.sha256(data).hexdigest(),
    )  # fmt: skip
    ledger.append(sid, "segment", rec.to_body(), now_ns=T0 + 2 * S)
    ledger.append(sid, "session_stop", {"stopped_by": "t", "reason": "end"}, now_ns=T0 + 3 * S)
    ledger.checkpoint(sid, final=True, now_ns=T0 + 3 * S)
    pem = tmp_path / "site.pem"
    pem.write_bytes(key.public_pem)
    out = tmp_path / "clip.zip"
    result = export_clip(Review(settings, ledger, key, DirEvidence(evidence)), sid, T0, T0 + 2 * S, out)
    assert result.media == [] and result.media_errors and result.media_errors[0].startswith("main: ")
    with zipfile.ZipFile(out) as zf:
        assert "未能生成 not made" in zf.read("README.txt").decode()
        assert not [n for n in zf.namelist() if n.startswith("clip/")]
    ra, rb = both(out, pem)
    assert ra["ok"] and rb["ok"], (ra["problems"], rb["problems"])
