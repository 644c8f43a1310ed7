"""The benchmark's lean sender is a real sender: what it sends is recorded frame for frame, and
the packets it loses on the way are NACKed by the recorder and repaired from its RTX history."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.recorder.conftest import Server
from tests.recorder.evidence import decodes, gaps, segments, spooled_files, verify_chain
from tests.recorder.peers import WhipPublisher
from tests.recorder.workerfix import run
from tonglu.bench.load import idle_track
from tonglu.bench.media import encode_clip
from tonglu.bench.sender import ClipPackets, LeanSender


def test_lean_sender_is_recorded_whole_and_answers_nacks(server: Server) -> None:
    clip = encode_clip("vp8", 320, 240, 15, seconds=2.0, kbps=400)
    packets = ClipPackets.of(clip)
    s = server.create_session()
    sid, main = s["id"], s["sources"]["main"]
    frames = [0]

    async def scenario() -> LeanSender:
        pub = WhipPublisher(main["whip_url"], main["token"], audio=False, track=idle_track())
        await pub.start()
        await pub.wait_connected()
        sender = await LeanSender.for_transceiver(pub.pc.getTransceivers()[0], packets, 0.0, frames)
        udp: Any = sender._udp
        send, n = udp.sendto, [0]

        def lossy(data: bytes, addr: Any) -> None:  # every 25th datagram is lost (an RTX too: NACKed again)
            n[0] += 1
            if n[0] % 25:
                send(data, addr)

        sender._udp = type("Lossy", (), {"sendto": staticmethod(lossy)})()
        sender.start()
        await asyncio.sleep(5.0)
        sender.stop()
        await asyncio.sleep(1.5)  # the last NACKs are answered
        await pub.pc.close()
        return sender

    sender = run(scenario())
    with server.api() as c:
        assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
    entries = verify_chain(server.services, sid)
    segs = segments(entries, "main", "video")
    assert segs and sum(b["frames"] for b in segs) == frames[0] > 60
    assert sender.retransmitted >= 3  # the recorder NACKed what was lost, RTX repaired it
    assert not [g for g in gaps(entries) if g["source"] == "main" and g["reason"] == "rtp_loss"]
    files = spooled_files(server.services)
    assert all(decodes(files[b["key"]]) for b in segs)
