"""A synchronous receive path for SRTP media packets (private aiortc 1.16.0 / aioice / asyncio attributes, pinned).

aiortc takes every datagram through aioice's STUN parse (an exception for anything not STUN), an
`asyncio.Queue`, a task step of the DTLS transport's `__run` loop and three coroutine layers before
`RTCRtpReceiver._handle_rtp_packet` sees it, and asyncio's datagram transport reads one datagram per
readiness event. On the recorder's event loop, which receives ~170 packets per second per 720p
camera, that hand-off cost about as much as SRTP itself.

`install(pc)` hooks the ICE connection of each of the peer connection's DTLS transports:
- its sockets read up to `READ_BURST` datagrams per readiness event;
- an SRTP *RTP* datagram that arrives once the SRTP keys exist is unprotected, parsed (`parse_rtp`:
  header extensions are skipped, nothing here reads them), routed with aiortc's own router and
  handed to the receiver's synchronous handler (`seam.SYNC_HANDLER`, set by `seam.attach`) straight
  from the socket callback.
Everything else (STUN, DTLS, SRTCP, RTP before the handshake, receivers without a synchronous
handler) takes aiortc's path unchanged. `tests/recorder/test_seam_contract.py` pins the attributes
used, checks that no RTP packet took the queue, and that `parse_rtp` agrees with aiortc's parser.
Measured (`tonglu bench recorder`, 16 x 720p30 VP8, 2-core machine, same command): 3.13-3.26 % of
a core per stream before, 2.65 % with the synchronous path, 2.24 % with lean parsing + burst reads;
bursts of 8 (about one video frame) vs 32: 40 streams held either way, loop lag p99 34 vs 40 ms.
"""

from __future__ import annotations

import logging
import struct
from asyncio import selector_events
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import clock
from aiortc.rtp import HeaderExtensions, RtpPacket
from pylibsrtp._binding import ffi as _ffi
from pylibsrtp._binding import lib as _lib

from tonglu.recorder.aiortc.seam import SYNC_HANDLER
from tonglu.recorder.context import spawn

log = logging.getLogger(__name__)

_MARK = "_tonglu_fastpath"
_HEADER = struct.Struct("!BBHLL")
_NO_EXTENSIONS = HeaderExtensions()  # shared, never written: the recorder reads no header extension
_DATAGRAM_TRANSPORT: type = getattr(selector_events, "_SelectorDatagramTransport")  # noqa: B009 (private)
READ_BURST = 8  # datagrams read per readiness event of a socket (asyncio reads one); ~1 video frame
# Largest UDP payload is 65,507 bytes (IPv4) / 65,527 (IPv6): nothing is ever cut. asyncio asks for
# 256 KiB per datagram, which glibc serves from mmap or a trimmed heap top in some heap states
# (a micro-benchmark here: 18-28 us per recvfrom in those states, 2.5-3.5 us with 64 KiB).
RECV_SIZE = 65536
_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
_SRTP_ERRORS: list[str] = list(getattr(pylibsrtp, "ERRORS", []))  # libsrtp status -> message
_RX_PACKETS = "_RTCDtlsTransport__rx_packets"


def install(pc: Any) -> int:
    """Hook every DTLS transport of `pc` (idempotent). Call once the answer is set. Returns how many."""
    n = 0
    seen: set[int] = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None or id(dtls) in seen:
            continue
        seen.add(id(dtls))
        n += _install(dtls)
    return n


def installed(pc: Any) -> bool:
    return any(
        getattr(getattr(t.receiver.transport.transport, "_connection", None), _MARK, False)
        for t in pc.getTransceivers()
        if t.receiver.transport is not None
    )


def _install(dtls: Any) -> int:
    conn = dtls.transport._connection
    if getattr(conn, _MARK, False):
        return 0
    queued: Callable[[bytes, int], None] = conn.data_received
    router = dtls._rtp_router
    keys: list[Any] = [None, None]  # (the pylibsrtp session, its `direct_unprotect`)

    def data_received(data: bytes, component: int) -> None:
        srtp = dtls._rx_srtp
        # SRTP RTP: first byte 128-191 (RFC 7983), second byte not an RTCP packet type (192-208)
        if srtp is None or len(data) < 12 or not 127 < data[0] < 192 or 191 < data[1] < 209:
            queued(data, component)
            return
        if keys[0] is not srtp:
            keys[0], keys[1] = srtp, direct_unprotect(srtp)
        try:
            packet = parse_rtp(keys[1](data))
        except (pylibsrtp.Error, ValueError):
            return  # as aiortc: a packet that fails authentication or parsing is dropped
        setattr(dtls, _RX_BYTES, getattr(dtls, _RX_BYTES) + len(data))
        setattr(dtls, _RX_PACKETS, getattr(dtls, _RX_PACKETS) + 1)
        receiver = router.route_rtp(packet)
        if receiver is None:
            return
        handler = getattr(receiver, SYNC_HANDLER, None)
        if handler is None:
            spawn(receiver._handle_rtp_packet(packet, arrival_time_ms=clock.current_ms()))
            return
        try:
            handler(packet)
        except Exception:  # a recording bug must not take the socket down with it
            log.exception("receive handler failed for ssrc %d seq %d", packet.ssrc, packet.sequence_number)

    conn.data_received = data_received
    for protocol in conn._protocols:
        _skip_stun_parse(protocol, data_received)
        _read_bursts(protocol)
    setattr(conn, _MARK, True)
    return 1


