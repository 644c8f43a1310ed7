"""Small accessors for private parts of aiortc/aioice objects (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

# Every private attribute this module reads or writes, by owner (checked by the contract test).
PRIVATE_NAMES: dict[str, tuple[str, ...]] = {
    "aioice.ice.Connection": ("_protocols", "_nominated"),
    "aiortc.rtcrtpreceiver.RTCRtpReceiver": ("_track",),
    "aiortc.rtcrtpsender.RTCRtpSender": ("_send_keyframe", "_retransmit"),
    "aiortc.rtcrtptransceiver.RTCRtpTransceiver": ("_codecs",),
    "aiortc.rtcdtlstransport.RTCDtlsTransport": ("_tx_srtp",),
    "aiortc.rtcicetransport.RTCIceTransport": ("_connection",),
}


def ice_sockets(pc: Any) -> Iterator[Any]:
    """The UDP sockets of every ICE candidate pair protocol of a peer connection's receivers."""
    for t in pc.getTransceivers():
        try:
            protocols = t.receiver.transport.transport._connection._protocols
        except AttributeError:
            continue
        for proto in protocols:
            sock = proto.transport.get_extra_info("socket") if proto.transport else None
            if sock is not None:
                yield sock


def receiver_of(pc: Any, track: Any) -> Any:
    """The RTCRtpReceiver that delivers `track` (aiortc's `track` event does not say)."""
    return next(t.receiver for t in pc.getTransceivers() if t.receiver._track is track)


def on_keyframe_request(sender: Any, fn: Callable[[], None]) -> None:
    """Call `fn` instead of the encoder's keyframe flag when the far end sends PLI/FIR (relays)."""
    sender._send_keyframe = fn


def negotiated_codecs(transceiver: Any) -> list[Any]:
    """The codecs negotiated for a transceiver, preferred first (empty before negotiation)."""
    return list(getattr(transceiver, "_codecs", None) or [])


def sender_srtp(sender: Any) -> Any:
    """The outbound SRTP session of a sender's DTLS transport (None before the handshake)."""
    return getattr(sender.transport, "_tx_srtp", None)


def nominated_pair(sender: Any) -> Any:
    """The nominated ICE candidate pair (component 1) a sender's packets leave on."""
    return sender.transport.transport._connection._nominated[1]


def on_retransmit(sender: Any, fn: Callable[[int], Any]) -> None:
    """Handle NACKed sequence numbers with `fn(seq)` (aiortc's RTCP handler calls it)."""
    sender._retransmit = fn
