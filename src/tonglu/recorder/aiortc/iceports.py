"""ICE host candidates on a configured address and UDP port range (aioice has no option for it).

    ports = IcePorts.from_settings(settings)       # TONGLU_ICE_HOST, TONGLU_ICE_PORT_MIN/MAX
    await pc.setRemoteDescription(offer)           # the ICE transports exist now
    bind_ice(pc, ports)                            # before setLocalDescription gathers
    await pc.setLocalDescription(await pc.createAnswer())

aioice gathers host candidates in `Connection.get_component_candidates(component, addresses)`,
binding each address with port 0. `bind_ice` replaces that method on each of the peer
connection's aioice `Connection`s (reached through `RTCIceTransport._connection`) with one that
binds every host candidate socket within [port_min, port_max] (the next free port after a
rotating cursor, so several recorder workers share a range) on `host` when one is given; STUN and
TURN candidates are still gathered by aioice's own method (called with no host addresses:
server-reflexive candidates are redundant once the recorder announces its reachable address).
The new host candidate is built exactly as aioice builds it and appended to `Connection._protocols`.
`tests/recorder/test_seam_contract.py` names the private attributes; `test_ice_ports.py` shows a
real aiortc publisher connecting to candidates in the range.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import threading
import types
from dataclasses import dataclass
from typing import Any

from aioice import turn
from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import StunProtocol

PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "aioice.ice.Connection": ("_protocols",),
    "aiortc.rtcicetransport.RTCIceTransport": ("_connection",),
}
_MARK = "_tonglu_ice_ports"
_cursor = itertools.count()
_lock = threading.Lock()


@dataclass(frozen=True)
class IcePorts:
    host: str | None = None
    port_min: int | None = None
    port_max: int | None = None

    @property
    def active(self) -> bool:
        return self.host is not None or self.port_min is not None

    @classmethod
    def from_settings(cls, settings: Any) -> IcePorts:
        return cls(
            getattr(settings, "ice_host", None), getattr(settings, "ice_port_min", None),
            getattr(settings, "ice_port_max", None),
        )  # fmt: skip


def bind_socket_in_range(address: str, port_min: int, port_max: int) -> socket.socket:
    """A non-blocking UDP socket bound to `address` on a free port of the range; OSError when none."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    size = port_max - port_min + 1
    with _lock:
        start = next(_cursor) % size
    for i in range(size):
        port = port_min + (start + i) % size
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            continue
        sock.setblocking(False)
        return sock
    raise OSError(f"no free UDP port in {port_min}-{port_max} on {address}")


def bind_ice(pc: Any, ports: IcePorts) -> None:
    """Make every ICE connection of `pc` gather its host candidates per `ports` (no-op if inactive)."""
    if not ports.active:
        return
    for t in pc.getTransceivers():
        transport = getattr(t.receiver, "transport", None) or getattr(t.sender, "transport", None)
        conn = getattr(getattr(transport, "transport", None), "_connection", None)
        if conn is None or getattr(conn, _MARK, None) is not None:
            continue
        original = conn.get_component_candidates
        setattr(conn, _MARK, ports)
        conn.get_component_candidates = types.MethodType(_make_gatherer(original, ports), conn)


def _make_gatherer(original: Any, ports: IcePorts) -> Any:
    async def get_component_candidates(
        conn: Any, component: int, addresses: list[str], timeout: int = 5  # noqa: ASYNC109 - aioice signature
    ) -> list[Candidate]:
        if ports.host is not None:
            addresses = [ports.host]
        if ports.port_min is None or ports.port_max is None:
            result: list[Candidate] = await original(component, addresses, timeout)
            return result
        loop = asyncio.get_running_loop()
        candidates: list[Candidate] = []
        for address in addresses:
            try:
                sock = bind_socket_in_range(address, ports.port_min, ports.port_max)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, turn.UDP_SOCKET_BUFFER_SIZE)
                transport, protocol = await loop.create_datagram_endpoint(lambda: StunProtocol(conn), sock=sock)
            except OSError:
                continue  # as aioice does for an address it cannot bind
            host, port = transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = Candidate(
                foundation=candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            conn._protocols.append(protocol)
            candidates.append(protocol.local_candidate)
        candidates += await original(component, [], timeout)  # STUN/TURN, unchanged
        return candidates

    return get_component_candidates
