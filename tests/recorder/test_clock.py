"""The RTP -> wall-clock mapping and the committed timeline (`recorder.clock`), sans I/O.

A simulated source (video 15 fps at 90 kHz, Opus 20 ms at 48 kHz, one sender clock for both) is
played through the real `SourceClock` / `TrackClock` / `Timeline` in arrival order: jittered
arrivals with bursts of 300 ms extra delay, a sender clock running 50 ppm fast for an hour, a late
first sender report, a wild sender report, a sender whose clock steps, and our own clock stepping.
Segments are cut every 2 s of media and placed when the next one starts (as the pipeline does).
The truth is the instant an undelayed packet would have arrived, on our (possibly stepped) clock.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tonglu.recorder.clock import (
    NTP_UNIX_OFFSET_S,
    STEP_NS,
    ClockStep,
    SourceClock,
    Span,
    Timeline,
    TrackClock,
)

S = 1_000_000_000
MS = 1_000_000
T0 = 1_714_521_600 * S  # our clock at true time 0 (2024-05-01 UTC)
S0 = 1_714_521_000 * S  # the sender's clock at true time 0 (10 min behind ours)
D0 = 20 * MS  # one-way delay of an undelayed packet


def to_ntp(unix_ns: int) -> int:
    sec, frac = divmod(unix_ns, S)
    return ((sec + NTP_UNIX_OFFSET_S) << 32) | ((frac << 32) // S)


@dataclass
class Scenario:
    seconds: int = 120
    ppm: float = 0.0  # the sender's clock (and so its RTP clock) runs this much fast
    jitter_ns: int = 5 * MS
    burst_every_s: int = 15  # every so often 2 s of packets are delayed by 300 ms more
    burst_ns: int = 300 * MS
    first_sr_s: float = 0.8
    wild_sr_at_s: float | None = None  # one video SR whose NTP time is 5 s off
    sender_step: tuple[float, int] | None = None  # (at s, ns): the sender's NTP clock steps
    our_step: tuple[float, int] | None = None  # (at s, ns): our wall clock steps
    seed: int = 1


@dataclass
class Track:
    name: str
    rate: int
    ticks: int  # per frame (sender clock)
    frames_per_segment: int
    rtp0: int
    clock: TrackClock
    timeline: Timeline = field(init=False)
    spans: list[tuple[int, int, Span]] = field(default_factory=list)  # (rtp_first, rtp_last, span)
    open_rtp: int | None = None

    def __post_init__(self) -> None:
        self.timeline = Timeline(self.rate)


def _our(sc: Scenario, t_ns: int) -> int:
    step = sc.our_step
    return T0 + t_ns + (step[1] if step is not None and t_ns >= step[0] * S else 0)


def _true_ns(sc: Scenario, sender_elapsed_ns: int) -> int:
    return int(sender_elapsed_ns / (1 + sc.ppm * 1e-6))


def simulate(sc: Scenario) -> tuple[list[Track], Scenario]:
    rng = random.Random(sc.seed)
    source = SourceClock()
    tracks = [
        Track("video", 90000, 6000, 30, 1_000_000, TrackClock(90000, source)),
        Track("audio", 48000, 960, 100, 7_000, TrackClock(48000, source)),
    ]

    def delay(t_ns: int) -> int:
        d = D0 + rng.randrange(sc.jitter_ns + 1)
        if sc.burst_every_s and (t_ns // S) % sc.burst_every_s in (5, 6):
            d += sc.burst_ns
        return d

    def packets(tr: Track) -> Iterator[tuple[int, int, str, int, int]]:
        k = 0
        while True:
            sender_el = k * tr.ticks * S // tr.rate
            t = _true_ns(sc, sender_el)
            if t > sc.seconds * S:
                return
            yield (_our(sc, t + delay(t)), 0, tr.name, tr.rtp0 + k * tr.ticks, k)
            k += 1

    def reports(tr: Track, phase_s: float) -> Iterator[tuple[int, int, str, int, int]]:
        n = 0
        while True:
            sender_el = int((sc.first_sr_s + phase_s + n) * S)
            t = _true_ns(sc, sender_el)
            if t > sc.seconds * S:
                return
            ntp_ns = S0 + sender_el
            if sc.sender_step is not None and sender_el >= sc.sender_step[0] * S:
                ntp_ns += sc.sender_step[1]
            if sc.wild_sr_at_s is not None and tr.name == "video" and n == int(sc.wild_sr_at_s):
                ntp_ns += 5 * S
            rtp = (tr.rtp0 + sender_el * tr.rate // S) & 0xFFFFFFFF
            yield (_our(sc, t + delay(t)), 1, tr.name, to_ntp(ntp_ns), rtp)
            n += 1

    by_name = {tr.name: tr for tr in tracks}
    streams = [packets(tr) for tr in tracks] + [reports(tr, 0.3 * i) for i, tr in enumerate(tracks)]
    for arrival, kind, name, a, b in heapq.merge(*streams):
        tr = by_name[name]
        if kind == 1:
            tr.clock.on_sender_report(a, b)
            continue
        rtp, k = a, b
        tr.clock.on_packet(rtp, arrival)
        if k % tr.frames_per_segment == 0:
            if tr.open_rtp is not None:
                c = tr.clock
                span = tr.timeline.place(tr.open_rtp, rtp, c.wall_ns(tr.open_rtp), c.wall_ns(rtp))
                tr.spans.append((tr.open_rtp, rtp, span))
            tr.open_rtp = rtp
    return tracks, sc


def truth(sc: Scenario, tr: Track, rtp: int) -> int:
    """Where an undelayed packet with this RTP time arrives on our clock."""
    t = _true_ns(sc, (rtp - tr.rtp0) * S // tr.rate)
    return _our(sc, t + D0)


def errors(sc: Scenario, tr: Track, after_s: float = 0.0) -> list[int]:
    return [
        span.wall_first_ns - truth(sc, tr, rtp_first)
        for rtp_first, _last, span in tr.spans
        if rtp_first - tr.rtp0 >= after_s * tr.rate
    ]


def check_tiling(tr: Track) -> None:
    """Monotone, no overlap, and tiling exactly except across a recorded forward step."""
    for (_f0, l0, a), (f1, _l1, b) in zip(tr.spans, tr.spans[1:], strict=False):
        assert f1 == l0
        assert a.wall_first_ns <= a.wall_last_ns <= b.wall_first_ns
        if a.step is not None and a.step.error_ns > 0:
            assert b.wall_first_ns == a.step.end_ns > a.wall_last_ns
        else:
            assert b.wall_first_ns == a.wall_last_ns, (a, b)


def lip_sync_ns(sc: Scenario, video: Track, audio: Track) -> list[int]:
    """Audio-vs-video offset at each video segment start (positive: sound early)."""
    out = []
    a_spans = audio.spans
    for rtp_first, _l, span in video.spans:
        true_v = truth(sc, video, rtp_first)
        for af, al, aspan in a_spans:
            if aspan.wall_first_ns <= span.wall_first_ns < aspan.wall_last_ns:
                # the audio timeline's instant for true_v, interpolated inside that segment
                frac = (true_v - truth(sc, audio, af)) / max(1, truth(sc, audio, al) - truth(sc, audio, af))
                a_wall = aspan.wall_first_ns + frac * (aspan.wall_last_ns - aspan.wall_first_ns)
                out.append(int(span.wall_first_ns - a_wall))
                break
    return out


def report(name: str, tracks: list[Track], sc: Scenario) -> dict[str, object]:
    errs = [e for tr in tracks for e in errors(sc, tr)]
    out = {
        "scenario": name,
        "max_abs_error_ms": max(abs(e) for e in errs) / MS,
        "steps": [(tr.name, s.error_ns // MS) for tr in tracks for s in tr.timeline.steps],
        "max_abs_lip_sync_ms": max(abs(x) for x in lip_sync_ns(sc, tracks[0], tracks[1])) / MS,
    }
    print(out)
    return out


@pytest.mark.parametrize(
    "name,sc",
    [
        ("jitter+bursts", Scenario()),
        ("late first SR", Scenario(first_sr_s=9.0)),
        ("wild SR", Scenario(wild_sr_at_s=40.0)),
        ("sender clock steps +3 s", Scenario(sender_step=(50.0, 3 * S))),
    ],
)
def test_mapping_is_smooth_accurate_and_in_sync(name: str, sc: Scenario) -> None:
    tracks, sc = simulate(sc)
    r = report(name, tracks, sc)
    video, audio = tracks
    for tr in tracks:
        assert len(tr.spans) >= sc.seconds // 2 - 2
        check_tiling(tr)
        assert tr.timeline.steps == []
        assert max(abs(e) for e in errors(sc, tr)) <= 10 * MS, (tr.name, r)
    assert max(abs(x) for x in lip_sync_ns(sc, video, audio)) <= 10 * MS  # target +45/-125 ms
    if name == "wild SR":
        assert video.clock.sr_rejected == 1 and video.clock.sr_steps == 0
    if name == "sender clock steps +3 s":
        assert video.clock.sr_steps == 1 and audio.clock.sr_steps == 1


def test_a_sender_clock_50ppm_fast_is_followed_for_an_hour() -> None:
    sc = Scenario(seconds=3600, ppm=50.0, burst_every_s=60)
    tracks, sc = simulate(sc)
    r = report("50 ppm, 1 h", tracks, sc)
    for tr in tracks:
        check_tiling(tr)
        assert tr.timeline.steps == []
        assert max(abs(e) for e in errors(sc, tr)) <= 10 * MS, (tr.name, r)
        # the media clock alone would be 180 ms off by now: the timeline followed the drift
        _first, rtp_last, span = tr.spans[-1]
        media_only = tr.spans[0][2].wall_first_ns + (rtp_last - tr.spans[0][0]) * S // tr.rate
        assert media_only - truth(sc, tr, rtp_last) > 150 * MS
        assert abs(span.wall_last_ns - truth(sc, tr, rtp_last)) <= 10 * MS
    assert max(abs(x) for x in lip_sync_ns(sc, *tracks)) <= 10 * MS


@pytest.mark.parametrize("step_ns", [1 * S, -1 * S])
def test_our_clock_stepping_is_recorded_once_per_track(step_ns: int) -> None:
    sc = Scenario(seconds=120, our_step=(60.0, step_ns))
    tracks, sc = simulate(sc)
    r = report(f"our clock steps {step_ns // MS} ms", tracks, sc)
    for tr in tracks:
        check_tiling(tr)
        assert len(tr.timeline.steps) == 1, (tr.name, tr.timeline.steps)
        step: ClockStep = tr.timeline.steps[0]
        assert abs(step.error_ns - step_ns) <= 10 * MS
        if step_ns > 0:
            assert step.end_ns - step.start_ns == step.error_ns  # the skipped wall time
        else:
            assert step.end_ns == step.start_ns  # never overlapping: recorded where the segment ends
        # within ~2 windows of the step it is applied; before and after it the error is small
        at = next(i for i, (_f, _l, s) in enumerate(tr.spans) if s.step is not None)
        step_rtp = tr.spans[at][1]
        assert (step_rtp - tr.rtp0) / tr.rate <= 60 + 25, r
        errs = errors(sc, tr)
        assert all(abs(e) <= 10 * MS for e in errs[:29]), r  # before the step
        assert all(abs(e) <= 10 * MS for e in errs[at + 1 :]), r  # after it


def test_timeline_rules() -> None:
    tl = Timeline(90000)
    a = tl.place(0, 180000, 10 * S, 12 * S + 3 * MS)  # 2 s of media, target 3 ms later: slewed 3 ms
    assert a == Span(10 * S, 12 * S + 3 * MS)
    b = tl.place(180000, 360000, 0, 14 * S + 50 * MS)  # 47 ms off: only 4 ms (2 ms/s) this time
    assert b == Span(12 * S + 3 * MS, 14 * S + 7 * MS)
    c = tl.place(360000, 540000, 0, 16 * S + 7 * MS + STEP_NS + 1)  # beyond the step threshold
    assert c.wall_last_ns == 16 * S + 7 * MS and c.step is not None
    assert (c.step.start_ns, c.step.end_ns) == (16 * S + 7 * MS, 16 * S + 7 * MS + STEP_NS + 1)
    d = tl.place(540000, 720000, 0, 18 * S + 7 * MS + STEP_NS + 1)
    assert d.wall_first_ns == c.step.end_ns and d.step is None
    e = tl.place(720000, 900000, 0, d.wall_last_ns + 2 * S - 5 * S)  # target 3 s before its start
    assert e.wall_first_ns == e.wall_last_ns == d.wall_last_ns and e.step is not None
    assert e.step.error_ns == -5 * S
    # a new stretch (other RTP) starts at its target, never before the end of earlier media
    assert tl.place(10, 20, e.wall_last_ns - S, e.wall_last_ns, floor_ns=e.wall_last_ns).wall_first_ns == e.wall_last_ns
    assert tl.start_of(99, 123, None) == 123
