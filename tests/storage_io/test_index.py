"""The index DB: apply entries idempotently, query, and rebuild from the store alone."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from tonglu.config import Settings
from tonglu.evidence import keys
from tonglu.evidence.index import Index, SessionFilter, record
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import GapRecord, SegmentRecord
from tonglu.evidence.reindex import reindex
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.evidence.uploader import Uploader

START = {
    "room": "审讯室1",
    "case_number": "A-2026-001",
    "suspect": "张三",
    "interviewers": ["李警官", "王警官"],
    "reason": "讯问",
    "custody_out_iso": "2026-01-02T01:00:00Z",
    "sources": {
        "main": {"kind": "camera", "label": "近景 close-up"},
        "panorama": {"kind": "camera", "label": "全景 panorama"},
    },
    "created_by": "li",
    "recorder_version": "0.1.0",
}


def segment(sid: str, source: str, i: int, t0: int) -> dict:
    key = keys.segment_key(sid, source, "video", i, "webm")
    return SegmentRecord(
        source=source,
        track="video",
        media="video",
        codec="vp8",
        container="webm",
        index=i,
        key=key,
        rtp_first=i * 360000,
        rtp_last=i * 360000 + 356400,
        clock_rate=90000,
        wall_first_ns=t0 + i * 4_000_000_000,
        wall_last_ns=t0 + (i + 1) * 4_000_000_000,
        frames=100,
        bytes=1000 + i,
        sha256=f"{i:064x}",
    ).to_body()


def fill_session(ledger: Ledger, index: Index | None, sid: str, spool: Spool | None = None) -> None:
    t0 = 1_700_000_000_000_000_000
    record(ledger, index, sid, "session_start", dict(START, room=f"room-{sid}"), now_ns=t0)
    for i in range(3):
        body = segment(sid, "main", i, t0)
        if spool is not None:
            spool.put_bytes(body["key"], b"media" * (i + 1))
        record(ledger, index, sid, "segment", body, now_ns=t0 + (i + 1) * 4_000_000_000)
    record(
        ledger,
        index,
        sid,
        "gap",
        GapRecord("panorama", "video", "not_connected", t0, t0 + 12_000_000_000, detail="camera offline").to_body(),
        now_ns=t0 + 12_000_000_001,
    )
    record(ledger, index, sid, "marker", {"time_ns": t0 + 5, "note": "出示证据", "by": "li"}, now_ns=t0 + 13)
    record(
        ledger,
        index,
        sid,
        "participant",
        {"source": "remote-7", "event": "joined", "name": "赵律师", "role": "lawyer", "time_ns": t0 + 14},
        now_ns=t0 + 14,
    )
    record(
        ledger,
        index,
        sid,
        "custody",
        {"event": "in", "time_iso": "2026-01-02T03:00:00Z", "by": "li"},
        now_ns=t0 + 15,
    )
    record(ledger, index, sid, "session_stop", {"stopped_by": "li", "reason": "讯问结束"}, now_ns=t0 + 16)
    ledger.checkpoint(sid, final=True, now_ns=t0 + 17)


@pytest.fixture
def local(settings: Settings) -> tuple[Spool, Ledger, Index]:
    spool = Spool(settings.spool_dir)
    return (
        spool,
        Ledger(settings.ledger_dir, spool, SiteKey.load_or_create(settings.keys_dir)),
        Index(settings.db_url),
    )


def test_apply_builds_sessions_segments_gaps(local) -> None:
    _, ledger, index = local
    fill_session(ledger, index, "S1")
    for n, cp in enumerate(ledger.checkpoints("S1")):
        index.apply_checkpoint(cp, ordinal=n)
    s = index.get_session("S1")
    assert s is not None
    assert (s.room, s.case_number, s.suspect, s.interviewers) == (
        "room-S1",
        "A-2026-001",
        "张三",
        ["李警官", "王警官"],
    )
    assert s.state == "stopped" and s.stopped_by == "li" and s.started_ns == 1_700_000_000_000_000_000
    assert s.custody_out_iso == "2026-01-02T01:00:00Z" and s.custody_in_iso == "2026-01-02T03:00:00Z"
    assert s.entries == 9 and s.head == ledger.head("S1")[1]
    assert s.final_digest == ledger.checkpoints("S1")[-1].digest
    segs = index.segments("S1")
    assert [(g.source, g.index, g.uploaded) for g in segs] == [
        ("main", 0, False),
        ("main", 1, False),
        ("main", 2, False),
    ]
    (gap,) = index.gaps("S1")
    assert (gap.source, gap.reason, gap.end_ns - gap.start_ns) == (
        "panorama",
        "not_connected",
        12_000_000_000,
    )
    assert {(x.name, x.kind) for x in index.sources("S1")} == {
        ("main", "camera"),
        ("panorama", "camera"),
        ("remote-7", "remote"),
    }
    assert [a.body["note"] for a in index.annotations("S1", "marker")] == ["出示证据"]
    (cp,) = index.checkpoints("S1")
    assert cp.final and cp.tree_size == 9 and cp.ordinal == 0


def test_apply_is_idempotent(local) -> None:
    _, ledger, index = local
    fill_session(ledger, index, "S1")
    assert index.sync_from_ledger(ledger, "S1") == 0  # entries were applied; the checkpoint now is
    before = (index.get_session("S1"), index.segments("S1"), index.gaps("S1"), index.annotations("S1"))
    assert before[0] is not None and before[0].final_digest
    assert not any(index.apply(e) for e in ledger.entries("S1"))
    assert not index.apply_checkpoint(ledger.checkpoints("S1")[0], ordinal=0)
    assert index.sync_from_ledger(ledger, "S1") == 0
    after = (index.get_session("S1"), index.segments("S1"), index.gaps("S1"), index.annotations("S1"))
    assert before == after


def test_apply_many_equals_apply_one_by_one(local, tmp_path: Path) -> None:
    """The recorder's batched path: same tables as entry-by-entry, in any batching, with repeats."""
    _, ledger, index = local
    fill_session(ledger, index, "S1")
    fill_session(ledger, index, "S2")
    t0 = 1_700_000_000_000_000_000
    for i in range(3, 9):  # more segments (an upload mark before one of them) and gaps, S3 not yet known
        body = segment("S3", "panorama", i, t0)
        record(ledger, None, "S3", "segment", body, now_ns=t0 + i)
        if i == 5:
            index.mark_uploaded(body["key"], t0)
        record(ledger, None, "S3", "gap", GapRecord("panorama", "audio", "rtp_loss", t0 + i, t0 + i + 5).to_body(),
               now_ns=t0 + i)
    record(ledger, None, "S3", "session_stop", {"stopped_by": "li", "reason": ""}, now_ns=t0 + 99)
    for e in ledger.entries("S3"):
        index.apply(e)
    batched = Index(f"sqlite:///{tmp_path / 'batched.db'}")
    batched.mark_uploaded(segment("S3", "panorama", 5, t0)["key"], t0)
    everything = [e for sid in ("S1", "S2", "S3") for e in ledger.entries(sid)]
    assert batched.apply_many(everything[:7]) == 7
    assert batched.apply_many(everything[3:20] + everything[3:5]) == 13  # repeats are skipped
    assert batched.apply_many(everything[20:]) == len(everything) - 20
    assert batched.apply_many(everything) == 0
    for sid in ("S1", "S2", "S3"):
        assert batched.get_session(sid) == index.get_session(sid)
        assert batched.segments(sid) == index.segments(sid)
        assert batched.gaps(sid) == index.gaps(sid)
        assert batched.annotations(sid) == index.annotations(sid)
        assert batched.sources(sid) == index.sources(sid)
    assert [g.uploaded for g in batched.segments("S3")] == [i == 5 for i in range(3, 9)]


