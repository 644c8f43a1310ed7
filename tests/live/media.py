"""Test peers for live viewing: publishers that send pre-encoded frames (so the test knows every
byte it sent) and an aiortc WHEP viewer that records a hash of every encoded frame it receives
(before decoding) and decodes them with aiortc's own decoders."""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import get_decoder
from aiortc.mediastreams import MediaStreamTrack

from tests.recorder.peers import PacketLoop, WhipPublisher
from tonglu.recorder.aiortc import seam
from tonglu.recorder.codecs import h264_nals

ENCODERS = {"VP8": ("libvpx", {"deadline": "realtime", "cpu-used": "8"}), "H264": ("libx264", {"tune": "zerolatency"})}


def frame_digest(codec: str, data: bytes) -> str:
    """SHA-256 of one encoded frame. H.264 is compared NAL unit by NAL unit: RTP carries NAL units,
    not start codes, so the start code length (3 or 4 bytes) is not part of what is relayed."""
    if codec.lower() == "h264":
        data = b"".join(b"\x00\x00\x00\x01" + nal for nal in h264_nals(data))
    return hashlib.sha256(data).hexdigest()


class OpusLoop(MediaStreamTrack):
    """One second of a 440 Hz tone encoded once with libopus, sent as `av.Packet`s in a loop."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        enc: Any = av.CodecContext.create("libopus", "w")
        enc.sample_rate, enc.layout, enc.format = 48000, "mono", "s16"
        enc.time_base = fractions.Fraction(1, 48000)
        self.packets: list[bytes] = []
        for n in range(50):
            t = (np.arange(960) + n * 960) / 48000
            pcm = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 48000, n * 960
            self.packets += [bytes(p) for p in enc.encode(frame)]
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> av.Packet:
        if self._start is None:
            self._start = time.time()
        delay = self._start + self._n * 0.02 - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        p = av.Packet(self.packets[self._n % len(self.packets)])
        p.pts, p.time_base = self._n * 960, fractions.Fraction(1, 48000)
        self._n += 1
        return p


def packet_publisher(
    url: str, token: str, codec: str = "VP8", fps: int = 15
) -> tuple[WhipPublisher, dict[str, set[str]]]:
    """A WHIP publisher of pre-encoded video (`codec`) and Opus; returns it and the digests of
    every frame it can send, per track."""
    name, options = ENCODERS[codec]
    video = PacketLoop(name, 320, 240, fps, 2.0, **options)
    audio = OpusLoop()
    pub = WhipPublisher(url, token, audio=False, codec=codec, track=video)
    pub.pc.addTransceiver(audio, direction="sendonly")
    sent = {
        "video": {frame_digest(codec, p) for p in video.packets},
        "audio": {frame_digest("opus", p) for p in audio.packets},
    }
    return pub, sent


@dataclass
class Received:
    kind: str
    codec: str | None = None
    digests: list[str] = field(default_factory=list)
    decoded: int = 0
    decode_errors: int = 0
    size: tuple[int, int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class WhepViewer:
    """An aiortc WHEP client. Every encoded frame aiortc's receiver assembles is hashed and then
    decoded by aiortc's decoder for that codec (in the receiver's thread, as aiortc does)."""

    def __init__(self, url: str, headers: dict[str, str], video: bool = True, audio: bool = True) -> None:
        self.url = url
        self.headers = headers
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None
        self.received: dict[str, Received] = {}
        for kind, on in (("video", video), ("audio", audio)):
            if on:
                self.pc.addTransceiver(kind, direction="recvonly")
                self.received[kind] = Received(kind)

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            seam.install()
            rec = self.received[track.kind]
            with seam._lock:  # the seam runs our runner in the receiver's thread instead of aiortc's decoder
                seam._registry[id(track._queue)] = lambda q: self._run(q, rec)

    @staticmethod
    def _run(q: queue.Queue[Any], rec: Received) -> None:
        decoder = None
        while (item := q.get()) is not None:
            codec, frame = item
            if decoder is None:
                decoder = get_decoder(codec)
                rec.codec = codec.name.lower()
            with rec.lock:
                rec.digests.append(frame_digest(codec.name, frame.data))
            try:
                frames = decoder.decode(frame)
            except av.FFmpegError:
                rec.decode_errors += 1
                continue
            for f in frames:
                rec.decoded += 1
                if isinstance(f, av.VideoFrame):
                    rec.size = (f.width, f.height)

    async def start(self, expect: int = 201) -> httpx.Response:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(
                self.url,
                content=self.pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", **self.headers},
            )
        assert r.status_code == expect, (r.status_code, r.text)
        if r.status_code == 201:
            self.location = r.headers["location"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        return r

    async def wait_frames(self, kind: str, n: int, limit_s: float = 20) -> None:
        deadline = time.time() + limit_s
        while self.received[kind].decoded < n:
            if time.time() > deadline:
                raise TimeoutError(f"{kind}: {self.received[kind].decoded} frames decoded, wanted {n}")
            await asyncio.sleep(0.05)

    async def delete(self) -> int:
        assert self.location
        base = self.url.split("/whep/")[0]
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.delete(base + self.location, headers=self.headers)
        return r.status_code

    async def close(self) -> None:
        await self.pc.close()


async def offer_sdp(video: bool = True, audio: bool = True, direction: str = "recvonly") -> str:
    """A real aiortc offer (for request checks that never connect)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if video:
            pc.addTransceiver("video", direction=direction)
        if audio:
            pc.addTransceiver("audio", direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()
