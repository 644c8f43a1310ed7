"""Jinja2 templates for the pages (Chinese first), with the filters they share."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from tonglu.web.accounts import ROLE_LABELS, SUB_ROLES

TEMPLATE_DIR = Path(__file__).parent / "templates"
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")

templates = Jinja2Templates(directory=str(TEMPLATE_DIR))


def local_time(time_ns: int | None) -> str:
    """UTC nanoseconds shown in Asia/Shanghai, 24-hour clock."""
    if time_ns is None:
        return "—"
    return datetime.fromtimestamp(time_ns / 1e9, tz=UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["local_time"] = local_time
templates.env.globals["ROLE_LABELS"] = ROLE_LABELS
templates.env.globals["SUB_ROLES"] = SUB_ROLES


def page_csp(nonce: str, public_url: str | None = None) -> str:
    """Scripts from this origin, and inline ones only with this response's nonce; no plugins, no
    framing, no <base>. `connect-src` also allows TONGLU_PUBLIC_URL's origin (WHIP/WHEP links)."""
    connect = "'self'"
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme in ("http", "https") and parts.netloc:
            connect += f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self'; img-src 'self' data: blob:; "
        f"media-src 'self' blob:; connect-src {connect}; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    )


def render(request: Request, name: str, status_code: int = 200, headers: Mapping[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    context.setdefault("principal", principal)
    nonce = secrets.token_urlsafe(16)
    context["csp_nonce"] = nonce
    response = templates.TemplateResponse(request, name, context, status_code=status_code, headers=headers)
    services = getattr(request.app.state, "services", None)
    public_url = services.settings.public_url if services is not None else None
    response.headers["Content-Security-Policy"] = page_csp(nonce, public_url)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
