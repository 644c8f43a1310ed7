"""A synchronous receive path for SRTP media packets (private aiortc 1.16.0 / aioice attributes, pinned).

aiortc takes every datagram through aioice's STUN parse (an exception for anything not STUN), an
`asyncio.Queue`, a task step of the DTLS transport's `__run` loop and three coroutine layers before
`RTCRtpReceiver._handle_rtp_packet` sees it. On the recorder's event loop, which receives ~170
packets per second per 720p camera, that hand-off cost about as much as SRTP itself.

`install(pc)` hooks the ICE connection of each of the peer connection's DTLS transports: an SRTP
*RTP* datagram that arrives once the SRTP keys exist is unprotected, parsed, routed with aiortc's own
router and handed to the receiver's synchronous handler (`seam.SYNC_HANDLER`, set by `seam.attach`)
straight from the socket callback. Everything else (STUN, DTLS, SRTCP, RTP before the handshake,
receivers without a synchronous handler) takes aiortc's path unchanged. What a receiver sees is the
same `RtpPacket`, in arrival order; `tests/recorder/test_seam_contract.py` pins the attributes used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pylibsrtp
from aiortc import clock
from aiortc.rtp import RtpPacket

from recorder.context import spawn
from recorder.seam import SYNC_HANDLER

log = logging.getLogger(__name__)

_MARK = "_tonglu_fastpath"
_RX_BYTES = "_RTCDtlsTransport__rx_bytes"
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
    extensions = dtls._rtp_header_extensions_map

    def data_received(data: bytes, component: int) -> None:
        srtp = dtls._rx_srtp
        # SRTP RTP: first byte 128-191 (RFC 7983), second byte not an RTCP packet type (192-208)
        if srtp is None or len(data) < 12 or not 127 < data[0] < 192 or 191 < data[1] < 209:
            queued(data, component)
            return
        try:
            packet = RtpPacket.parse(srtp.unprotect(data), extensions)
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
