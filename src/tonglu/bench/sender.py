"""The benchmark's lean RTP sender: a looping pre-encoded clip sent with SRTP over a connected aiortc peer.

aiortc negotiates (ICE, DTLS, SRTP keys, RTCP reports) as for any peer; only the media path is
replaced. aiortc's own send loop costs about as much CPU per stream as the recorder's receive
path (an asyncio task step, an `RtpPacket` and header-extension serialisation, three coroutine
layers per packet), so one load core could not feed one recorder core. Here the clip is
packetised once per process (`ClipPackets`), and per packet only the 12-byte header is written
into a template, SRTP-protected (C) and sent with the selected ICE pair's datagram transport.

What a real sender does is still done: a NACK is answered with an RTX retransmission from a
history of the last packets, a PLI restarts the clip at its keyframe, RTCP sender reports carry
the real NTP/RTP pairs and counts (aiortc's RTCP task reads them), frames leave at the clip's
frame rate on an absolute schedule, and each sender has its own phase so that streams do not
arrive in lock step.
"""

from __future__ import annotations

import asyncio
import fractions
import random
import struct
from dataclasses import dataclass
from typing import Any

from aiortc import clock

from tonglu.bench.media import Clip
from tonglu.recorder.aiortc.internals import negotiated_codecs, nominated_pair, on_retransmit, sender_srtp

VIDEO_CLOCK = 90000
HISTORY = 512  # packets kept for NACK (about 2.5 s at 1.5 Mbit/s)
_HEADER = struct.Struct("!BHI")  # marker|pt, sequence, timestamp at offset 1
_U16 = struct.Struct("!H")


@dataclass(frozen=True)
class ClipPackets:
    """RTP payloads of each clip frame, packetised once with aiortc's own packetiser."""

    fps: int
    frames: list[list[bytes]]

    @classmethod
    def of(cls, clip: Clip) -> ClipPackets:
        import av
        from aiortc.codecs import get_encoder
        from aiortc.rtcrtpparameters import RTCRtpCodecParameters

        mime = {"vp8": "video/VP8", "h264": "video/H264"}[clip.codec]
        encoder: Any = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=VIDEO_CLOCK, payloadType=96))
        frames = []
        for i, (data, key) in enumerate(clip.packets):
            p = av.Packet(data)
            p.pts = p.dts = i
            p.time_base = fractions.Fraction(1, clip.fps)
            p.is_keyframe = key
            frames.append(list(encoder.pack(p)[0]))
        return cls(clip.fps, frames)


class LeanSender:
    """Sends `packets` on `sender`'s RTP stream until `stop()`; counts frames into `counter[0]`."""

    def __init__(
        self, sender: Any, payload_type: int, packets: ClipPackets, phase_s: float, counter: list[int]
    ) -> None:
        from aiortc.rtp import RtpPacket

        self._sender = sender
        self._packets = packets
        self._counter = counter
        self._phase = phase_s
        self._pt = payload_type
        self._rtx_pt: int | None = getattr(sender, "_RTCRtpSender__rtx_payload_type", None)
        ext_map = sender._RTCRtpSender__rtp_header_extensions_map
        mid = sender._RTCRtpSender__mid

        def template(pt: int, ssrc: int) -> bytearray:  # seq, timestamp and marker are patched per packet
            tpl = RtpPacket(payload_type=pt, sequence_number=0, timestamp=0, ssrc=ssrc)
            tpl.extensions.mid = mid
            tpl.extensions.abs_send_time = 0
            return bytearray(tpl.serialize(ext_map))

        self._template = template(payload_type, sender._ssrc)
        self._rtx_template = template(self._rtx_pt or 0, sender._rtx_ssrc)
        self._seq = self._rtx_seq = self._ts0 = 0
        self._n = 0  # frames sent
        self._pos = 0  # next clip frame
        self._history: list[tuple[int, int, int, bytes] | None] = [None] * HISTORY  # seq, ts, marker, payload
        self._handle: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._srtp = sender_srtp(sender)
        pair = nominated_pair(sender)
        self._udp = pair.protocol.transport
        self._addr = pair.remote_addr
        self.retransmitted = 0
        on_retransmit(sender, self._retransmit)  # aiortc's NACK handler calls this

    @classmethod
    async def for_transceiver(
        cls, transceiver: Any, packets: ClipPackets, phase_s: float, counter: list[int], timeout_s: float = 10.0
    ) -> LeanSender:
        """The sender of a connected transceiver, once DTLS has given it SRTP keys and the answer a codec."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while sender_srtp(transceiver.sender) is None or not negotiated_codecs(transceiver):
            if loop.time() > deadline:
                raise TimeoutError("sender has no SRTP keys or codec yet")
            await asyncio.sleep(0.05)
        payload_type = int(negotiated_codecs(transceiver)[0].payloadType)
        return cls(transceiver.sender, payload_type, packets, phase_s, counter)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._seq, self._rtx_seq, self._ts0 = random.getrandbits(16), random.getrandbits(16), random.getrandbits(32)
        self._start = loop.time() + self._phase
        self._handle = loop.call_at(self._start, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        s = self._sender
        if s._RTCRtpSender__force_keyframe:  # PLI/FIR: the clip's one keyframe is its first frame
            s._RTCRtpSender__force_keyframe = False
            self._pos = 0
        payloads = self._packets.frames[self._pos]
        ts = (self._ts0 + self._n * (VIDEO_CLOCK // self._packets.fps)) & 0xFFFFFFFF
        last = len(payloads) - 1
        hdr, pt, seq = self._template, self._pt, self._seq
        history, protect, sendto, addr = self._history, self._srtp.protect, self._udp.sendto, self._addr
        octets = 0
        for i, payload in enumerate(payloads):
            marker = 0x80 if i == last else 0
            _HEADER.pack_into(hdr, 1, pt | marker, seq, ts)
            history[seq % HISTORY] = (seq, ts, marker, payload)
            sendto(protect(bytes(hdr) + payload), addr)
            octets += len(payload)
            seq = (seq + 1) & 0xFFFF
        self._seq = seq
        # aiortc's sender reports pair this NTP time with `ts`: the frame's due (capture) time, as a
        # camera's would be, not the moment a busy load process got round to sending it
        late = asyncio.get_running_loop().time() - (self._start + self._n / self._packets.fps)
        s._RTCRtpSender__ntp_timestamp = clock.current_ntp_time() - int(late * (1 << 32))
        s._RTCRtpSender__rtp_timestamp = ts
        s._RTCRtpSender__octet_count += octets
        s._RTCRtpSender__packet_count += len(payloads)
        self._pos = (self._pos + 1) % len(self._packets.frames)
        self._n += 1
        self._counter[0] += 1
        self._handle = asyncio.get_running_loop().call_at(self._start + self._n / self._packets.fps, self._tick)

    async def _retransmit(self, sequence_number: int) -> None:
        """Answer a NACK as aiortc does: the lost packet again, wrapped in RTX (RFC 4588)."""
        entry = self._history[sequence_number % HISTORY]
        if entry is None or entry[0] != sequence_number or self._rtx_pt is None:
            return
        _, ts, marker, payload = entry
        hdr = self._rtx_template
        _HEADER.pack_into(hdr, 1, self._rtx_pt | marker, self._rtx_seq, ts)
        self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        self._udp.sendto(self._srtp.protect(bytes(hdr) + _U16.pack(sequence_number) + payload), self._addr)
        self.retransmitted += 1
