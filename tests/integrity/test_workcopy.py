"""Working copy: length = session wall-clock length (gaps kept, shown as cards); burned-in clock =
the master segments' wall clock.

The clock check is a real comparison without OCR: for a sampled frame we know, from the master
segment's `wall_first_ns`, which Beijing time must be burned in. We render candidate texts (the
true second, neighbours, and wrong clocks such as UTC or a 5 s offset) with the same drawtext
settings onto a plain canvas, crop each candidate's text box, and compare it with the same crop of
the decoded frame: the best match must be within 1 s of the truth and clearly better than the
wrong clocks.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.integrity.builder import T0, Scenario, build, find
from tonglu.evidence.spool import WORK
from tonglu.integrity.timefmt import NS, local_text
from tonglu.integrity.workcopy import build_for_session, cjk_font, clock_filter_kwargs, ffmpeg_binary, geometry_for

S = NS
HEIGHT = 360
GEO = geometry_for(HEIGHT)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("workcopy")
    sc = Scenario(stop_ns=T0 + 7 * S)
    seg = find(sc.segments, "main", "video", 2)  # main camera: 1 s lost between segments 1 and 2
    seg.wall_first_ns += S
    seg.wall_last_ns += S
    seg.rtp_first += 90_000
    seg.rtp_last += 90_000
    b = build(tmp, sc)
    result = build_for_session(b.review, b.sid, height=HEIGHT)
    return b, result, tmp


def probe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format=duration,format_name:stream=codec_name,codec_type,pix_fmt,duration,nb_frames",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def frame_gray(path: Path, t: float) -> np.ndarray:
    out = subprocess.run(
        [
            ffmpeg_binary(),
            "-v",
            "error",
            "-ss",
            f"{t:.3f}",
            "-i",
            str(path),
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
        capture_output=True,
        check=True,
    )
    return np.frombuffer(out.stdout, dtype=np.uint8).reshape(GEO.height, GEO.width)


def render_clock(text: str, tmp: Path) -> np.ndarray:
    """The clock text drawn exactly as the working copy draws it, on a mid-grey canvas."""
    tf = tmp / "ref.txt"
    tf.write_text(text.replace(":", "\\:"), encoding="utf-8")
    kw = clock_filter_kwargs(GEO, cjk_font(), str(tf))
    vf = "drawtext=" + ":".join(f"{k}={v}" for k, v in kw.items())
    out = subprocess.run(
        [
            ffmpeg_binary(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"color=c=0x808080:s={GEO.width}x{GEO.height}:d=1",
            "-vf",
            vf,
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ],
        capture_output=True,
        check=True,
    )
    return np.frombuffer(out.stdout, dtype=np.uint8).reshape(GEO.height, GEO.width)


def box_error(frame: np.ndarray, ref: np.ndarray) -> float:
    ys, xs = np.nonzero(np.abs(ref.astype(int) - 0x80) > 8)  # the candidate's box and text
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    text_ref = ref[y0:y1, x0:x1] > 128  # white glyphs on the black box
    text_frame = frame[y0:y1, x0:x1] > 128
    return float(np.sum(text_ref != text_frame)) / max(1, int(np.sum(text_ref | text_frame)))


def test_container_and_codecs(made) -> None:
    _, result, _ = made
    info = probe(result.mp4)
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["pix_fmt"] == "yuv420p"
    assert streams["audio"]["codec_name"] == "aac"
    assert "mp4" in info["format"]["format_name"]
    with open(result.mp4, "rb") as fh:  # faststart: the index (moov) precedes the media (mdat)
        head = fh.read(4096)
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_duration_equals_session_wall_clock_length(made) -> None:
    b, result, _ = made
    view = b.review.load(b.sid).view
    assert view.stop_ns is not None and view.start_ns is not None
    expected = (view.stop_ns - view.start_ns) / NS  # 7 s, including the 1 s gap
    info = probe(result.mp4)
    frame = 1 / 25
    assert abs(float(info["format"]["duration"]) - expected) <= frame
    for s in info["streams"]:
        assert abs(float(s["duration"]) - expected) <= frame


@pytest.mark.parametrize("t", [1.3, 5.6])
def test_burned_in_clock_matches_master_wall_clock(made, t: float) -> None:
    b, result, tmp = made
    view = b.review.load(b.sid).view
    # The master segment on screen at timeline time t, and its own wall clock at that frame.
    segs = [s for s in view.tracks()["main/video"] if view.start_ns + t * NS >= s.rec.wall_first_ns]
    seg = segs[-1].rec
    truth_ns = seg.wall_first_ns + int(t * NS) - (seg.wall_first_ns - view.start_ns)
    frame = frame_gray(result.mp4, t)
    candidates = {d: render_clock(local_text(truth_ns + d * NS), tmp) for d in (-3, -2, -1, 0, 1, 2, 3, 5)}
    wrong_utc = box_error(frame, render_clock(local_text(truth_ns - 8 * 3600 * NS), tmp))
    errors = {d: box_error(frame, ref) for d, ref in candidates.items()}
    best = min(errors, key=lambda d: errors[d])
    assert abs(best) <= 1, errors
    assert errors[best] * 3 < min(errors[5], wrong_utc), (errors, wrong_utc)


def test_gap_is_a_card_not_closed_up(made) -> None:
    _, result, _ = made
    in_gap = frame_gray(result.mp4, 4.5)  # main camera has no media from 4 s to 5 s
    normal = frame_gray(result.mp4, 3.5)
    region = (slice(GEO.pip_y + GEO.pip_h + 4, GEO.clock_y - 8), slice(0, GEO.pip_x - 4))
    card_share = np.mean(np.abs(in_gap[region].astype(int) - 0x20) <= 6)
    assert card_share > 0.85  # the dark card covers the picture...
    assert (
        np.mean(np.abs(normal[region].astype(int) - 0x20) <= 6) < 0.3
    )  # ...which it does not outside the gap
    sidecar = json.loads(result.sidecar.read_text(encoding="utf-8"))
    cards = [(c["lane"], c["start_ms"], c["end_ms"], c["text"]) for c in sidecar["cards"]]
    assert ("main", 4000, 5000, "录像中断 1 秒 (gap)") in cards


def test_sidecar_names_the_master_segments_and_work_bucket_copy(made) -> None:
    b, result, _ = made
    sidecar = json.loads(result.sidecar.read_text(encoding="utf-8"))
    view = b.review.load(b.sid).view
    assert {(m["key"], m["sha256"]) for m in sidecar["made_from"]} == {
        (s.rec.key, s.rec.sha256) for s in view.segments
    }
    assert sidecar["mp4_sha256"] == result.sha256 and sidecar["excluded"] == []
    spooled = {i.key: i for i in b.spool.pending() if i.bucket == WORK}
    assert result.key in spooled and spooled[result.key].sha256 == result.sha256
    assert result.key.removesuffix(".mp4") + ".json" in spooled


def test_altered_master_is_left_out_and_shown_as_gap(tmp_path: Path) -> None:
    b = build(tmp_path, Scenario())
    path = b.evidence_dir / b.seg_key("panorama", "video", 1)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = build_for_session(b.review, b.sid, height=HEIGHT, spool=False)
    sidecar = json.loads(result.sidecar.read_text(encoding="utf-8"))
    assert [e["key"] for e in sidecar["excluded"]] == [b.seg_key("panorama", "video", 1)]
    assert ("pip", 2000, 4000) in [(c["lane"], c["start_ms"], c["end_ms"]) for c in sidecar["cards"]]
