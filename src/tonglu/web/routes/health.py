"""`GET /healthz`: 200 once every part is up, 503 with the parts that are not."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])

HealthCheck = Callable[[], bool]


def register_check(request_or_app: object, name: str, check: HealthCheck) -> None:
    """Parts add a named check to `app.state.health_checks`."""
    app = getattr(request_or_app, "app", request_or_app)
    checks = getattr(app.state, "health_checks", None)  # type: ignore[attr-defined]
    if checks is None:
        checks = {}
        app.state.health_checks = checks  # type: ignore[attr-defined]
    checks[name] = check


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    checks: dict[str, HealthCheck] = getattr(request.app.state, "health_checks", {}) or {}
    parts = {}
    for name, check in checks.items():
        try:
            parts[name] = bool(check())
        except Exception:  # a failing check means "not up", never a 500
            parts[name] = False
    ok = all(parts.values())
    return JSONResponse({"ok": ok, "parts": parts}, status_code=200 if ok else 503)
