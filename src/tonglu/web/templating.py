"""Jinja2 templates for the pages (Chinese first), with the filters they share."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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


def render(request: Request, name: str, status_code: int = 200, headers: Mapping[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    context.setdefault("principal", principal)
    response = templates.TemplateResponse(request, name, context, status_code=status_code, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response
