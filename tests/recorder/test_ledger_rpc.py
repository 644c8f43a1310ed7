"""The session's chain served to a web tier on another host (`ledger_entries` / `ledger_append`,
recorder.hostledger): annotations only, on a session this recorder holds, stopped-session rules
as the local ledger keeps them."""

from __future__ import annotations

import json

import pytest

from tonglu.evidence.manifest import ManifestEntry
from tonglu.recorder.errors import BadRequest, SessionNotFound, SessionStopped

from .conftest import Server


def test_annotations_are_appended_where_the_chain_is_and_nothing_else(server: Server) -> None:
    sid = server.create_session()["id"]
    rec = server.recorder
    line = server.call(rec.ledger_append(sid, "marker", {"time_ns": 1, "note": "出示证据"}))
    entry = ManifestEntry.from_bytes(line.encode())
    assert entry.kind == "marker" and entry.seq == 1 and entry.body["note"] == "出示证据"
    assert [json.loads(x)["kind"] for x in server.call(rec.ledger_entries(sid))] == ["session_start", "marker"]
    assert [json.loads(x)["seq"] for x in server.call(rec.ledger_entries(sid, 1))] == [1]
    for kind in ("segment", "gap", "session_start", "session_stop", "transcript", "consultation", "nonsense"):
        with pytest.raises(BadRequest):
            server.call(rec.ledger_append(sid, kind, {"x": 1}))
    with pytest.raises(SessionNotFound):
        server.call(rec.ledger_append("20261205-0123456789ab", "marker", {"note": "x"}))
    assert not server.services.ledger.has("20261205-0123456789ab")  # no chain started for it
    with server.api() as c:
        assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
    with pytest.raises(SessionStopped):  # alerts only while recording, as the local ledger says
        server.call(rec.ledger_append(sid, "alert", {"rule": "r"}, True))
    after = server.call(rec.ledger_append(sid, "explanation", {"text": "说明"}))  # signed at once
    assert ManifestEntry.from_bytes(after.encode()).kind == "explanation"
    cps = server.services.ledger.checkpoints(sid)
    assert cps[-1].final and cps[-1].tree_size == len(server.call(rec.ledger_entries(sid)))
