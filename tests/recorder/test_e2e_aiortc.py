"""End to end with real aiortc peers over real sockets: WHIP in, sealed segments out."""

from __future__ import annotations

import asyncio
import itertools
import time

import httpx
import pytest

from tests.recorder.conftest import Server
from tests.recorder.evidence import decodes, ffprobe, gaps, segments, spooled_files, verify_chain
from tests.recorder.peers import WhipPublisher

pytestmark = pytest.mark.slow


async def publish_for(url: str, token: str, seconds: float, **kw: object) -> WhipPublisher:
    pub = WhipPublisher(url, token, **kw)  # type: ignore[arg-type]
    await pub.start()
    await pub.wait_connected()
    await asyncio.sleep(seconds)
    return pub


def test_vp8_opus_end_to_end(server: Server) -> None:
    s = server.create_session()
    sid = s["id"]
    main = s["sources"]["main"]

    async def scenario() -> WhipPublisher:
        pub = await publish_for(main["whip_url"], main["token"], 6.0)
        return pub

    t0 = time.time_ns()
    pub = asyncio.run(scenario_keep := scenario()) if False else None  # noqa: F841
    loop = asyncio.new_event_loop()
    try:
        pub = loop.run_until_complete(scenario())
        with server.api() as c:
            st = c.get(f"/api/sessions/{sid}").json()
            assert st["state"] == "recording"
            assert st["sources"]["main"]["connected"] is True
            assert st["connected_peers"]
            r = c.post(f"/api/sessions/{sid}/stop", json={"reason": "讯问结束"})
            assert r.status_code == 200, r.text
            digest = r.json()["digest"]
            assert len(digest) == 23
        loop.run_until_complete(pub.close())
    finally:
        loop.close()
    assert t0
    entries = verify_chain(server.services, sid)
    files = spooled_files(server.services)
    for track, codec, fmt in (("video", "vp8", "webm"), ("audio", "opus", "webm")):
        segs = segments(entries, "main", track)
        assert len(segs) >= 2, (track, len(segs))
        assert [b["index"] for b in segs] == list(range(len(segs)))
        total = 0.0
        for b in segs:
            p = files[b["key"]]
            info = ffprobe(p)
            assert info["streams"][0]["codec_name"] == codec
            assert fmt in info["format"]["format_name"]
            assert decodes(p), b["key"]
            total += float(info["format"]["duration"])
        for prev, nxt in itertools.pairwise(segs):  # gap-free: they tile exactly
            assert nxt["wall_first_ns"] == prev["wall_last_ns"], (track, prev, nxt)
        wall = (segs[-1]["wall_last_ns"] - segs[0]["wall_first_ns"]) / 1e9
        interval = 1 / 15 if track == "video" else 0.02
        assert abs(total - wall) <= interval + 0.002, (track, total, wall)
    # panorama never published: a not_connected gap per expected track, nothing else
    g = gaps(entries)
    assert {(x["source"], x["track"], x["reason"]) for x in g} == {
        ("panorama", "video", "not_connected"),
        ("panorama", "audio", "not_connected"),
    }, g
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer test-admin-token"}) as c:
        assert c.post(f"/api/sessions/{sid}/stop").status_code == 409
