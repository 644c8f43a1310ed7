"""Benchmark load generator: many aiortc senders in one process, sending a pre-encoded clip.

    python -m recorder.bench_load      (config as one JSON line on stdin, see `main`)

Each sender publishes one source of a session to a recorder worker's internal API (the same
`HttpRecorder.publish` the web app uses) and sends the clip's packets in a loop at the clip's
frame rate, timestamps rewritten, nothing encoded. Every second the process prints one JSON line
on stdout: {"t_ns", "connected", "failed", "frames_sent"}. It exits when stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

VIDEO_CLOCK = 90000


class Counter:
    frames = 0


def clip_track(clip: Any, counter: Counter) -> Any:
    import av
    from aiortc.mediastreams import MediaStreamTrack

    class ClipTrack(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._start: float | None = None
            self._n = 0
            self._step = VIDEO_CLOCK // clip.fps

        async def recv(self) -> av.Packet:
            if self._start is None:
                self._start = time.monotonic()
            delay = self._start + self._n / clip.fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            data, key = clip.packets[self._n % len(clip.packets)]
            p = av.Packet(data)
            p.pts = p.dts = self._n * self._step
            p.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            p.is_keyframe = key
            self._n += 1
            counter.frames += 1
            return p

    return ClipTrack()


async def publish(cfg: dict[str, Any], stream: dict[str, str], clip: Any, counter: Counter) -> Any:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from recorder.remote import HttpRecorder

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    t = pc.addTransceiver(clip_track(clip, counter), direction="sendonly")
    caps = RTCRtpSender.getCapabilities("video").codecs
    mime = f"video/{clip.codec}".lower()
    t.setCodecPreferences([c for c in caps if c.mimeType.lower() in (mime, "video/rtx")])
    await pc.setLocalDescription(await pc.createOffer())
    rec = HttpRecorder(cfg["url"], cfg["secret"])
    try:
        answer = await rec.publish(stream["sid"], stream["source"], stream["token"], pc.localDescription.sdp)
    finally:
        await rec.close()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    return pc


async def run(cfg: dict[str, Any], stop: threading.Event) -> None:
    from recorder.bench_media import load

    clip = load(Path(cfg["clip"]))
    counter = Counter()
    pcs: list[Any] = []
    failed = 0
    sem = asyncio.Semaphore(4)

    async def one(stream: dict[str, str]) -> None:
        nonlocal failed
        async with sem:
            try:
                pcs.append(await publish(cfg, stream, clip, counter))
            except Exception as exc:
                failed += 1
                print(f"publish {stream['sid']}/{stream['source']} failed: {exc}", file=sys.stderr)

    await asyncio.gather(*(one(s) for s in cfg["streams"]))
    try:
        while not stop.is_set():
            connected = sum(1 for pc in pcs if pc.connectionState == "connected")
            line = {"t_ns": time.time_ns(), "connected": connected, "failed": failed, "frames_sent": counter.frames}
            print(json.dumps(line), flush=True)
            await asyncio.sleep(1.0)
    finally:
        for pc in pcs:
            with contextlib.suppress(Exception):
                await pc.close()


def main() -> None:
    cfg = json.loads(sys.stdin.buffer.readline())
    if cfg.get("core") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cfg["core"])})
    stop = threading.Event()

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    asyncio.run(run(cfg, stop))


if __name__ == "__main__":
    main()
