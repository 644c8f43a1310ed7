"""Recorder overload: frames the network delivered but the recorder could not take are a gap.

The sans-I/O rules (`recorder.overload`) are tested directly; end to end, a segment writer that
stalls for a second (a disk or core that cannot keep up) behind a tiny queue must yield exactly
one `recorder_overload` gap per track with the stall's bounds, and recording must go on.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.recorder.conftest import make_settings
from tests.recorder.evidence import decodes, gaps, segments, spooled_files, verify_chain
from tests.recorder.peers import WhipPublisher
from tests.recorder.workerfix import run, web_app
from tonglu.recorder.local import LocalRecorder
from tonglu.recorder.muxer import SegmentWriter
from tonglu.recorder.overload import OverloadGap, OverloadTracker
from tonglu.recorder.router import RecorderRouter
from tonglu.web.services import Services

# -- the rules ---------------------------------------------------------------------------------


def test_audio_drops_only_what_does_not_fit() -> None:
    t = OverloadTracker("audio", 48000)
    assert t.on_frame(0, 960, True, room=True).put
    d = t.on_frame(960, 960, True, room=False)
    assert not d.put and not d.want_keyframe and d.gap is None and t.dropping
    assert not t.on_frame(1920, 960, True, room=False).put
    d = t.on_frame(2880, 960, True, room=True)
    assert d.put and d.gap == OverloadGap(rtp_start=960, rtp_end=2880, frames=2)
    assert not t.dropping and t.dropped == 2
    assert t.on_frame(3840, 960, True, room=True) == type(d)(put=True)
    assert t.flush() is None


def test_video_waits_for_a_keyframe_that_fits() -> None:
    t = OverloadTracker("video", 90000)
    assert t.on_frame(0, 3000, True, room=True).put
    d = t.on_frame(3000, 3000, False, room=False)
    assert not d.put and d.want_keyframe  # ask the sender at once
    d = t.on_frame(6000, 3000, False, room=True)
    assert not d.put and not d.want_keyframe  # room again, but this frame needs the dropped one
    assert not t.on_frame(9000, 3000, True, room=False).put  # a keyframe that does not fit
    d = t.on_frame(9000 + 90000, 3000, False, room=True)
    assert not d.put and d.want_keyframe  # asked again after a second of media
    d = t.on_frame(102000, 3000, True, room=True)
    assert d.put and d.gap == OverloadGap(rtp_start=3000, rtp_end=102000, frames=4)


def test_track_ending_while_dropping_closes_the_gap() -> None:
    t = OverloadTracker("video", 90000)
    t.on_frame(100, 3000, False, room=False)
    t.on_frame(3100, 3000, False, room=False)
    assert t.flush() == OverloadGap(rtp_start=100, rtp_end=6100, frames=2)
    assert t.flush() is None


# -- end to end --------------------------------------------------------------------------------


QUEUE = 12  # frames: audio (50/s) overflows 0.24 s into the stall, video (15/s) 0.8 s into it
STALL_S = 1.5
MARGIN_NS = 100_000_000  # wall bounds come from the RTP->wall mapping (recorder.clock), not arrivals


class Stall:
    """A segment writer factory whose writes block while `active` is set (the pipeline thread
    stops consuming; the event loop keeps receiving)."""

    def __init__(self) -> None:
        self.active = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> SegmentWriter:
        stall = self.active

        class Slow(SegmentWriter):
            def write(self, data: bytes, rtp: int, keyframe: bool, duration: int | None = None) -> None:
                while stall.is_set():
                    time.sleep(0.005)
                super().write(data, rtp, keyframe, duration)

        return Slow(*args, **kwargs)


@pytest.mark.slow
def test_queue_overflow_is_a_recorder_overload_gap_and_recording_goes_on(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    services = Services.local(settings)
    stall = Stall()
    recorder = LocalRecorder.from_services(services, queue_limit=QUEUE, writer_factory=stall)
    services.recorder = RecorderRouter([recorder])
    with web_app(services) as server:
        s = server.create_session()
        sid, main = s["id"], s["sources"]["main"]

        async def scenario() -> tuple[int, int, dict[str, Any]]:
            pub = WhipPublisher(main["whip_url"], main["token"])
            await pub.start()
            await pub.wait_connected()
            await asyncio.sleep(3.0)
            stall.active.set()
            stalled = time.time_ns()
            await asyncio.sleep(STALL_S)
            stall.active.clear()
            released = time.time_ns()
            await asyncio.sleep(4.0)
            with server.api() as c:
                tracks = c.get(f"/api/sessions/{sid}").json()["sources"]["main"]["peer"]["tracks"]
                assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
            await pub.close()
            return stalled, released, tracks

        stalled, released, tracks = run(scenario())
    entries = verify_chain(services, sid)
    files = spooled_files(services)
    main_gaps = [g for g in gaps(entries) if g["source"] == "main"]
    assert {g["reason"] for g in main_gaps} == {"recorder_overload"}, main_gaps
    for track, rate, fps in (("video", 90000, 15), ("audio", 48000, 50)):
        over = [g for g in main_gaps if g["track"] == track]
        # every dropped frame is in a gap: the counter and the gaps agree exactly
        counts = [int(re.search(r"(\d+) frames dropped", g["detail"]).group(1)) for g in over]  # type: ignore[union-attr]
        assert sum(counts) == tracks[track]["queue_dropped"] > 0, (over, tracks[track])
        # the stall is one gap (others, if any, are real hiccups of a loaded machine, elsewhere)
        during = [g for g in over if g["start_ns"] < released + MARGIN_NS and g["end_ns"] > stalled - MARGIN_NS]
        assert len(during) == 1, (track, over, stalled, released)
        g = during[0]
        assert stalled - MARGIN_NS <= g["start_ns"] and g["end_ns"] <= released + 2_500_000_000, (g, stalled)
        media_s = (g["rtp_end"] - g["rtp_start"]) / rate
        # from the queue filling up to the release (video: to the next keyframe after it)
        assert STALL_S - QUEUE / fps - 0.3 <= media_s <= STALL_S + 2.5, (track, media_s)
        assert g["end_ns"] - g["start_ns"] == pytest.approx(media_s * 1e9, abs=2e6)
        segs = segments(entries, "main", track)
        # one peer, no clock step: contiguous segments tile exactly in wall time; across dropped
        # frames the next one starts later, never overlapping
        for prev, nxt in itertools.pairwise(segs):
            if nxt["rtp_first"] == prev["rtp_last"]:
                assert nxt["wall_first_ns"] == prev["wall_last_ns"], (prev, nxt)
            else:
                assert nxt["wall_first_ns"] >= prev["wall_last_ns"], (prev, nxt)
        after = [b for b in segs if b["rtp_first"] >= g["rtp_end"]]
        assert sum(b["frames"] for b in after) > 20, track  # recording goes on
        # what was kept decodes: no frame whose reference was dropped was written
        assert all(decodes(files[b["key"]]) for b in segs), track
