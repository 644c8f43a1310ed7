"""Smaller findings (10), each attacked the way it was found: slow clients, deep JSON, session
creation audit, invitation links, API tokens, reserved user names, /docs assets, CSP."""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.browser.conftest import BrowserFactory
from tests.integrity.builder import Scenario, build
from tests.security.conftest import serve
from tests.web.conftest import ADMIN_TOKEN, FAST_HASHER, PASSWORDS, Staff, login, start_session
from tonglu.config import Settings
from tonglu.web.accounts import Accounts
from tonglu.web.app import create_app
from tonglu.web.hardening import json_depth
from tonglu.web.services import Services
from tonglu.web.tables import api_tokens, engine_for

# -- slow clients (slowloris) -------------------------------------------------------------------
READ_TIMEOUT_S = 1.5


def _held_s(base: str, first: bytes, dribble: bytes, limit_s: float = 8.0) -> tuple[float, bytes]:
    """Send `first`, then `dribble` every 0.3 s; return how long the server kept the connection
    open (capped at `limit_s`) and what it answered."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    start = time.monotonic()
    got = b""
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(0.3)
        if first:
            s.sendall(first)
        while time.monotonic() - start < limit_s:
            try:
                data = s.recv(4096)
                if not data:
                    break
                got += data
                continue
            except TimeoutError:
                pass
            except OSError:
                break
            try:
                if dribble:
                    s.sendall(dribble)
            except OSError:
                break
    return time.monotonic() - start, got


def test_slow_clients_are_cut(app: FastAPI, web_settings: Settings) -> None:
    with serve(app, web_settings, http_read_timeout_s=READ_TIMEOUT_S, http_keepalive_s=1) as base:
        # a request line, then one header line every 0.3 s, forever
        held, got = _held_s(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n")
        assert held < READ_TIMEOUT_S + 3, f"slow headers held the connection {held:.1f} s"
        assert got.startswith(b"HTTP/1.1 408"), got
        # a connection that never says anything
        held, _ = _held_s(base, b"", b"")
        assert held < READ_TIMEOUT_S + 3, f"a silent connection was held {held:.1f} s"
        # complete headers, then a body of 200 bytes one byte at a time
        head = (b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 200\r\n\r\n{")
        held, _ = _held_s(base, head, b" ")
        assert held < READ_TIMEOUT_S + 3, f"a slow body held the connection {held:.1f} s"
        # an honest client on a kept-alive connection is served, twice
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.get("/healthz").status_code in (200, 503)
            time.sleep(0.5)
            assert c.get("/healthz").status_code in (200, 503)


# -- deeply nested JSON ---------------------------------------------------------------------------
def _deep(n: int) -> str:
    return "[" * n + "]" * n


def test_deeply_nested_json_is_refused_with_a_reason(client: TestClient, staff: Staff, services: Services) -> None:
    start_session(services, "s-deep-1")
    h = staff.auth("admin")
    for path in ("/api/sessions/s-deep-1/stop", "/api/sessions", "/api/users", "/api/sessions/s-deep-1/markers"):
        for ctype in ("application/json", None):
            headers = {**h, **({"content-type": ctype} if ctype else {})}
            r = client.post(path, content=_deep(5000), headers=headers)
            assert r.status_code == 400, (path, ctype, r.status_code, r.text[:200])
            assert "JSON" in r.json()["detail"], r.text
    # /stop reads its body itself, whatever the content type says
    r = client.post("/api/sessions/s-deep-1/stop", content=_deep(5000), headers={**h, "content-type": "text/plain"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"], r.text
    # ordinary nesting still passes the check
    assert json_depth(b'{"a": [1, {"b": "[[[[[[["}], "c": "\\"]"}') == 3
    assert json_depth(_deep(64).encode()) == 64 and json_depth(b"") == 0
    ok = client.post("/api/users", headers=h,
                     json={"username": "deep-ok", "role": "reviewer", "password": "0123456789ab", "display_name": "[["})
    assert ok.status_code == 201, ok.text


# -- session creation: audited; a failed one leaves nothing ---------------------------------------
SESSION = {"room": "第一审讯室", "case_number": "A-1", "suspect": "张三", "interviewers": ["李四", "王五"]}


def _token_rows(services: Services) -> int:
    from sqlalchemy import func, select

    from tonglu.recorder.store import tokens_table

    with engine_for(services.settings.db_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(tokens_table)).scalar_one())


def test_session_creation_is_audited_and_a_failed_one_leaves_nothing(
        client: TestClient, staff: Staff, services: Services) -> None:
    h = staff.auth("interviewer")
    r = client.post("/api/sessions", json=SESSION, headers=h)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    [ok] = [row for row in services.audit.query(action="session_start") if row["outcome"] == "ok"]
    assert ok["object"] == f"session:{sid}" and ok["user"] == "interviewer"
    rows_before = _token_rows(services)
    # a lone surrogate passes validation, then the ledger's canonical JSON refuses it
    bad = client.post("/api/sessions", content=json.dumps({**SESSION, "room": "\ud800"}),
                      headers={**h, "content-type": "application/json"})
    assert 400 <= bad.status_code < 500, bad.text
    assert _token_rows(services) == rows_before, "the failed create left source-token rows behind"
    assert [s["id"] for s in client.get("/api/sessions", headers=h).json()] == [sid]
    missing = client.post("/api/sessions", json={"room": "x"}, headers=h)
    assert missing.status_code == 400
    failed = [row for row in services.audit.query(action="session_start") if row["outcome"] == "failed"]
    assert len(failed) == 2 and all(row["user"] == "interviewer" for row in failed)


# -- invitation links ------------------------------------------------------------------------------
def test_invitation_link_uses_the_public_url_not_the_host_header(web_settings: Settings) -> None:
    settings = replace(web_settings, public_url="https://tonglu.court.example")
    services = Services.local(settings)
    services.accounts = Accounts.from_url(settings.db_url, hasher=FAST_HASHER)
    start_session(services, "s-inv-host")
    with TestClient(create_app(services)) as c:
        r = c.post("/api/sessions/s-inv-host/invitations", json={"name": "刘律师", "sub_role": "lawyer"},
                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Host": "evil.example"})
    assert r.status_code == 201, r.text
    assert r.json()["url"] == f"https://tonglu.court.example/join/{r.json()['token']}"


# -- API tokens --------------------------------------------------------------------------------------
def test_api_tokens_end_with_a_password_reset_and_expire_by_default(
        client: TestClient, staff: Staff, services: Services) -> None:
    h = staff.auth("reviewer")
    issued = client.post("/api/auth/tokens", json={"label": "script"}, headers=h)
    assert issued.status_code == 201
    days = (issued.json()["expires_ns"] - issued.json()["created_ns"]) / 86400e9
    assert days == services.settings.api_token_ttl_days == 90
    mine = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert client.get("/api/auth/me", headers=mine).status_code == 200
    reset = client.post("/api/users/reviewer/password", json={"password": "a-new-password-123"},
                        headers=staff.auth("admin"))
    assert reset.status_code == 200 and reset.json()["tokens_revoked"] == 2  # the fixture's and this one
    assert client.get("/api/auth/me", headers=mine).status_code == 401
    assert client.get("/api/auth/me", headers=h).status_code == 401
    # a token from before expiry was the default (expires_ns NULL) ends 90 days after its creation
    acc = services.accounts
    rec, token = acc.issue_api_token("auditor", "old")
    with acc.engine.begin() as conn:
        conn.execute(update(api_tokens).where(api_tokens.c.id == rec.id).values(
            expires_ns=None, created_ns=time.time_ns() - 91 * 86400 * 10**9))
    assert acc.resolve_bearer(token) is None


def test_own_password_change_revokes_own_tokens(client: TestClient, staff: Staff) -> None:
    login(client, "supervisor")
    r = client.post("/api/auth/password", json={"old_password": PASSWORDS["supervisor"],
                                                "new_password": "another-password-1"})
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 1
    assert client.get("/api/auth/me", headers=staff.auth("supervisor")).status_code == 401


# -- reserved user names ---------------------------------------------------------------------------
def test_reserved_user_names_are_refused(client: TestClient, staff: Staff, services: Services) -> None:
    for name in ("admin-token", "anonymous", "cli", "system", "admin-token2"):
        r = client.post("/api/users", json={"username": name, "role": "admin", "password": "0123456789ab"},
                        headers=staff.auth("admin"))
        assert r.status_code == 422 and "reserved" in r.json()["detail"], (name, r.text)
    assert "admin-token" not in [u.username for u in services.accounts.list_users()]


# -- /docs and CSP ---------------------------------------------------------------------------------
def test_docs_load_nothing_from_elsewhere(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), refs
    for ref in refs:
        asset = client.get(ref)
        assert asset.status_code == 200 and len(asset.content) > 100, ref
    assert client.get("/docs/assets/../../app.py").status_code == 404
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert "<script>" not in r.text  # no inline script: the CSP would block it
    assert client.get("/openapi.json").status_code == 200


def test_html_responses_carry_a_strict_csp(client: TestClient, staff: Staff, tmp_path: Path) -> None:
    page = client.get("/login")
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    login(client, "admin")
    account = client.get("/account")
    nonce = re.search(r"'nonce-([^']+)'", account.headers["content-security-policy"])
    assert nonce and f'<script nonce="{nonce.group(1)}">' in account.text
    assert "<script>" not in account.text
    assert client.get("/login").headers["content-security-policy"] != csp  # a fresh nonce each time


def test_the_html_report_has_a_csp(tmp_path: Path) -> None:
    token = "report-admin-token-0123456789abcdef"
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_ADMIN_TOKEN": token})
    b = build(tmp_path, Scenario(), settings=settings, spool_segments=True)
    with TestClient(create_app(Services.local(settings))) as c:
        r = c.get(f"/api/sessions/{b.sid}/report?format=html", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp and "frame-ancestors 'none'" in csp
    assert '<meta http-equiv="Content-Security-Policy"' in r.text  # also when opened from an export


def test_pages_run_under_their_csp(app: FastAPI, services: Services, staff: Staff, web_settings: Settings,
                                   chromium: BrowserFactory) -> None:
    """Every page's own script still runs in a real browser under the CSP, and none is refused."""
    start_session(services, "s-csp-1")
    b = chromium()
    with serve(app, web_settings) as base:
        b.sign_in(base, 'admin', PASSWORDS['admin'], '/console')
        for path in ("/console", "/console/s-csp-1", "/live/s-csp-1", "/review", "/review/s-csp-1", "/account",
                     "/admin/users", "/admin/holds", "/supervise", "/docs"):
            b.driver.get(base + path)
            b.wait_for("return document.readyState === 'complete'", what=path)
            time.sleep(0.5)  # let the page's scripts start their first fetches
        b.wait_for("return document.querySelector('.swagger-ui .info')", what="Swagger UI rendered from local assets")
        b.driver.get(f"{base}/review")
        marker = b.js("return window.T !== undefined")  # tonglu.js (external, 'self') ran
        assert marker, "tonglu.js did not run"
    refused = [line for line in b.console() if "Content Security Policy" in line or "Refused to" in line]
    assert refused == [], refused
