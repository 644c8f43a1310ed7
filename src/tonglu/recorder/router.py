"""`RecorderRouter`: sends every operation on a session to the one recorder that owns it.

Routing rule: `owner = sha256(session id) mod N` over the configured backends. All sources of a
session go to the same worker, so one process writes all of a session's media and manifest
entries (lip sync across a source's tracks, one ledger writer, and a stop that can seal every
open segment before the final checkpoint). Backends are `LocalRecorder`s (in-process) or
`HttpRecorder`s (a `tonglu recorder worker` reached over HTTP, on this machine or another one).
Creating and listing sessions need no media process: any backend's store answers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from tonglu.config import Settings
from tonglu.recorder.api import RecorderAPI


def owner_index(sid: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(sid.encode()).digest()[:8], "big") % n


class RecorderRouter:
    def __init__(self, backends: Sequence[RecorderAPI], creator: RecorderAPI | None = None) -> None:
        if not backends:
            raise ValueError("a recorder router needs at least one backend")
        self.backends = list(backends)
        self.creator = creator or self.backends[0]

    def backend(self, sid: str) -> RecorderAPI:
        return self.backends[owner_index(sid, len(self.backends))]

    async def create_session(self, request: dict[str, Any], created_by: str) -> tuple[str, dict[str, str]]:
        return await self.creator.create_session(request, created_by)

    async def list_sessions(self) -> list[dict[str, Any]]:
        return await self.creator.list_sessions()

    async def status(self, sid: str) -> dict[str, Any]:
        return await self.backend(sid).status(sid)

    async def publish(self, sid: str, source: str, token: str | None, offer: str) -> dict[str, Any]:
        return await self.backend(sid).publish(sid, source, token, offer)

    async def unpublish(self, sid: str, source: str, peer_id: str, token: str | None) -> None:
        await self.backend(sid).unpublish(sid, source, peer_id, token)

    async def stop(self, sid: str, stopped_by: str, reason: str = "") -> dict[str, Any]:
        return await self.backend(sid).stop(sid, stopped_by, reason)

    # -- live viewing (WHEP) and remote participants: on the recorder that owns the session, in this
    # process (LocalRecorder) or a worker (HttpRecorder, forwarded over the internal API)
    async def watch(
        self, sid: str, source: str, offer: str, viewer: dict[str, str], on_end: Any = None
    ) -> dict[str, Any]:
        """WHEP POST: returns {"viewer_id", "sdp" (answer), "etag"}; `on_end(info)` when it ends."""
        return await self.backend(sid).watch(sid, source, offer, viewer, on_end)

    async def unwatch(self, sid: str, source: str, viewer_id: str, user: str | None = None) -> dict[str, Any] | None:
        """WHEP DELETE: the ended viewer (None from a worker backend)."""
        return await self.backend(sid).unwatch(sid, source, viewer_id, user)

    async def monitoring(self, sid: str) -> dict[str, Any]:
        return await self.backend(sid).monitoring(sid)

    async def check_source_token(self, sid: str, source: str, token: str | None) -> None:
        await self.backend(sid).check_source_token(sid, source, token)

    async def join_participant(
        self, sid: str, source: str, name: str, role: str, expires_ns: int | None = None
    ) -> str:
        """Adds `source` (remote-<id>) to the running session; returns its WHIP token (which stops
        working at `expires_ns`, the invitation's expiry, when the participant is cut off)."""
        return await self.backend(sid).join_participant(sid, source, name, role, expires_ns)

    async def cut_off_participant(self, sid: str, source: str, reason: str, by: str) -> dict[str, Any]:
        """An invitation revoked: its source token, peer and viewers end now (on the owning recorder)."""
        return await self.backend(sid).cut_off_participant(sid, source, reason, by)

    async def end_viewers(self, user: str, reason: str) -> int:
        """A disabled account: its live viewers end on every recorder."""
        ended = 0
        for b in self.backends:
            ended += int(await b.end_viewers(user, reason))
        return ended

    async def leave_participant(self, sid: str, source: str, by: str) -> None:
        await self.backend(sid).leave_participant(sid, source, by)

    async def watch_party(
        self, sid: str, offer: str, viewer: dict[str, Any], on_end: Any = None
    ) -> dict[str, Any]:
        return await self.backend(sid).watch_party(sid, offer, viewer, on_end)

    async def consultation(
        self, sid: str, action: str, by: str, lawyer: str | None = None, defendant: str | None = None
    ) -> dict[str, Any]:
        return await self.backend(sid).consultation(sid, action, by, lawyer, defendant)

    async def ledger_entries(self, sid: str, after: int = 0) -> list[str]:
        result: list[str] = await self.backend(sid).ledger_entries(sid, after)
        return result

    async def ledger_append(self, sid: str, kind: str, body: dict[str, Any], while_recording: bool = False) -> str:
        result: str = await self.backend(sid).ledger_append(sid, kind, body, while_recording)
        return result

    async def start(self) -> None:
        for b in self.backends:
            await b.start()

    async def close(self) -> None:
        for b in self.backends:
            await b.close()


def build_router(
    settings: Settings, services: Any, worker_urls: Sequence[str] | None = None, secret: str | None = None
) -> RecorderRouter:
    """For `tonglu up`: with `worker_urls` (from `start_workers(settings).urls`) route to those
    worker processes; without, record in this process with one `LocalRecorder`."""
    if worker_urls:
        from tonglu.recorder.remote import HttpRecorder
        from tonglu.recorder.store import SessionStore

        if not secret:
            raise ValueError("worker_urls need the workers' shared secret")
        # create/list answered here from the shared ledger and index DB; media calls go to the owner
        store = SessionStore(services.ledger, settings.db_url)
        return RecorderRouter(
            [HttpRecorder(url, secret, store=store, name=f"{i}@{url}") for i, url in enumerate(worker_urls)]
        )
    from tonglu.recorder.local import LocalRecorder

    return RecorderRouter([LocalRecorder.from_services(services)])
