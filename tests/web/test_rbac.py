"""RBAC: every route the app registers has a rule, and every role the rule excludes is refused.

Table-driven over `app.routes` (flattened): a route added without a rule in `web/rbac.py` fails
`test_every_route_has_a_rule`; a rule that excludes a role is checked by calling the route as
that role (401/403 expected) and as the roles it admits (anything but 401/403).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.web.conftest import ADMIN_TOKEN, Staff, start_session
from tonglu.web.accounts import USER_ROLES
from tonglu.web.app import create_app
from tonglu.web.rbac import MATRIX, PUBLIC, TOKEN, normalize, rule_for, unruled_routes
from tonglu.web.routeindex import flatten
from tonglu.web.services import Services

SESSION = "s-rbac-1"
PARTICIPANT_SOURCE = [""]
OTHER = "s-rbac-2"


def concrete(path: str, source: str | None = None) -> str:
    """Fill path parameters: the session id first, the caller's own source for `{source}`, plain values."""
    count = 0

    def fill(m: re.Match[str]) -> str:
        nonlocal count
        count += 1
        if count == 1:
            return SESSION
        return source if (source and m.group(0) == "{source}") else f"x{count}"

    return re.sub(r"\{[^}]*\}", fill, path)


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for info in flatten(app):
        if info.mount:
            continue
        for method in sorted(info.methods - {"HEAD"}):
            out.append((method, info.path))
    return out


def test_every_route_has_a_rule(app: FastAPI) -> None:
    assert unruled_routes(app) == [], "routes without an RBAC rule in web/rbac.py"


def test_a_new_route_without_a_rule_is_reported(services: Services) -> None:
    app = create_app(services)

    @app.get("/api/sessions/{sid}/something-new")
    def new_route(sid: str) -> dict[str, str]:
        return {"sid": sid}

    assert unruled_routes(app) == ["GET /api/sessions/{sid}/something-new"]


def _declared_roles(route: Any) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    stack = [getattr(route, "dependant", None)]
    while stack:
        dep = stack.pop()
        if dep is None:
            continue
        roles = getattr(dep.call, "roles", None)
        if roles is not None:
            found.add(tuple(sorted(roles)))
        stack.extend(dep.dependencies)
    return found


def test_route_dependencies_agree_with_the_matrix(app: FastAPI) -> None:
    """Each role-guarded route declares `require_roles` with exactly the matrix's roles."""
    problems = []
    for info in flatten(app):
        if info.mount:
            continue
        for method in info.methods - {"HEAD"}:
            rule = rule_for(method, info.path)
            if rule is None or rule.kind == TOKEN:
                continue
            declared = _declared_roles(info.route)
            if rule.kind == PUBLIC:
                if declared:
                    problems.append(f"{method} {info.path}: public in the matrix but declares {declared}")
            elif declared != {tuple(sorted(rule.roles))}:
                problems.append(
                    f"{method} {info.path}: matrix {sorted(rule.roles)}, route declares {declared}"
                )
    assert problems == []


def test_participant_rules_with_a_session_are_scoped() -> None:
    admitted = [(method, path, rule) for (method, path), rule in MATRIX.items()
                if "participant" in rule.roles and "{}" in path]
    assert admitted, "no session route admits participants: the matrix is not what this test expects"
    unscoped = [f"{method} {path}" for method, path, rule in admitted if not rule.scoped]
    assert unscoped == [], f"routes admit participants but are not session-scoped: {unscoped}"


@pytest.fixture
def callers(services: Services, staff: Staff) -> dict[str, dict[str, str]]:
    start_session(services, SESSION, created_by="interviewer")  # the interviewer's own session
    start_session(services, OTHER)
    inv, own = services.accounts.create_invitation(SESSION, "刘律师", "lawyer", "tests", 3600)
    PARTICIPANT_SOURCE[0] = inv.source
    _inv2, other = services.accounts.create_invitation(OTHER, "赵检察官", "prosecutor", "tests", 3600)
    out: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in USER_ROLES:
        out[role] = staff.auth(role)
    out["admin-token"] = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    out["participant"] = {"Authorization": f"Bearer {own}"}
    out["participant-other-session"] = {"Authorization": f"Bearer {other}"}
    out["garbage-token"] = {"Authorization": "Bearer tlk_not-a-real-token"}
    return out


