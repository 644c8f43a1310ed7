"""Offers shaped as Firefox and GStreamer's `whipclientsink` (webrtcbin) write them negotiate and record.

Neither program is on this machine, so a real aiortc peer sends the media and its offer is rewritten
into the other program's layout, keeping the peer's own ICE credentials, DTLS fingerprint,
candidates and SSRCs (so the peer really connects and sends): Firefox's payload type numbers, codec
list (VP9, RED/ULPFEC, G.722, PCMU/PCMA, telephone-event), session-level fingerprint and
direction, `a=extmap:N/recvonly`, braced msids, RTX SSRC group; webrtcbin's `video0`/`audio1` mids,
upper-case `OPUS`, `transport-cc` feedback and SSRC attributes. aiortc takes the payload types of
the answer, so the recorder receives exactly the numbering the real client would use.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.recorder.conftest import Server
from tests.recorder.evidence import decodes, segments, spooled_files, verify_chain
from tests.recorder.peers import WhipPublisher
from tests.recorder.workerfix import run

pytestmark = pytest.mark.slow

FIREFOX = """v=0
o=mozilla...THIS_IS_SDPARTA-128.5.0 4358806924838245107 0 IN IP4 0.0.0.0
s=-
t=0 0
a=sendrecv
a=fingerprint:{fingerprint}
a=group:BUNDLE 0 1
a=ice-options:trickle
a=msid-semantic:WMS *
m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 126 127 97 98 123 122 119
c=IN IP4 0.0.0.0
{candidates}a=sendonly
a=end-of-candidates
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:5 urn:ietf:params:rtp-hdrext:toffset
a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay
a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=fmtp:126 profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1
a=fmtp:97 profile-level-id=42e01f;level-asymmetry-allowed=1
a=fmtp:120 max-fs=12288;max-fr=60
a=fmtp:124 apt=120
a=fmtp:121 max-fs=12288;max-fr=60
a=fmtp:125 apt=121
a=fmtp:127 apt=126
a=fmtp:98 apt=97
a=fmtp:119 apt=122
a=ice-pwd:{pwd}
a=ice-ufrag:{ufrag}
a=mid:0
a=msid:{{5e1f4c2a-8b7d-4e3f-9a1c-2d6b8e0f4a73}} {{9d4b2e7f-1c3a-4f6e-8a2d-7b5c9e1f3a64}}
a=rtcp-fb:120 nack
a=rtcp-fb:120 nack pli
a=rtcp-fb:120 ccm fir
a=rtcp-fb:120 goog-remb
a=rtcp-fb:120 transport-cc
a=rtcp-fb:121 nack
a=rtcp-fb:121 nack pli
a=rtcp-fb:121 ccm fir
a=rtcp-fb:126 nack
a=rtcp-fb:126 nack pli
a=rtcp-fb:126 ccm fir
a=rtcp-fb:97 nack
a=rtcp-fb:97 nack pli
a=rtcp-fb:123 nack
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:120 VP8/90000
a=rtpmap:124 rtx/90000
a=rtpmap:121 VP9/90000
a=rtpmap:125 rtx/90000
a=rtpmap:126 H264/90000
a=rtpmap:127 rtx/90000
a=rtpmap:97 H264/90000
a=rtpmap:98 rtx/90000
a=rtpmap:123 ulpfec/90000
a=rtpmap:122 red/90000
a=rtpmap:119 rtx/90000
a=setup:actpass
a=ssrc:{video_ssrc} cname:{{0e7c2f4b-6a1d-4c9e-8b3f-5d2a7e9c1f46}}
a=ssrc:{rtx_ssrc} cname:{{0e7c2f4b-6a1d-4c9e-8b3f-5d2a7e9c1f46}}
a=ssrc-group:FID {video_ssrc} {rtx_ssrc}
m=audio 9 UDP/TLS/RTP/SAVPF 109 9 0 8 101
c=IN IP4 0.0.0.0
a=sendonly
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2/recvonly urn:ietf:params:rtp-hdrext:csrc-audio-level
a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid
a=fmtp:109 maxplaybackrate=48000;stereo=1;useinbandfec=1
a=fmtp:101 0-15
a=ice-pwd:{pwd}
a=ice-ufrag:{ufrag}
a=mid:1
a=msid:{{5e1f4c2a-8b7d-4e3f-9a1c-2d6b8e0f4a73}} {{b3c9e1d7-2f4a-4b8c-9e6d-1a3f5c7e9b20}}
a=rtcp-mux
a=rtpmap:109 opus/48000/2
a=rtpmap:9 G722/8000/1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000/1
a=setup:actpass
a=ssrc:{audio_ssrc} cname:{{0e7c2f4b-6a1d-4c9e-8b3f-5d2a7e9c1f46}}
"""

GSTREAMER = """v=0
o=- 2749651352713361413 0 IN IP4 0.0.0.0
s=-
t=0 0
a=ice-options:trickle
a=group:BUNDLE video0 audio1
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:{ufrag}
a=ice-pwd:{pwd}
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=rtpmap:96 {video_rtpmap}
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 ccm fir
a=rtcp-fb:96 transport-cc
{video_fmtp}a=extmap:1 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
a=ssrc-group:FID {video_ssrc} {rtx_ssrc}
a=ssrc:{video_ssrc} msid:user2895178426@host-7d8c1f2a webrtctransceiver0
a=ssrc:{video_ssrc} cname:user2895178426@host-7d8c1f2a
a=ssrc:{rtx_ssrc} msid:user2895178426@host-7d8c1f2a webrtctransceiver0
a=ssrc:{rtx_ssrc} cname:user2895178426@host-7d8c1f2a
a=mid:video0
a=fingerprint:{fingerprint}
{candidates}a=end-of-candidates
m=audio 9 UDP/TLS/RTP/SAVPF 98
c=IN IP4 0.0.0.0
a=setup:actpass
a=ice-ufrag:{ufrag}
a=ice-pwd:{pwd}
a=rtcp-mux
a=rtcp-rsize
a=sendonly
a=rtpmap:98 OPUS/48000/2
a=rtcp-fb:98 transport-cc
a=fmtp:98 sprop-maxcapturerate=48000;sprop-stereo=0
a=extmap:1 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=ssrc:{audio_ssrc} msid:user2895178426@host-7d8c1f2a webrtctransceiver1
a=ssrc:{audio_ssrc} cname:user2895178426@host-7d8c1f2a
a=mid:audio1
a=fingerprint:{fingerprint}
"""


def facts(sdp: str) -> dict[str, str]:
    """What must stay the real peer's: ICE, DTLS, candidates, SSRCs (video, its RTX, audio)."""
    video, audio = sdp.split("m=video", 1)[1].split("m=audio", 1)
    fid = re.search(r"a=ssrc-group:FID (\d+) (\d+)", video)
    assert fid, video
    return {
        "ufrag": re.search(r"a=ice-ufrag:(\S+)", sdp).group(1),  # type: ignore[union-attr]
        "pwd": re.search(r"a=ice-pwd:(\S+)", sdp).group(1),  # type: ignore[union-attr]
        "fingerprint": re.search(r"a=fingerprint:(sha-256 \S+)", sdp).group(1),  # type: ignore[union-attr]
        "candidates": "".join(f"{c}\r\n" for c in re.findall(r"a=candidate:[^\r\n]+", video)),
        "video_ssrc": fid.group(1),
        "rtx_ssrc": fid.group(2),
        "audio_ssrc": re.search(r"a=ssrc:(\d+)", audio).group(1),  # type: ignore[union-attr]
    }


