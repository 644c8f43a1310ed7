"""Pure parts of the hearing work: the consultation plan, the per-track withholding, the relay's
privacy per viewer party, party viewer source order, and the integrity rule that explains a
`lawyer_consultation` gap only with the signed entries that bound it."""

from __future__ import annotations

import pytest

from tonglu.evidence.manifest import GapRecord
from tonglu.integrity.analysis import analyse
from tonglu.integrity.session import Annotation, Gap, SessionView
from tonglu.recorder.consultation import ROOM, Withhold, open_consultation, plan
from tonglu.recorder.errors import BadRequest
from tonglu.recorder.relay import Relay, Subscriber
from tonglu.recorder.whep import party_sources

SOURCES = ["main", "panorama", "remote-j", "remote-l", "remote-p"]
PRESENT = {
    "remote-j": {"role": "judge", "present": True, "joined_ns": 1},
    "remote-l": {"role": "lawyer", "present": True, "joined_ns": 3},
    "remote-p": {"role": "prosecutor", "present": True, "joined_ns": 2},
}


def test_plan_pairs_the_lawyer_with_the_room_and_refuses_what_is_not_a_consultation() -> None:
    c = plan(SOURCES, PRESENT, lawyer=None, defendant=None, now_ns=5, by="clerk", recording="not_recorded")
    assert c.parties == (ROOM, "remote-l")
    assert c.sources == ("main", "panorama", "remote-l")
    assert c.allowed("main") == frozenset({"remote-l"}) and c.allowed("remote-l") == frozenset({ROOM})
    assert c.allowed("remote-j") is None  # the judge is not part of it: forwarded as usual
    with pytest.raises(BadRequest):  # the judge is no lawyer
        plan(SOURCES, PRESENT, lawyer="remote-j", defendant=None, now_ns=5, by="x", recording="not_recorded")
    with pytest.raises(BadRequest):  # no lawyer present
        plan(SOURCES, {"remote-j": PRESENT["remote-j"]}, lawyer=None, defendant=None, now_ns=5, by="x",
             recording="not_recorded")
    with pytest.raises(BadRequest):
        plan(SOURCES, PRESENT, lawyer=None, defendant=None, now_ns=5, by="x", recording="sometimes")
    # a defendant joining remotely: the consultation is between the two remote parties
    remote_defendant = {**PRESENT, "remote-d": {"role": "defendant", "present": True}}
    c2 = plan([*SOURCES, "remote-d"], remote_defendant, lawyer=None, defendant=None, now_ns=5, by="x",
              recording="recorded")
    assert c2.sources == ("remote-l", "remote-d") and not c2.withholds
    body = c.started_body()
    assert open_consultation([body]) == body
    assert open_consultation([body, c.ended_body(9, "lawyer")]) is None


def test_withhold_keeps_one_gap_per_track_ending_on_a_frame_that_can_start_a_segment() -> None:
    w = Withhold("video", 1_000, "c1")
    assert w.on_frame(10, True, 1_100) == (False, None)  # during: withheld, even keyframes
    w.end(5_000, "lawyer")
    assert w.on_frame(20, False, 5_100) == (False, None)  # after: video waits for a keyframe
    assert w.on_frame(30, True, 5_200) == (True, (1_000, 5_200))
    assert w.rtp_start == 10 and w.withheld == 2
    a = Withhold("audio", 1_000, "c1")
    a.end(2_000, "x")
    assert a.on_frame(7, False, 2_020) == (True, (1_000, 2_020))
    assert Withhold("audio", 1_000, "c1").close(3_000) == (1_000, 3_000)


def test_relay_forwards_a_private_source_only_to_the_allowed_parties() -> None:
    relay = Relay()
    tap = relay.track("s", "main", "video", "video")
    staff = Subscriber("v1", "video", "vp8")
    lawyer = Subscriber("v2", "video", "vp8", party="remote-l")
    judge = Subscriber("v3", "video", "vp8", party="remote-j")
    for sub in (staff, lawyer, judge):
        tap.subscribe(sub, 0)
    key = b"\x10\x02\x00\x9d\x01\x2a" + b"\x40\x01\xf0\x00" + b"\x00" * 20  # a VP8 keyframe header
    tap.publish("vp8", key, 0, 1)
    assert [len(s.queue) for s in (staff, lawyer, judge)] == [1, 1, 1]
    relay.set_private("s", "main", frozenset({"remote-l"}), 2)
    late = relay.track("s", "main", "audio", "audio")  # a tap made during it is private too
    assert late.private_to == frozenset({"remote-l"})
    tap.publish("vp8", key, 3000, 3)
    assert [len(s.queue) for s in (staff, lawyer, judge)] == [1, 2, 1]
    assert staff.withheld == judge.withheld == 1 and staff.waiting_key and judge.waiting_key
    relay.set_private("s", "main", None, 4)
    tap.publish("vp8", key, 6000, 5)
    assert [len(s.queue) for s in (staff, lawyer, judge)] == [2, 3, 2]
    relay.close_session("s")
    assert relay.private == {}


def test_party_sources_room_first_then_the_others_in_join_order() -> None:
    specs = {s: {} for s in SOURCES}
    assert party_sources(specs, PRESENT, "room") == ["remote-j", "remote-p", "remote-l"]
    assert party_sources(specs, PRESENT, "remote-l") == ["main", "panorama", "remote-j", "remote-p"]
    gone = {**PRESENT, "remote-p": {"role": "prosecutor", "present": False}}
    assert party_sources(specs, gone, "remote-j") == ["main", "panorama", "remote-l"]


def _view(entries: list[Annotation], gap_start: int, gap_end: int) -> SessionView:
    view = SessionView(session="s", entries_count=10, start_ns=0, stop_ns=100 * 10**9)
    view.gaps.append(Gap(5, GapRecord("main", "audio", "lawyer_consultation", gap_start, gap_end)))
    view.consultations.extend(entries)
    return view


def test_a_consultation_gap_is_explained_only_by_the_entries_that_bound_it() -> None:
    start, end = 10 * 10**9, 20 * 10**9
    started = Annotation(3, "consultation", start, {"event": "started", "consultation_id": "c1", "by": "clerk",
                                                    "sources": ["main", "remote-l"], "time_ns": start})
    ended = Annotation(4, "consultation", end, {"event": "ended", "consultation_id": "c1", "by": "lawyer",
                                                "sources": ["main", "remote-l"], "time_ns": end})

    def finding(view: SessionView) -> object:
        return next(f for f in analyse(view).findings if f.reason == "lawyer_consultation")

    ok = finding(_view([started, ended], start, end + 200_000_000))
    assert ok.explained and ok.explanations[0].by == "clerk" and ok.explanations[0].approver == "lawyer"
    # a forged gap with that reason and no entries, one not starting at the entry, one running on
    # long after the end, one of a source not in the consultation: all stay unexplained
    assert not finding(_view([], start, end)).explained
    assert not finding(_view([started, ended], start - 10**9, end)).explained
    assert not finding(_view([started, ended], start, end + 60 * 10**9)).explained
    assert not finding(_view([started], start, end)).explained
    other = Annotation(3, "consultation", start, {**started.body, "sources": ["remote-l"]})
    assert not finding(_view([other, ended], start, end)).explained
