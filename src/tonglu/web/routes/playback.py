"""Playback from the masters (no re-encoding): playlists from the manifest, segments re-hashed.

    GET /api/sessions/{sid}/playback                         JSON playlist of every source/track
    GET /api/sessions/{sid}/playback?from_ms=&to_ms=         the same, segments only in that window
                                                             (gaps, markers, breaks: whole session)
    GET /api/sessions/{sid}/playback/window?from_ms=&to_ms=  segments and gaps of one time window
        (ms from the session start, to_ms > from_ms, at most MAX_WINDOW_MS; 422 otherwise): the
        page's player loads the head with the first window, then windows around the playhead
    GET /api/sessions/{sid}/playback/hls/{source}/{track}.m3u8  HLS-style playlist of one track
    GET /api/sessions/{sid}/playback/segments/{seq}.webm|ts|mp4
        one master segment, by its manifest position; .mp4 = an H.264 TS master remuxed to fMP4
        (stream copy). Re-hashed against its manifest entry before it leaves: a mismatch is 409
        with {"detail", "reason", "seq", "key"}, audited as ``playback_refused``.

The decision and the plan are in `integrity/playback_plan.py`; plans are made from the ledger's
entry index (`integrity/playback_index.py`: no JSON parsed but a handful of entries) and cached per
session and ledger length (a new entry re-plans). The page's player is `static/player.js`.
A segment's key, size and SHA-256 come from its own ledger line; segments are read at their first
object version (`evidence.reader.EvidenceReader`).
"""

from __future__ import annotations

import re
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from tonglu.evidence.errors import ObjectNotFound, SpoolCorrupt, StorageError
from tonglu.integrity.errors import IntegrityError, PlaybackRefused, ToolError, UnknownSession
from tonglu.integrity.playback_index import IndexedPlan, IndexOutOfStep, plan_from_index
from tonglu.integrity.playback_plan import PlaySegment
from tonglu.web.auth import Principal, require_roles
from tonglu.web.deps import get_services

READ = ("admin", "interviewer", "supervisor", "reviewer")
router = APIRouter(tags=["review"])
_SEGMENT = re.compile(r"^(\d{1,12})\.(webm|ts|mp4)$")
_TRACK = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]{0,63})\.m3u8$")
CONTENT_TYPE = {"webm": "video/webm", "ts": "video/mp2t", "mp4": "video/mp4"}
_CACHE_MAX = 64
MAX_WINDOW_MS = 6 * 3600 * 1000


def _register_rules() -> None:
    from tonglu.web import rbac

    rules = {
        ("GET", "/api/sessions/{}/playback"): rbac.roles(*READ, audit="playback"),
        ("GET", "/api/sessions/{}/playback/window"): rbac.roles(*READ, audit="playback_window"),
        ("GET", "/api/sessions/{}/playback/hls/{}/{}"): rbac.roles(*READ, audit="playback"),
        # every segment read is evidence access: audited per call like any other read (refusals
        # are audited once more below with the reason)
        ("GET", "/api/sessions/{}/playback/segments/{}"): rbac.roles(*READ, audit="playback_segment"),
    }
    for key, rule in rules.items():
        rbac.MATRIX.setdefault(key, rule)


_register_rules()


