"""Scenario tests: each gap kind is found with the right bounds, on real recorded segments."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrity.builder import SOURCES, T0, Scenario, build, find
from tonglu.evidence.manifest import GapRecord
from tonglu.integrity.findings import (
    AV_DRIFT,
    CLOCK_STEP,
    CONTINUITY,
    COVERAGE,
    NEVER_PUBLISHED,
    RECORD_TIME_OUTSIDE,
    RECORDER_GAP,
    SEGMENT_MISSING,
    VERIFIER_FAILURE,
    finding_id,
)
from tonglu.integrity.report import build as build_report
from tonglu.integrity.timefmt import iso_utc

S = 1_000_000_000
MS = 1_000_000


def kinds(analysis, kind):
    return [f for f in analysis.findings if f.kind == kind]


def test_clean_session_reports_no_gaps(tmp_path: Path) -> None:
    b = build(tmp_path, Scenario())
    analysis = b.review.analyse(b.sid)
    assert analysis.findings == []
    doc = build_report(analysis)
    assert doc["verified"] is True
    assert doc["gaps"] == []
    assert doc["state"] == "stopped"
    assert {(t["source"], t["track"]) for t in doc["coverage"]["tracks"]} == {
        (s, t) for s in SOURCES for t in ("video", "audio")
    }
    assert all(t["covered_ms"] == 6000 for t in doc["coverage"]["tracks"])


def test_recorder_gap_event_found_with_its_bounds(tmp_path: Path) -> None:
    gap = GapRecord("main", "audio", "rtp_loss", T0 + 2500 * MS, T0 + 2620 * MS, 120_000, 125_760, 6)
    b = build(tmp_path, Scenario(gaps=[gap]))
    [f] = b.review.analyse(b.sid).findings
    assert (f.kind, f.source, f.track, f.reason) == (RECORDER_GAP, "main", "audio", "rtp_loss")
    assert (f.start_ns, f.end_ns) == (gap.start_ns, gap.end_ns)
    assert f.id == finding_id(RECORDER_GAP, "main", "audio", gap.start_ns, gap.end_ns)
    doc = build_report(b.review.analyse(b.sid))
    assert (
        doc["gaps"][0]["start"] == "2024-05-01T06:00:02.500Z"
        and doc["gaps"][0]["end"] == "2024-05-01T06:00:02.620Z"
    )
    assert doc["gaps"][0]["explained"] is False


def test_continuity_break_between_segments(tmp_path: Path) -> None:
    sc = Scenario()
    seg = find(sc.segments, "main", "video", 2)
    seg.wall_first_ns += S  # one second of media never arrived: both clocks jump
    seg.wall_last_ns += S
    seg.rtp_first += 90_000
    seg.rtp_last += 90_000
    b = build(tmp_path, sc)
    [f] = b.review.analyse(b.sid).findings
    assert (f.kind, f.source, f.track) == (CONTINUITY, "main", "video")
    assert (f.start_ns, f.end_ns) == (T0 + 4 * S, T0 + 5 * S)


def test_continuity_break_already_reported_by_recorder_is_not_doubled(tmp_path: Path) -> None:
    sc = Scenario(gaps=[GapRecord("main", "video", "peer_disconnect", T0 + 4 * S, T0 + 5 * S)])
    seg = find(sc.segments, "main", "video", 2)
    seg.wall_first_ns += S
    seg.wall_last_ns += S
    seg.rtp_first, seg.rtp_last = 0, 49 * 3600  # new peer: RTP starts afresh
    b = build(tmp_path, sc)
    [f] = b.review.analyse(b.sid).findings
    assert f.kind == RECORDER_GAP and f.reason == "peer_disconnect"


def test_missing_segment(tmp_path: Path) -> None:
    b = build(tmp_path, Scenario())
    key = b.seg_key("panorama", "audio", 1)
    (b.evidence_dir / key).unlink()
    analysis = b.review.analyse(b.sid)
    missing = kinds(analysis, SEGMENT_MISSING)
    assert [(f.source, f.track, f.start_ns, f.end_ns, f.objects) for f in missing] == [
        ("panorama", "audio", T0 + 2 * S, T0 + 4 * S, (key,))
    ]
    assert analysis.verified is False  # the verifier agrees; its duplicate is folded into this finding
    assert not [f for f in kinds(analysis, VERIFIER_FAILURE) if key in f.objects]


def test_coverage_holes_at_start_and_stop(tmp_path: Path) -> None:
    b = build(tmp_path, Scenario(start_ns=T0 - 3 * S, stop_ns=T0 + 8 * S))
    holes = {(f.source, f.track, f.start_ns, f.end_ns) for f in kinds(b.review.analyse(b.sid), COVERAGE)}
    expected = set()
    for source in SOURCES:
        for track in ("video", "audio"):
            expected |= {(source, track, T0 - 3 * S, T0), (source, track, T0 + 6 * S, T0 + 8 * S)}
    assert holes == expected


def test_expected_source_never_published(tmp_path: Path) -> None:
    sources = {**SOURCES, "side": {"kind": "camera", "label": "侧面 side"}}
    b = build(tmp_path, Scenario(sources=sources))
    [f] = b.review.analyse(b.sid).findings
    assert (f.kind, f.source, f.track, f.start_ns, f.end_ns) == (NEVER_PUBLISHED, "side", "*", T0, T0 + 6 * S)


def test_camera_without_audio_is_flagged(tmp_path: Path) -> None:
    sc = Scenario()
    sc.segments = [s for s in sc.segments if not (s.source == "panorama" and s.track == "audio")]
    b = build(tmp_path, sc)
    [f] = b.review.analyse(b.sid).findings
    assert (f.kind, f.source, f.track, f.severity) == (NEVER_PUBLISHED, "panorama", "audio", "warning")


def test_record_time_outside_recording(tmp_path: Path) -> None:
    body = {
        "record_start_iso": "2024-05-01T13:59:30+08:00",
        "record_end_iso": "2024-05-01T06:00:05Z",
        "by": "李警官",
    }
    b = build(tmp_path, Scenario(annotations=[("record_times", body, T0 + 5 * S)]))
    [f] = b.review.analyse(b.sid).findings
    assert (f.kind, f.start_ns, f.end_ns) == (RECORD_TIME_OUTSIDE, T0 - 30 * S, T0)


def test_record_end_after_recording(tmp_path: Path) -> None:
    body = {
        "record_start_iso": "2024-05-01T06:00:00Z",
        "record_end_iso": "2024-05-01T06:00:20Z",
        "by": "李警官",
    }
    b = build(tmp_path, Scenario(annotations=[("record_times", body, T0 + 5 * S)]))
    [f] = b.review.analyse(b.sid).findings
    assert (f.kind, f.start_ns, f.end_ns) == (RECORD_TIME_OUTSIDE, T0 + 6 * S, T0 + 20 * S)


def test_audio_video_drift(tmp_path: Path) -> None:
    sc = Scenario()
    for k in range(3):  # audio wall stamps slip 150 ms per segment against its RTP: sound lags
        seg = find(sc.segments, "main", "audio", k)
        seg.wall_first_ns += k * 150 * MS
        seg.wall_last_ns += k * 150 * MS
    b = build(tmp_path, sc)
    [f] = b.review.analyse(b.sid).findings
    assert (f.kind, f.source, f.track) == (AV_DRIFT, "main", "video+audio")
    assert (f.start_ns, f.end_ns) == (T0 + 4 * S, T0 + 6 * S)
    assert "-150 ms" in f.detail and f.severity == "warning"


def test_clock_step(tmp_path: Path) -> None:
    sc = Scenario()
    seg = find(sc.segments, "panorama", "video", 2)
    seg.wall_first_ns += S  # the wall clock jumped 1 s, the media (RTP) did not
    seg.wall_last_ns += S
    b = build(tmp_path, sc)
    [f] = b.review.analyse(b.sid).findings
    assert (f.kind, f.source, f.track, f.start_ns, f.end_ns) == (
        CLOCK_STEP,
        "panorama",
        "video",
        T0 + 4 * S,
        T0 + 5 * S,
    )


def test_clock_going_backwards(tmp_path: Path) -> None:
    sc = Scenario()
    seg = find(sc.segments, "main", "audio", 1)
    seg.wall_first_ns -= 500 * MS
    seg.wall_last_ns -= 500 * MS
    b = build(tmp_path, sc)
    steps = kinds(b.review.analyse(b.sid), CLOCK_STEP)
    assert (steps[0].start_ns, steps[0].end_ns) == (T0 + 1500 * MS, T0 + 2 * S)
    assert "倒退" in steps[0].detail


def test_verifier_failure_on_altered_segment(tmp_path: Path) -> None:
    b = build(tmp_path, Scenario())
    path = b.evidence_dir / b.seg_key("main", "video", 1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    analysis = b.review.analyse(b.sid)
    assert analysis.verified is False
    [f] = analysis.findings
    assert (f.kind, f.reason, f.source, f.track) == (VERIFIER_FAILURE, "segment_altered", "main", "video")
    assert (f.start_ns, f.end_ns) == (T0 + 2 * S, T0 + 4 * S)


def test_explained_gap_shows_as_explained_and_is_signed(tmp_path: Path) -> None:
    gap = GapRecord("panorama", "video", "peer_disconnect", T0 + 3 * S, T0 + 3500 * MS)
    b = build(tmp_path, Scenario(gaps=[gap]))
    [f] = b.review.analyse(b.sid).findings
    entry = b.review.explain(
        b.sid, f.id, reason_code="network", text="交换机重启", approver="张所长", by="李警官"
    )
    analysis = b.review.analyse(b.sid)
    [g] = analysis.findings
    assert g.id == f.id and g.explained
    assert g.explanations[0].seq == entry.seq and g.explanations[0].approver == "张所长"
    assert analysis.verified  # the explanation is covered by a new signed checkpoint
    assert analysis.verification is not None
    assert analysis.verification.signed_entries == analysis.verification.entries
    doc = build_report(analysis)
    assert doc["gaps"][0]["explained"] is True and doc["summary"]["unexplained"] == 0


@pytest.mark.parametrize(
    ("finding", "reason", "text", "approver", "message"),
    [
        ("0000000000000000", "network", "x", "y", "no finding"),
        (None, "holiday", "x", "y", "reason code"),
        (None, "network", " ", "y", "text"),
        (None, "network", "x", "", "approver"),
    ],
)
def test_bad_explanations_are_refused(tmp_path: Path, finding, reason, text, approver, message) -> None:
    from tonglu.integrity.errors import IntegrityError

    gap = GapRecord("main", "video", "no_packets", T0 + 3 * S, T0 + 3500 * MS)
    b = build(tmp_path, Scenario(gaps=[gap]))
    fid = finding or b.review.analyse(b.sid).findings[0].id
    before = len(b.ledger.entries(b.sid))
    with pytest.raises(IntegrityError, match=message):
        b.review.explain(b.sid, fid, reason_code=reason, text=text, approver=approver, by="x")
    assert len(b.ledger.entries(b.sid)) == before


def test_still_recording_session(tmp_path: Path) -> None:
    b = build(tmp_path, Scenario(stop_ns=None))
    analysis = b.review.analyse(b.sid, now_ns=T0 + 10 * S)
    doc = build_report(analysis)
    assert doc["state"] == "recording" and doc["recording_in_progress"] is True
    assert doc["status_text"] == "录制进行中 recording in progress"
    assert doc["gaps"] == []  # media 4 s old is still "current" while recording
    late = b.review.analyse(b.sid, now_ns=T0 + 60 * S)
    holes = kinds(late, COVERAGE)
    assert holes and all(f.start_ns == T0 + 6 * S for f in holes)
    assert iso_utc(T0) == "2024-05-01T06:00:00.000Z"


def test_unknown_session(tmp_path: Path) -> None:
    from tonglu.integrity.errors import UnknownSession

    b = build(tmp_path, Scenario())
    with pytest.raises(UnknownSession):
        b.review.analyse("no-such-session")
    with pytest.raises(UnknownSession):
        b.review.analyse("../etc")
