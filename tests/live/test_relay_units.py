"""The relay's decisions, without sockets or sleeps (time is passed in)."""

from __future__ import annotations

import pytest

from tonglu.recorder.errors import OfferMalformed, OfferNoMedia, OfferUnsupportedCodec
from tonglu.recorder.participants import fold, is_remote_source, joined_body, left_body, source_specs
from tonglu.recorder.relay import KeyframeGate, Rebaser, Relay, Subscriber, TrackTap, is_keyframe
from tonglu.recorder.whep import check_whep_offer, monitoring_summary

VP8_KEY = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x40, 0x01, 0xF0, 0x00]) + b"\x00" * 20
VP8_DELTA = bytes([0x31, 0x02, 0x00]) + b"\x11" * 20
MS = 1_000_000


class Upstream:
    def __init__(self) -> None:
        self.plis = 0

    def __call__(self) -> None:
        self.plis += 1


def video_tap() -> tuple[TrackTap, Upstream]:
    tap = TrackTap("s1", "main", "video", "video")
    up = Upstream()
    tap.upstream = up
    return tap, up


def test_keyframe_detection() -> None:
    assert is_keyframe("vp8", VP8_KEY) and not is_keyframe("vp8", VP8_DELTA)
    idr = b"\x00\x00\x00\x01\x67\x42\x00\x1f" + b"\x00\x00\x00\x01\x65\x88"
    assert is_keyframe("h264", idr) and not is_keyframe("h264", b"\x00\x00\x00\x01\x41\x9a")
    assert is_keyframe("opus", b"\xfc")


def test_nobody_watching_costs_nothing() -> None:
    tap, up = video_tap()
    for n in range(100):
        tap.publish("VP8", VP8_DELTA, n * 3000, n * 33 * MS)
    assert tap.published == 0 and tap.codec is None and up.plis == 0


def test_new_viewer_waits_for_a_keyframe_and_asks_for_one_once() -> None:
    tap, up = video_tap()
    sub = Subscriber("v1", "video", "vp8")
    tap.subscribe(sub, 0)
    assert up.plis == 1  # asked at once
    tap.publish("VP8", VP8_DELTA, 3000, 10 * MS)  # still waiting: gated, no second PLI yet
    assert up.plis == 1 and sub.take() is None and sub.skipped == 1
    tap.publish("VP8", VP8_DELTA, 6000, 600 * MS)  # gate open again
    assert up.plis == 2
    tap.publish("VP8", VP8_KEY, 9000, 700 * MS)
    tap.publish("VP8", VP8_DELTA, 12000, 733 * MS)
    got = [sub.take(), sub.take(), sub.take()]
    assert [f.rtp if f else None for f in got] == [9000, 12000, None]
    assert got[0] is not None and got[0].keyframe and got[0].data == VP8_KEY  # the very bytes published


def test_slow_video_viewer_drops_and_waits_for_the_next_keyframe_others_unaffected() -> None:
    tap, up = video_tap()
    slow, fast = Subscriber("slow", "video", "vp8", limit=5), Subscriber("fast", "video", "vp8", limit=5)
    tap.subscribe(slow, 0)
    tap.subscribe(fast, 0)
    tap.publish("vp8", VP8_KEY, 0, 0)
    for n in range(1, 5):
        tap.publish("vp8", VP8_DELTA, n * 3000, n * 33 * MS)
        assert fast.take() is not None
    assert fast.take() is not None  # the fast one has read everything so far
    plis = up.plis
    tap.publish("vp8", VP8_DELTA, 5 * 3000, 900 * MS)  # the slow one overflows
    assert slow.waiting_key and len(slow.queue) == 0 and slow.dropped == 6
    assert up.plis == plis + 1
    assert fast.take() is not None and not fast.waiting_key  # nothing lost for the fast one
    tap.publish("vp8", VP8_DELTA, 6 * 3000, 933 * MS)
    assert slow.take() is None and slow.skipped == 1
    tap.publish("vp8", VP8_KEY, 7 * 3000, 2000 * MS)
    frame = slow.take()
    assert frame is not None and frame.keyframe and not slow.waiting_key


def test_slow_audio_viewer_drops_oldest() -> None:
    tap = TrackTap("s1", "main", "audio", "audio")
    sub = Subscriber("v", "audio", "opus", limit=3)
    tap.subscribe(sub, 0)
    for n in range(5):
        tap.publish("opus", bytes([0xFC, n]), n * 960, n * 20 * MS)
    assert sub.dropped == 2
    assert [f.rtp for f in (sub.take(), sub.take(), sub.take()) if f] == [1920, 2880, 3840]


