"""Serve master segments for playback: re-hash against the manifest, remux H.264 TS to fMP4.

`checked(data, seg)` is the gate every served segment passes (size and SHA-256 of the manifest
entry; `PlaybackRefused` names what does not match). `ts_to_fmp4` remuxes one MPEG-TS segment to a
fragmented MP4 by PyAV stream copy (no decode, no re-encode), timestamps from 0, for MSE.
"""

from __future__ import annotations

import hashlib
import io

import av

from tonglu.integrity.errors import PlaybackRefused, ToolError
from tonglu.integrity.playback_plan import PlaySegment


def checked(data: bytes, seg: PlaySegment) -> bytes:
    if len(data) != seg.bytes:
        raise PlaybackRefused(
            "size_mismatch",
            f"完整性校验失败：片段 {seg.key} 大小 {len(data)} 字节，清单记录 {seg.bytes} 字节，拒绝播放 "
            f"(segment {seg.seq} does not match its manifest entry: size)",
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != seg.sha256:
        raise PlaybackRefused(
            "sha256_mismatch",
            f"完整性校验失败：片段 {seg.key} 的 SHA-256 为 {digest[:16]}…，清单记录 {seg.sha256[:16]}…，拒绝播放 "
            f"(segment {seg.seq} does not match its manifest entry: SHA-256)",
        )
    return data


def ts_to_fmp4(data: bytes) -> bytes:
    """One MPEG-TS segment (H.264, maybe AAC/Opus-less) as fragmented MP4, stream copy."""
    out = io.BytesIO()
    try:
        with av.open(io.BytesIO(data), mode="r", format="mpegts") as src, av.open(
            out, mode="w", format="mp4",
            options={"movflags": "frag_keyframe+empty_moov+default_base_moof"},
        ) as dst:
            streams = {}
            for s in src.streams:
                if s.type in ("video", "audio"):
                    streams[s.index] = dst.add_stream_from_template(s)
            first: dict[int, int] = {}
            for packet in src.demux(*[s for s in src.streams if s.index in streams]):
                if packet.dts is None and packet.pts is None:
                    continue
                stamp = packet.dts if packet.dts is not None else packet.pts
                base = first.setdefault(packet.stream.index, int(stamp or 0))
                if packet.pts is not None:
                    packet.pts -= base
                if packet.dts is not None:
                    packet.dts -= base
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    except (av.FFmpegError, ValueError) as exc:
        raise ToolError(f"H.264 片段转封装失败 (remux of an MPEG-TS segment to fMP4 failed: {exc})") from exc
    return out.getvalue()
