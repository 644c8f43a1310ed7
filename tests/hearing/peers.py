"""A party viewer in aiortc: one peer, one recvonly (video, audio) pair per source the server
assigns (`Tonglu-Sources`); counts every encoded frame per source and track, and decodes video."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs import get_decoder

from tonglu.recorder.aiortc import seam


@dataclass
class Counter:
    frames: int = 0
    decoded: int = 0
    errors: int = 0
    last_ns: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class PartyViewer:
    def __init__(self, base: str, sid: str, headers: dict[str, str], pairs: int) -> None:
        self.url = f"{base}/party-whep/{sid}"
        self.base = base
        self.headers = headers
        self.pairs = pairs
        # one transport for every m-section (aiortc's default "balanced" keeps one per kind, and
        # then routes every audio m-section's packets by payload type to the first one)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.sources: list[str] = []
        self.location: str | None = None
        self.answer: str | None = None
        self.counts: dict[tuple[int, str], Counter] = {}
        for i in range(pairs):
            for kind in ("video", "audio"):
                self.pc.addTransceiver(kind, direction="recvonly")
                self.counts[(i, kind)] = Counter()

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            seam.install()
            index = next(n for n, t in enumerate(self.pc.getTransceivers()) if t.receiver.track is track)
            c = self.counts[(index // 2, track.kind)]
            with seam._lock:  # our runner in the receiver's thread instead of aiortc's decoder
                seam._registry[id(track._queue)] = lambda q: self._run(q, c)

    @staticmethod
    def _run(q: queue.Queue[Any], c: Counter) -> None:
        decoder = None
        while (item := q.get()) is not None:
            codec, frame = item
            with c.lock:
                c.frames += 1
                c.last_ns = time.time_ns()
            if codec.name.lower() == "opus":
                continue
            if decoder is None:
                decoder = get_decoder(codec)
            try:
                c.decoded += len(decoder.decode(frame))
            except av.FFmpegError:
                c.errors += 1

    def count(self, source: str, kind: str) -> Counter:
        return self.counts[(self.sources.index(source), kind)]

    async def start(self, expect: int = 201) -> httpx.Response:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(self.url, content=self.pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp", **self.headers})
        assert r.status_code == expect, (r.status_code, r.text)
        if r.status_code == 201:
            self.location = r.headers["location"]
            self.sources = [s for s in r.headers["tonglu-sources"].split(",") if s]
            self.answer = r.text
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        return r

    async def wait(self, source: str, kind: str, n: int, limit_s: float = 20) -> None:
        c = self.count(source, kind)
        start = c.frames
        deadline = time.time() + limit_s
        while c.frames - start < n:
            if time.time() > deadline:
                counts = {f"{self.sources[i] if i < len(self.sources) else i}/{k}": v.frames
                          for (i, k), v in self.counts.items()}
                router = self.pc.getTransceivers()[0].receiver.transport._rtp_router
                idx = {id(t.receiver): n for n, t in enumerate(self.pc.getTransceivers())}
                table = {ssrc: idx.get(id(r)) for ssrc, r in router.ssrc_table.items()}
                pts = {pt: sorted(idx.get(id(r), -1) for r in rs) for pt, rs in router.payload_type_table.items()}
                ssrcs = [ln for ln in (self.answer or "").split("\r\n") if ln.startswith(("a=ssrc:", "m=", "a=mid"))]
                raise TimeoutError(f"{source}/{kind}: {c.frames - start} new frames, wanted {n}; all: {counts}; "
                                   f"table {table}; pts {pts}; answer {ssrcs}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.pc.close()