def test_sync_from_ledger_catches_up_missed_entries(local) -> None:
    _, ledger, index = local
    fill_session(ledger, None, "S2")  # the index missed everything
    assert index.get_session("S2") is None
    assert index.sync_from_ledger(ledger, "S2") == 9
    s = index.get_session("S2")
    assert s is not None and s.state == "stopped" and s.final_digest


def test_list_sessions_filters(local) -> None:
    _, ledger, index = local
    for sid in ("S1", "S2", "S3"):
        fill_session(ledger, index, sid)
    record(ledger, index, "S4", "session_start", dict(START, room="room-S4", case_number="B-9"))
    assert [s.id for s in index.list_sessions(SessionFilter(room="room-S2"))] == ["S2"]
    assert [s.id for s in index.list_sessions(SessionFilter(state="recording"))] == ["S4"]
    assert {s.id for s in index.list_sessions(SessionFilter(case_number="A-2026-001"))} == {"S1", "S2", "S3"}
    assert [s.id for s in index.list_sessions(SessionFilter(text="B-"))] == ["S4"]
    assert len(index.list_sessions(SessionFilter(limit=2))) == 2
    assert index.list_sessions()[0].id == "S4"  # newest first
    assert index.count_sessions() == 4


def test_upload_mark_before_or_after_apply(local) -> None:
    _, ledger, index = local
    t0 = time.time_ns()
    body0, body1 = segment("S5", "main", 0, t0), segment("S5", "main", 1, t0)
    index.mark_uploaded(body0["key"], t0)  # uploader faster than the index
    record(ledger, index, "S5", "segment", body0)
    record(ledger, index, "S5", "segment", body1)
    index.mark_uploaded(body1["key"], t0)
    assert [g.uploaded for g in index.segments("S5")] == [True, True]


