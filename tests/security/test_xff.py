"""Spoofed X-Forwarded-For (finding 4): from a client that is not a configured trusted proxy the
header is ignored, so it can neither dodge the login throttle nor forge the audit trail's address;
spreading guesses over addresses still meets the per-user-name lock. Real uvicorn, `tonglu up`'s
own settings."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.security.conftest import serve
from tests.web.conftest import PASSWORDS, Staff
from tonglu.config import Settings, SettingsError
from tonglu.web.services import Services


def _fail_logins(base: str, n: int, forwarded: bool = True) -> list[int]:
    codes = []
    with httpx.Client(base_url=base, timeout=30) as c:
        for i in range(n):
            headers = {"X-Forwarded-For": f"203.0.113.{i + 1}"} if forwarded else {}
            r = c.post("/api/auth/login", json={"username": "admin", "password": "wrong-password"}, headers=headers)
            codes.append(r.status_code)
    return codes


def _login_cookie(base: str) -> str:
    r = httpx.post(f"{base}/api/auth/login", json={"username": "reviewer", "password": PASSWORDS["reviewer"]},
                   headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.headers["set-cookie"]


def test_untrusted_forwarded_for_is_ignored(app: FastAPI, services: Services, staff: Staff,
                                            web_settings: Settings) -> None:
    assert web_settings.trusted_proxies == ()  # the default: trust nobody's proxy headers
    with serve(app, web_settings) as base:
        codes = _fail_logins(base, 7)
        # a fresh X-Forwarded-For on every try changed nothing: the 6th failure from 127.0.0.1 locks
        assert codes[:6] == [401] * 6 and codes[6] == 429, codes
        # nor does X-Forwarded-Proto make the app believe it is behind TLS
        assert "secure" not in _login_cookie(base).lower()
    rows = [r for r in services.audit.query(action="login") if r["object"] == "user:admin"]
    assert len(rows) == 7
    assert {r["address"] for r in rows} == {"127.0.0.1"}, "the audit trail took a forged address"


def test_trusted_proxy_is_believed_and_user_name_is_throttled_across_addresses(
        app: FastAPI, services: Services, staff: Staff, web_settings: Settings) -> None:
    with serve(app, web_settings, trusted_proxies=("127.0.0.0/8",)) as base:
        codes = _fail_logins(base, 12)
        # every try came "from" another address (believed: the proxy is trusted), yet the 11th
        # failure of one user name locks it
        assert codes[:11] == [401] * 11 and codes[11] == 429, codes
        assert "secure" in _login_cookie(base).lower()  # the trusted proxy terminated TLS
    rows = [r for r in services.audit.query(action="login") if r["object"] == "user:admin"]
    assert [r["address"] for r in rows[:3]] == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]


def test_trusted_proxies_setting_is_checked() -> None:
    s = Settings.from_env({"TONGLU_DATA_DIR": "/tmp/x", "TONGLU_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16"})
    assert s.trusted_proxies == ("10.0.0.1", "192.168.0.0/16")
    try:
        Settings.from_env({"TONGLU_DATA_DIR": "/tmp/x", "TONGLU_TRUSTED_PROXIES": "proxy.example"})
    except SettingsError as exc:
        assert "TONGLU_TRUSTED_PROXIES" in str(exc)
    else:
        raise AssertionError("a host name was accepted as a trusted proxy")
