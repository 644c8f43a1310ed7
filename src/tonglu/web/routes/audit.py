"""The audit trail for auditors: `/audit` page, JSON query, CSV export, chain verification.

Verification compares the local copies (file, table) with the signed WORM batches in the object
store (`services.store`), so a consistent rewrite of both local copies is caught."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services
from tonglu.web.templating import render

router = APIRouter(tags=["audit"])
Auditor = Annotated[Principal, Depends(require_roles("auditor"))]


def _ns(value: str | None, name: str) -> int | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HTTPException(
            status_code=422, detail=f"{name} 不是 ISO-8601 时间 (not an ISO-8601 time: {value!r})"
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


def _filters(user: str | None, action: str | None, obj: str | None, since: str | None,
             until: str | None) -> dict[str, Any]:
    return {"user": user or None, "action": action or None, "obj": obj or None,
            "since_ns": _ns(since, "since"), "until_ns": _ns(until, "until")}


Text = Annotated[str | None, Query(max_length=256)]


@router.get("/api/audit")
def audit_json(request: Request, _p: Auditor, user: Text = None, action: Text = None, obj: Text = None,
               since: Text = None, until: Text = None,
               limit: Annotated[int, Query(ge=1, le=10000)] = 500) -> dict[str, Any]:
    audit = get_services(request).audit
    rows = audit.query(**_filters(user, action, obj, since, until), limit=limit, newest_first=True)
    return {"count": audit.count(), "records": rows}


@router.get("/api/audit.csv")
def audit_csv(request: Request, _p: Auditor, user: Text = None, action: Text = None, obj: Text = None,
              since: Text = None, until: Text = None) -> Response:
    text = get_services(request).audit.csv_text(**_filters(user, action, obj, since, until))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        "\ufeff" + text,  # BOM: spreadsheet programs then read the Chinese text as UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="tonglu-audit-{stamp}.csv"'},
    )


def _verify(request: Request) -> Any:
    services = get_services(request)
    return services.audit.verify(store=services.store)


@router.get("/api/audit/verify")
async def audit_verify(request: Request, _p: Auditor) -> dict[str, Any]:
    check = await anyio.to_thread.run_sync(lambda: _verify(request))
    return {"ok": check.ok, "count": check.count, "head": check.head, "problems": check.problems,
            "worm_records": check.worm_records, "notes": check.notes}


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
def audit_page(request: Request, _p: Auditor, user: Text = None, action: Text = None, obj: Text = None,
               since: Text = None, until: Text = None) -> Response:
    audit = get_services(request).audit
    rows = audit.query(**_filters(user, action, obj, since, until), limit=500, newest_first=True)
    check = _verify(request)
    return render(request, "audit.html", rows=rows, check=check, total=audit.count(),
                  q={"user": user or "", "action": action or "", "obj": obj or "", "since": since or "",
                     "until": until or ""})
