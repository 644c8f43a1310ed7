"""The recorder interface the web routes call. `LocalRecorder` (in-process) and `RecorderRouter`
(routes each session to a worker process, possibly on another machine, over HTTP) implement it.
"""

from __future__ import annotations

from typing import Any, Protocol


class RecorderAPI(Protocol):
    async def create_session(self, request: dict[str, Any], created_by: str) -> tuple[str, dict[str, str]]:
        """Write `session_start`, issue one WHIP token per source; returns (id, {source: token})."""

    async def list_sessions(self) -> list[dict[str, Any]]: ...

    async def status(self, sid: str) -> dict[str, Any]: ...

    async def publish(self, sid: str, source: str, token: str | None, offer: str) -> dict[str, Any]:
        """WHIP POST: returns {"peer_id", "sdp" (answer), "etag"}."""

    async def unpublish(self, sid: str, source: str, peer_id: str, token: str | None) -> None: ...

    async def stop(self, sid: str, stopped_by: str, reason: str = "") -> dict[str, Any]:
        """Returns {"id", "state", "digest", "tree_size", "root", "stopped_ns"}."""

    # -- live viewing (WHEP) and remote participants ---------------------------------------------
    async def watch(
        self, sid: str, source: str, offer: str, viewer: dict[str, str], on_end: Any = None
    ) -> dict[str, Any]:
        """WHEP POST: returns {"viewer_id", "sdp" (answer), "etag"}; `on_end(info)` when it ends."""

    async def unwatch(self, sid: str, source: str, viewer_id: str, user: str | None = None) -> dict[str, Any] | None:
        """WHEP DELETE: the ended viewer (None when a worker process ended it)."""

    async def monitoring(self, sid: str) -> dict[str, Any]:
        """Who watches the session live: shown in the room."""

    async def check_source_token(self, sid: str, source: str, token: str | None) -> None:
        """Raise the recorder's 401/403/404 errors unless `token` publishes `source`."""

    async def join_participant(
        self, sid: str, source: str, name: str, role: str, expires_ns: int | None = None
    ) -> str:
        """Adds `source` (remote-<id>) to the running session; returns its WHIP token (valid until
        `expires_ns`, the invitation's expiry)."""

    async def cut_off_participant(self, sid: str, source: str, reason: str, by: str) -> dict[str, Any]:
        """An invitation revoked or expired: its source token, peer and viewers end now."""

    async def end_viewers(self, user: str, reason: str) -> int:
        """A disabled account or changed role: that user's live viewers end; returns how many."""

    async def leave_participant(self, sid: str, source: str, by: str) -> None: ...

    async def watch_party(
        self, sid: str, offer: str, viewer: dict[str, Any], on_end: Any = None
    ) -> dict[str, Any]:
        """A party viewer (room display or remote participant): every other party's sources in one
        peer; returns {"viewer_id", "sdp", "etag", "sources"}."""

    async def consultation(
        self, sid: str, action: str, by: str, lawyer: str | None = None, defendant: str | None = None
    ) -> dict[str, Any]:
        """Start or end a lawyer consultation (recorder.consultation); returns its ledger body."""

    # -- the session's chain where it lives (recorder.hostledger: the web tier on another host) -------
    async def ledger_entries(self, sid: str, after: int = 0) -> list[str]:
        """The session's manifest entries from seq `after` on, as their canonical lines."""

    async def ledger_append(self, sid: str, kind: str, body: dict[str, Any], while_recording: bool = False) -> str:
        """Append one annotation entry (markers, notes, explanations, ...); returns its line."""

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None: ...

    async def close(self) -> None: ...
