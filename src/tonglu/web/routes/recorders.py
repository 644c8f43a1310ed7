"""Recorder hosts on other machines (`tonglu up --role recorder`) register here and heartbeat.

    POST /api/recorders/register   Bearer TONGLU_REGISTRATION_SECRET + host certificate + proof
    POST /api/recorders/heartbeat  Bearer TONGLU_REGISTRATION_SECRET + proof by the registered key
    GET  /api/recorders            admin/supervisor: hosts, capacity, liveness

A registration is refused (403, audited `recorder_register` outcome "failed" with the reason)
unless the secret matches, the host certificate chains to this site's key and is valid now, and
the claims are signed by the certified key within five minutes (`evidence.hostcert`). An accepted
one stores the certificate in the evidence bucket (`site/hosts/{key_id}.json`, locked) so the
verifier can check the host's checkpoints, and is audited. Heartbeats are not audited (every
couple of seconds); a host declared dead and its return are (`recorder_host_dead`,
`recorder_host_returned`), by the web tier's `HostRouter` (`setup`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from tonglu.evidence import canonical
from tonglu.evidence.errors import CanonicalError
from tonglu.evidence.hostcert import HostCertError, HostCertificate, check_registration
from tonglu.recorder.hosts import HostRouter
from tonglu.recorder.placement import HostDead, HostInfo, HostReturned, UnknownHost
from tonglu.web.auth import Principal, bearer_token, require_roles
from tonglu.web.deps import get_services

router = APIRouter(tags=["recorders"])
MAX_SESSIONS_PER_HEARTBEAT = 100_000


def _register_rules() -> None:
    from tonglu.web import rbac

    # the routes check the registration secret themselves (like WHIP its source token)
    rbac.MATRIX.setdefault(("POST", "/api/recorders/register"), rbac.token(max_body=16 * rbac.KB))
    rbac.MATRIX.setdefault(("POST", "/api/recorders/heartbeat"), rbac.token(max_body=8 * 1024 * rbac.KB))
    rbac.MATRIX.setdefault(("GET", "/api/recorders"), rbac.roles("admin", "supervisor"))


_register_rules()


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _hosts(request: Request) -> HostRouter | None:
    recorder = get_services(request).recorder
    return recorder if isinstance(recorder, HostRouter) else None


def _secret_ok(request: Request) -> bool:
    expected = get_services(request).settings.registration_secret
    given = bearer_token(request) or ""
    return bool(expected) and hmac.compare_digest(given.encode(), (expected or "").encode())


async def _body(request: Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("claims"), dict) or not isinstance(body.get("proof"), str):
        return None
    return body


@router.post("/api/recorders/register")
async def register(request: Request) -> JSONResponse:
    services = get_services(request)
    hosts = _hosts(request)
    if hosts is None:
        return _error(409, "此 Web 节点自带录像进程，不接受录像主机注册 (this web tier records itself: --role all)")
    if not _secret_ok(request):
        await services.audit.arecord(None, request, "recorder_register", "recorders", "denied",
                                     {"reason": "wrong or missing registration secret"})
        return _error(401, "注册密钥错误 (missing or wrong registration secret)")
    body = await _body(request)
    if body is None or not isinstance(body.get("cert"), str):
        return _error(400, "请求体须为 {claims, cert, proof} (body must be {claims, cert, proof})")
    claims = body["claims"]
    host = str(claims.get("host", ""))[:128]
    url, capacity, rpc_secret = claims.get("url"), claims.get("capacity"), claims.get("rpc_secret")
    if not (isinstance(url, str) and url.startswith(("http://", "https://")) and isinstance(capacity, int)
            and not isinstance(capacity, bool) and 0 <= capacity <= 10_000
            and isinstance(rpc_secret, str) and len(rpc_secret) >= 16):
        return _error(400, "claims 须含 url (http/https)、capacity (0..10000)、rpc_secret (>=16) "
                           "(claims need url, capacity, rpc_secret)")
    try:
        cert_bytes = base64.b64decode(body["cert"], validate=True)
        cert = check_registration(cert_bytes, claims, body["proof"], services.site_key.public_pem, time.time_ns())
    except (HostCertError, CanonicalError, binascii.Error, ValueError) as exc:
        reason = exc.args[0] if exc.args else str(exc)
        await services.audit.arecord(None, request, "recorder_register", f"recorder:{host}", "failed",
                                     {"reason": str(reason), "url": url})
        return _error(403, f"注册被拒绝 (registration refused): {reason}")
    if services.store is not None:  # the verifier finds the host's key beside the site key
        await asyncio.to_thread(_store_cert, services, cert)
    hosts.register(HostInfo(cert.host, url, capacity, cert.key_id), rpc_secret, cert.public_key, time.time_ns())
    await services.audit.arecord(None, request, "recorder_register", f"recorder:{cert.host}", "ok",
                                 {"url": url, "capacity": capacity, "key_id": cert.key_id})
    return JSONResponse({"host": cert.host, "key_id": cert.key_id, "heartbeat_s": hosts.heartbeat_s})


def _store_cert(services: Any, cert: HostCertificate) -> None:
    data = cert.to_bytes()
    until = datetime.now(UTC) + timedelta(seconds=services.settings.object_lock_retention_seconds)
    services.store.put_if_absent(cert.object_key, data, hashlib.sha256(data).hexdigest(), "application/json", until)


@router.post("/api/recorders/heartbeat")
async def heartbeat(request: Request) -> JSONResponse:
    hosts = _hosts(request)
    if hosts is None:
        return _error(409, "此 Web 节点不接受录像主机 (this web tier records itself)")
    if not _secret_ok(request):
        return _error(401, "注册密钥错误 (missing or wrong registration secret)")
    body = await _body(request)
    if body is None:
        return _error(400, "请求体须为 {claims, proof} (body must be {claims, proof})")
    claims = body["claims"]
    host = claims.get("host")
    sessions, recording, t = claims.get("sessions"), claims.get("recording"), claims.get("time_ns")
    if not (isinstance(host, str) and isinstance(sessions, list) and isinstance(recording, list)
            and isinstance(t, int) and len(sessions) <= MAX_SESSIONS_PER_HEARTBEAT
            and all(isinstance(s, str) for s in [*sessions, *recording])):
        return _error(400, "claims 须含 host、time_ns、sessions、recording (claims malformed)")
    public = hosts.host_keys.get(host)
    if public is None:
        return _error(404, f"录像主机 {host} 未注册 (host {host} is not registered: register first)")
    if abs(time.time_ns() - t) > 300 * 10**9 or not _proof_ok(public, claims, body["proof"]):
        return _error(403, f"心跳证明无效 (heartbeat proof of {host} invalid or stale)")
    try:
        hosts.heartbeat(host, time.time_ns(), sessions, recording)
    except UnknownHost:
        return _error(404, f"录像主机 {host} 未注册 (host {host} is not registered: register first)")
    return JSONResponse({"ok": True})


def _proof_ok(public: bytes, claims: dict[str, Any], proof: str) -> bool:
    from tonglu.evidence.verify_core import ed25519_verify

    try:
        signature = base64.b64decode(proof, validate=True)
        message = canonical.encode(claims)
    except (binascii.Error, ValueError, CanonicalError):
        return False
    return ed25519_verify(public, signature, message)


@router.get("/api/recorders")
async def list_recorders(
    request: Request, _p: Annotated[Principal, Depends(require_roles("admin", "supervisor"))]
) -> JSONResponse:
    hosts = _hosts(request)
    if hosts is None:
        return JSONResponse({"mode": "local", "hosts": []})
    return JSONResponse({"mode": "hosts", "hosts": [s.to_json() for s in hosts.placement.hosts.values()]})


def setup(app: Any) -> None:
    """Host deaths and returns go to the audit trail."""
    services = app.state.services
    recorder = services.recorder
    if not isinstance(recorder, HostRouter):
        return

    def on_event(ev: object) -> None:
        if isinstance(ev, HostDead):
            args: tuple[Any, ...] = ("recorder_host_dead", f"recorder:{ev.host}", "failed",
                                     {"reason": ev.reason, "sessions": list(ev.sessions)})
        elif isinstance(ev, HostReturned):
            args = ("recorder_host_returned", f"recorder:{ev.host}", "ok", {"down_ms": ev.down_ns // 1_000_000})
        else:
            return
        # called on the event loop: the audit fsync runs in a thread
        asyncio.get_running_loop().run_in_executor(None, lambda: services.audit.record(None, None, *args))

    recorder.on_event = on_event
