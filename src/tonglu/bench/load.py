"""Benchmark load generator: many senders in one process, sending a pre-encoded clip.

    python -m recorder.bench_load      (config as one JSON line on stdin, see `main`)

Each sender is an aiortc peer that publishes one source of a session to a recorder worker's
internal API (the same `HttpRecorder.publish` the web app uses); once connected, `LeanSender`
sends the clip's RTP packets in a loop at the clip's frame rate, timestamps rewritten, nothing
encoded, NACKs answered with RTX, PLIs with the keyframe. Every second the process prints one
JSON line on stdout: {"t_ns", "connected", "failed", "frames_sent", "retransmitted"}. It exits
when stdin closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


def idle_track() -> Any:
    """A video track that never yields a frame: aiortc's own send loop stays parked on it while
    `LeanSender` sends the clip (aiortc still negotiates and runs RTCP for the sender)."""
    from aiortc.mediastreams import MediaStreamTrack

    class IdleTrack(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> Any:
            await asyncio.Event().wait()

    return IdleTrack()


async def publish(cfg: dict[str, Any], stream: dict[str, str], codec: str) -> tuple[Any, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from tonglu.recorder.remote import HttpRecorder

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def _state() -> None:
        if pc.connectionState == "connected":
            connected.set()

    t = pc.addTransceiver(idle_track(), direction="sendonly")
    caps = RTCRtpSender.getCapabilities("video").codecs
    mime = f"video/{codec}".lower()
    t.setCodecPreferences([c for c in caps if c.mimeType.lower() in (mime, "video/rtx")])
    await pc.setLocalDescription(await pc.createOffer())
    rec = HttpRecorder(cfg["url"], cfg["secret"])
    try:
        answer = await rec.publish(stream["sid"], stream["source"], stream["token"], pc.localDescription.sdp)
    finally:
        await rec.close()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    await asyncio.wait_for(connected.wait(), 60)
    return pc, t


async def run(cfg: dict[str, Any], stop: threading.Event) -> None:
    from tonglu.bench.media import load
    from tonglu.bench.sender import ClipPackets, LeanSender

    clip = load(Path(cfg["clip"]))
    packets = ClipPackets.of(clip)
    frames = [0]
    pcs: list[Any] = []
    senders: list[LeanSender] = []
    failed = 0
    sem = asyncio.Semaphore(4)
    n = len(cfg["streams"])

    async def one(i: int, stream: dict[str, str]) -> None:
        nonlocal failed
        async with sem:
            try:
                pc, t = await publish(cfg, stream, clip.codec)
                pcs.append(pc)
                sender = await LeanSender.for_transceiver(t, packets, i / n / clip.fps, frames)
            except Exception as exc:
                failed += 1
                print(f"publish {stream['sid']}/{stream['source']} failed: {exc}", file=sys.stderr)
                return
        sender.start()
        senders.append(sender)

    await asyncio.gather(*(one(i, s) for i, s in enumerate(cfg["streams"])))
    try:
        while not stop.is_set():
            connected = sum(1 for pc in pcs if pc.connectionState == "connected")
            line = {
                "t_ns": time.time_ns(),
                "connected": connected,
                "failed": failed,
                "frames_sent": frames[0],
                "retransmitted": sum(s.retransmitted for s in senders),
            }
            print(json.dumps(line), flush=True)
            await asyncio.sleep(1.0)
    finally:
        for s in senders:
            s.stop()
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