def test_keyframe_gate_rate_limits_across_viewers() -> None:
    gate = KeyframeGate(500 * MS)
    assert gate.allow(0) and not gate.allow(100 * MS) and not gate.allow(499 * MS)
    assert gate.allow(500 * MS) and gate.requested == 2 and gate.suppressed == 2
    tap, up = video_tap()
    subs = [Subscriber(f"v{i}", "video", "vp8") for i in range(10)]
    for s in subs:
        tap.subscribe(s, 0)
    assert up.plis == 1


def test_codec_mismatch_is_not_delivered() -> None:
    tap, _up = video_tap()
    sub = Subscriber("v", "video", "h264")
    tap.subscribe(sub, 0)
    tap.publish("VP8", VP8_KEY, 0, 0)
    assert sub.take() is None and sub.mismatched == 1


def test_session_close_ends_subscribers_and_forgets_taps() -> None:
    relay = Relay()
    tap = relay.track("s1", "main", "video", "video")
    assert relay.track("s1", "main", "video", "video") is tap and relay.find("s1", "main", "video") is tap
    woke = []
    sub = Subscriber("v", "video", "vp8")
    sub.on_ready = lambda: woke.append(1)
    tap.subscribe(sub, 0)
    assert relay.watched("s1") and not relay.watched("s2")
    relay.close_session("s1")
    assert sub.closed and woke and relay.find("s1", "main", "video") is None


def test_rebaser_starts_at_zero_and_bridges_a_publisher_reconnect() -> None:
    r = Rebaser(90000, 3000)
    assert [r.map(t) for t in (123456, 126456, 129456)] == [0, 3000, 6000]
    assert r.map(5000) == 9000  # new random origin (backwards): one frame later
    assert r.map(8000) == 12000
    assert r.map(8000 + 90000 * 60) == 15000 and r.resyncs == 2  # a jump of a minute


OFFER = """v=0\r
o=- 1 1 IN IP4 0.0.0.0\r
s=-\r
t=0 0\r
a=fingerprint:sha-256 AA\r
a=ice-ufrag:abcd\r
m=video 9 UDP/TLS/RTP/SAVPF 96\r
a=rtpmap:96 VP8/90000\r
a=recvonly\r
m=audio 9 UDP/TLS/RTP/SAVPF 111\r
a=rtpmap:111 opus/48000/2\r
a=recvonly\r
"""


def test_whep_offer_checks() -> None:
    got = check_whep_offer(OFFER)
    assert got.kinds == ["video", "audio"] and got.video_codecs() == ["vp8"]
    with pytest.raises(OfferNoMedia):
        check_whep_offer(OFFER.replace("a=recvonly", "a=sendonly"))
    with pytest.raises(OfferUnsupportedCodec):
        check_whep_offer(OFFER.replace("VP8/90000", "AV1/90000"))
    with pytest.raises(OfferMalformed):
        check_whep_offer(OFFER.replace("a=fingerprint:sha-256 AA\r\n", ""))
    with pytest.raises(OfferMalformed):
        check_whep_offer("")
    audio_only = check_whep_offer(OFFER.replace("m=video 9", "m=video 0"))
    assert audio_only.kinds == ["audio"]


def test_participant_entries_fold() -> None:
    bodies = [
        joined_body("remote-ab12", "陈律师", "lawyer", 10),
        joined_body("remote-cd34", "孙检察官", "prosecutor", 20),
        left_body("remote-ab12", "陈律师", "lawyer", 30),
        joined_body("remote-ab12", "陈律师", "lawyer", 40),
        {"source": "main", "event": "joined"},  # not a remote source: ignored
    ]
    f = fold(bodies)
    assert set(f) == {"remote-ab12", "remote-cd34"}
    assert f["remote-ab12"]["joined_ns"] == 10 and f["remote-ab12"]["present"] and f["remote-ab12"]["left_ns"] is None
    assert source_specs(bodies)["remote-cd34"]["kind"] == "remote"
    assert is_remote_source("remote-ab12") and not is_remote_source("main") and not is_remote_source("remote-../x")


def test_monitoring_lists_every_viewer_by_name_and_role() -> None:
    viewers = [
        {"name": "张主任", "role": "supervisor", "source": "main", "since_ns": 1},
        {"name": "陈律师", "role": "participant", "source": "main", "since_ns": 2},
    ]
    m = monitoring_summary("s1", "recording", viewers, [])
    assert m["monitored"] and m["viewers"] == 2
    assert [(x["name"], x["role"]) for x in m["monitors"]] == [("张主任", "supervisor"), ("陈律师", "participant")]
    assert monitoring_summary("s1", "recording", viewers[1:], [])["monitored"]  # nobody covert
    assert not monitoring_summary("s1", "recording", [], [])["monitored"]
