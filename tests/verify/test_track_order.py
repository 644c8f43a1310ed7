"""Per-track order checks on correctly signed sessions: what a recorder may legitimately produce
(entries appended slightly out of index order, a loss recorded by a gap entry) passes; holes,
duplicates and clocks running backwards are named."""

from __future__ import annotations

from pathlib import Path

from tests.verify.session_builder import MEDIA, SECOND, T0, BuiltSession, _segment, lay_out
from tonglu.evidence import verify_core
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import GapRecord
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool

VIDEO = sorted((MEDIA / "main" / "video").glob("*.webm"))


def session(
    root: Path,
    segments: list[tuple[int, int]],
    *,
    gap: tuple[int, int] | None = None,
    stop: bool = True,
    checkpoint: bool = True,
) -> tuple[Path, BuiltSession]:
    """main/video segments given as (index, start second), appended in the order given."""
    sid = "S-order"
    spool = Spool(root / "spool")
    key = SiteKey.load_or_create(root / "keys")
    ledger = Ledger(root / "ledger", spool, key)
    ledger.append(sid, "session_start", {"room": "r", "sources": {}}, now_ns=T0)
    seg_keys = []
    for n, (index, start) in enumerate(segments):
        seg_keys.append(
            _segment(
                ledger,
                spool,
                sid,
                "main",
                "video",
                index,
                VIDEO[n % len(VIDEO)],
                T0 + start * SECOND,
                T0 + (start + 1) * SECOND,
                "vp8",
                90_000,
            )
        )
    if gap:
        ledger.append(
            sid,
            "gap",
            GapRecord(
                "main", "video", "recorder_restart", T0 + gap[0] * SECOND, T0 + gap[1] * SECOND
            ).to_body(),
            now_ns=T0 + 60 * SECOND,
        )
    if stop:
        ledger.append(sid, "session_stop", {"stopped_by": "op", "reason": "end"}, now_ns=T0 + 61 * SECOND)
    if checkpoint:
        ledger.checkpoint(sid, final=stop, now_ns=T0 + 62 * SECOND)
    built = BuiltSession(sid, ledger, spool, key, ledger.entries(sid), seg_keys)
    return lay_out(built, root / "evidence"), built


def check(path: Path) -> verify_core.Result:
    return verify_core.verify_path(str(path))


def test_entries_sealed_out_of_index_order_are_fine(tmp_path: Path) -> None:
    path, _ = session(tmp_path, [(0, 0), (2, 2), (1, 1), (3, 3)])
    result = check(path)
    assert result.ok and result.problems == []


def test_index_hole_without_a_gap_entry_is_an_error(tmp_path: Path) -> None:
    path, built = session(tmp_path, [(0, 0), (1, 1), (3, 3)])
    result = check(path)
    assert [(p.code, p.object, p.severity) for p in result.problems] == [
        ("segment_index_gap", built.segment_keys[2], "error")
    ]
    assert "no segment 2 before index 3" in result.problems[0].message


def test_index_hole_covered_by_a_gap_entry_is_a_warning(tmp_path: Path) -> None:
    path, built = session(tmp_path, [(0, 0), (1, 1), (3, 3)], gap=(2, 3))
    result = check(path)
    assert result.ok
    assert [(p.code, p.object, p.severity) for p in result.problems] == [
        ("segment_index_gap", built.segment_keys[2], "warning")
    ]


def test_duplicate_index_and_clock_running_backwards(tmp_path: Path) -> None:
    path, built = session(tmp_path, [(0, 0), (1, 5), (1, 6), (2, 3)])
    found = {(p.code, p.object) for p in check(path).errors}
    assert ("segment_duplicate", built.segment_keys[2]) in found
    assert ("segment_time_order", built.segment_keys[3]) in found


def test_stopped_session_without_any_checkpoint_is_unsigned(tmp_path: Path) -> None:
    path, built = session(tmp_path, [(0, 0)], checkpoint=False)
    result = check(path)
    assert [(p.code, p.object, p.severity) for p in result.problems] == [
        ("unsigned_tail", f"sessions/{built.sid}/manifest/00000000.json", "error")
    ]


def test_running_session_without_a_checkpoint_yet_warns(tmp_path: Path) -> None:
    path, _ = session(tmp_path, [(0, 0)], stop=False, checkpoint=False)
    result = check(path)
    assert result.ok
    assert sorted(p.code for p in result.warnings) == ["checkpoint_final_missing", "unsigned_tail"]