def shaped(template: str, **extra: str) -> tuple[object, object]:
    def munge(offer: str) -> str:
        return template.format(**facts(offer), **extra).replace("\r\n", "\n").replace("\n", "\r\n")

    async def answer_hook(answer: str) -> str:  # webrtcbin's mids, back to the peer's own
        return answer.replace("video0", "0").replace("audio1", "1")

    return munge, answer_hook


H264_FMTP = "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f;level-asymmetry-allowed=1\n"


@pytest.mark.parametrize(
    ("style", "codec"),
    [("firefox", "VP8"), ("gstreamer", "VP8"), ("gstreamer", "H264")],
)
def test_offer_styles_negotiate_and_record(server: Server, style: str, codec: str) -> None:
    if style == "firefox":
        munge, hook = shaped(FIREFOX)
        video_pt, audio_pt = ("120" if codec == "VP8" else "126"), "109"
    else:
        rtpmap = "VP8/90000" if codec == "VP8" else "H264/90000"
        munge, hook = shaped(GSTREAMER, video_rtpmap=rtpmap, video_fmtp=H264_FMTP if codec == "H264" else "")
        video_pt, audio_pt = "96", "98"
    s = server.create_session()
    sid, main = s["id"], s["sources"]["main"]

    async def scenario() -> str:
        pub = WhipPublisher(main["whip_url"], main["token"], codec=codec)
        await pub.start(munge=munge, answer_hook=hook)
        answer = pub.answer or ""
        await pub.wait_connected()
        await asyncio.sleep(4)
        with server.api() as c:
            assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
        await pub.close()
        return answer

    answer = run(scenario())
    # the answer takes the client's numbering and accepts what the recorder records
    assert re.search(rf"a=rtpmap:{video_pt} {codec}/90000", answer, re.I), answer
    assert re.search(rf"a=rtpmap:{audio_pt} opus/48000/2", answer, re.I), answer
    assert "a=recvonly" in answer
    entries = verify_chain(server.services, sid)
    files = spooled_files(server.services)
    for track, want in (("video", codec.lower()), ("audio", "opus")):
        segs = segments(entries, "main", track)
        assert segs and all(b["codec"] == want for b in segs), (track, segs)
        assert sum(b["frames"] for b in segs) > (40 if track == "video" else 150)
        assert all(decodes(files[b["key"]]) for b in segs)
