"""The capture page's server side without a browser: the page route and the narrow status for
source-token holders (`GET /api/sessions/{id}/capture-status`)."""

from __future__ import annotations

import httpx

from tests.recorder.conftest import Server
from tonglu.web.routes.capture import capture_view


def status(server: Server, sid: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.get(f"/api/sessions/{sid}/capture-status", headers=headers)


def test_capture_status_for_source_tokens_only(capture_server: Server) -> None:
    server = capture_server
    a = server.create_session()
    other = server.create_session(room="第二审讯室", case_number="B-2")
    sid = a["id"]
    for source in ("main", "panorama"):  # either source's token reads the room screen's status
        r = status(server, sid, a["sources"][source]["token"])
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["id"] == sid and body["state"] == "recording"
    assert body["room"] == "第一审讯室" and body["case_number"] == "A-2024-001"
    assert body["sources"] == {
        "main": {"label": "近景 close-up", "kind": "camera", "connected": False},
        "panorama": {"label": "全景 panorama", "kind": "camera", "connected": False},
    }
    assert body["monitored"] is False and body["viewers"] == 0 and body["participants"] == []
    assert isinstance(body["started_ns"], int) and body["now_ns"] >= body["started_ns"]
    # nothing the room screen does not need: no suspect, tokens, peers or gap details
    text = r.text
    assert "张三" not in text and a["sources"]["main"]["token"] not in text
    assert not {"suspect", "interviewers", "connected_peers", "gap_events", "open_gaps"} & set(body)

    assert status(server, sid, None).status_code == 401
    r = status(server, sid, "wrong-token")
    assert r.status_code == 403 and "令牌" in r.json()["detail"]
    # another session's token does not read this one
    assert status(server, sid, other["sources"]["main"]["token"]).status_code == 403
    assert status(server, "20990101-000000000000", a["sources"]["main"]["token"]).status_code == 404
    # a user token cannot pretend to be a source token either
    assert status(server, sid, "test-admin-token").status_code == 403

    with server.api() as c:
        assert c.post(f"/api/sessions/{sid}/stop").status_code == 200
    body = status(server, sid, a["sources"]["main"]["token"]).json()
    assert body["state"] == "stopped" and body["stopped_ns"] >= body["started_ns"]


def test_capture_page_route(capture_server: Server) -> None:
    server = capture_server
    sid = server.create_session()["id"]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.get(f"/capture/{sid}")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert f'data-session="{sid}"' in r.text and "/static/capture.js" in r.text
        assert r.headers["referrer-policy"] == "no-referrer" and r.headers["cache-control"] == "no-store"
        assert c.get("/static/capture.js").status_code == 200
        assert c.get("/static/capture.css").status_code == 200
        r = c.get("/capture/20990101-000000000000")
        assert r.status_code == 404 and "会话不存在" in r.text
        assert c.get("/capture/..%2F..%2Fetc").status_code == 404
        assert c.get("/capture/a b").status_code == 404


def test_capture_view_keeps_only_what_the_room_screen_shows() -> None:
    full = {
        "id": "s1",
        "state": "recording",
        "room": "R1",
        "case_number": "C1",
        "suspect": "张三",
        "started_ns": 10,
        "stopped_ns": None,
        "connected_peers": ["p1"],
        "open_gaps": [{"x": 1}],
        "sources": {
            "main": {"kind": "camera", "label": "近景", "connected": True, "peer": {"peer_id": "p1"}},
            "panorama": {"kind": "camera", "label": "全景", "connected": False, "peer": None},
            "remote-abc": {"kind": "remote", "label": "远程 刘律师 (lawyer)", "connected": True},
        },
    }
    v = capture_view(full, 99)
    assert v["sources"] == {
        "main": {"label": "近景", "kind": "camera", "connected": True},
        "panorama": {"label": "全景", "kind": "camera", "connected": False},
    }
    assert v["now_ns"] == 99 and v["monitored"] is False and v["viewers"] == 0
    # remote participants from the sources when the status has no participant list
    assert v["participants"] == [{"name": "远程 刘律师 (lawyer)", "role": ""}]
    assert "suspect" not in v and "connected_peers" not in v


def test_capture_view_reads_viewers_and_participants_in_the_shapes_the_status_may_use() -> None:
    viewers = [
        {"viewer_id": "v1", "name": "监督员", "role": "supervisor", "state": "connected"},
        {"viewer_id": "v2", "name": "x", "role": "admin", "state": "closed"},
        {"viewer_id": "v3", "name": "刘律师", "role": "participant", "state": "connected"},
    ]
    assert capture_view({"viewers": viewers}, 0)["viewers"] == 2
    assert capture_view({"viewers": viewers}, 0)["monitored"] is True
    # every viewer shows by name and role, a remote participant's two-way view too (nobody covert)
    assert capture_view({"viewers": viewers[2:]}, 0)["monitored"] is True
    assert [(w["name"], w["role"]) for w in capture_view({"viewers": viewers}, 0)["watchers"]] == [
        ("监督员", "supervisor"), ("刘律师", "participant")]
    # the recorder may say so without a list; it can never hide a listed viewer
    assert capture_view({"viewers": [], "monitored": True}, 0)["monitored"] is True
    assert capture_view({"viewers": viewers, "monitored": False}, 0)["monitored"] is True
    assert capture_view({"viewers": 3}, 0)["viewers"] == 3
    assert capture_view({"viewers": []}, 0)["monitored"] is False
    remote = [
        {"source": "remote-a", "name": "赵检察官", "role": "prosecutor", "present": True, "connected": True},
        {"source": "remote-b", "name": "钱法官", "role": "judge", "present": False, "connected": False},
        {"source": "remote-c", "name": "孙律师", "role": "lawyer", "present": True, "connected": False},
    ]
    assert capture_view({"remote_participants": remote}, 0)["participants"] == [
        {"name": "赵检察官", "role": "prosecutor"}
    ]
    folded = {
        "remote-a": {"name": "赵检察官", "role": "prosecutor", "present": True},
        "remote-b": {"name": "钱法官", "role": "judge", "present": False, "left_ns": 5},
    }
    assert capture_view({"participants": folded}, 0)["participants"] == [{"name": "赵检察官", "role": "prosecutor"}]
