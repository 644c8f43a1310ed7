"""The entry index beside the ledger and the playback plan made from it: the same playlist as parsing
every entry, kept in step with the ledger (rebuilt when missing, torn, short or corrupt), and never
read by verification."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integrity.builder import T0, Built, Scenario, build
from tests.review.test_playback_plan import _scenario
from tonglu.evidence import entryindex
from tonglu.evidence.ledger import Ledger
from tonglu.integrity.playback_index import IndexOutOfStep, load_records, plan_from_index
from tonglu.integrity.playback_plan import plan_playback
from tonglu.integrity.service import Review

S = 1_000_000_000
BASE = "/api/sessions/case-001/playback"
LONG = "remote-" + "x" * 50  # "<source>/video" beyond the index's 48 bytes: planned from the ledger line


def _plain(tmp: Path) -> Built:
    return build(tmp, _scenario())


def _odd(tmp: Path) -> Built:
    """A remote camera whose name does not fit the index (planned from its ledger lines), with a
    hole; media before session_start; a malformed segment entry (a problem, not a segment); live."""
    b = build(tmp, dataclasses.replace(_scenario(), stop_ns=None))
    for e in b.ledger.entries(b.sid):
        if e.kind == "segment" and e.body["source"] == "main" and e.body["index"] != 1:
            body = dict(e.body, source=LONG, key=e.body["key"].replace("/main/", f"/{LONG}/"))
            b.ledger.append(b.sid, "segment", body, now_ns=e.time_ns + 1)
    early = next(e for e in b.ledger.entries(b.sid) if e.kind == "segment" and e.body["track"] == "audio")
    b.ledger.append(b.sid, "segment", dict(early.body, index=9, wall_first_ns=T0 - S, wall_last_ns=T0 + S // 2),
                    now_ns=T0 + 8 * S)
    b.ledger.append(b.sid, "segment", {"source": "main", "track": "video"}, now_ns=T0 + 9 * S)
    return b


@pytest.mark.parametrize("make", [_plain, _odd, lambda tmp: build(tmp, Scenario(segments=[]))])
def test_indexed_plan_is_the_parsed_plan(tmp_path: Path, make: Callable[[Path], Built]) -> None:
    b = make(tmp_path)
    parsed = plan_playback(b.sid, b.ledger.entries(b.sid))
    indexed = plan_from_index(b.sid, *b.ledger.entry_index(b.sid))
    assert indexed.to_json(BASE) == parsed.to_json(BASE)
    if make is _odd:
        assert {t.source for t in parsed.tracks} == {"main", "panorama", LONG} and parsed.recording
        assert parsed.problems and parsed.t0_ns == T0 - S
        assert len(parsed.track(LONG, "video").gaps) == 2  # type: ignore[union-attr]  # before t0, the hole
    for t in parsed.tracks:
        assert indexed.m3u8(t.source, t.track, BASE) == parsed.m3u8(t.source, t.track, BASE)
        for s in t.segments:
            assert indexed.segment(s.seq) == s
    assert indexed.segment(0) is None and indexed.segment(10**6) is None  # session_start; beyond the end


def test_windows_list_what_overlaps(tmp_path: Path) -> None:
    b = build(tmp_path, _scenario())
    plan = plan_from_index(b.sid, *b.ledger.entry_index(b.sid))
    full = plan.to_json(BASE)
    doc = plan.to_json(BASE, 1000, 2500)  # overlaps the first two 2 s segments of each full track
    assert doc["window"] == {"from_ms": 1000, "to_ms": 2500}
    for whole, part in zip(full["tracks"], doc["tracks"], strict=True):
        assert part["segments"] == [r for r in whole["segments"] if r[2] > 1000 and r[1] < 2500]
        assert part["gaps"] == whole["gaps"]  # the timeline keeps every gap
    mv = next(t for t in doc["tracks"] if t["source"] == "main" and t["track"] == "video")
    assert [(a, z) for _q, a, z in mv["segments"]] == [(0, 2000), (2000, 4000)]
    w = plan.window_json(4000, 6000)
    pv = next(t for t in w["tracks"] if t["source"] == "panorama" and t["track"] == "video")
    assert [(a, z) for _q, a, z in pv["segments"]] == [(4000, 6000)]
    assert pv["gaps"] == []  # the 2..4 s gap ends where the window starts
    assert next(t for t in plan.window_json(3000, 3500)["tracks"] if t["source"] == "panorama"
                and t["track"] == "video")["gaps"][0]["reason"] == "peer_disconnect"


def _index(b: object) -> Path:
    ledger: Ledger = b.ledger  # type: ignore[attr-defined]
    return ledger.root / b.sid / entryindex.INDEX_NAME  # type: ignore[attr-defined]


def test_append_writes_one_record_per_entry(tmp_path: Path) -> None:
    b = build(tmp_path, _scenario())
    n = len(b.ledger.entries(b.sid))
    data = _index(b).read_bytes()
    assert len(data) == n * entryindex.SIZE
    records = load_records(data)
    log = (b.ledger.root / b.sid / "entries.log").read_bytes()
    for r, entry in zip(records, b.ledger.entries(b.sid), strict=True):
        assert log[int(r["offset"]): int(r["offset"]) + int(r["length"])] == entry.to_bytes()
        assert (r["kind"] == entryindex.SEGMENT) == (entry.kind == "segment")
        if entry.kind == "segment":
            assert (int(r["start_ns"]), int(r["end_ns"])) == (entry.body["wall_first_ns"], entry.body["wall_last_ns"])
            assert r["track"].decode() == f"{entry.body['source']}/{entry.body['track']}"
    # a later append (in another Ledger instance, as another process would) extends it
    other = Ledger(b.ledger.root, b.spool, b.key)
    other.append(b.sid, "marker", {"time_ns": T0, "note": "再打点", "by": "李"}, now_ns=T0 + 7 * S)
    assert len(_index(b).read_bytes()) == (n + 1) * entryindex.SIZE
    assert _index(b).stat().st_mode & 0o777 in (0o640, 0o600)


def test_index_rebuilt_from_the_ledger_when_missing_short_or_corrupt(tmp_path: Path) -> None:
    b = build(tmp_path, _scenario())
    good = _index(b).read_bytes()
    want = plan_from_index(b.sid, *b.ledger.entry_index(b.sid)).to_json(BASE)

    _index(b).unlink()  # an index never written (a ledger from before it existed)
    assert b.ledger.entry_index(b.sid)[1] == good and _index(b).read_bytes() == good

    _index(b).write_bytes(good[: 3 * entryindex.SIZE + 17])  # shorter than the ledger, last record torn
    assert b.ledger.entry_index(b.sid)[1] == good

    # an append that found the index behind catches it up rather than leaving a hole
    _index(b).write_bytes(good[: 2 * entryindex.SIZE])
    b.ledger.append(b.sid, "marker", {"time_ns": T0, "note": "补", "by": "李"}, now_ns=T0 + 7 * S)
    d, data = b.ledger.entry_index(b.sid)
    assert data[: len(good)] == good and len(data) == len(good) + entryindex.SIZE
    assert load_records(data)[-1]["seq"] == len(data) // entryindex.SIZE - 1

    # a record in the middle overwritten: the plan notices and the ledger rebuilds it
    bad = bytearray(data)
    bad[5 * entryindex.SIZE: 6 * entryindex.SIZE] = os.urandom(entryindex.SIZE)
    with pytest.raises(IndexOutOfStep):
        plan_from_index(b.sid, d, bytes(bad))
    _index(b).write_bytes(bytes(bad))
    assert b.ledger.entry_index(b.sid, rebuild=True)[1] == data
    assert plan_from_index(b.sid, *b.ledger.entry_index(b.sid)).to_json(BASE)["markers"][:1] == want["markers"]

    # an index pointing into the wrong place of the ledger (offsets shifted): caught, never believed
    shifted = bytearray(data)
    for i in range(len(data) // entryindex.SIZE):
        off = i * entryindex.SIZE + 8
        shifted[off: off + 8] = (int.from_bytes(shifted[off: off + 8], "little") + 1).to_bytes(8, "little")
    _index(b).write_bytes(bytes(shifted))
    assert b.ledger.entry_index(b.sid)[1] == data  # the last record does not point at its entry: rebuilt


def test_a_corrupt_index_does_not_change_verification(tmp_path: Path) -> None:
    b = build(tmp_path, _scenario())

    def verdict() -> tuple[object, ...]:
        ledger = Ledger(b.ledger.root, b.spool, b.key)  # a fresh reader, as a restarted server
        review = Review(b.settings, ledger, b.key, b.review.files, config=b.review.config)
        a = review.analyse(b.sid, now_ns=T0 + 10 * S)
        assert a.verification is not None
        return a.verification.to_json(), [f.to_json() for f in a.findings]

    before = verdict()
    assert before[0]["ok"] is True  # type: ignore[index]
    _index(b).write_bytes(os.urandom(len(_index(b).read_bytes())))
    assert verdict() == before
    _index(b).unlink()
    assert verdict() == before
