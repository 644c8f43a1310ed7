"""Accounts: passwords, page sessions, API tokens, the first admin, the login throttle."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import PASSWORDS, Staff, login
from tonglu.web.accounts import Accounts, ensure_initial_admin
from tonglu.web.errors import AccountError, UnknownUser, UserExists
from tonglu.web.services import Services
from tonglu.web.tables import users
from tonglu.web.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000 * 10**9

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def accounts(tmp_path: Path) -> tuple[Accounts, Clock]:
    clock = Clock()
    return Accounts.from_url(
        f"sqlite:///{tmp_path / 'a.db'}", clock=clock, session_idle_s=600, session_max_s=3600
    ), clock


def test_passwords_are_argon2_and_checked(accounts: tuple[Accounts, Clock]) -> None:
    acc, _ = accounts
    acc.create_user("li", "interviewer", "correct horse 1", "李警官")
    with acc.engine.connect() as conn:
        stored = conn.execute(users.select()).first()
    assert stored is not None and stored.password_hash.startswith("$argon2id$")
    assert "correct horse" not in stored.password_hash
    assert acc.authenticate("li", "correct horse 1") is not None
    assert acc.authenticate("li", "correct horse 2") is None
    assert acc.authenticate("nobody", "correct horse 1") is None


@pytest.mark.parametrize(
    ("username", "role", "password", "error"),
    [
        ("Bad Name", "reviewer", "0123456789", AccountError),
        ("../etc", "reviewer", "0123456789", AccountError),
        ("ok", "superuser", "0123456789", AccountError),
        ("ok", "participant", "0123456789", AccountError),
        ("ok", "reviewer", "short", AccountError),
    ],
)
def test_bad_accounts_are_refused(
    accounts: tuple[Accounts, Clock], username: str, role: str, password: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        accounts[0].create_user(username, role, password)


def test_duplicate_and_unknown_users(accounts: tuple[Accounts, Clock]) -> None:
    acc, _ = accounts
    acc.create_user("wang", "reviewer", "0123456789")
    with pytest.raises(UserExists):
        acc.create_user("wang", "auditor", "0123456789")
    with pytest.raises(UnknownUser):
        acc.set_role("zhao", "auditor")


def test_page_sessions_slide_and_expire(accounts: tuple[Accounts, Clock]) -> None:
    acc, clock = accounts
    acc.create_user("li", "interviewer", "0123456789")
    token = acc.start_page_session("li")
    assert token.startswith("tls_")
    assert acc.resolve_session_token(token) is not None
    for _ in range(8):  # used every 5 minutes: stays alive beyond the idle limit...
        clock.now += 300 * 10**9
        assert acc.resolve_session_token(token) is not None
    clock.now += 3600 * 10**9  # ...but never beyond the hard limit, and not after 10 idle minutes
    assert acc.resolve_session_token(token) is None
    other = acc.start_page_session("li")
    clock.now += 601 * 10**9
    assert acc.resolve_session_token(other) is None


def test_role_change_password_change_and_disable_end_sessions(accounts: tuple[Accounts, Clock]) -> None:
    acc, _ = accounts
    acc.create_user("li", "interviewer", "0123456789")
    _rec, api = acc.issue_api_token("li")
    s1 = acc.start_page_session("li")
    assert acc.set_role("li", "supervisor") == ("interviewer", "supervisor")
    assert acc.resolve_session_token(s1) is None
    assert acc.resolve_bearer(api).role == "supervisor"  # type: ignore[union-attr]
    s2 = acc.start_page_session("li")
    acc.set_password("li", "abcdefghijk")
    assert acc.resolve_session_token(s2) is None
    acc.set_disabled("li", True)
    assert acc.resolve_bearer(api) is None
    assert acc.authenticate("li", "abcdefghijk") is None


def test_api_tokens_revoke_and_expire(accounts: tuple[Accounts, Clock]) -> None:
    acc, clock = accounts
    acc.create_user("li", "reviewer", "0123456789")
    _rec, token = acc.issue_api_token("li", "script", ttl_s=120)
    assert acc.resolve_bearer(token).user == "li"  # type: ignore[union-attr]
    assert acc.resolve_bearer(token + "x") is None
    clock.now += 121 * 10**9
    assert acc.resolve_bearer(token) is None
    rec2, token2 = acc.issue_api_token("li")
    assert acc.revoke_api_token(rec2.id, "li")
    assert acc.resolve_bearer(token2) is None
    assert not acc.revoke_api_token(rec2.id, "li")


def test_initial_admin_is_created_once(tmp_path: Path, accounts: tuple[Accounts, Clock]) -> None:
    acc, _ = accounts
    printed: list[str] = []
    password = ensure_initial_admin(acc, tmp_path / "data", printed.append)
    assert password and password in printed[0]
    path = tmp_path / "data" / "initial-admin.txt"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert password in path.read_text()
    assert acc.authenticate("admin", password).role == "admin"  # type: ignore[union-attr]
    assert ensure_initial_admin(acc, tmp_path / "data", printed.append) is None
    assert len(printed) == 1


def test_throttle_locks_after_failures_and_doubles() -> None:
    t = LoginThrottle(max_failures=3, window_s=60, base_lock_s=10, max_lock_s=25)
    for i in range(3):
        assert t.failure("k", 100.0 + i) == 0.0
    assert t.failure("k", 103.0) == 10.0
    assert t.retry_after("k", 105.0) == pytest.approx(8.0)
    assert t.retry_after("k", 113.5) == 0.0
    assert t.failure("k", 114.0) == 20.0
    assert t.failure("k", 135.0) == 25.0  # capped
    t.success("k")
    assert t.retry_after("k", 136.0) == 0.0
    assert t.retry_after("other", 136.0) == 0.0


def test_throttle_memory_is_bounded() -> None:
    t = LoginThrottle(max_keys=100)
    for i in range(1000):
        t.failure(f"k{i}", float(i))
    assert len(t._keys) == 100


def test_users_api_and_role_change_is_audited(client: TestClient, staff: Staff, services: Services) -> None:
    h = staff.auth("admin")
    r = client.post(
        "/api/users", json={"username": "zhou", "role": "reviewer", "password": "0123456789ab"}, headers=h
    )
    assert r.status_code == 201
    again = {"username": "zhou", "role": "reviewer", "password": "0123456789ab"}
    assert client.post("/api/users", json=again, headers=h).status_code == 409
    r = client.patch("/api/users/zhou", json={"role": "auditor"}, headers=h)
    assert r.status_code == 200 and r.json()["role"] == "auditor"
    rows = services.audit.query(action="role_change")
    assert rows[-1]["object"] == "user:zhou" and rows[-1]["user"] == "admin"
    assert '"from": "reviewer"' in rows[-1]["detail"] and rows[-1]["outcome"] == "ok"
    assert client.patch("/api/users/nobody", json={"role": "auditor"}, headers=h).status_code == 404
    assert client.patch("/api/users/zhou", json={"role": "participant"}, headers=h).status_code == 422


def test_login_page_form_sets_cookie_and_redirects(client: TestClient, staff: Staff) -> None:
    form = {"username": "auditor", "password": PASSWORDS["auditor"], "next": "/audit"}
    r = client.post("/login", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/audit"
    assert client.get("/audit").status_code == 200
    r = client.post(
        "/login", data={"username": "auditor", "password": PASSWORDS["auditor"], "next": "//evil.example/x"}
    )
    assert r.headers["location"] == "/"  # no open redirect
    r = client.post("/login", data={"username": "auditor", "password": "wrong-password"})
    assert r.status_code == 401 and "用户名或密码错误" in r.text


def test_own_tokens_and_password(client: TestClient, staff: Staff) -> None:
    login(client, "reviewer")
    r = client.post("/api/auth/tokens", json={"label": "script"})
    assert r.status_code == 201
    token = r.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/auth/me", headers=bearer).json()["user"] == "reviewer"
    assert client.delete(f"/api/auth/tokens/{r.json()['id']}").status_code == 200
    assert client.get("/api/auth/me", headers=bearer).status_code == 401
    assert client.delete("/api/auth/tokens/nope").status_code == 404
    r = client.post("/api/auth/password", json={"old_password": "wrong", "new_password": "newpassword123"})
    assert r.status_code == 403
    r = client.post(
        "/api/auth/password", json={"old_password": PASSWORDS["reviewer"], "new_password": "newpassword123"}
    )
    assert r.status_code == 200
    assert client.get("/api/auth/me").status_code == 401  # the session ended with the change
