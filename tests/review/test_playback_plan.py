"""The playback plan from a manifest (sans-I/O): segments per track at their wall times, gaps (recorded
and unrecorded), markers, breaks, and the HLS-style playlist's discontinuities."""

from __future__ import annotations

from pathlib import Path

from tests.integrity.builder import T0, Scenario, build, default_segments
from tonglu.evidence.manifest import GapRecord
from tonglu.integrity.playback_plan import plan_playback

S = 1_000_000_000


def _scenario() -> Scenario:
    segs = [s for s in default_segments() if (s.source, s.track, s.index) != ("panorama", "video", 1)]
    for s in segs:
        if (s.source, s.track) == ("panorama", "video") and s.index == 2:
            s.index = 1
    gap = GapRecord("panorama", "video", "peer_disconnect", T0 + 2 * S, T0 + 4 * S, detail="全景断开")
    marker = ("marker", {"time_ns": T0 + 1 * S, "note": "出示证据", "by": "李警官"}, T0 + 1 * S)
    brk = ("break", {"break_id": "b1", "reason_code": "rest", "start_ns": T0 + 5 * S, "end_ns": T0 + 5500 * S // 1000,
                     "text": "休息", "approver": "王", "by": "李"}, T0 + 5 * S)
    return Scenario(segments=segs, gaps=[gap], annotations=[marker, brk])


def test_plan_tracks_gaps_markers_breaks(tmp_path: Path) -> None:
    b = build(tmp_path, _scenario())
    plan = plan_playback(b.sid, b.ledger.entries(b.sid))
    assert plan.t0_ns == T0 and plan.t1_ns == T0 + 6 * S and not plan.recording
    assert [t.track_id for t in plan.tracks] == ["main/video", "main/audio", "panorama/video", "panorama/audio"]
    pv = plan.track("panorama", "video")
    assert pv is not None
    assert [(s.start_ns - T0) // S for s in pv.segments] == [0, 4]
    [gap] = pv.gaps
    assert (gap.start_ns, gap.end_ns, gap.reason) == (T0 + 2 * S, T0 + 4 * S, "peer_disconnect")
    mv = plan.track("main", "video")
    assert mv is not None and mv.gaps == [] and len(mv.segments) == 3
    assert mv.mime == 'video/webm; codecs="vp8"'
    doc = plan.to_json("/api/sessions/case-001/playback")
    assert doc["duration_ms"] == 6000
    [m] = doc["markers"]
    assert m["at_ms"] == 1000 and m["note"] == "出示证据"
    [br] = doc["breaks"]
    assert (br["start_ms"], br["end_ms"], br["reason_code"]) == (5000, 5500, "rest")
    t = next(t for t in doc["tracks"] if t["source"] == "panorama" and t["track"] == "video")
    assert [(a, b) for _seq, a, b in t["segments"]] == [(0, 2000), (4000, 6000)]
    assert t["segments"][0][0] == pv.segments[0].seq
    assert t["url_pattern"] == "/api/sessions/case-001/playback/segments/{seq}.webm"
    assert t["gaps"][0]["start_ms"] == 2000 and t["gaps"][0]["end_ms"] == 4000


def test_unrecorded_hole_is_a_gap_too(tmp_path: Path) -> None:
    """A stretch no segment covers and no gap entry names (a late camera) is still shown as a gap."""
    segs = [s for s in default_segments() if not ((s.source, s.track) == ("main", "audio") and s.index == 0)]
    for s in segs:
        if (s.source, s.track) == ("main", "audio"):
            s.index -= 1
    b = build(tmp_path, Scenario(segments=segs))
    plan = plan_playback(b.sid, b.ledger.entries(b.sid))
    ma = plan.track("main", "audio")
    assert ma is not None
    [gap] = ma.gaps
    assert (gap.start_ns, gap.end_ns, gap.reason) == (T0, T0 + 2 * S, "no_media")


def test_m3u8_program_date_time_and_discontinuities(tmp_path: Path) -> None:
    b = build(tmp_path, _scenario())
    plan = plan_playback(b.sid, b.ledger.entries(b.sid))
    text = plan.m3u8("panorama", "video", "/api/sessions/case-001/playback")
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[-1] == "#EXT-X-ENDLIST"
    pdt = [ln for ln in lines if ln.startswith("#EXT-X-PROGRAM-DATE-TIME:")]
    assert pdt == ["#EXT-X-PROGRAM-DATE-TIME:2024-05-01T06:00:00.000Z",
                   "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T06:00:04.000Z"]
    i = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[i - 1].startswith("## gap 2024-05-01T06:00:02.000Z")
    assert [ln for ln in lines if ln.startswith("#EXTINF")] == ["#EXTINF:2.000,", "#EXTINF:2.000,"]
    live = plan_playback(b.sid, b.ledger.entries(b.sid)[:-2])  # before session_stop
    assert live.recording and "#EXT-X-ENDLIST" not in live.m3u8("main", "video", "/x")
