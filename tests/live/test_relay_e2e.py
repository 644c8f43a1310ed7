"""Publisher -> recorder -> WHEP viewer with real aiortc peers over real sockets.

What the viewer receives is the publisher's bitstream: the hash of every encoded frame the viewer
assembles is one of the frames the publisher sent (pre-encoded, so the test knows every byte), and
the frames decode. A viewer that stalls costs the recording nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx
import pytest

from tests.live.conftest import LiveServer
from tests.live.media import WhepViewer, packet_publisher
from tests.recorder.evidence import decodes, gaps, segments, spooled_files, verify_chain
from tonglu.recorder.relay import AUDIO_QUEUE_FRAMES, VIDEO_QUEUE_FRAMES, Subscriber

pytestmark = pytest.mark.slow


async def on_server(server: LiveServer, coro: Any) -> Any:
    """Await a coroutine on the server's loop (the recorder's objects live there)."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, server.loop))


async def get_json(server: LiveServer, path: str, headers: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        r = await c.get(path, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def assert_pass_through(viewer: WhepViewer, sent: dict[str, set[str]], codec: str, min_video: int) -> None:
    video, audio = viewer.received["video"], viewer.received["audio"]
    assert video.codec == codec
    assert audio.codec == "opus"
    assert len(video.digests) >= min_video and len(audio.digests) >= 40, (len(video.digests), len(audio.digests))
    foreign = [d for d in video.digests if d not in sent["video"]]
    assert not foreign, f"{len(foreign)} of {len(video.digests)} video frames differ from what was published"
    foreign = [d for d in audio.digests if d not in sent["audio"]]
    assert not foreign, f"{len(foreign)} of {len(audio.digests)} audio frames differ from what was published"
    assert len(set(video.digests)) >= min_video // 2  # many distinct frames, not one repeated
    assert video.decoded >= min_video and video.decode_errors == 0
    assert video.size == (320, 240)
    assert audio.decoded >= 40 and audio.decode_errors == 0


def test_vp8_opus_relay_is_pass_through_and_a_stalled_viewer_costs_the_recording_nothing(
    live_server: LiveServer,
) -> None:
    srv = live_server
    s = srv.create_session()
    sid, main = s["id"], s["sources"]["main"]
    pub, sent = packet_publisher(main["whip_url"], main["token"], "VP8")
    viewer = WhepViewer(f"{srv.url}/whep/{sid}/main", srv.auth("supervisor"))
    stalled = Subscriber("stalled-viewer", "video", "vp8")
    stalled_audio = Subscriber("stalled-viewer", "audio", "opus")
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        await pub.start()
        await pub.wait_connected()
        await asyncio.sleep(1.5)
        tap = srv.recorder.relay.find(sid, "main", "video")
        assert tap is not None and tap.upstream is not None
        assert tap.published == 0, "frames were relayed while nobody watched"

        async def add_stalled() -> float:
            now = time.time_ns()
            tap.subscribe(stalled, now)
            srv.recorder.relay.track(sid, "main", "audio", "audio").subscribe(stalled_audio, now)
            return time.time()

        seen["stalled_since"] = await on_server(srv, add_stalled())
        seen["segments_before"] = len(segments(srv.services.ledger.entries(sid), "main", "video"))
        await viewer.start()
        await viewer.wait_frames("video", 30)
        await viewer.wait_frames("audio", 60)
        st = await get_json(srv, f"/api/sessions/{sid}", srv.auth("supervisor"))
        seen["status"] = st
        seen["capture"] = await get_json(
            srv, f"/api/sessions/{sid}/capture-status", {"Authorization": f"Bearer {main['token']}"}
        )
        seen["monitoring"] = await get_json(
            srv, f"/api/sessions/{sid}/monitoring?source=main", {"Authorization": f"Bearer {main['token']}"}
        )
        await asyncio.sleep(2.5)  # the stalled viewer keeps overflowing while segments seal
        seen["stalled_for"] = time.time() - seen["stalled_since"]
        assert await viewer.delete() == 200
        seen["after"] = await get_json(srv, f"/api/sessions/{sid}", srv.auth("supervisor"))
        seen["capture_after"] = await get_json(
            srv, f"/api/sessions/{sid}/capture-status", {"Authorization": f"Bearer {main['token']}"}
        )
        seen["gate"] = tap.gate.requested
        await viewer.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
        with srv.client() as c:
            assert c.post(f"/api/sessions/{sid}/stop", json={"reason": "结束"}).status_code == 200
        loop.run_until_complete(pub.close())
    finally:
        loop.close()

    # pass-through: bit-identical frames, and they decode
    assert_pass_through(viewer, sent, "vp8", 30)

    # monitoring shows while the supervisor watches, and goes away after DELETE
    viewers = seen["status"]["viewers"]
    assert [(v["user"], v["role"], v["source"]) for v in viewers] == [("supervisor", "supervisor", "main")]
    assert viewers[0]["since_ns"] <= time.time_ns() and seen["status"]["monitored"] is True
    assert seen["capture"]["monitored"] is True
    assert seen["monitoring"]["monitored"] is True
    assert [m["role"] for m in seen["monitoring"]["monitors"]] == ["supervisor"]
    assert seen["after"]["viewers"] == [] and seen["after"]["monitored"] is False
    assert seen["capture_after"]["monitored"] is False

    # audited: start and stop of that viewer
    vid = viewers[0]["viewer_id"]
    actions = srv.audit_actions()
    assert ("watch_start", "supervisor", "ok") in [(a, u, o) for a, u, o, d in actions if d.get("viewer") == vid]
    stops = [d for a, u, o, d in actions if a == "watch_stop" and d.get("viewer") == vid]
    assert len(stops) == 1 and stops[0]["reason"] == "delete" and stops[0]["duration_ms"] > 0
    assert any(a == "stream" and o == "ok" for a, u, o, d in actions)  # the guard's record of the POST

    # the stalled viewer: bounded, dropped, keyframe requests rate-limited; never waited on
    assert stalled.dropped > 0 and len(stalled.queue) <= VIDEO_QUEUE_FRAMES
    assert stalled_audio.dropped > 0 and len(stalled_audio.queue) <= AUDIO_QUEUE_FRAMES
    assert seen["gate"] <= seen["stalled_for"] / 0.5 + 2, seen["gate"]

    # the recording: every segment sealed, contiguous, decodable; no gap on main
    entries = verify_chain(srv.services, sid)
    files = spooled_files(srv.services)
    for track in ("video", "audio"):
        segs = segments(entries, "main", track)
        assert len(segs) >= 3, (track, len(segs))
        assert [b["index"] for b in segs] == list(range(len(segs)))
        for a, b in itertools.pairwise(segs):
            assert b["rtp_first"] == a["rtp_last"], (track, a["index"], b["index"])
        assert all(decodes(files[b["key"]]) for b in segs)
    assert len(segments(entries, "main", "video")) > seen["segments_before"]  # sealing went on meanwhile
    assert [g for g in gaps(entries) if g["source"] == "main"] == []


def test_h264_relay_is_pass_through(live_server: LiveServer) -> None:
    srv = live_server
    s = srv.create_session()
    sid, pano = s["id"], s["sources"]["panorama"]
    pub, sent = packet_publisher(pano["whip_url"], pano["token"], "H264")
    viewer = WhepViewer(f"{srv.url}/whep/{sid}/panorama", srv.auth("admin"))

    async def scenario() -> None:
        await pub.start()
        await pub.wait_connected()
        await viewer.start()
        await viewer.wait_frames("video", 25)
        await viewer.wait_frames("audio", 50)
        assert "H264" in (viewer.pc.remoteDescription.sdp or "")
        await viewer.close()
        await pub.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert_pass_through(viewer, sent, "h264", 25)
