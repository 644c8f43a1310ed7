"""One real session (tests/integrity builder: VP8/Opus masters of two cameras, 3 × 2 s per track,
a recorded gap on main/audio where its second segment is missing) and its site key as a PEM file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integrity.builder import T0, Built, Scenario, build, default_segments
from tonglu.evidence.manifest import GapRecord

S = 1_000_000_000


def gap_scenario() -> Scenario:
    segs = [s for s in default_segments() if (s.source, s.track, s.index) != ("main", "audio", 1)]
    for s in segs:  # renumber main/audio so indexes stay consecutive (the recorder numbers what it seals)
        if (s.source, s.track) == ("main", "audio") and s.index == 2:
            s.index = 1
    gap = GapRecord("main", "audio", "peer_disconnect", T0 + 2 * S, T0 + 4 * S, detail="麦克风断开")
    return Scenario(segments=segs, gaps=[gap])


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, Path]:
    tmp = tmp_path_factory.mktemp("clip")
    b = build(tmp, gap_scenario())
    pem = tmp / "site.pem"
    pem.write_bytes(b.key.public_pem)
    return b, pem
