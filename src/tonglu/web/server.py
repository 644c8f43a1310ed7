"""How the web app is served: the uvicorn settings `tonglu up` uses (and the tests, so they cover them).

- Proxy headers (`X-Forwarded-For`, `X-Forwarded-Proto`) are believed only from the addresses in
  `TONGLU_TRUSTED_PROXIES` (none by default). uvicorn's own default believes them from loopback,
  which let anyone on the host (or anything that forwards connections to it) choose the address
  that login throttling and the audit trail record.
- Slow clients: uvicorn closes idle keep-alive connections but never a connection that sends
  nothing, or that sends its request line and headers (or its body) a byte at a time (slowloris).
  `ReadTimeoutH11Protocol` gives each request `http_read_timeout_s` for its headers and again for
  its body, counted from its first byte (from the accept for the first request); past that the
  connection is cut (408 when no response has started).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from tonglu.config import Settings

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: 41\r\n\r\nrequest not received in time (slow client)"
)


class ReadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for reading each request (headers, then body)."""

    read_timeout_s: float = 20.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None
        self._reading: Any = None  # the h11 state the running deadline was armed for

    def _arm(self, state: Any) -> None:
        self._disarm()
        self._reading = state
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
        self._reading = None

    def _track(self) -> None:
        """Arm a fresh deadline when the client enters a reading phase; drop it when it leaves."""
        state = self.conn.their_state
        if state in (h11.IDLE, h11.SEND_BODY):
            if self._reading is not state:
                self._arm(state)
        else:
            self._disarm()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(h11.IDLE)  # a connection that never sends a request is cut too

    def data_received(self, data: bytes) -> None:
        if self._read_timer is None and self.conn.their_state is h11.IDLE:
            self._arm(h11.IDLE)  # first bytes of a next request on a kept-alive connection
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self._read_timer is not None:
            self._track()

    def on_response_complete(self) -> None:
        self._disarm()  # between requests the keep-alive timeout applies
        super().on_response_complete()
        if self.conn.their_state is h11.SEND_BODY:
            self._track()  # the response went out while the body still dribbles in

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._disarm()  # the connection now belongs to the websocket protocol
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        self.logger.warning("closing a connection from %s: request not received within %.0f s",
                            self.client[0] if self.client else "?", self.read_timeout_s)
        if self.cycle is None or self.cycle.response_complete:
            # No response is under way (headers still arriving): say why before closing.
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def protocol_class(read_timeout_s: float) -> type[ReadTimeoutH11Protocol]:
    return type("ReadTimeoutH11Protocol", (ReadTimeoutH11Protocol,), {"read_timeout_s": read_timeout_s})


def uvicorn_config(app: Any, settings: Settings, *, port: int | None = None, **overrides: Any) -> uvicorn.Config:
    """The uvicorn settings for the web app (`tonglu up`); `port=0` picks a free port (tests)."""
    trusted = list(settings.trusted_proxies)
    options: dict[str, Any] = {
        "host": settings.http_host,
        "port": settings.http_port if port is None else port,
        "log_level": "warning",
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted,
        "server_header": False,
        "timeout_keep_alive": max(1, int(settings.http_keepalive_s)),
        "http": protocol_class(settings.http_read_timeout_s),
        "ws": "none",
    }
    from tonglu.web.tls import certificate_paths

    tls = certificate_paths(settings)
    if tls is not None:
        options.update(ssl_certfile=str(tls[0]), ssl_keyfile=str(tls[1]))
    options.update(overrides)
    return uvicorn.Config(app, **options)