def _role_of(caller: str) -> str | None:
    return {
        "anonymous": None,
        "garbage-token": None,
        "admin-token": "admin",
        "participant-other-session": "participant",
    }.get(caller, caller)


def test_every_route_refuses_every_role_the_matrix_excludes(
    app: FastAPI, callers: dict[str, dict[str, str]]
) -> None:
    # Server errors of admitted callers are other tests' business; here only 401/403 matter.
    client = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    routes = api_routes(app)
    assert len(routes) >= 30
    wrong: list[str] = []
    checked = 0
    for method, path in routes:
        rule = rule_for(method, path)
        assert rule is not None, f"{method} {path} has no rule"
        for caller, headers in callers.items():
            url = concrete(path, PARTICIPANT_SOURCE[0] if caller == "participant" else None)
            role = _role_of(caller)
            if rule.kind == PUBLIC:
                if caller != "anonymous":
                    continue
                allowed = True
            elif rule.kind == TOKEN:
                if caller != "anonymous":
                    continue  # the route checks its own token; only "no token at all" is certain here
                allowed = False
            else:
                allowed = role in rule.roles
                if allowed and caller == "participant-other-session" and rule.scoped:
                    allowed = False
            if allowed and path.endswith("/live"):
                continue  # an endless event stream: TestClient would wait forever; refusals are checked
            kwargs: dict[str, Any] = {"headers": headers}
            if method in ("POST", "PUT", "PATCH"):
                kwargs["json"] = {}
            r = client.request(method, url, **kwargs)
            checked += 1
            # another session's invitation gets 404, as for a session that does not exist
            refused = r.status_code in (401, 403) or (caller == "participant-other-session" and r.status_code == 404)
            if allowed == refused:
                wrong.append(
                    f"{caller:26} {method:6} {url}: {r.status_code} "
                    f"({'should pass' if allowed else 'should be refused'}) {r.text[:120]}"
                )
            if not allowed and role is None and rule.kind != PUBLIC:
                assert r.status_code == 401, f"anonymous {method} {url} got {r.status_code}"
    assert wrong == [], "\n" + "\n".join(wrong)
    assert checked > 200


def test_unknown_paths_and_methods_are_not_routes(client: TestClient) -> None:
    assert client.get("/api/no-such-route").status_code == 404
    assert client.delete("/healthz").status_code == 405


def test_cookie_login_reaches_the_same_rules(client: TestClient, staff: Staff) -> None:
    from tests.web.conftest import login

    login(client, "reviewer")
    assert client.get("/api/auth/me").json()["role"] == "reviewer"
    assert client.get("/api/users").status_code == 403
    assert client.get("/api/audit").status_code == 403
    client.post("/api/auth/logout")
    assert client.get("/api/auth/me").status_code == 401


def test_cookie_is_httponly_and_samesite(client: TestClient, staff: Staff) -> None:
    r = client.post("/api/auth/login", json={"username": "auditor", "password": "pw-auditor-0123456789"})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie


def test_cross_site_post_does_not_ride_on_the_cookie(client: TestClient, staff: Staff) -> None:
    from tests.web.conftest import login

    login(client, "admin")
    body = {"username": "mallory", "role": "admin", "password": "0123456789abc"}
    r = client.post("/api/users", json=body, headers={"Origin": "https://evil.example"})
    assert r.status_code == 401
    r = client.post("/api/users", json=body, headers={"Origin": "http://testserver"})
    assert r.status_code == 201


def test_page_without_login_redirects_to_login(client: TestClient) -> None:
    r = client.get("/admin/users", headers={"Accept": "text/html"})
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=/admin/users"


def test_matrix_paths_are_normalized() -> None:
    for _method, path in MATRIX:
        assert normalize(path) == path
