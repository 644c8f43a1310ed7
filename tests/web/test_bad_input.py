"""Bad input gets a precise 4xx and changes nothing: brute force, big or broken bodies, traversal."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.web.conftest import PASSWORDS, Staff, start_session
from tonglu.web.rbac import rule_for
from tonglu.web.routeindex import flatten
from tonglu.web.services import Services

SID = "s-bad-1"


def test_login_brute_force_is_slowed_and_audited(
    client: TestClient, staff: Staff, services: Services
) -> None:
    codes = [
        client.post("/api/auth/login", json={"username": "admin", "password": f"guess-{i}"}).status_code
        for i in range(8)
    ]
    assert codes[:5] == [401] * 5 and codes[6:] == [429, 429]
    r = client.post("/api/auth/login", json={"username": "admin", "password": PASSWORDS["admin"]})
    assert r.status_code == 429, "the right password does not get through while locked"
    assert int(r.headers["retry-after"]) > 0 and "秒后再试" in r.json()["detail"]
    # another user from the same address is not locked by these failures
    r = client.post("/api/auth/login", json={"username": "reviewer", "password": PASSWORDS["reviewer"]})
    assert r.status_code == 200
    outcomes = [row["outcome"] for row in services.audit.query(action="login", obj="user:admin")]
    assert outcomes.count("failed") >= 5 and outcomes.count("throttled") >= 2


def test_the_lock_lifts_after_its_time(client: TestClient, staff: Staff, app: FastAPI) -> None:
    for i in range(6):
        client.post("/api/auth/login", json={"username": "admin", "password": f"guess-{i}"})
    guard = app.state.login_guard
    real = guard.per_user
    for state in real._keys.values():
        state.locked_until = 0.0  # as if the lock time had passed
    r = client.post("/api/auth/login", json={"username": "admin", "password": PASSWORDS["admin"]})
    assert r.status_code == 200


def test_oversized_json_is_refused_before_it_is_read(
    client: TestClient, staff: Staff, services: Services
) -> None:
    start_session(services, SID)
    big = '{"note": "' + "x" * 70_000 + '"}'
    r = client.post(
        f"/api/sessions/{SID}/markers",
        content=big,
        headers={**staff.auth("interviewer"), "content-type": "application/json"},
    )
    assert r.status_code == 413 and "65536" in r.json()["detail"]
    assert [e.kind for e in services.ledger.entries(SID)] == ["session_start"]


def test_oversized_chunked_body_is_refused(client: TestClient, staff: Staff, services: Services) -> None:
    start_session(services, SID)

    def chunks():  # no Content-Length: the guard counts while the route reads
        yield b'{"note": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}'

    r = client.post(
        f"/api/sessions/{SID}/markers",
        content=chunks(),
        headers={**staff.auth("interviewer"), "content-type": "application/json"},
    )
    assert r.status_code == 413
    assert [e.kind for e in services.ledger.entries(SID)] == ["session_start"]


@pytest.mark.parametrize("body", ['{"note": "x"', "not json", '{"note": 5, "extra": 1}', "[1, 2]", ""])
def test_malformed_json_gets_422_with_the_reason(
    client: TestClient, staff: Staff, services: Services, body: str
) -> None:
    start_session(services, SID)
    r = client.post(
        f"/api/sessions/{SID}/markers",
        content=body,
        headers={**staff.auth("interviewer"), "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["detail"]  # FastAPI names the field or the JSON error
    assert [e.kind for e in services.ledger.entries(SID)] == ["session_start"]


def test_bad_login_bodies(client: TestClient) -> None:
    assert (
        client.post("/api/auth/login", content="{", headers={"content-type": "application/json"}).status_code
        == 422
    )
    assert client.post("/api/auth/login", json={"username": "a"}).status_code == 422
    r = client.post("/api/auth/login", content=b"x" * 20_000, headers={"content-type": "application/json"})
    assert r.status_code == 413


TRAVERSALS = ["..", "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "a%00b", "....%2F%2F", "%2Fetc%2Fpasswd"]


def raw_request(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> int:
    """One request with `path` exactly as given (no client-side dot-segment resolution)."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    loop = asyncio.new_event_loop()  # not asyncio.run: it would leave the main thread without a loop
    try:
        loop.run_until_complete(app(scope, receive, send))
    finally:
        loop.close()
    return status[0]


