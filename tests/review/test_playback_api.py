"""The playback API over a session in the real SeaweedFS: playlists, segments served byte for byte
after a re-hash, and a tampered first version refused with 409 (audited), never served."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

from fastapi.testclient import TestClient

from tests.integrity.builder import T0, Scenario, default_segments
from tests.review.helpers import stored_session
from tests.web.conftest import ADMIN_TOKEN, make_services
from tonglu.config import Settings
from tonglu.evidence.manifest import GapRecord
from tonglu.evidence.objectstore import ObjectStore
from tonglu.web.app import create_app

S = 1_000_000_000


def _scenario() -> Scenario:
    segs = [s for s in default_segments() if (s.source, s.track, s.index) != ("panorama", "video", 1)]
    for s in segs:
        if (s.source, s.track) == ("panorama", "video") and s.index == 2:
            s.index = 1
    return Scenario(segments=segs, gaps=[GapRecord("panorama", "video", "peer_disconnect", T0 + 2 * S, T0 + 4 * S)])


def _client(settings: Settings, tmp: Path, tamper: set[str] | None = None) -> tuple[TestClient, object, str]:
    settings = dataclasses.replace(settings, admin_token=ADMIN_TOKEN)
    admin = ObjectStore.from_settings(settings, role="admin")
    b = stored_session(tmp, settings, admin, _scenario(), tamper)
    services = make_services(settings, risk_rules=False)
    services.store = ObjectStore.from_settings(settings, role="reviewer")
    client = TestClient(create_app(services))
    return client, services, b.sid


AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def segs(track: dict) -> list[dict]:  # type: ignore[type-arg]
    """The playlist's compact [seq, start_ms, end_ms] rows as dicts with their URL."""
    return [{"seq": q, "start_ms": a, "end_ms": b, "url": track["url_pattern"].replace("{seq}", str(q))}
            for q, a, b in track["segments"]]


def test_playlist_and_segments_served_after_rehash(store_settings: Settings, tmp_path: Path) -> None:
    client, _services, sid = _client(store_settings, tmp_path)
    t = time.perf_counter()
    r = client.get(f"/api/sessions/{sid}/playback", headers=AUTH)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert (time.perf_counter() - t) < 2
    assert doc["sources"] == ["main", "panorama"] and doc["duration_ms"] == 6000
    pv = next(t for t in doc["tracks"] if t["source"] == "panorama" and t["track"] == "video")
    assert [g["reason"] for g in pv["gaps"]] == ["peer_disconnect"]
    sha = {e.seq: e.body["sha256"] for e in _services.ledger.entries(sid) if e.kind == "segment"}  # type: ignore[attr-defined]
    for track in doc["tracks"]:
        for seg in segs(track):
            got = client.get(seg["url"], headers=AUTH)
            assert got.status_code == 200, got.text
            assert got.headers["content-type"] == "video/webm"
            assert hashlib.sha256(got.content).hexdigest() == sha[seg["seq"]]
    m3u8 = client.get(pv["m3u8"], headers=AUTH)
    assert m3u8.status_code == 200 and m3u8.text.startswith("#EXTM3U")
    assert "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T06:00:04.000Z" in m3u8.text
    # wrong extension, not a segment entry, junk names: precise 404s
    seg0 = pv["segments"][0][0]
    assert client.get(f"/api/sessions/{sid}/playback/segments/{seg0}.mp4", headers=AUTH).status_code == 404
    assert client.get(f"/api/sessions/{sid}/playback/segments/0.webm", headers=AUTH).status_code == 404
    assert client.get(f"/api/sessions/{sid}/playback/segments/..%2Fx.webm", headers=AUTH).status_code == 404
    assert client.get(f"/api/sessions/{sid}/playback/hls/main/nope.m3u8", headers=AUTH).status_code == 404
    assert client.get("/api/sessions/no-such/playback", headers=AUTH).status_code == 404
    assert client.get(f"/api/sessions/{sid}/playback").status_code == 401


def test_tampered_first_version_is_refused_and_audited(store_settings: Settings, tmp_path: Path) -> None:
    from tonglu.evidence import keys

    bad = keys.segment_key("case-001", "main", "video", 1, "webm")
    client, services, sid = _client(store_settings, tmp_path, tamper={bad})
    doc = client.get(f"/api/sessions/{sid}/playback", headers=AUTH).json()
    mv = next(t for t in doc["tracks"] if t["source"] == "main" and t["track"] == "video")
    ok, tampered, ok2 = segs(mv)
    assert client.get(ok["url"], headers=AUTH).status_code == 200
    r = client.get(tampered["url"], headers=AUTH)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["reason"] == "sha256_mismatch" and body["key"] == bad and body["seq"] == tampered["seq"]
    assert "完整性校验失败" in body["detail"]
    assert r.headers["content-type"].startswith("application/json")
    assert client.get(ok2["url"], headers=AUTH).status_code == 200
    rows = services.audit.query(action="playback_refused")  # type: ignore[attr-defined]
    assert rows and rows[-1]["outcome"] == "rejected" and f"segment:{tampered['seq']}" in rows[-1]["object"]


