"""H.264 masters (MPEG-TS) are served to MSE as fragmented MP4 by stream copy: the same packets, the
same frame count, timestamps from 0, and no decoder/encoder in between."""

from __future__ import annotations

import io
import re
from pathlib import Path

import av
import pytest

from tests.clip.test_clip_h264_live import _h264_ts
from tests.integrity.builder import media_file
from tonglu.integrity.errors import ToolError
from tonglu.integrity.playback_media import ts_to_fmp4


def _packets(data: bytes, fmt: str) -> list[bytes]:
    with av.open(io.BytesIO(data), format=fmt) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def _annexb_nals(data: bytes) -> list[bytes]:
    parts = re.split(b"\x00\x00\x01", data)
    return [p.rstrip(b"\x00") for p in parts[1:]]


def _avcc_nals(data: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i + 4:i + 4 + n].rstrip(b"\x00"))
        i += 4 + n
    return out


def test_ts_remuxed_to_fmp4_is_stream_copy(tmp_path: Path) -> None:
    ts = tmp_path / "seg.ts"
    _h264_ts(media_file("main", "video", 0), ts)
    data = ts.read_bytes()
    mp4 = ts_to_fmp4(data)
    assert mp4[4:8] == b"ftyp" and b"moof" in mp4 and b"mvex" in mp4  # fragmented, for MSE
    src, out = _packets(data, "mpegts"), _packets(mp4, "mp4")
    assert len(out) == len(src) == 50
    # TS carries Annex B start codes, MP4 length prefixes: the same NAL units either way
    for a, b in zip(src, out, strict=True):
        assert _annexb_nals(a) == _avcc_nals(b)
    with av.open(io.BytesIO(mp4), format="mp4") as c:
        first = next(p for p in c.demux(video=0) if p.size)
        assert first.pts == 0 and first.is_keyframe


def test_garbage_is_a_tool_error() -> None:
    with pytest.raises(ToolError):
        ts_to_fmp4(b"\x47" + b"\x00" * 1000)
