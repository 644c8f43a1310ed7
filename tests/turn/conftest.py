"""A real TURN server (coturn from Debian, installed by `scripts/setup --test`) on loopback, with
the TURN REST shared secret (`use-auth-secret`), as a site would run it beside Tonglu."""

from __future__ import annotations

import secrets
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser.conftest import chromium  # noqa: F401
from tests.live.conftest import live_server  # noqa: F401


@dataclass(frozen=True)
class Turn:
    url: str
    secret: str
    log: Path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stun_answers(port: int) -> bool:
    """A STUN binding request (RFC 5389) gets a success response."""
    txn = secrets.token_bytes(12)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(struct.pack("!HHI", 0x0001, 0, 0x2112A442) + txn, ("127.0.0.1", port))
        try:
            data, _ = s.recvfrom(2048)
        except OSError:
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == txn


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Turn]:
    binary = shutil.which("turnserver")
    assert binary, "coturn's turnserver is missing: run scripts/setup --test"
    port, secret = _free_udp_port(), secrets.token_urlsafe(24)
    relay_min = 49152 + (port % 1000) * 10
    log = tmp_path / "turnserver.log"
    proc = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", f"--listening-port={port}", "--relay-ip=127.0.0.1",
         f"--min-port={relay_min}", f"--max-port={relay_min + 9}", "--use-auth-secret",
         f"--static-auth-secret={secret}", "--realm=tonglu.test", "--allow-loopback-peers", "--no-tls",
         "--no-dtls", "--no-cli", "--simple-log", f"--log-file={log}", f"--pidfile={tmp_path / 'turn.pid'}",
         f"--db={tmp_path / 'turndb'}", "--no-software-attribute"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while not _stun_answers(port):
            assert proc.poll() is None, f"turnserver exited: {log.read_text(errors='replace')[-2000:]}"
            assert time.monotonic() < deadline, "turnserver did not answer a STUN binding request in 15 s"
        yield Turn(f"turn:127.0.0.1:{port}?transport=udp", secret, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
