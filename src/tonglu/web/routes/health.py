"""Health and metrics.

    GET /livez     200 while the process answers (liveness: restart it when this fails)
    GET /readyz    200 once every part is up, 503 naming the parts that are not (readiness)
    GET /healthz   the same as /readyz (kept for existing monitors)
    GET /metrics   Prometheus text format (staff roles or an API token; not audited per scrape)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from tonglu.web import metrics
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services

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


@router.get("/livez")
async def livez() -> JSONResponse:
    return JSONResponse({"ok": True})


@router.get("/readyz")
@router.get("/healthz")
def readyz(request: Request) -> JSONResponse:
    checks: dict[str, HealthCheck] = getattr(request.app.state, "health_checks", {}) or {}
    parts = {}
    for name, check in checks.items():
        try:
            parts[name] = bool(check())
        except Exception:  # a failing check means "not up", never a 500
            parts[name] = False
    ok = all(parts.values())
    return JSONResponse({"ok": ok, "parts": parts}, status_code=200 if ok else 503)


METRICS_ROLES = ("admin", "supervisor", "auditor")


@router.get("/metrics")
async def prometheus_metrics(
    request: Request, _p: Annotated[Principal, Depends(require_roles(*METRICS_ROLES))]
) -> Response:
    snap = await metrics.collect(get_services(request))
    return Response(metrics.render(snap), media_type="text/plain; version=0.0.4; charset=utf-8")
