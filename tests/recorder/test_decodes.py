"""The `decodes` helper the recorder tests judge segments with: robust on valid media that
`ffmpeg -f null` complains about, strict on damaged media."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av

from tests.recorder.evidence import decode_counts, decodes

MEDIA = Path(__file__).parents[1] / "fixtures" / "integrity" / "media" / "main"
VIDEO = MEDIA / "video" / "00000000.webm"


def test_real_segments_decode_frame_for_packet() -> None:
    for path in [VIDEO, MEDIA / "audio" / "00000000.webm"]:
        packets, frames, errors = decode_counts(path)
        assert packets > 0 and frames == packets and errors == [], path
        assert decodes(path)


def test_two_frames_in_one_tick_of_a_guessed_frame_rate_are_fine(tmp_path: Path) -> None:
    out = tmp_path / "tick.webm"
    with av.open(str(VIDEO)) as src, av.open(str(out), "w", format="webm") as dst:
        stream = src.streams.video[0]
        target = dst.add_stream_from_template(stream)
        n = 0
        for pkt in src.demux(stream):
            if not pkt.size:
                continue
            pkt.pts = pkt.dts = {0: 0, 1: 67, 2: 68}.get(n, n * 67 - 66)  # 1 ms apart, as Chromium does
            pkt.stream = target
            dst.mux(pkt)
            n += 1
    old = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True
    )
    assert old.stderr.strip()  # what made the old helper fail on valid media
    assert decodes(out)


def test_damaged_or_truncated_media_does_not_pass(tmp_path: Path) -> None:
    data = VIDEO.read_bytes()
    corrupt = bytearray(data)
    for i in range(len(data) // 2, len(data) // 2 + 400):
        corrupt[i] ^= 0x5A
    cases = {"corrupt": bytes(corrupt), "truncated": data[: len(data) // 3], "junk": b"junk" * 100}
    for name, content in cases.items():
        p = tmp_path / f"{name}.webm"
        p.write_bytes(content)
        assert not decodes(p), name
        assert not decodes(p), name  # the same error twice in a row is still seen
