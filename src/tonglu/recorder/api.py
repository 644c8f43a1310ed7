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

    async def start(self) -> None: ...

    async def close(self) -> None: ...
