"""Segment and gap entries reach the index DB in batches, off the seal path; anything else (and a
drain) waits for what was queued before it, so a stopped session is fully indexed."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tonglu.config import Settings
from tonglu.evidence import keys
from tonglu.evidence.index import Index
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import GapRecord, SegmentRecord
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.recorder.context import RecorderContext


def segment(sid: str, i: int) -> dict[str, Any]:
    return SegmentRecord(
        source="main", track="video", media="video", codec="vp8", container="webm", index=i,
        key=keys.segment_key(sid, "main", "video", i, "webm"), rtp_first=0, rtp_last=1, clock_rate=90000,
        wall_first_ns=i * 4_000_000_000, wall_last_ns=(i + 1) * 4_000_000_000, frames=120, bytes=10, sha256="0" * 64,
    ).to_body()  # fmt: skip


def context(tmp_path: Path) -> RecorderContext:
    settings = Settings(data_dir=tmp_path / "data")
    spool = Spool(settings.spool_dir)
    ledger = Ledger(settings.ledger_dir, spool, SiteKey.load_or_create(settings.keys_dir))
    return RecorderContext(settings, spool, ledger, Index(settings.db_url))


def test_segments_are_indexed_in_batches_and_flushed_before_a_stop(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    sid = "20261127-0123456789ab"
    ctx.append(sid, "session_start", {"room": "r1", "case_number": "C", "sources": {"main": {"kind": "camera"}}})
    assert ctx.index_feed is not None
    ctx.index_feed.interval_s = 30.0  # nothing is applied by the timer during this test
    for i in range(5):
        ctx.append(sid, "segment", segment(sid, i))
    ctx.append(sid, "gap", GapRecord("main", "audio", "rtp_loss", 1, 2).to_body())
    assert ctx.index.segments(sid) == []  # queued, not yet applied
    ctx.append(sid, "session_stop", {"stopped_by": "li", "reason": ""})  # flushes first
    s = ctx.index.get_session(sid)
    assert s is not None and s.state == "stopped" and s.entries == 8 and s.head == ctx.ledger.head(sid)[1]
    assert [g.index for g in ctx.index.segments(sid)] == list(range(5))
    assert [g.reason for g in ctx.index.gaps(sid)] == ["rtp_loss"]


def test_a_failing_index_is_logged_and_recording_goes_on(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    sid = "20261127-0123456789ac"
    assert ctx.index_feed is not None

    class Broken:
        def apply_many(self, batch: list[Any]) -> int:
            raise RuntimeError("disk full")

    ctx.index_feed.index = Broken()
    ctx.index_feed.interval_s = 0.05
    entry = ctx.append(sid, "segment", segment(sid, 0))
    deadline = time.monotonic() + 10
    while ctx.index_feed.failed_batches == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ctx.index_feed.failed_batches == 1
    assert ctx.index_feed.flush(5)  # nothing left waiting
    assert ctx.ledger.entries(sid) == [entry]  # the ledger has it; reindex repairs the cache


def test_entries_a_killed_feed_had_queued_are_caught_up_from_the_ledger(tmp_path: Path) -> None:
    """A recorder killed between sealing and the feed's batch leaves entries in the ledger only; the
    next start (`LocalRecorder.start` -> `Index.catch_up`) applies exactly those, holes included."""
    ctx = context(tmp_path)
    sid = "20261127-0123456789ad"
    ctx.append(sid, "session_start", {"room": "r1", "case_number": "C", "sources": {"main": {"kind": "camera"}}})
    for i in range(3):
        ctx.ledger.append(sid, "segment", segment(sid, i))  # sealed, never reached the index
    ctx.append(sid, "gap", GapRecord("main", "video", "recorder_restart", 1, 2).to_body())
    ctx.append(sid, "note", {"text": "after the restart"})  # flushes the gap, applied at once: a hole
    index = ctx.index
    assert [g.index for g in index.segments(sid)] == []
    assert index.catch_up(ctx.ledger, sid) == 3
    assert [g.index for g in index.segments(sid)] == [0, 1, 2]
    assert [e.seq for e in index.entries_since(sid, 0, 100)] == list(range(6))
    assert index.catch_up(ctx.ledger, sid) == 0
