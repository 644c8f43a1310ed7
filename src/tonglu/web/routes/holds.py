"""Legal hold (法律保全) and retention by case category: API, and the admin page `/admin/holds`.

Who may do what (also in web/rbac.py):
- place a hold, request a lift, approve a lift, re-apply (sync), set the case category:
  `admin` and `supervisor` (the people who open an exclusion motion, appeal or complaint);
- read a session's hold state: everyone who may read the session, and `auditor`;
- the retention report and the page: `admin`, `supervisor`, `auditor`.
Two-person rule: a lift request is approved by a second, different person (any admin or
supervisor but its requester); the shared admin token names no person and can neither request
nor approve a lift. Every step is audited here (refusals too) and written into the manifest.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tonglu.evidence.errors import (
    ConfigError,
    HoldError,
    HoldNotFound,
    RetentionShortening,
    StorageError,
    TwoPersonRule,
    UnknownCategory,
)
from tonglu.evidence.holds import ApplyReport, Holds
from tonglu.evidence.retention import RetentionPolicy
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services
from tonglu.web.rbac import READ_SESSION, require_session_access
from tonglu.web.templating import render

HOLD_ROLES = ("admin", "supervisor")
HOLD_READ_ROLES = (*READ_SESSION, "auditor")
REPORT_ROLES = ("admin", "supervisor", "auditor")
SHARED_TOKEN_USER = "admin-token"

router = APIRouter(tags=["legal hold"])
Custodian = Annotated[Principal, Depends(require_roles(*HOLD_ROLES))]
HoldReader = Annotated[Principal, Depends(require_roles(*HOLD_READ_ROLES))]
ReportReader = Annotated[Principal, Depends(require_roles(*REPORT_ROLES))]
Short = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=2000)]


def holds_for(request: Request) -> Holds:
    services = get_services(request)
    try:
        policy = RetentionPolicy.from_settings(services.settings)
    except ConfigError as exc:
        raise HTTPException(status_code=503, detail=f"保存期限配置错误 (retention settings: {exc})") from exc
    return Holds(services.ledger, services.store, policy)


def _status(exc: StorageError) -> int:
    if isinstance(exc, TwoPersonRule):
        return 403
    if isinstance(exc, HoldNotFound):
        return 404
    if isinstance(exc, RetentionShortening):
        return 409
    if isinstance(exc, UnknownCategory):
        return 422
    return 503  # the store (or its configuration) failed


def _audit(request: Request, p: Principal, action: str, sid: str, outcome: str, detail: dict[str, Any]) -> None:
    get_services(request).audit.record(p, request, action, f"session:{sid}", outcome, detail)


def _refuse(request: Request, p: Principal, action: str, sid: str, exc: StorageError,
            detail: dict[str, Any]) -> HTTPException:
    status = _status(exc)
    _audit(request, p, action, sid, "denied" if status in (403, 409, 422) else "failed",
           {**detail, "reason": str(exc)[:500]})
    return HTTPException(status_code=status, detail=str(exc))


def _incomplete(report: ApplyReport | None, what: str, sid: str) -> HTTPException | None:
    if report is None or report.complete:
        return None
    return HTTPException(
        status_code=503,
        detail=(f"{what}已记入证据清单，但对象存储只完成 {report.total - len(report.failed)}/{report.total} 个对象；"
                f"请重试 POST /api/sessions/{sid}/legal-hold/sync ({what} recorded in the manifest, store applied "
                f"{report.total - len(report.failed)} of {report.total}: {report.failed[0]})"),
    )


def _person(p: Principal, request: Request, action: str, sid: str) -> None:
    if p.user == SHARED_TOKEN_USER:
        _audit(request, p, action, sid, "denied", {"reason": "shared admin token"})
        raise HTTPException(
            status_code=403,
            detail="双人规则须由具名人员操作，共享管理员令牌不可用 (the two-person rule needs a named person; "
                   "the shared admin token identifies no one)",
        )


# -- legal hold --------------------------------------------------------------------------------
@router.get("/api/sessions/{sid}/legal-hold")
def hold_state(request: Request, sid: str, p: HoldReader,
               objects: Annotated[bool, Query(description="also count the stored objects and their holds")] = False
               ) -> dict[str, Any]:
    """The session's holds, lift requests, case category and history (from its manifest)."""
    require_session_access(p, sid)
    holds = holds_for(request)
    try:
        st = holds.state(sid)
    except HoldError as exc:
        raise HTTPException(status_code=_status(exc), detail=str(exc)) from exc
    out: dict[str, Any] = {"session": sid, **st.to_json()}
    rule = holds.policy.effective(st.category)
    out.update(retention_seconds=rule.seconds, permanent=rule.permanent, retention=rule.describe())
    if objects:
        try:
            out["store"] = holds.objects(sid).to_json()
        except StorageError as exc:
            raise HTTPException(status_code=503, detail=f"对象存储不可用 (store: {exc})") from exc
    return out


class PlaceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text  # e.g. 排除非法证据申请 / 上诉 / 申诉
    case_reference: Short  # the motion's, appeal's or complaint's reference


@router.post("/api/sessions/{sid}/legal-hold", status_code=201)
def place_hold(request: Request, sid: str, body: PlaceIn, p: Custodian) -> dict[str, Any]:
    """Place a legal hold: every stored object of the session (and every later one) is held."""
    detail = {"reason": body.reason, "case_reference": body.case_reference}
    holds = holds_for(request)
    try:
        hold, new, report = holds.place(sid, reason=body.reason, case_reference=body.case_reference,
                                        by=p.user, role=p.role)
    except StorageError as exc:
        raise _refuse(request, p, "legal_hold_place", sid, exc, detail) from exc
    _audit(request, p, "legal_hold_place", sid, "ok" if report.complete else "failed",
           {**detail, "hold_id": hold.hold_id, "new": new, **report.to_json()})
    err = _incomplete(report, "保全", sid)
    if err is not None:
        raise err
    return {"session": sid, "hold": hold.to_json(), "new": new, "store": report.to_json()}


class LiftRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Text
    hold_id: Short | None = None  # needed when the session carries several holds


@router.post("/api/sessions/{sid}/legal-hold/lift-requests", status_code=201)
def request_lift(request: Request, sid: str, body: LiftRequestIn, p: Custodian) -> dict[str, Any]:
    """Ask to lift a hold; a second, different person must approve it."""
    detail = {"reason": body.reason, "hold_id": body.hold_id}
    _person(p, request, "legal_hold_lift_request", sid)
    try:
        req = holds_for(request).request_lift(sid, hold_id=body.hold_id, reason=body.reason, by=p.user, role=p.role)
    except StorageError as exc:
        raise _refuse(request, p, "legal_hold_lift_request", sid, exc, detail) from exc
    _audit(request, p, "legal_hold_lift_request", sid, "ok", {**detail, "request_id": req.request_id,
                                                                "hold_id": req.hold_id})
    return {"session": sid, "request": req.to_json()}


class ApproveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: Annotated[str, Field(max_length=2000)] = ""


@router.post("/api/sessions/{sid}/legal-hold/lift-requests/{request_id}/approve")
def approve_lift(request: Request, sid: str, request_id: str, body: ApproveIn, p: Custodian) -> dict[str, Any]:
    """Approve a lift request (not by its requester). The objects are released when no hold is left."""
    detail = {"request_id": request_id[:64], "note": body.note}
    holds = holds_for(request)
    try:
        st = holds.state(sid)
        st.check_approval(request_id, p.user)
        _person(p, request, "legal_hold_lift_approve", sid)
        req, still_held, report = holds.approve_lift(sid, request_id, by=p.user, role=p.role)
    except StorageError as exc:
        raise _refuse(request, p, "legal_hold_lift_approve", sid, exc, detail) from exc
    store = report.to_json() if report is not None else None
    _audit(request, p, "legal_hold_lift_approve", sid, "ok" if report is None or report.complete else "failed",
           {**detail, "hold_id": req.hold_id, "requested_by": req.requested_by, "still_held": still_held,
            "store": store})
    err = _incomplete(report, "解除保全", sid)
    if err is not None:
        raise err
    return {"session": sid, "request": req.to_json(), "held": still_held, "store": store}


