"""`tonglu bench hearing`: glass-to-glass delay through the real relay, 1 room + 3 remote parties.

This process runs the app (uvicorn on 127.0.0.1, an in-process recorder) and counts every frame
its codecs encode or decode (aiortc's VP8/H.264/Opus encoders and decoders, wrapped): the relay
must do neither. A child process runs the peers (aiortc): the room publishes `main`, three remote
parties (judge, prosecutor, lawyer) join and publish; the room's display (a party viewer with the
room's token) and the judge's party view receive. Every published picture carries its send time
(ms, 24 bits) as black/white blocks; the receiver decodes the picture, reads the blocks and takes
`now - sent`. Baseline in the same run: the same track, aiortc peer to aiortc peer, no relay.
Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BITS = 24
BLOCK = 12
W, H = 320, 240


def _stamp(frame_ms: int) -> Any:
    import numpy as np

    y = np.full((H, W), 96, dtype=np.uint8)
    for i in range(BITS):
        if (frame_ms >> i) & 1:
            y[100:100 + BLOCK * 2, 8 + i * BLOCK:8 + i * BLOCK + BLOCK - 2] = 255
        else:
            y[100:100 + BLOCK * 2, 8 + i * BLOCK:8 + i * BLOCK + BLOCK - 2] = 0
    return y


def _read(y: Any) -> int:
    v = 0
    for i in range(BITS):
        block = y[104:100 + BLOCK * 2 - 4, 10 + i * BLOCK:8 + i * BLOCK + BLOCK - 4]
        if block.mean() > 128:
            v |= 1 << i
    return v


def _now_ms() -> int:
    return int(time.time() * 1000) & ((1 << BITS) - 1)


def _latency(sent: int) -> float:
    d = (_now_ms() - sent) & ((1 << BITS) - 1)
    return float(d)


# -- the child: aiortc peers ----------------------------------------------------------------------
def _peers(base: str, sid: str, room_token: str, invites: list[str], seconds: float, out: Any) -> None:
    asyncio.run(_peers_main(base, sid, room_token, invites, seconds, out))


async def _peers_main(base: str, sid: str, room_token: str, invites: list[str], seconds: float, out: Any) -> None:
    import av
    import httpx
    import numpy as np
    from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import VideoStreamTrack

    class Stamped(VideoStreamTrack):
        async def recv(self) -> Any:
            pts, tb = await self.next_timestamp()
            y = _stamp(_now_ms())
            yuv = np.concatenate([y, np.full((H // 2, W), 128, dtype=np.uint8)])
            f = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            f.pts, f.time_base = pts, tb
            return f

    tasks: list[Any] = []  # the consumers (kept referenced until the peers close)
    samples: dict[str, list[float]] = {"room_to_remote": [], "remote_to_room": [], "baseline": []}

    def consume(track: Any, key: str) -> None:
        async def run() -> None:
            with contextlib.suppress(Exception):
                while True:
                    f = await track.recv()
                    y = f.to_ndarray(format="gray")
                    if y.shape == (H, W):
                        samples[key].append(_latency(_read(y)))
        tasks.append(asyncio.ensure_future(run()))

    cfg = RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    pcs: list[Any] = []

    async def post(url: str, pc: Any, token: str) -> Any:
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(timeout=30) as c:
            r = await c.post(url, content=pc.localDescription.sdp,
                             headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
        r.raise_for_status()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        return r

    async def publish(url: str, token: str) -> None:
        pc = RTCPeerConnection(cfg)
        pc.addTransceiver(Stamped(), direction="sendonly")
        pcs.append(pc)
        await post(url, pc, token)

    async def party(token: str, pairs: int, key: str, only: str | None) -> None:
        pc = RTCPeerConnection(cfg)
        for _ in range(pairs):
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
        pcs.append(pc)
        tracks: list[tuple[int, Any]] = []

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video":
                idx = next(n for n, t in enumerate(pc.getTransceivers()) if t.receiver.track is track)
                tracks.append((idx // 2, track))
            else:
                tasks.append(asyncio.ensure_future(_drain(track)))

        r = await post(f"{base}/party-whep/{sid}", pc, token)
        sources = r.headers["tonglu-sources"].split(",")
        for i, track in tracks:
            if only is None or (i < len(sources) and sources[i] == only):
                consume(track, key)
            else:
                tasks.append(asyncio.ensure_future(_drain(track)))

    async def _drain(track: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()

    await publish(f"{base}/whip/{sid}/main", room_token)
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        for tok in invites:
            r = await c.post(f"/api/sessions/{sid}/participants", headers={"Authorization": f"Bearer {tok}"})
            r.raise_for_status()
            await publish(r.json()["whip_url"], r.json()["token"])
    await asyncio.sleep(1.0)
    await party(room_token, 3, "remote_to_room", None)  # the room's display: the three parties
    await party(invites[0], 3, "room_to_remote", "main")  # the judge sees the room
    # baseline: the same track, aiortc to aiortc, no relay
    a, b = RTCPeerConnection(cfg), RTCPeerConnection(cfg)
    a.addTransceiver(Stamped(), direction="sendonly")
    b.on("track", lambda t: consume(t, "baseline"))
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    pcs += [a, b]
    out.put({"ready": True})
    await asyncio.sleep(seconds)
    out.put({"samples": samples})
    for pc in pcs:
        await pc.close()


# -- this process: the app and the codec counters -------------------------------------------------
def _count_codecs() -> dict[str, int]:
    """Wrap every aiortc encoder's encode and decoder's decode (and their constructors)."""
    from aiortc.codecs import h264, opus, vpx

    counts = {"encoded_frames": 0, "decoded_frames": 0, "decoders_created": 0, "encoders_created": 0}
    wrapped_methods = (
        (vpx.Vp8Encoder, "encode", "encoded_frames"),
        (h264.H264Encoder, "encode", "encoded_frames"),
        (opus.OpusEncoder, "encode", "encoded_frames"),
        (vpx.Vp8Decoder, "decode", "decoded_frames"),
        (h264.H264Decoder, "decode", "decoded_frames"),
        (opus.OpusDecoder, "decode", "decoded_frames"),
    )
    for cls, method, key in wrapped_methods:
        orig = getattr(cls, method)
        init = cls.__init__
        created = "encoders_created" if method == "encode" else "decoders_created"

        def wrapped(self: Any, *a: Any, __orig: Any = orig, __key: str = key, **kw: Any) -> Any:
            counts[__key] += 1
            return __orig(self, *a, **kw)

        def wrapped_init(self: Any, *a: Any, __init: Any = init, __key: str = created, **kw: Any) -> None:
            counts[__key] += 1
            __init(self, *a, **kw)

        setattr(cls, method, wrapped)
        cls.__init__ = wrapped_init  # type: ignore[method-assign]
    return counts


def _p95(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(0.95 * len(s)))], 1)


def run_bench(seconds: float = 15.0) -> dict[str, Any]:
    import uvicorn

    from tonglu.config import Settings
    from tonglu.recorder.local import LocalRecorder
    from tonglu.recorder.router import RecorderRouter
    from tonglu.web.accounts import Accounts
    from tonglu.web.app import create_app
    from tonglu.web.services import Services

    counts = _count_codecs()
    tmp = Path(tempfile.mkdtemp(prefix="tonglu-bench-hearing-"))
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp / "data"), "TONGLU_RETENTION_SECONDS": "60",
                                  "TONGLU_SEGMENT_SECONDS": "2"})
    services = Services.local(settings)
    services.accounts = Accounts.from_url(settings.db_url)
    recorder = LocalRecorder.from_services(services)
    services.recorder = RecorderRouter([recorder])
    app = create_app(services)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    loop_box: dict[str, Any] = {}

    def serve() -> None:
        loop = asyncio.new_event_loop()
        loop_box["loop"] = loop
        loop.run_until_complete(server.serve())
        loop.run_until_complete(recorder.close())

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    loop = loop_box["loop"]
    sid, tokens = asyncio.run_coroutine_threadsafe(
        recorder.create_session({"kind": "hearing", "room": "bench", "case_number": "B-1", "defendant": "甲"},
                                "bench"), loop).result(30)
    invites = [services.accounts.create_invitation(sid, n, r, "bench", 3600)[1]
               for r, n in (("judge", "审"), ("prosecutor", "公"), ("lawyer", "律"))]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    child = ctx.Process(target=_peers, args=(base, sid, tokens["main"], invites, seconds, q), daemon=True)
    child.start()
    try:
        q.get(timeout=60)
        time.sleep(2.0)  # ramp up: keyframes, first frames
        c0, w0 = time.process_time(), time.monotonic()
        result = q.get(timeout=seconds + 60)
        cpu = (time.process_time() - c0) / (time.monotonic() - w0) * 100
    finally:
        child.join(30)
        if child.is_alive():
            child.kill()
        server.should_exit = True
        th.join(30)
    samples = result["samples"]
    return {
        "latency_p95_ms": {"room_to_remote": _p95(samples["room_to_remote"]),
                           "remote_to_room": _p95(samples["remote_to_room"])},
        "baseline_p2p_p95_ms": _p95(samples["baseline"]),
        "frames_measured": {k: len(v) for k, v in samples.items()},
        "server_reencodes": counts["encoded_frames"] + counts["decoded_frames"],
        "server_codec_calls": dict(counts),  # encoder objects exist per sender for pack(): never encode
        "recorder_cpu_percent": round(cpu, 1),
        "parties": {"room": 1, "remote": 3},
        "seconds": seconds,
        "target_p95_ms": 300,
    }
