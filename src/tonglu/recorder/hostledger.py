"""`HostLedger`: the web tier's ledger when sessions are recorded on other hosts (`--role web`).

Each recorder host keeps its sessions' chains (issue: one chain per session, where it is recorded).
The web tier's routes that read a session's entries or append an annotation (hearing markers,
notes, explanations, 笔录 imports, alerts, legal holds, retention) use `services.ledger`; with a
`HostRouter` that is this class: a session the local ledger holds is served locally, any other is
read from and appended on the recorder host that holds it (`ledger_entries` / `ledger_append` over
the host's internal API, the same secret and error classes as every forwarded call). The holding
host stamps the entry's time; the caller's `now_ns` is not sent (one clock per chain).

Calls are synchronous HTTP (the routes call the ledger from worker threads); a host that is down
answers `WorkerUnavailable` (503) naming it, and nothing is written anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tonglu.evidence.errors import ManifestError
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.recorder.errors import SessionNotFound, SessionStopped, WorkerUnavailable
from tonglu.recorder.remote import DEFAULT_TIMEOUT_S, SECRET_HEADER, result_of


class HostLedger(Ledger):
    def __init__(self, root: Path, spool: Spool, key: SiteKey, router: Any) -> None:
        super().__init__(root, spool, key)
        self.router = router  # recorder.hosts.HostRouter

    def _remote(self, sid: str, method: str, **kwargs: Any) -> Any:
        state = self.router._state(sid)  # SessionNotFound / WorkerUnavailable (host dead)
        client = self.router.clients[state.info.host]
        try:
            r = httpx.post(f"{client.url}/rpc/{method}", json={"sid": sid, **kwargs},
                           headers={SECRET_HEADER: client.secret}, timeout=DEFAULT_TIMEOUT_S)
        except httpx.TransportError as exc:
            raise WorkerUnavailable(
                f"录像主机不可达 (recorder host {client.name} unreachable: {type(exc).__name__} {exc})"
            ) from exc
        return result_of(r, client.name)

    def _held_here(self, sid: str) -> bool:
        return super().has(sid)

    def has(self, session: str) -> bool:
        if self._held_here(session):
            return True
        return self.router.placement.owner(session) is not None

    def entries(self, session: str) -> list[ManifestEntry]:
        if self._held_here(session):
            return super().entries(session)
        try:
            lines = self._remote(session, "ledger_entries", after=0)
        except SessionNotFound:
            return []
        return [ManifestEntry.from_bytes(line.encode()) for line in lines]

    def append(self, session: str, kind: str, body: dict[str, Any], now_ns: int | None = None, *,
               while_recording: bool = False) -> ManifestEntry:
        if self._held_here(session):
            return super().append(session, kind, body, now_ns, while_recording=while_recording)
        if self.router.placement.owner(session) is None:
            # never start a second chain here for a session whose host is not known (yet)
            raise SessionNotFound(f"会话不存在 (no recorder host holds session {session}; {kind} not appended)")
        try:
            line = self._remote(session, "ledger_append", kind=kind, body=body, while_recording=while_recording)
        except SessionStopped as exc:  # as the local ledger says it: `while_recording` after the stop
            raise ManifestError(exc.detail) from exc
        return ManifestEntry.from_bytes(line.encode())
