"""A recorder host registers with the web tier and heartbeats (`tonglu up --role recorder`).

    POST {web}/api/recorders/register   Bearer TONGLU_REGISTRATION_SECRET
        {"claims": {"host", "url", "capacity", "rpc_secret", "time_ns"},
         "cert": base64 host certificate, "proof": base64 Ed25519 of the canonical claims}
    POST {web}/api/recorders/heartbeat  Bearer TONGLU_REGISTRATION_SECRET
        {"claims": {"host", "time_ns", "sessions": [...], "recording": [...]}, "proof": ...}

The certificate (`evidence.hostcert`) shows the site key certified this host's key; the proof
shows this process holds that key (and, by `time_ns`, that it is fresh). `rpc_secret` is what the
web tier then sends on every call to this host's internal API (`X-Tonglu-Worker-Secret`), so the
web URL must be HTTPS outside a test (docs/deploy/). A refused registration (401/403) stops the
host with the web tier's reason; an unreachable web tier is retried with backoff.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tonglu.evidence.hostcert import HostIdentity, registration_proof
from tonglu.evidence.logctx import context_logger
from tonglu.recorder.errors import RegistrationRefused

log = context_logger(__name__)


@dataclass(frozen=True)
class RegistrationConfig:
    web_url: str
    advertise_url: str
    capacity: int
    registration_secret: str
    rpc_secret: str
    heartbeat_s: float = 2.0
    verify_tls: bool | str = True  # a CA bundle path for a self-signed web tier


class Registrar:
    """Registration then heartbeats, in a thread (`run`)."""

    def __init__(
        self,
        config: RegistrationConfig,
        identity: HostIdentity,
        sessions: Callable[[], tuple[list[str], list[str]]],
    ) -> None:
        self.config = config
        self.identity = identity
        self.sessions = sessions  # () -> (every session in this host's ledger, those recording)
        self.registered = threading.Event()
        self.refused: str | None = None
        self._http = httpx.Client(
            base_url=config.web_url.rstrip("/"),
            headers={"Authorization": f"Bearer {config.registration_secret}"},
            timeout=httpx.Timeout(10.0, connect=3.0),
            verify=config.verify_tls,
        )

    def _post(self, path: str, claims: dict[str, Any], **extra: Any) -> httpx.Response:
        body = {"claims": claims, "proof": registration_proof(self.identity.key, claims), **extra}
        return self._http.post(path, json=body)

    def register_once(self) -> dict[str, Any]:
        claims = {
            "host": self.identity.host,
            "url": self.config.advertise_url,
            "capacity": self.config.capacity,
            "rpc_secret": self.config.rpc_secret,
            "time_ns": time.time_ns(),
        }
        cert = base64.b64encode(self.identity.cert.to_bytes()).decode()
        r = self._post("/api/recorders/register", claims, cert=cert)
        if r.status_code in (400, 401, 403, 409):
            raise RegistrationRefused(f"Web 层拒绝注册 (web tier refused registration: {r.status_code} {_detail(r)})")
        r.raise_for_status()
        self.registered.set()
        result: dict[str, Any] = r.json()
        return result

    def heartbeat_once(self) -> bool:
        """False when the web tier no longer knows this host (it restarted): register again."""
        every, recording = self.sessions()
        claims = {"host": self.identity.host, "time_ns": time.time_ns(), "sessions": every, "recording": recording}
        r = self._post("/api/recorders/heartbeat", claims)
        if r.status_code == 404:
            return False
        if r.status_code in (401, 403):
            raise RegistrationRefused(f"Web 层拒绝心跳 (web tier refused the heartbeat: {_detail(r)})")
        r.raise_for_status()
        return True

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        registered = False
        while not stop.is_set():
            try:
                if not registered:
                    self.register_once()
                    registered = True
                    log.info("registered with the web tier %s as %s", self.config.web_url, self.identity.host)
                elif not self.heartbeat_once():
                    registered = False
                    continue
                backoff = 0.5
                stop.wait(self.config.heartbeat_s)
            except RegistrationRefused as exc:
                self.refused = exc.detail
                log.error("%s", exc.detail)
                self.registered.set()  # wake whoever waits: it reads `refused`
                return
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("web tier %s unreachable (%s); retrying in %.1f s", self.config.web_url, exc, backoff)
                registered = registered and not isinstance(exc, httpx.HTTPStatusError)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def close(self) -> None:
        self._http.close()


def _detail(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    return str(body.get("detail") if isinstance(body, dict) else body)[:500]