def _skip_stun_parse(protocol: Any, data_received: Callable[[bytes, int], None]) -> None:
    """RTP/RTCP (first byte 128-191) can never be STUN (first two bits zero): skip aioice's parse attempt."""
    original = protocol.datagram_received
    candidate = getattr(protocol, "local_candidate", None)
    if candidate is None:
        return
    component = candidate.component

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if data and 127 < data[0] < 192:
            data_received(data, component)
        else:
            original(data, addr)

    protocol.datagram_received = datagram_received


def _read_bursts(protocol: Any) -> None:
    """Read up to READ_BURST queued datagrams per readiness event instead of one (CPython's selector
    transports only: one epoll round and loop iteration per packet otherwise)."""
    transport: Any = getattr(protocol, "transport", None)
    selector_datagram = isinstance(transport, _DATAGRAM_TRANSPORT)  # (a variable: keeps `Any` for mypy)
    if not selector_datagram:
        return
    loop: Any = transport._loop
    sock = transport._sock

    def read_ready() -> None:
        for _ in range(READ_BURST):
            if transport._conn_lost:
                return
            try:
                data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                transport._protocol.error_received(exc)
                return
            transport._protocol.datagram_received(data, addr)

    loop._add_reader(transport._sock_fd, read_ready)


def direct_unprotect(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """`session.unprotect` without its per-call wrapper (a type check, a cffi allocation, an error
    lookup): libsrtp's own call on the session's buffer. 4.7 us vs 6.7 us per 1.2 kB packet here,
    on the loop's every packet. Same result, same `pylibsrtp.Error` when authentication fails
    (pylibsrtp 1.0.0 pinned; `tests/recorder/test_seam_contract.py` compares the two)."""
    srtp = session._srtp[0]
    cdata = session._cdata
    buf = session._buffer
    cap = len(cdata)
    length = _ffi.new("int *")
    unprotect = _lib.srtp_unprotect
    ok = _lib.srtp_err_status_ok

    def call(data: bytes) -> bytes:
        n = len(data)
        if n > cap:
            raise ValueError("packet is too long")
        buf[0:n] = data
        length[0] = n
        rc = unprotect(srtp, cdata, length)
        if rc != ok:
            raise pylibsrtp.Error(_SRTP_ERRORS[rc] if 0 <= rc < len(_SRTP_ERRORS) else f"libsrtp error {rc}")
        out: bytes = buf[0 : length[0]]
        return out

    return call


def parse_rtp(data: bytes) -> RtpPacket:
    """`RtpPacket.parse` without decoding header extensions (same checks, same fields otherwise).

    The recorder, its router (SSRC and payload type) and its receive statistics read none; the
    extension block is skipped, and `extensions` is an empty shared `HeaderExtensions`."""
    if len(data) < 12:
        raise ValueError("RTP packet length is less than 12 bytes")
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("RTP packet has invalid version")
    cc = first & 0x0F
    pos = 12 + 4 * cc
    end = len(data)
    if end < pos:
        raise ValueError("RTP packet has truncated CSRC")
    csrc = list(struct.unpack_from(f"!{cc}L", data, 12)) if cc else []
    if first & 0x10:
        if end < pos + 4:
            raise ValueError("RTP packet has truncated extension profile / length")
        pos += 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
        if end < pos:
            raise ValueError("RTP packet has truncated extension value")
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if not padding or padding > end - pos:
            raise ValueError("RTP packet padding length is invalid")
        end -= padding
    packet = RtpPacket.__new__(RtpPacket)
    packet.version = 2
    packet.marker = second >> 7
    packet.payload_type = second & 0x7F
    packet.sequence_number = seq
    packet.timestamp = timestamp
    packet.ssrc = ssrc
    packet.csrc = csrc
    packet.extensions = _NO_EXTENSIONS
    packet.payload = data[pos:end]
    packet.padding_size = padding
    return packet
