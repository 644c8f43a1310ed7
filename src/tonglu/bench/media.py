"""The benchmark's camera: a few seconds of 720p30 video encoded once with PyAV, looped by senders.

The picture is a slowly panning gradient with a moving block and sensor-like noise, so the
encoder spends its bitrate as it would on a real room. One keyframe opens the clip (GOP = clip),
so each looping sender sends a keyframe every `seconds`.

File format (between our own processes): per packet, 1 byte keyframe flag, 4 bytes big-endian
length, the bytes.
"""

from __future__ import annotations

import fractions
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENCODERS = {"vp8": "libvpx", "h264": "libx264"}


@dataclass(frozen=True)
class Clip:
    codec: str
    width: int
    height: int
    fps: int
    packets: list[tuple[bytes, bool]]  # (data, keyframe)

    @property
    def seconds(self) -> float:
        return len(self.packets) / self.fps

    @property
    def kbps(self) -> int:
        return int(sum(len(d) for d, _ in self.packets) * 8 / self.seconds / 1000)


def encode_clip(
    codec: str, width: int = 1280, height: int = 720, fps: int = 30, seconds: float = 3.0, kbps: int = 1500
) -> Clip:
    import av
    import numpy as np

    n = int(fps * seconds)
    enc: Any = av.CodecContext.create(ENCODERS[codec], "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base = fractions.Fraction(1, fps)
    enc.framerate = fractions.Fraction(fps, 1)
    enc.bit_rate = kbps * 1000
    enc.gop_size = n
    if codec == "vp8":
        enc.options = {
            "deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "minrate": str(kbps * 1000),
            "maxrate": str(kbps * 1000), "bufsize": str(kbps * 1000), "kf-min-dist": str(n),
        }  # fmt: skip
    else:
        enc.profile = "Baseline"
        enc.options = {"preset": "veryfast", "tune": "zerolatency", "keyint_min": str(n), "sc_threshold": "0",
                       "maxrate": f"{kbps}k", "bufsize": f"{kbps}k", "bf": "0"}  # fmt: skip
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width]
    packets: list[tuple[bytes, bool]] = []
    for i in range(n):
        y = ((xx + yy // 2 + i * 6) % 256).astype(np.uint8)
        bx, by = (i * 17) % (width - 160), (i * 7) % (height - 160)
        y[by : by + 160, bx : bx + 160] = 235
        noise = rng.integers(-6, 7, size=(height, width), dtype=np.int16)
        y = np.clip(y.astype(np.int16) + noise, 16, 235).astype(np.uint8)
        uv = np.full((height // 2, width // 2), 128, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(np.concatenate([y, uv.reshape(-1, width)]), format="yuv420p")
        frame.pts = i
        packets += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(frame)]
    packets += [(bytes(p), bool(p.is_keyframe)) for p in enc.encode(None)]
    if not packets or not packets[0][1]:
        raise RuntimeError(f"{codec} clip does not start with a keyframe")
    return Clip(codec, width, height, fps, packets)


def save(clip: Clip, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack(">4sHHH", clip.codec.encode().ljust(4), clip.width, clip.height, clip.fps))
        for data, key in clip.packets:
            fh.write(struct.pack(">BI", int(key), len(data)))
            fh.write(data)
    tmp.replace(path)


def load(path: Path) -> Clip:
    raw = path.read_bytes()
    codec, width, height, fps = struct.unpack_from(">4sHHH", raw)
    pos = struct.calcsize(">4sHHH")
    packets = []
    while pos < len(raw):
        key, size = struct.unpack_from(">BI", raw, pos)
        pos += 5
        packets.append((raw[pos : pos + size], bool(key)))
        pos += size
    return Clip(codec.decode().strip(), width, height, fps, packets)
