"""Segmenter, SDP checks, codec header parsing, clock mapping: pure functions, no sockets."""

from __future__ import annotations

import fractions
from typing import Any

import av
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tonglu.recorder import errors
from tonglu.recorder.clock import SourceClock, TrackClock, Unwrapper
from tonglu.recorder.codecs import h264_keyframe, opus_duration, vp8_keyframe
from tonglu.recorder.sdp import check_offer, munge_answer
from tonglu.recorder.segmenter import Segmenter

OFFER = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1\r
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r
c=IN IP4 0.0.0.0\r
a=ice-ufrag:abcd\r
a=ice-pwd:abcdefghijklmnopqrstuv\r
a=fingerprint:sha-256 00:11\r
a=sendonly\r
a=rtpmap:96 {video}/90000\r
a=rtpmap:97 rtx/90000\r
m=audio 9 UDP/TLS/RTP/SAVPF 111\r
a=sendonly\r
a=rtpmap:111 {audio}/48000/2\r
"""


def test_segmenter_video_waits_for_keyframe_and_cuts_near_target() -> None:
    s = Segmenter("video", 90000, 2.0, pli_lead_s=0.5)
    d = s.on_frame(0, False)
    assert d.drop and d.want_keyframe
    assert s.on_frame(3000, True).cut
    cuts, asks = [], []
    for n in range(2, 201):
        rtp = n * 3000
        d = s.on_frame(rtp, n % 100 == 0)
        if d.cut:
            cuts.append(rtp)
        if d.want_keyframe:
            asks.append(rtp)
    assert cuts == [300000, 600000]  # keyframes every 100 frames (3.3 s)
    assert asks and asks[0] == 3000 + 135000  # PLI 0.5 s before the 2 s target


def test_segmenter_rotates_on_resolution_change() -> None:
    s = Segmenter("video", 90000, 4.0)
    assert s.on_frame(0, True, (640, 480)).cut
    assert not s.on_frame(3000, True, (640, 480)).cut
    assert s.on_frame(6000, True, (1280, 720)).reason == "resolution"


def test_segmenter_audio_cuts_on_length() -> None:
    s = Segmenter("audio", 48000, 1.0)
    cuts = [n for n in range(200) if s.on_frame(n * 960, True).cut]
    assert cuts == [0, 50, 100, 150]


@pytest.mark.parametrize(
    "video,audio,exc",
    [
        ("VP8", "opus", None),
        ("H264", "opus", None),
        ("VP9", "opus", None),
        ("VP9", "PCMU", errors.OfferUnsupportedCodec),
        ("AV1", "G722", errors.OfferUnsupportedCodec),
    ],
)
def test_check_offer_codecs(video: str, audio: str, exc: type[errors.RecorderError] | None) -> None:
    text = OFFER.format(video=video, audio=audio)
    if exc is None:
        check_offer(text)
    else:
        with pytest.raises(exc) as e:
            check_offer(text)
        assert video in e.value.detail and e.value.status == 422


@pytest.mark.parametrize(
    "text,exc",
    [
        ("", errors.OfferMalformed),
        ("hello", errors.OfferMalformed),
        ("v=0\r\nnot sdp", errors.OfferMalformed),
        ("v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", errors.OfferNoMedia),
        ("v=0\r\ns=-\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n", errors.OfferNoMedia),
    ],
)
def test_check_offer_refuses(text: str, exc: type) -> None:
    with pytest.raises(exc):
        check_offer(text)


def test_recvonly_offer_refused() -> None:
    with pytest.raises(errors.OfferNoMedia):
        check_offer(OFFER.format(video="VP8", audio="opus").replace("a=sendonly", "a=recvonly"))


def test_munge_answer_strips_remb_and_abs_send_time() -> None:
    ans = (
        "v=0\r\na=rtcp-fb:97 nack\r\na=rtcp-fb:97 goog-remb\r\n"
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\na=extmap:1 urn:x:mid\r\n"
    )
    out = munge_answer(ans)
    assert "goog-remb" not in out and "abs-send-time" not in out
    assert "a=rtcp-fb:97 nack" in out and "urn:x:mid" in out


def _encode(codec: str, w: int, h: int, n: int = 3, **opts: str) -> list[av.Packet]:
    enc: Any = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base = fractions.Fraction(1, 30)
    enc.options = opts
    out = []
    for i in range(n):
        f = av.VideoFrame(w, h, "yuv420p")
        f.pts = i
        out += enc.encode(f)
    out += enc.encode(None)
    return out


def test_vp8_header() -> None:
    pkts = _encode("libvpx", 352, 288)
    assert vp8_keyframe(bytes(pkts[0])) == (True, (352, 288))
    assert vp8_keyframe(bytes(pkts[1]))[0] is False


@pytest.mark.parametrize("profile", ["baseline", "main", "high"])
def test_h264_sps_size(profile: str) -> None:
    pkts = _encode("libx264", 1280, 720, profile=profile, tune="zerolatency")
    key, size = h264_keyframe(bytes(pkts[0]))
    assert key and size == (1280, 720)
    assert h264_keyframe(bytes(pkts[1]))[0] is False


def test_opus_toc_duration() -> None:
    assert opus_duration(bytes([0xFC, 0])) == 960  # CELT FB 20 ms, one frame
    assert opus_duration(bytes([0x78, 0])) == 960  # hybrid 20 ms
    assert opus_duration(bytes([0xF1, 0])) == 480 * 2  # CELT 10 ms, two frames


def test_unwrapper_and_clock() -> None:
    u = Unwrapper(32)
    assert [u.unwrap(v) for v in (2**32 - 10, 5, 100)] == [2**32 - 10, 2**32 + 5, 2**32 + 100]
    src = SourceClock()
    a, v = TrackClock(48000, src), TrackClock(90000, src)
    a.on_packet(48000, 10_000_000_000)
    assert a.wall_ns(96000) == 11_000_000_000  # arrival-anchored before any sender report
    # sender report: NTP for unix time 1000 s <-> audio rtp 48000; video rtp 90000 at the same instant
    ntp = (1000 + 2208988800) << 32
    a.on_sender_report(ntp, 48000)
    v.on_packet(90000, 10_000_000_000)
    v.on_sender_report(ntp, 90000)
    a.on_packet(48000 + 480, 1000_010_000_000 + 5_000_000)  # arrives 5 ms after it was sent
    assert a.wall_ns(48000) == v.wall_ns(90000)  # one source offset: audio and video stay in sync


@hsettings(max_examples=400, deadline=None)
@given(st.binary(max_size=8), st.binary(max_size=4))
def test_vp8_payload_matches_aiortc_depayload(head: bytes, tail: bytes) -> None:
    """Our per-packet VP8 descriptor strip returns what aiortc's does and fails where it fails."""
    from aiortc.codecs.vpx import vp8_depayload

    from tonglu.recorder.codecs import vp8_payload

    data = head + tail
    try:
        want: bytes | str = vp8_depayload(data)
    except ValueError as exc:
        want = str(exc)
    try:
        got: bytes | str = vp8_payload(data)
    except ValueError as exc:
        got = str(exc)
    assert got == want


def test_vp8_payload_every_descriptor_extension() -> None:
    from aiortc.codecs.vpx import vp8_depayload

    from tonglu.recorder.codecs import vp8_payload

    for first in (0x80 | 0x10, 0x90):  # every extension combination, short and long picture ids
        for ext in range(0, 256, 16):
            for pid in (0x05, 0x85):
                pkt = bytes([first, ext, pid, 0x22, 0x33, 0x44, 0x55])
                assert vp8_payload(pkt) == vp8_depayload(pkt)
