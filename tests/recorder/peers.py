"""Test-side WHIP publishers: aiortc peers with synthetic camera and microphone tracks."""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AUDIO_PTIME, MediaStreamTrack

VIDEO_CLOCK = 90000


class TestPattern(MediaStreamTrack):
    """A moving test pattern at `fps`, with wall-clock pacing."""

    kind = "video"
    __test__ = False  # a media track, not a pytest test class

    def __init__(self, width: int = 320, height: int = 240, fps: int = 15) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._start: float | None = None
        self._n = 0
        base = np.zeros((height, width, 3), dtype=np.uint8)
        base[:, :, 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        base[:, :, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
        self._base = base

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.time()
        target = self._start + self._n / self.fps
        delay = target - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        img = np.roll(self._base, self._n * 4, axis=1)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = int(self._n * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._n += 1
        return frame


class Tone(MediaStreamTrack):
    """A 440 Hz tone, 20 ms frames, wall-clock paced."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.time()
        target = self._start + self._n * AUDIO_PTIME
        delay = target - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        samples = 960
        t = (np.arange(samples) + self._n * samples) / 48000
        data = (np.sin(2 * math.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._n * samples
        frame.time_base = fractions.Fraction(1, 48000)
        self._n += 1
        return frame


class WhipPublisher:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        video: bool = True,
        audio: bool = True,
        codec: str = "VP8",
        fps: int = 15,
        width: int = 320,
        height: int = 240,
        track: Any = None,
    ) -> None:
        self.url = url
        self.token = token
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.location: str | None = None
        self.answer: str | None = None
        if video:
            t = self.pc.addTransceiver(track or TestPattern(width, height, fps), direction="sendonly")
            caps = RTCRtpSender.getCapabilities("video")
            prefs = [c for c in caps.codecs if c.mimeType.upper() == f"VIDEO/{codec}"]
            rtx = [c for c in caps.codecs if c.mimeType.lower() == "video/rtx"]
            t.setCodecPreferences(prefs + rtx)
        if audio:
            self.pc.addTransceiver(Tone(), direction="sendonly")

    async def offer(self, munge: Any = None) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp = self.pc.localDescription.sdp
        return munge(sdp) if munge else sdp

    async def start(self, munge: Any = None, expect: int = 201, answer_hook: Any = None) -> httpx.Response:
        sdp = await self.offer(munge)
        async with httpx.AsyncClient() as c:
            r = await c.post(
                self.url,
                content=sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self.token}"},
            )
        assert r.status_code == expect, (r.status_code, r.text)
        if r.status_code == 201:
            self.location = r.headers["location"]
            self.answer = r.text
            answer = await answer_hook(r.text) if answer_hook else r.text
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return r

    async def wait_connected(self, limit_s: float = 15) -> None:
        deadline = time.time() + limit_s
        while self.pc.connectionState != "connected":
            if time.time() > deadline:
                raise TimeoutError(f"peer state {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    async def delete(self) -> int:
        assert self.location
        base = self.url.split("/whip/")[0]
        async with httpx.AsyncClient() as c:
            r = await c.delete(base + self.location, headers={"Authorization": f"Bearer {self.token}"})
        return r.status_code

    async def close(self) -> None:
        await self.pc.close()


class PacketLoop(MediaStreamTrack):
    """Pre-encoded video (encoded once, looped) sent as `av.Packet`s: aiortc packetizes them
    without encoding, like OBS or a camera's own encoder would."""

    kind = "video"

    def __init__(
        self,
        codec: str = "libx264",
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        seconds: float = 2.0,
        **options: str,
    ) -> None:
        super().__init__()
        self.fps = fps
        enc: Any = av.CodecContext.create(codec, "w")
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.time_base = fractions.Fraction(1, fps)
        enc.framerate = fractions.Fraction(fps, 1)
        enc.options = {"g": str(int(fps * seconds)), **options}
        pattern = TestPattern(width, height, fps)
        self.packets: list[bytes] = []
        n = int(fps * seconds)
        for i in range(n):
            img = np.roll(pattern._base, i * 4, axis=1)
            f = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            f.pts = i
            self.packets += [bytes(p) for p in enc.encode(f)]
        self.packets += [bytes(p) for p in enc.encode(None)]
        self._start: float | None = None
        self._n = 0

    async def recv(self) -> av.Packet:
        if self._start is None:
            self._start = time.time()
        delay = self._start + self._n / self.fps - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        p = av.Packet(self.packets[self._n % len(self.packets)])
        p.pts = int(self._n * VIDEO_CLOCK / self.fps)
        p.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._n += 1
        return p