def test_reindex_rebuilds_from_the_store_alone(seaweed, store_settings: Settings, tmp_path: Path) -> None:
    spool = Spool(store_settings.spool_dir)
    ledger = Ledger(store_settings.ledger_dir, spool, SiteKey.load(store_settings.keys_dir))
    live = Index(store_settings.db_url)
    for sid in ("R1", "R2"):
        fill_session(ledger, live, sid, spool)
    store = seaweed.object_store(store_settings)
    up = Uploader(spool, store, store_settings, threads=2)
    assert up.drain_once().quarantined == 0 and spool.pending() == []
    for sid in ("R1", "R2"):
        for seg in live.segments(sid):
            live.mark_uploaded(seg.key, 1)
        for n, cp in enumerate(ledger.checkpoints(sid)):
            live.apply_checkpoint(cp, ordinal=n)
    rebuilt = Index(f"sqlite:///{tmp_path / 'rebuilt.db'}")
    report = reindex(seaweed.object_store(store_settings, "reviewer"), rebuilt)
    assert (report.sessions, report.entries, report.checkpoints, report.skipped) == (2, 18, 2, [])
    for sid in ("R1", "R2"):
        assert rebuilt.get_session(sid) == live.get_session(sid)
        assert rebuilt.segments(sid) == live.segments(sid)
        assert rebuilt.gaps(sid) == live.gaps(sid)
        assert rebuilt.annotations(sid) == live.annotations(sid)
        assert rebuilt.checkpoints(sid) == live.checkpoints(sid)
        assert rebuilt.sources(sid) == live.sources(sid)
    # Reindexing again (reset) gives the same; a stray object is skipped and named.
    bad = b"{not json"
    store.put_if_absent("sessions/R3/manifest/00000000.json", bad, hashlib.sha256(bad).hexdigest())
    again = reindex(store, rebuilt)
    assert (again.sessions, again.entries, rebuilt.count_sessions()) == (2, 18, 2)
    assert len(again.skipped) == 1 and again.skipped[0].startswith("sessions/R3/manifest/00000000.json")
