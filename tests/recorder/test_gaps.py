"""GapDetector, sans I/O: packets as (seq, rtp, arrival) with no sockets and no sleeps."""

from __future__ import annotations

from tonglu.recorder.clock import TrackClock
from tonglu.recorder.gaps import GapDetector, GapPolicy

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def audio_detector() -> GapDetector:
    return GapDetector("main", "audio", TrackClock(48000), GapPolicy.audio(60))


def video_detector() -> GapDetector:
    return GapDetector("main", "video", TrackClock(90000), GapPolicy.video())


def feed_audio(d: GapDetector, seqs: list[int], start_rtp: int = 1000) -> list:
    events = []
    for s in seqs:
        events += d.on_packet(s & 0xFFFF, start_rtp + s * 960, T0 + s * 20 * MS, duration=960)
    return events


def test_contiguous_audio_has_no_gap() -> None:
    d = audio_detector()
    assert feed_audio(d, list(range(100))) == []
    assert d.tick(T0 + 99 * 20 * MS + 50 * MS) == []


def test_single_audio_loss_is_one_gap_with_exact_bounds() -> None:
    d = audio_detector()
    events = feed_audio(d, [s for s in range(50) if s != 20])
    events += d.tick(T0 + 60 * 20 * MS)
    assert len(events) == 1
    g = events[0].record
    assert g.reason == "rtp_loss" and g.packets_lost == 1
    assert g.rtp_start == 1000 + 20 * 960 and g.rtp_end == 1000 + 21 * 960
    assert g.start_ns == T0 + 20 * 20 * MS and g.end_ns == T0 + 21 * 20 * MS


def test_reordered_audio_within_window_is_not_a_gap() -> None:
    d = audio_detector()
    seqs = list(range(30))
    seqs[10], seqs[11] = seqs[11], seqs[10]
    assert feed_audio(d, seqs) == []
    assert d.tick(T0 + 40 * 20 * MS) == []


def test_dtx_silence_with_contiguous_sequence_is_not_a_gap() -> None:
    d = audio_detector()
    ev = []
    for i in range(10):
        ev += d.on_packet(i, i * 960, T0 + i * 20 * MS, duration=960)
    # 2 s of DTX silence: next packet has the next sequence number, RTP time moved on
    ev += d.on_packet(10, 10 * 960 + 96000, T0 + 10 * 20 * MS + 2000 * MS, duration=960)
    ev += d.tick(T0 + 3000 * MS)
    assert ev == []
    assert d.open_gap(T0 + 10 * 20 * MS + 2000 * MS + 100 * MS) is not None  # status shows the silence


def test_outage_with_sequence_hole_is_one_no_packets_gap() -> None:
    d = audio_detector()
    ev = feed_audio(d, list(range(50)) + list(range(200, 260)))
    ev += d.tick(T0 + 300 * 20 * MS)
    assert len(ev) == 1
    g = ev[0].record
    assert g.reason == "no_packets" and g.packets_lost == 150
    assert g.start_ns == T0 + 50 * 20 * MS and g.end_ns == T0 + 200 * 20 * MS


def test_video_hole_repaired_by_rtx_within_window_is_not_a_gap() -> None:
    d = video_detector()
    ev = []
    for s in range(20):
        if s != 7:
            ev += d.on_packet(s, s * 3000, T0 + s * 33 * MS)
    ev += d.on_packet(7, 7 * 3000, T0 + 21 * 33 * MS, repaired=True)
    ev += d.tick(T0 + 2000 * MS)
    assert ev == []


def test_video_hole_not_repaired_after_window_is_a_gap() -> None:
    d = video_detector()
    ev = []
    for s in range(20):
        if s not in (7, 8):
            ev += d.on_packet(s, s * 3000, T0 + s * 33 * MS)
    assert ev == []  # still inside the NACK window
    ev += d.tick(T0 + 9 * 33 * MS + 999 * MS)
    assert ev == []
    ev += d.tick(T0 + 9 * 33 * MS + 1001 * MS)
    assert len(ev) == 1 and ev[0].record.packets_lost == 2 and ev[0].record.reason == "rtp_loss"


def test_video_stall_with_contiguous_sequence() -> None:
    d = video_detector()
    ev = []
    for s in range(10):
        ev += d.on_packet(s, s * 3000, T0 + s * 33 * MS)
    ev += d.on_packet(10, 10 * 3000 + 90000 * 2, T0 + 10 * 33 * MS + 2000 * MS)  # 2 s pause
    assert len(ev) == 1 and ev[0].record.reason == "no_packets"
    d2 = video_detector()
    ev = []
    for s in range(10):
        ev += d2.on_packet(s, s * 3000, T0 + s * 33 * MS)
    ev += d2.on_packet(10, 10 * 3000 + 45000, T0 + 9 * 33 * MS + 500 * MS)  # 0.5 s: static picture
    assert ev == []


def test_timestamp_jump() -> None:
    d = audio_detector()
    ev = feed_audio(d, list(range(10)))
    ev += d.on_packet(10, 1000 + 10 * 960 + 48000 * 60, T0 + 10 * 20 * MS, duration=960)
    assert len(ev) == 1 and ev[0].record.reason == "timestamp_jump"


def test_sequence_wraps_without_gap() -> None:
    d = audio_detector()
    seqs = list(range(65500, 65600))
    assert feed_audio(d, seqs) == []
    assert d.tick(T0 + 10**10) == []


def test_flush_makes_open_holes_final() -> None:
    d = audio_detector()
    feed_audio(d, [0, 1, 2, 5, 6])
    ev = d.flush(T0 + 7 * 20 * MS)
    assert len(ev) == 1 and ev[0].record.packets_lost == 2


def test_loss_right_after_an_outage_is_part_of_it() -> None:
    d = audio_detector()
    ev = feed_audio(d, [*range(50), 200, 201, *range(203, 260)])
    ev += d.tick(T0 + 400 * 20 * MS)
    assert len(ev) == 1
    g = ev[0].record
    assert g.reason == "no_packets" and g.packets_lost == 151 and g.end_ns == T0 + 203 * 20 * MS