@router.post("/api/sessions/{sid}/legal-hold/sync")
def sync_hold(request: Request, sid: str, p: Custodian) -> dict[str, Any]:
    """Apply the manifest's hold state and retention to the stored objects again (idempotent)."""
    try:
        st, held, ret = holds_for(request).sync(sid)
    except StorageError as exc:
        raise _refuse(request, p, "legal_hold_sync", sid, exc, {}) from exc
    ok = held.complete and ret.complete
    _audit(request, p, "legal_hold_sync", sid, "ok" if ok else "failed",
           {"held": st.held, "hold": held.to_json(), "retention": ret.to_json()})
    if not ok:
        raise HTTPException(status_code=503, detail=f"对象存储未全部完成 (store incomplete: "
                                                    f"{(held.failed or ret.failed)[0]})")
    return {"session": sid, "held": st.held, "hold": held.to_json(), "retention": ret.to_json()}


# -- retention by case category ---------------------------------------------------------------
class CategoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: Annotated[str, Field(min_length=1, max_length=40)]
    reason: Annotated[str, Field(max_length=2000)] = ""


@router.post("/api/sessions/{sid}/retention")
def set_category(request: Request, sid: str, body: CategoryIn, p: Custodian) -> dict[str, Any]:
    """Set or change the case category; stored objects' retention is extended (never shortened)."""
    detail = {"category": body.category, "reason": body.reason}
    holds = holds_for(request)
    try:
        report = holds.set_category(sid, body.category, by=p.user, role=p.role, reason=body.reason)
    except StorageError as exc:
        raise _refuse(request, p, "retention_category", sid, exc, detail) from exc
    _audit(request, p, "retention_category", sid, "ok" if report.complete else "failed",
           {**detail, **report.to_json()})
    if not report.complete:
        raise HTTPException(status_code=503, detail=f"类别已记入证据清单，对象存储未全部延长 (category recorded; "
                                                    f"store incomplete: {report.failed[0]})")
    rule = holds.policy.rule(body.category)
    return {"session": sid, "category": rule.name, "retention": rule.describe(), "permanent": rule.permanent,
            "store": report.to_json()}


def _categories(holds: Holds) -> list[dict[str, Any]]:
    return [{"category": r.name, "label": r.label, "retention_seconds": r.seconds, "permanent": r.permanent,
             "retention": r.describe()} for r in sorted(holds.policy.rules.values(), key=lambda r: r.seconds)]


@router.get("/api/retention/report")
def retention_report(request: Request, _p: ReportReader,
                     store: Annotated[bool, Query(description="read each stored object's retention (slower)")] = True
                     ) -> dict[str, Any]:
    """What expires when: per session category, retention, hold state, stored objects, earliest and
    latest retain-until (sessions under hold last)."""
    holds = holds_for(request)
    return {"categories": _categories(holds), "sessions": holds.report(with_store=store)}


@router.get("/admin/holds", include_in_schema=False)
def holds_page(request: Request, p: ReportReader, store: bool = False) -> Response:
    """法律保全与保存期限: the retention report (from the manifests; `?store=1` reads every stored
    object's retention), holds, lift requests; forms for admins and supervisors."""
    holds = holds_for(request)
    return render(request, "holds.html", sessions=holds.report(with_store=store), categories=_categories(holds),
                  can_act=p.role in HOLD_ROLES, store_checked=store)
