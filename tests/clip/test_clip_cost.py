"""A 10-minute clip of a long session reads only the segments of its range and builds its proofs
from the ledger's leaf hashes: no object outside the range is opened, and it is quick."""

from __future__ import annotations

import time
from pathlib import Path

from tests.clip.helpers import both
from tests.clip.longsession import SEG_S, T0, synthesize
from tonglu.integrity.clip import export_clip

S = 1_000_000_000


def test_ten_minutes_of_a_four_hour_session(tmp_path: Path) -> None:
    review, files = synthesize(tmp_path, hours=4)
    sid = "long-001"
    lo, hi = T0 + (2 * 3600 + 10 * 60) * S, T0 + (2 * 3600 + 20 * 60) * S  # 02:10:00 - 02:20:00
    out = tmp_path / "clip.zip"
    t = time.perf_counter()
    result = export_clip(review, sid, lo, hi, out, with_media=False)
    seconds = time.perf_counter() - t
    per_track = 10 * 60 // SEG_S
    assert result.segments == 4 * per_track and result.intact
    first, last = (lo - T0) // (SEG_S * S), (hi - T0) // (SEG_S * S) - 1
    assert len(files.opened) == result.segments  # each segment in the range read once, nothing else
    assert sorted(files.primed) == sorted(files.opened)  # versions asked for exactly those, not the session's
    assert all(first <= int(k.rsplit("/", 1)[1].split(".")[0]) <= last for k in files.opened)
    assert seconds < 30, f"clip took {seconds:.1f} s"  # measured ≈ 1-2 s on the 2-core CI box
    pem = tmp_path / "site.pem"
    pem.write_bytes(review.site_key.public_pem)
    ra, rb = both(out, pem)
    assert ra["ok"] and rb["ok"], (ra["problems"][:3], rb["problems"][:3])
    assert ra["clip"]["proofs_valid"] == result.entries == 4 * per_track + 1
    assert ra["clip"]["tree_size"] == 4 * 4 * 3600 // SEG_S + 2
