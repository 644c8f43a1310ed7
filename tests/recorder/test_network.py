"""Network faults injected through a UDP relay: a 3 s outage, a killed peer that reconnects, 3 % loss."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.recorder.conftest import Server
from tests.recorder.evidence import gaps, segments, verify_chain
from tests.recorder.peers import WhipPublisher
from tests.recorder.relay import Relay, server_address, via_relay

pytestmark = pytest.mark.slow
TOL_NS = 100_000_000


async def relayed(pub: WhipPublisher, loss: float = 0.0) -> Relay:
    relay = Relay(loss=loss)
    to_client, to_server = await relay.start()

    async def hook(answer: str) -> str:
        relay.target = server_address(answer)
        return via_relay(answer, to_client)

    await pub.start(munge=lambda offer: via_relay(offer, to_server), answer_hook=hook)
    await pub.wait_connected()
    return relay


def run(coro: Any) -> Any:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def stop(server: Server, sid: str) -> None:
    with server.api() as c:
        r = c.post(f"/api/sessions/{sid}/stop")
        assert r.status_code == 200, r.text


def main_gaps(entries: list[Any]) -> list[dict[str, Any]]:
    return [g for g in gaps(entries) if g["source"] == "main"]


def test_outage_of_3s_is_one_gap_per_track_and_recording_continues(server: Server) -> None:
    s = server.create_session()
    sid, main = s["id"], s["sources"]["main"]

    async def scenario() -> tuple[int, int]:
        pub = WhipPublisher(main["whip_url"], main["token"])
        relay = await relayed(pub)
        await asyncio.sleep(3.0)
        truth = await relay.outage(3.0)
        await asyncio.sleep(4.0)
        with server.api() as c:  # the session is still recording
            assert c.get(f"/api/sessions/{sid}").json()["state"] == "recording"
        stop(server, sid)
        await pub.close()
        relay.close()
        return truth

    start, end = run(scenario())
    entries = verify_chain(server.services, sid)
    g = main_gaps(entries)
    assert sorted(x["track"] for x in g) == ["audio", "video"], g
    for x in g:
        assert x["reason"] == "no_packets"
        assert abs(x["start_ns"] - start) <= TOL_NS, (x, start)
        assert abs(x["end_ns"] - end) <= TOL_NS, (x, end)
    for track in ("video", "audio"):
        after = [b for b in segments(entries, "main", track) if b["wall_first_ns"] >= end - TOL_NS]
        assert after and sum(b["frames"] for b in after) > 20, track


def test_killed_peer_reconnects_with_same_token(server: Server) -> None:
    s = server.create_session()
    sid, main = s["id"], s["sources"]["main"]

    async def scenario() -> tuple[int, int, int]:
        pub = WhipPublisher(main["whip_url"], main["token"])
        relay = await relayed(pub)
        await asyncio.sleep(3.0)
        relay.blackhole = True  # the room computer dies: nothing more reaches the recorder
        killed = time.time_ns()
        await pub.close()
        # a second peer while the first may still be alive is refused with a reason
        early = WhipPublisher(main["whip_url"], main["token"])
        r = await early.start(expect=409)
        assert "already" in r.json()["detail"]
        await early.close()
        await asyncio.sleep(2.5)
        pub2 = WhipPublisher(main["whip_url"], main["token"])
        posted = time.time_ns()
        await pub2.start()
        await pub2.wait_connected()
        connected = time.time_ns()
        await asyncio.sleep(3.0)
        stop(server, sid)
        await pub2.close()
        relay.close()
        return killed, posted, connected

    killed, posted, connected = run(scenario())
    entries = verify_chain(server.services, sid)
    g = main_gaps(entries)
    assert sorted(x["track"] for x in g) == ["audio", "video"], g
    for x in g:
        assert x["reason"] == "peer_disconnect"
        assert abs(x["start_ns"] - killed) <= TOL_NS, (x, killed)
        assert posted - TOL_NS <= x["end_ns"] <= connected + TOL_NS, (x, posted, connected)
    for track in ("video", "audio"):
        segs = segments(entries, "main", track)
        assert [b["index"] for b in segs] == list(range(len(segs)))  # numbering continues across peers
        assert any(b["wall_first_ns"] >= posted for b in segs)


def test_three_percent_loss(server: Server) -> None:
    s = server.create_session()
    sid, main = s["id"], s["sources"]["main"]

    async def scenario() -> tuple[Relay, int, int, int]:
        pub = WhipPublisher(main["whip_url"], main["token"])
        relay = await relayed(pub, loss=0.03)
        t = pub.pc.getTransceivers()
        video_ssrc, audio_ssrc = t[0].sender._ssrc, t[1].sender._ssrc
        await asyncio.sleep(10.0)
        relay.loss = 0.0
        await asyncio.sleep(1.5)  # let the last holes be decided
        stopped = time.time_ns()
        stop(server, sid)
        await pub.close()
        relay.close()
        return relay, video_ssrc, audio_ssrc, stopped

    relay, vssrc, assrc, stopped = run(scenario())
    entries = verify_chain(server.services, sid)
    g = main_gaps(entries)
    # audio: every packet the network lost is inside a gap; nothing else is missing
    lost_audio = relay.log.dropped.get(assrc, [])
    assert lost_audio, "the relay dropped no audio"
    audio_gaps = [x for x in g if x["track"] == "audio"]
    assert all(x["reason"] == "rtp_loss" for x in audio_gaps)
    for _seq, ts, _ns in lost_audio:
        assert any(x["rtp_start"] <= ts < x["rtp_end"] for x in audio_gaps), ts
    assert sum(x["packets_lost"] for x in audio_gaps) == len(lost_audio)
    sent_audio = [p for p in relay.log.sent[assrc] if p[2] < stopped - 300_000_000]
    recorded = sum(b["frames"] for b in segments(entries, "main", "audio"))
    assert recorded >= len(sent_audio), (recorded, len(sent_audio))
    # video: NACK/RTX repairs (almost) everything; what it could not repair is a gap
    lost_video = relay.log.dropped.get(vssrc, [])
    assert lost_video
    video_gaps = [x for x in g if x["track"] == "video"]
    unrepaired = sum(x["packets_lost"] for x in video_gaps)
    assert unrepaired <= max(2, len(lost_video) // 4), (unrepaired, len(lost_video))
    frames_sent = len({ts for _s, ts, _n in relay.log.sent[vssrc] + lost_video})
    frames_recorded = sum(b["frames"] for b in segments(entries, "main", "video"))
    assert frames_recorded >= 0.9 * frames_sent - 2, (frames_recorded, frames_sent)