class _Plans:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[tuple[str, str], tuple[int, IndexedPlan]] = {}
        self._json: dict[tuple[str, str], tuple[int, bytes]] = {}

    def playlist(self, services: Any, sid: str) -> bytes:
        """The whole JSON playlist, serialised once per ledger length (4.5 MB for a 24 h session)."""
        import json

        size, plan = self._get(services, sid)
        cache_key = (str(services.ledger.root), sid)
        with self._lock:
            hit = self._json.get(cache_key)
        if hit is not None and hit[0] == size:
            return hit[1]
        body = json.dumps(plan.to_json(_base(sid)), ensure_ascii=False, separators=(",", ":")).encode()
        with self._lock:
            if len(self._json) >= _CACHE_MAX:
                self._json.clear()
            self._json[cache_key] = (size, body)
        return body

    def get(self, services: Any, sid: str) -> IndexedPlan:
        return self._get(services, sid)[1]

    def _get(self, services: Any, sid: str, *, rebuild: bool = False) -> tuple[int, IndexedPlan]:
        from tonglu.evidence import keys

        try:
            keys.safe_id(sid, "session id")
        except ValueError as exc:
            raise UnknownSession(f"会话不存在 unknown session: {exc}") from exc
        ledger = services.ledger
        if not ledger.has(sid):
            raise UnknownSession(f"会话不存在 unknown session {sid!r}")
        size = ledger.log_size(sid)
        cache_key = (str(ledger.root), sid)
        with self._lock:
            hit = self._plans.get(cache_key)
        if hit is not None and hit[0] == size and not rebuild:
            return hit
        try:
            plan = plan_from_index(sid, *ledger.entry_index(sid, rebuild=rebuild))
        except IndexOutOfStep:
            if rebuild:
                raise
            return self._get(services, sid, rebuild=True)  # the index is derived: make it again
        with self._lock:
            if len(self._plans) >= _CACHE_MAX:
                self._plans.clear()
            self._plans[cache_key] = (size, plan)
        return size, plan

    def segment(self, services: Any, sid: str, seq: int) -> PlaySegment | None:
        try:
            return self.get(services, sid).segment(seq)
        except IndexOutOfStep:
            return self._get(services, sid, rebuild=True)[1].segment(seq)


PLANS = _Plans()


def _plan(request: Request, sid: str) -> IndexedPlan:
    try:
        return PLANS.get(get_services(request), sid)
    except UnknownSession as exc:
        raise HTTPException(404, detail=str(exc)) from exc


def _scope(principal: Principal, sid: str) -> None:
    if principal.session_scope is not None and principal.session_scope != sid:
        raise HTTPException(403, detail="邀请仅限于另一场讯问 (invitation is bound to another session)")


def _base(sid: str) -> str:
    return f"/api/sessions/{sid}/playback"


def _window(from_ms: int | None, to_ms: int | None, *, required: bool) -> tuple[int, int] | None:
    if from_ms is None and to_ms is None and not required:
        return None
    if from_ms is None or to_ms is None:
        raise HTTPException(422, detail="时间窗需要 from_ms 与 to_ms (a window needs both from_ms and to_ms)")
    if to_ms <= from_ms or to_ms - from_ms > MAX_WINDOW_MS:
        raise HTTPException(
            422, detail=f"时间窗无效 bad window: need from_ms < to_ms, at most {MAX_WINDOW_MS} ms apart "
                        f"(got {from_ms}..{to_ms})"
        )
    return from_ms, to_ms


WindowMs = Annotated[int | None, Query(ge=0, le=10**12, description="ms from the session start")]


@router.get("/api/sessions/{sid}/playback")
def get_playlist(
    sid: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))],
    from_ms: WindowMs = None, to_ms: WindowMs = None,
) -> Any:
    """回放清单 Playlist of every source/track from the manifest: segments (wall times in ms from the
    session start, URLs), gaps, markers and breaks. For the review page's player. With `from_ms` and
    `to_ms` only the segments overlapping that window are listed (gaps, markers, breaks: all)."""
    _scope(principal, sid)
    window = _window(from_ms, to_ms, required=False)
    try:
        if window is None:
            body = PLANS.playlist(get_services(request), sid)
        else:
            doc = PLANS.get(get_services(request), sid).to_json(_base(sid), *window)
            return JSONResponse(doc, headers={"cache-control": "no-store"})
    except UnknownSession as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    return Response(body, media_type="application/json", headers={"cache-control": "no-store"})


@router.get("/api/sessions/{sid}/playback/window")
def get_playback_window(
    sid: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))],
    from_ms: WindowMs = None, to_ms: WindowMs = None,
) -> Any:
    """回放时间窗 The segments ([seq, start_ms, end_ms]) and gaps of every track overlapping one window
    [from_ms, to_ms) of the session (ms from its start); the player loads these around the playhead."""
    _scope(principal, sid)
    window = _window(from_ms, to_ms, required=True)
    assert window is not None
    try:
        doc = PLANS.get(get_services(request), sid).window_json(*window)
    except UnknownSession as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    return JSONResponse(doc, headers={"cache-control": "no-store"})


