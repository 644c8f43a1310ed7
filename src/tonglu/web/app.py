"""The FastAPI application. Each area adds a router module under `web/routes/` and lists it here."""

from __future__ import annotations

import importlib

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tonglu.web.downloads import exports_dir, sweep
from tonglu.web.hardening import JsonDepthLimit, SecurityHeaders
from tonglu.web.services import Services

ROUTER_MODULES = (
    "tonglu.web.routes.health",
    "tonglu.web.routes.auth",
    "tonglu.web.routes.sessions",
    "tonglu.web.routes.whip",
    "tonglu.web.routes.whep",
    "tonglu.web.routes.participants",
    "tonglu.web.routes.capture",
    "tonglu.web.routes.evidence",
    "tonglu.web.routes.review",
    "tonglu.web.routes.playback",
    "tonglu.web.routes.jobs",
    "tonglu.web.routes.transcript",
    "tonglu.web.routes.records",
    "tonglu.web.routes.pages",
    "tonglu.web.routes.audit",
    "tonglu.web.routes.docs",
    "tonglu.web.routes.holds",
    "tonglu.web.routes.alerts",
    "tonglu.web.routes.recorders",
    "tonglu.web.routes.hearing",
    "tonglu.web.routes.ice",
)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="同录 Tonglu API",
        version="0.1.0",
        description="Evidence-grade recording: sessions, WHIP ingest, evidence, review.",
        docs_url=None,  # served by web/routes/docs.py from local assets, not FastAPI's CDN page
        redoc_url=None,
    )
    if services.recorder is None:  # no worker processes: record in this process
        from tonglu.recorder.router import build_router

        services.recorder = build_router(services.settings, services)
    app.state.services = services
    sweep(exports_dir(services.settings.data_dir), services.settings.export_ttl_s)  # left by a crash
    # Added before the routers' middleware (the guard), so it runs inside it, on size-limited bodies.
    app.add_middleware(JsonDepthLimit)
    for name in ROUTER_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        app.include_router(module.router)
        setup = getattr(module, "setup", None)
        if setup is not None:
            setup(app)

    app.add_middleware(SecurityHeaders)  # outermost: the guard's own answers get the headers too

    @app.exception_handler(ValueError)
    async def _value_error(_request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    return app
