"""Markers, breaks, 笔录 times and custody events are chained manifest entries (shared conventions)."""

from __future__ import annotations

import itertools

from fastapi.testclient import TestClient

from tests.web.conftest import Staff, start_session
from tonglu.evidence.keys import manifest_key
from tonglu.web.services import Services

SID = "s-ev-1"


def test_annotations_are_ledger_entries(client: TestClient, staff: Staff, services: Services) -> None:
    start_session(services, SID)
    h = staff.auth("interviewer")
    r = client.post(f"/api/sessions/{SID}/markers", json={"note": "嫌疑人开始供述"}, headers=h)
    assert r.status_code == 201
    marker = r.json()
    assert marker["kind"] == "marker" and marker["body"]["note"] == "嫌疑人开始供述"
    assert marker["body"]["by"] == "interviewer" and isinstance(marker["body"]["time_ns"], int)

    r = client.post(
        f"/api/sessions/{SID}/breaks",
        json={"action": "start", "reason_code": "meal", "text": "午餐", "approver": "王队长"},
        headers=h,
    )
    assert r.status_code == 201
    bid = r.json()["body"]["break_id"]
    assert r.json()["body"]["end_ns"] is None
    events = client.get(f"/api/sessions/{SID}/events", headers=staff.auth("reviewer")).json()
    assert [b["break_id"] for b in events["open_breaks"]] == [bid]
    r = client.post(f"/api/sessions/{SID}/breaks", json={"action": "end", "break_id": bid}, headers=h)
    assert r.status_code == 201
    end = r.json()["body"]
    assert end["break_id"] == bid and end["reason_code"] == "meal" and end["end_ns"] >= end["start_ns"]
    assert (
        client.post(
            f"/api/sessions/{SID}/breaks", json={"action": "end", "break_id": bid}, headers=h
        ).status_code
        == 404
    )  # already ended

    r = client.post(
        f"/api/sessions/{SID}/record-times",
        headers=h,
        json={"record_start_iso": "2025-03-01T09:00:00+08:00", "record_end_iso": "2025-03-01T11:30:00+08:00"},
    )
    assert r.status_code == 201
    r = client.post(
        f"/api/sessions/{SID}/custody",
        json={"event": "out", "time_iso": "2025-03-01T08:40:00+08:00"},
        headers=h,
    )
    assert r.status_code == 201

    entries = services.ledger.entries(SID)
    assert [e.kind for e in entries] == [
        "session_start",
        "marker",
        "break",
        "break",
        "record_times",
        "custody",
    ]
    for prev, entry in itertools.pairwise(entries):
        assert entry.prev == prev.entry_hash
    spooled = {item.key for item in services.spool.pending()}
    assert all(manifest_key(SID, e.seq) in spooled for e in entries)
    events = client.get(f"/api/sessions/{SID}/events", headers=staff.auth("supervisor")).json()
    assert [e["kind"] for e in events["events"]] == [e.kind for e in entries]
    assert events["recording"] is True and events["open_breaks"] == []


def test_annotation_input_is_checked(client: TestClient, staff: Staff, services: Services) -> None:
    start_session(services, SID)
    h = staff.auth("interviewer")
    bad = [
        ("breaks", {"action": "start"}),  # no reason code
        ("breaks", {"action": "start", "reason_code": "smoke"}),
        ("breaks", {"action": "start", "reason_code": "equipment_fault"}),  # needs an approver
        ("breaks", {"action": "end"}),
        ("record-times", {"record_start_iso": "yesterday", "record_end_iso": "2025-03-01T11:30:00Z"}),
        (
            "record-times",
            {"record_start_iso": "2025-03-01T09:00:00", "record_end_iso": "2025-03-01T11:30:00"},
        ),
        (
            "record-times",
            {"record_start_iso": "2025-03-01T12:00:00Z", "record_end_iso": "2025-03-01T11:30:00Z"},
        ),
        ("custody", {"event": "sideways", "time_iso": "2025-03-01T08:40:00Z"}),
        ("markers", {"note": "x", "time_ns": -1}),
        ("markers", {"note": "x", "time_ns": 1.5}),
    ]
    for path, body in bad:
        r = client.post(f"/api/sessions/{SID}/{path}", json=body, headers=h)
        assert r.status_code == 422, (path, body, r.text)
    assert [e.kind for e in services.ledger.entries(SID)] == ["session_start"]


def test_no_markers_after_stop_but_custody_return_is_recorded(
    client: TestClient, staff: Staff, services: Services
) -> None:
    start_session(services, SID)
    services.ledger.append(SID, "session_stop", {"stopped_by": "interviewer", "reason": "结束"})
    h = staff.auth("interviewer")
    r = client.post(f"/api/sessions/{SID}/markers", json={"note": "late"}, headers=h)
    assert r.status_code == 409 and "已结束" in r.json()["detail"]
    assert (
        client.post(
            f"/api/sessions/{SID}/breaks", json={"action": "start", "reason_code": "rest"}, headers=h
        ).status_code
        == 409
    )
    r = client.post(
        f"/api/sessions/{SID}/custody",
        json={"event": "in", "time_iso": "2025-03-01T12:10:00+08:00"},
        headers=h,
    )
    assert r.status_code == 201  # 还押 happens after the session ends