@router.get("/api/sessions/{sid}/playback/hls/{source}/{name}", response_model=None)
def get_m3u8(
    sid: str, source: str, name: str, request: Request,
    principal: Annotated[Principal, Depends(require_roles(*READ))],
) -> Response:
    """HLS-style playlist of one track (EXT-X-PROGRAM-DATE-TIME, EXT-X-DISCONTINUITY), for external tools."""
    _scope(principal, sid)
    m = _TRACK.match(name)
    if m is None:
        raise HTTPException(404, detail="播放列表不存在 (expected <track>.m3u8)")
    plan = _plan(request, sid)
    try:
        text = plan.m3u8(source, m.group(1), _base(sid))
    except KeyError as exc:
        raise HTTPException(404, detail=f"会话中没有该轨道 no track {source}/{m.group(1)}") from exc
    return Response(text, media_type="application/vnd.apple.mpegurl", headers={"cache-control": "no-store"})


def _reader(services: Any) -> Any:
    reader = getattr(services, "reader", None)
    if reader is None:
        from tonglu.evidence.reader import EvidenceReader

        reader = services.reader = EvidenceReader(services.spool, getattr(services, "store", None))
    return reader


@router.get("/api/sessions/{sid}/playback/segments/{name}", response_model=None)
def get_segment(
    sid: str, name: str, request: Request, principal: Annotated[Principal, Depends(require_roles(*READ))]
) -> Response:
    """One master segment, re-hashed against its manifest entry first (409 with the reason if it does
    not match: the player shows an integrity error and never plays it)."""
    from tonglu.integrity.playback_media import checked, ts_to_fmp4

    _scope(principal, sid)
    m = _SEGMENT.match(name)
    if m is None:
        raise HTTPException(404, detail="片段不存在 (expected <seq>.webm|ts|mp4)")
    seq, ext = int(m.group(1)), m.group(2)
    try:
        seg = PLANS.segment(get_services(request), sid, seq)
    except UnknownSession as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    if seg is None:
        raise HTTPException(404, detail=f"清单第 {seq} 条不是片段 (manifest entry {seq} is not a segment)")
    wanted = ("webm",) if seg.container == "webm" else ("ts", "mp4")
    if ext not in wanted:
        raise HTTPException(404, detail=f"片段 {seq} 是 {seg.container}，请用 .{wanted[-1]}")
    services = get_services(request)
    try:
        try:
            data = _reader(services).read(seg.key)
        except ObjectNotFound as exc:
            raise PlaybackRefused(
                "missing", f"完整性校验失败：片段 {seg.key} 缺失，拒绝播放 (segment {seq} is missing: {exc})"
            ) from exc
        except SpoolCorrupt as exc:
            raise PlaybackRefused(
                "spool_corrupt", f"完整性校验失败：片段 {seg.key} 的本地缓存已损坏，拒绝播放 (segment {seq}: {exc})"
            ) from exc
        except StorageError as exc:
            raise HTTPException(503, detail=f"存储暂不可用 object store unavailable: {exc}") from exc
        data = checked(data, seg)
        if ext == "mp4":
            data = ts_to_fmp4(data)
    except PlaybackRefused as exc:
        audit = getattr(services, "audit", None)
        if audit is not None:
            audit.record(principal, request, "playback_refused", f"session:{sid}/segment:{seq}", outcome="rejected",
                         detail={"reason": exc.reason, "key": seg.key, "seq": seq})
        return JSONResponse({"detail": str(exc), "reason": exc.reason, "seq": seq, "key": seg.key}, status_code=409)
    except ToolError as exc:
        raise HTTPException(503, detail=str(exc)) from exc
    except IntegrityError as exc:
        raise HTTPException(500, detail=str(exc)) from exc
    # the segment never changes (its hash is in the signed manifest): the browser may keep it
    return Response(data, media_type=CONTENT_TYPE[ext], headers={"cache-control": "private, max-age=3600",
                                                                  "x-tonglu-sha256": seg.sha256})
