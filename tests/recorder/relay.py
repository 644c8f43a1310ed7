"""A UDP relay between a test publisher and the recorder, to inject loss and outages.

The publisher is pointed at the relay by rewriting the ICE candidates of the WHIP answer. The
relay knows the network truth: which RTP packets (per SSRC, sequence number, timestamp) it
dropped and forwarded, and when it dropped everything.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any


def is_rtp(data: bytes) -> bool:
    return len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223


@dataclass
class RtpLog:
    sent: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)  # ssrc -> [(seq, ts, ns)]
    dropped: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)

    def add(self, which: dict[int, list[tuple[int, int, int]]], data: bytes) -> None:
        ssrc = int.from_bytes(data[8:12], "big")
        seq = int.from_bytes(data[2:4], "big")
        ts = int.from_bytes(data[4:8], "big")
        which.setdefault(ssrc, []).append((seq, ts, time.time_ns()))


class _Side(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay, upstream: bool) -> None:
        self.relay = relay
        self.upstream = upstream
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.forward(data, addr, self.upstream)


class Relay:
    def __init__(self, target: tuple[str, int] | None = None, loss: float = 0.0, seed: int = 7) -> None:
        self.target = target
        self.loss = loss
        self.rng = random.Random(seed)
        self.blackhole = False
        self.client: tuple[str, int] | None = None
        self.log = RtpLog()
        self.down_dropped = 0
        self.a: _Side | None = None
        self.b: _Side | None = None
        self.outages: list[tuple[int, int]] = []

    async def start(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """Returns (address the publisher talks to, address the recorder talks to)."""
        loop = asyncio.get_running_loop()
        _, self.a = await loop.create_datagram_endpoint(lambda: _Side(self, True), local_addr=("127.0.0.1", 0))
        _, self.b = await loop.create_datagram_endpoint(lambda: _Side(self, False), local_addr=("127.0.0.1", 0))
        return (
            self.a.transport.get_extra_info("sockname")[:2],
            self.b.transport.get_extra_info("sockname")[:2],
        )

    def forward(self, data: bytes, addr: tuple[str, int], upstream: bool) -> None:
        assert self.a is not None and self.b is not None
        if upstream:
            self.client = addr
            if self.target is None:
                return
            if self.blackhole:
                if is_rtp(data):
                    self.log.add(self.log.dropped, data)
                return
            if is_rtp(data) and self.loss and self.rng.random() < self.loss:
                self.log.add(self.log.dropped, data)
                return
            if is_rtp(data):
                self.log.add(self.log.sent, data)
            self.b.transport.sendto(data, self.target)
        else:
            if self.blackhole or self.client is None:
                self.down_dropped += 1
                return
            self.a.transport.sendto(data, self.client)

    async def outage(self, seconds: float) -> tuple[int, int]:
        self.blackhole = True
        start = time.time_ns()
        await asyncio.sleep(seconds)
        self.blackhole = False
        end = time.time_ns()
        self.outages.append((start, end))
        return start, end

    def close(self) -> None:
        for side in (self.a, self.b):
            if side is not None and side.transport is not None:
                side.transport.close()


_CAND = re.compile(r"^a=candidate:(\S+) (\d) (\S+) (\d+) (\S+) (\d+) typ host.*$")


def server_address(answer: str) -> tuple[str, int]:
    for line in answer.split("\r\n"):
        m = _CAND.match(line)
        if m and m.group(2) == "1" and m.group(5) == "127.0.0.1":
            return m.group(5), int(m.group(6))
    for line in answer.split("\r\n"):
        m = _CAND.match(line)
        if m and m.group(2) == "1":
            return m.group(5), int(m.group(6))
    raise AssertionError("no host candidate in the answer")


def via_relay(answer: str, relay_addr: tuple[str, int]) -> str:
    """Replace an offer's or answer's candidates with one host candidate at the relay, so that
    neither side can find a direct path around it."""
    out = []
    done = False
    for line in answer.split("\r\n"):
        if line.startswith("a=candidate:"):
            if not done:
                out.append(f"a=candidate:1 1 udp 2130706431 {relay_addr[0]} {relay_addr[1]} typ host")
                done = True
            continue
        if line.startswith("a=end-of-candidates"):
            done = False
        out.append(line)
    return "\r\n".join(out)
