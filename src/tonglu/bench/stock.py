"""Benchmark baseline: aiortc's stock `MediaRecorder` (decode, re-encode to MP4/H.264) per stream,
behind the same internal API as a recorder worker, so the same load generator publishes to it.

    python -m recorder.bench_stock     (config as one JSON line on stdin: secret, fd, core, out_dir)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any


class StockRecorder:
    """Only what the load generator calls: publish."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.peers: list[tuple[Any, Any]] = []
        self.frames = 0  # frames MediaRecorder took (decoded) from its tracks

    def totals(self) -> dict[str, int]:
        return {"frames": self.frames}

    def counted(self, track: Any) -> Any:
        from aiortc.mediastreams import MediaStreamTrack

        stock = self

        class Counted(MediaStreamTrack):
            kind = track.kind

            async def recv(self) -> Any:
                frame = await track.recv()
                stock.frames += 1
                return frame

        return Counted()

    async def publish(self, sid: str, source: str, token: str | None, offer: str) -> dict[str, Any]:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaRecorder

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        rec = MediaRecorder(str(self.out_dir / f"{sid}-{source}.mp4"))

        @pc.on("track")
        def on_track(track: Any) -> None:
            rec.addTrack(self.counted(track))

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await rec.start()
        self.peers.append((pc, rec))
        return {"peer_id": secrets.token_hex(8), "sdp": pc.localDescription.sdp, "etag": '""'}

    async def close(self) -> None:
        for pc, rec in self.peers:
            with contextlib.suppress(Exception):
                await rec.stop()
            with contextlib.suppress(Exception):
                await pc.close()


async def serve(cfg: dict[str, Any]) -> None:
    import uvicorn

    from tonglu.recorder.worker_app import WorkerState, _server_class, create_worker_app

    stock = StockRecorder(Path(cfg["out_dir"]))
    state = WorkerState(stock, cfg["secret"])
    state.ready = True
    server = _server_class()(uvicorn.Config(create_worker_app(state), log_level="warning", lifespan="off"))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    lag = asyncio.ensure_future(state.lag.run())
    try:
        await server.serve(sockets=[socket.socket(fileno=int(cfg["fd"]))])
    finally:
        lag.cancel()
        await stock.close()


def main() -> None:
    cfg = json.loads(sys.stdin.buffer.readline())
    if cfg.get("core") is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cfg["core"])})
    asyncio.run(serve(cfg))


if __name__ == "__main__":
    main()
