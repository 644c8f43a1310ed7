"""OBS-style H.264 High offers, and bad input: each refused with a precise 4xx while a recording runs."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import httpx
import pytest

from tests.recorder.conftest import Server
from tests.recorder.evidence import decodes, gaps, segments, spooled_files, verify_chain
from tests.recorder.peers import PacketLoop, WhipPublisher

pytestmark = pytest.mark.slow


def obs_offer(profile: str) -> Callable[[str], str]:
    """OBS offers H.264 only, with its own profile-level-id (High, or 42e01f while sending High)."""

    def munge(sdp: str) -> str:
        return re.sub(r"profile-level-id=[0-9a-fA-F]{6}", f"profile-level-id={profile}", sdp)

    return munge


@pytest.mark.parametrize("claimed", ["64001f", "42e01f"])
def test_h264_high_profile_as_obs_sends_it(server: Server, claimed: str) -> None:
    s = server.create_session()
    sid, main = s["id"], s["sources"]["main"]

    async def scenario() -> None:
        track = PacketLoop("libx264", profile="high", tune="zerolatency", bf="0")
        pub = WhipPublisher(main["whip_url"], main["token"], codec="H264", track=track)
        await pub.start(munge=obs_offer(claimed))
        assert "H264" in (pub.answer or "")
        await pub.wait_connected()
        await asyncio.sleep(5)
        with server.api() as c:
            assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
        await pub.close()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(scenario())
    loop.close()
    entries = verify_chain(server.services, sid)
    segs = segments(entries, "main", "video")
    assert segs and all(b["codec"] == "h264" and b["container"] == "mpegts" for b in segs)
    files = spooled_files(server.services)
    import json
    import subprocess

    for b in segs:
        out = subprocess.run(
            [
                "ffprobe",
                "-v",
                "error",
                "-show_entries",
                "stream=profile,width,height",
                "-of",
                "json",
                str(files[b["key"]]),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        st = json.loads(out.stdout)["streams"][0]
        assert st["profile"] == "High" and (st["width"], st["height"]) == (320, 240)
        assert decodes(files[b["key"]])


def test_bad_input_gets_precise_4xx_and_recording_goes_on(server: Server) -> None:
    s = server.create_session()
    sid, main, pano = s["id"], s["sources"]["main"], s["sources"]["panorama"]
    stopped = server.create_session()
    with server.api() as c:
        assert c.post(f"/api/sessions/{stopped['id']}/stop").status_code == 200

    async def scenario() -> list[tuple[str, int, str]]:
        pub = WhipPublisher(main["whip_url"], main["token"])
        await pub.start()
        await pub.wait_connected()
        good_offer = await WhipPublisher(pano["whip_url"], pano["token"]).offer()
        results = []

        async def post(
            name: str,
            url: str,
            body: bytes | str,
            token: str | None,
            ctype: str = "application/sdp",
        ) -> None:
            headers = {"Content-Type": ctype}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            async with httpx.AsyncClient() as c:
                r = await c.post(url, content=body, headers=headers)
            results.append((name, r.status_code, r.json().get("detail", "")))

        u, t = pano["whip_url"], pano["token"]
        await post("empty", u, "", t)
        await post("malformed", u, "hello world", t)
        await post("no media", u, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", t)
        await post(
            "unsupported codecs",
            u,
            good_offer.replace("VP8/90000", "VP9/90000")
            .replace("opus/48000", "PCMU/48000")
            .replace("H264/90000", "AV1/90000"),
            t,
        )
        await post("missing token", u, good_offer, None)
        await post("wrong token", u, good_offer, main["token"])
        await post("unknown session", u.replace(sid, "20240101-000000000000"), good_offer, t)
        await post("unknown source", u.replace("/panorama", "/kitchen"), good_offer, t)
        base = main["whip_url"].split("/whip/")[0]
        await post(
            "stopped session",
            f"{base}/whip/{stopped['id']}/main",
            good_offer,
            stopped["sources"]["main"]["token"],
        )
        await post("too large", u, good_offer + "a=x:" + "y" * 70000 + "\r\n", t)
        await post("not sdp", u, good_offer, t, ctype="application/json")
        second = WhipPublisher(main["whip_url"], main["token"])
        await post("second peer", main["whip_url"], await second.offer(), main["token"])
        await second.close()
        async with httpx.AsyncClient() as c:
            r = await c.options(u)
            results.append(("options", r.status_code, r.headers.get("accept-post", "")))
            r = await c.patch(
                base + (pub.location or ""),
                content="a=candidate",
                headers={
                    "Content-Type": "application/trickle-ice-sdpfrag",
                    "Authorization": f"Bearer {main['token']}",
                },
            )
            results.append(("patch", r.status_code, r.json()["detail"]))
            r = await c.delete(base + (pub.location or "") + "x", headers={"Authorization": f"Bearer {main['token']}"})
            results.append(("delete unknown peer", r.status_code, r.json()["detail"]))
        await asyncio.sleep(3)
        with server.api() as api:
            st = api.get(f"/api/sessions/{sid}").json()
            assert st["sources"]["main"]["connected"] and not st["sources"]["panorama"]["connected"]
            assert api.post(f"/api/sessions/{sid}/stop").status_code == 200
        await pub.close()
        return results

    loop = asyncio.new_event_loop()
    results = loop.run_until_complete(scenario())
    loop.close()
    got = {name: (status, detail) for name, status, detail in results}
    expected = {
        "empty": (400, "empty"),
        "malformed": (400, "v=0"),
        "no media": (422, "no audio or video"),
        "unsupported codecs": (422, "no supported codec"),
        "missing token": (401, ""),
        "wrong token": (403, "wrong token"),
        "unknown session": (404, "unknown session"),
        "unknown source": (404, "no source"),
        "stopped session": (409, "stopped"),
        "too large": (413, ""),
        "not sdp": (415, "application/sdp"),
        "second peer": (409, "already being published"),
        "options": (204, "application/sdp"),
        "patch": (405, "trickle"),
        "delete unknown peer": (404, "no peer"),
    }
    for name, (status, word) in expected.items():
        assert got[name][0] == status, (name, got[name])
        assert word.lower() in got[name][1].lower(), (name, got[name])
    entries = verify_chain(server.services, sid)
    # the running recording never noticed: no interruption of main (a clock_step is a correction of the
    # sender's clock mapping, not an interruption; this in-process aiortc sender drifts under CPU load)
    assert [g for g in gaps(entries) if g["source"] == "main" and g["reason"] != "clock_step"] == []
    assert len(segments(entries, "main", "video")) >= 1