def test_path_traversal_in_any_path_parameter_gets_a_clean_4xx(
    app: FastAPI, staff: Staff, services: Services
) -> None:
    """Every route with path parameters, called with traversal attempts: 4xx, never 200 or 5xx."""
    start_session(services, SID)
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    bad: list[str] = []
    for info in flatten(app):
        if info.mount or "{" not in info.path:
            continue
        for method in sorted(info.methods - {"HEAD"}):
            rule = rule_for(method, info.path)
            if rule is None or rule.kind != "roles":
                continue
            role = "admin" if "admin" in rule.roles else rule.roles[0]
            if role == "participant":
                continue
            names = re.findall(r"\{([^}:]*)", info.path)
            for i in range(len(names)):
                for evil in TRAVERSALS:
                    count = -1

                    def fill(_m: re.Match[str], i: int = i, evil: str = evil) -> str:
                        nonlocal count
                        count += 1
                        return evil if count == i else SID

                    url = re.sub(r"\{[^}]*\}", fill, info.path)
                    kwargs: dict[str, object] = {"headers": staff.auth(role)}
                    if method in ("POST", "PATCH", "PUT"):
                        kwargs["json"] = {}
                    r = client.request(method, url, **kwargs)  # type: ignore[arg-type]
                    if r.request.url.raw_path.decode() != url:
                        # the HTTP client resolved the dot segments itself (".." -> the parent path): send
                        # the literal path as a raw client would, straight to the app
                        status = raw_request(app, method, url, staff.auth(role))
                        if not 400 <= status < 500:
                            bad.append(f"{method} {url} (raw) -> {status}")
                        continue
                    location = r.headers.get("location", "")
                    if r.status_code in (303, 307, 308) and (location.startswith("/") or
                                                             location.startswith("http://testserver/")):
                        # a local redirect: the client resolved a literal ".." (to "/"), or Starlette
                        # stripped a trailing slash from a decoded "%2F"; nothing escaped
                        continue
                    if not 400 <= r.status_code < 500:
                        bad.append(f"{method} {url} -> {r.status_code}")
    assert bad == []


def test_static_files_do_not_escape_their_directory(client: TestClient) -> None:
    assert client.get("/static/tonglu.css").status_code == 200
    for evil in ("/static/../accounts.py", "/static/..%2Faccounts.py", "/static/%2e%2e/app.py"):
        assert client.get(evil).status_code == 404


def test_unknown_ids_get_404(client: TestClient, staff: Staff, services: Services) -> None:
    h = staff.auth("admin")
    assert client.get("/api/sessions/nope/events", headers=h).status_code == 404
    assert client.post("/api/sessions/nope/markers", json={"note": "x"}, headers=h).status_code == 404
    assert client.patch("/api/users/nobody", json={"role": "auditor"}, headers=h).status_code == 404
    assert (
        client.post("/api/users/nobody/password", json={"password": "0123456789ab"}, headers=h).status_code
        == 404
    )
    assert client.delete("/api/auth/tokens/nope", headers=h).status_code == 404
    start_session(services, SID)
    r = client.post(
        f"/api/sessions/{SID}/breaks",
        json={"action": "end", "break_id": "nope"},
        headers=staff.auth("interviewer"),
    )
    assert r.status_code == 404


def test_invalid_content_length_is_refused(client: TestClient, staff: Staff) -> None:
    r = client.post(
        "/api/auth/login",
        content=b"{}",
        headers={"content-length": "abc", "content-type": "application/json"},
    )
    assert r.status_code == 400