def test_interviewer_reaches_only_own_session(store_settings: Settings, tmp_path: Path) -> None:
    client, services, sid = _client(store_settings, tmp_path)
    services.accounts.create_user("other", "interviewer", "pw-other-0123456789")  # type: ignore[attr-defined]
    _rec, token = services.accounts.issue_api_token("other", "t")  # type: ignore[attr-defined]
    r = client.get(f"/api/sessions/{sid}/playback", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404
    doc = client.get(f"/api/sessions/{sid}/playback", headers=AUTH).json()
    url = segs(doc["tracks"][0])[0]["url"]
    assert client.get(url, headers={"Authorization": f"Bearer {token}"}).status_code == 404



def test_playback_window_bounds_refusals_and_audit(store_settings: Settings, tmp_path: Path) -> None:
    """The windowed playlist (what the player loads around the playhead): the segments overlapping
    [from_ms, to_ms), 422 for a bad window, the same access rules as the playlist, audited."""
    client, services, sid = _client(store_settings, tmp_path)
    base = f"/api/sessions/{sid}/playback"
    full = client.get(base, headers=AUTH).json()
    head = client.get(f"{base}?from_ms=0&to_ms=2000", headers=AUTH)
    assert head.status_code == 200, head.text
    doc = head.json()
    assert doc["window"] == {"from_ms": 0, "to_ms": 2000} and doc["duration_ms"] == full["duration_ms"]
    for whole, part in zip(full["tracks"], doc["tracks"], strict=True):
        assert part["segments"] == [r for r in whole["segments"] if r[1] < 2000] and len(part["segments"]) == 1
        assert part["gaps"] == whole["gaps"] and part["url_pattern"] == whole["url_pattern"]
        assert part["segments_total"] == whole["segments_total"] == len(whole["segments"])
    w = client.get(f"{base}/window?from_ms=3000&to_ms=6000", headers=AUTH)
    assert w.status_code == 200, w.text
    win = w.json()
    assert (win["from_ms"], win["to_ms"], win["session"]) == (3000, 6000, sid)
    pv = next(t for t in win["tracks"] if t["source"] == "panorama" and t["track"] == "video")
    assert [(a, b) for _q, a, b in pv["segments"]] == [(4000, 6000)]
    assert [(g["start_ms"], g["end_ms"], g["reason"]) for g in pv["gaps"]] == [(2000, 4000, "peer_disconnect")]
    mv = next(t for t in win["tracks"] if t["source"] == "main" and t["track"] == "video")
    assert [(a, b) for _q, a, b in mv["segments"]] == [(2000, 4000), (4000, 6000)]
    # each listed segment is served
    url = full["tracks"][0]["url_pattern"].replace("{seq}", str(mv["segments"][0][0]))
    assert client.get(url, headers=AUTH).status_code == 200
    # bad windows: 422 with the reason, never a 500
    for q in ("from_ms=10&to_ms=10", "from_ms=20&to_ms=10", "from_ms=-1&to_ms=10", "from_ms=0&to_ms=x",
              f"from_ms=0&to_ms={6 * 3600 * 1000 + 1}", "from_ms=5", "to_ms=5", "", "from_ms=0&to_ms=1e3"):
        r = client.get(f"{base}/window?{q}", headers=AUTH)
        assert r.status_code == 422, (q, r.status_code, r.text)
        if q:
            assert client.get(f"{base}?{q}", headers=AUTH).status_code == 422, q
    assert client.get("/api/sessions/no-such/playback/window?from_ms=0&to_ms=1", headers=AUTH).status_code == 404
    assert client.get(f"{base}/window?from_ms=0&to_ms=1").status_code == 401
    # an interviewer of another session reaches neither (404, as for the playlist)
    services.accounts.create_user("other", "interviewer", "pw-other-0123456789")  # type: ignore[attr-defined]
    _rec, token = services.accounts.issue_api_token("other", "t")  # type: ignore[attr-defined]
    other = {"Authorization": f"Bearer {token}"}
    assert client.get(f"{base}/window?from_ms=0&to_ms=2000", headers=other).status_code == 404
    assert client.get(f"{base}?from_ms=0&to_ms=2000", headers=other).status_code == 404
    rows = services.audit.query(action="playback_window")  # type: ignore[attr-defined]
    assert rows and rows[0]["object"].startswith(f"/api/sessions/{sid}/playback/window")


def test_playlist_follows_a_growing_ledger(store_settings: Settings, tmp_path: Path) -> None:
    """A live session: entries appended after the first playlist (by this or another process) are in
    the next one; the entry index is extended, not trusted stale."""
    from tonglu.evidence.ledger import Ledger

    client, services, sid = _client(store_settings, tmp_path)
    base = f"/api/sessions/{sid}/playback"
    before = client.get(base, headers=AUTH).json()
    ledger = services.ledger  # type: ignore[attr-defined]
    writer = Ledger(ledger.root, ledger.spool, ledger.key)
    writer.append(sid, "marker", {"time_ns": T0 + 3 * S, "note": "新打点", "by": "李警官"}, now_ns=T0 + 7 * S)
    after = client.get(base, headers=AUTH).json()
    assert after["entries"] == before["entries"] + 1
    assert [m["note"] for m in after["markers"]] == [m["note"] for m in before["markers"]] + ["新打点"]
    win = client.get(f"{base}?from_ms=0&to_ms=1000", headers=AUTH).json()
    assert win["entries"] == after["entries"]
