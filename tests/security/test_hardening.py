"""Smaller findings (10), each attacked the way it was found: slow clients, deep JSON, session
creation audit, invitation links, API tokens, reserved user names, /docs assets, CSP."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI

from tests.security.conftest import serve
from tonglu.config import Settings

# -- slow clients (slowloris) -------------------------------------------------------------------
READ_TIMEOUT_S = 1.5


def _held_s(base: str, first: bytes, dribble: bytes, limit_s: float = 8.0) -> tuple[float, bytes]:
    """Send `first`, then `dribble` every 0.3 s; return how long the server kept the connection
    open (capped at `limit_s`) and what it answered."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    start = time.monotonic()
    got = b""
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(0.3)
        if first:
            s.sendall(first)
        while time.monotonic() - start < limit_s:
            try:
                data = s.recv(4096)
                if not data:
                    break
                got += data
                continue
            except TimeoutError:
                pass
            except OSError:
                break
            try:
                if dribble:
                    s.sendall(dribble)
            except OSError:
                break
    return time.monotonic() - start, got


def test_slow_clients_are_cut(app: FastAPI, web_settings: Settings) -> None:
    with serve(app, web_settings, http_read_timeout_s=READ_TIMEOUT_S, http_keepalive_s=1) as base:
        # a request line, then one header line every 0.3 s, forever
        held, got = _held_s(base, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n")
        assert held < READ_TIMEOUT_S + 3, f"slow headers held the connection {held:.1f} s"
        assert got.startswith(b"HTTP/1.1 408"), got
        # a connection that never says anything
        held, _ = _held_s(base, b"", b"")
        assert held < READ_TIMEOUT_S + 3, f"a silent connection was held {held:.1f} s"
        # complete headers, then a body of 200 bytes one byte at a time
        head = (b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 200\r\n\r\n{")
        held, _ = _held_s(base, head, b" ")
        assert held < READ_TIMEOUT_S + 3, f"a slow body held the connection {held:.1f} s"
        # an honest client on a kept-alive connection is served, twice
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.get("/healthz").status_code in (200, 503)
            time.sleep(0.5)
            assert c.get("/healthz").status_code in (200, 503)
