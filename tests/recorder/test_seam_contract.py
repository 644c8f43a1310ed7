"""Contract with the pinned aiortc: the private seam the recorder relies on is still there and works.

aiortc -> aiortc loopback in one process, no HTTP: a registered track gets encoded frames (no
decoding), an unregistered track still gets aiortc's decoded frames through the original worker;
with `recorder.fastpath` installed every RTP packet skips aiortc's datagram queue and still arrives.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import queue
from pathlib import Path
from typing import Any

import aiortc
import aiortc.rtcrtpreceiver as rr
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from tests.recorder.peers import TestPattern, Tone
from tonglu.recorder.aiortc import fastpath, seam
from tonglu.recorder.codecs import vp8_keyframe


def test_pinned_versions() -> None:
    assert aiortc.__version__ == "1.16.0"
    assert av.__version__ == "18.1.0"
    assert importlib.metadata.version("pylibsrtp") == "1.0.0"


def test_private_names_exist() -> None:
    assert callable(rr.decoder_worker) and hasattr(rr, "StreamStatistics") and hasattr(rr, "NackGenerator")
    r = rr.RTCRtpReceiver.__init__.__code__.co_names
    for name in (
        "_RTCRtpReceiver__decoder_queue",
        "_RTCRtpReceiver__timestamp_mapper",
        "_RTCRtpReceiver__codecs",
        "_RTCRtpReceiver__rtx_ssrc",
        "_RTCRtpReceiver__remote_streams",
    ):
        assert name in r, name
    # recorder.fastpath
    import aioice.ice
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    d = RTCDtlsTransport.__init__.__code__.co_names
    for name in ("_rx_srtp", "_rtp_router", "_rtp_header_extensions_map", "_RTCDtlsTransport__rx_bytes"):
        assert name in d, name
    assert "_queue" in aioice.ice.Connection.data_received.__code__.co_names
    assert "_protocols" in aioice.ice.Connection.__init__.__code__.co_names
    assert "data_received" in aioice.ice.StunProtocol.datagram_received.__code__.co_names
    for meth in ("_handle_rtp_packet", "_handle_rtcp_packet", "_send_rtcp_pli", "_send_rtcp_nack"):
        assert hasattr(rr.RTCRtpReceiver, meth), meth


# Every private name of aiortc, aioice, pylibsrtp and asyncio the recorder uses, by owner. The code
# that uses them lives in `tonglu.recorder.aiortc` alone (checked below).
PRIVATE_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    # seam
    "aiortc.rtcrtpreceiver.RTCRtpReceiver": (
        "_handle_rtp_packet", "_handle_rtcp_packet", "_send_rtcp_pli", "_send_rtcp_nack", "_enabled", "_track",
    ),
    "aiortc.mediastreams.MediaStreamTrack+RemoteStreamTrack": ("_queue",),
    # fastpath
    "aiortc.rtcdtlstransport.RTCDtlsTransport": ("_rx_srtp", "_tx_srtp", "_rtp_router"),
    "aioice.ice.Connection": ("_protocols", "_nominated"),
    "aiortc.rtcicetransport.RTCIceTransport": ("_connection",),
    "asyncio.selector_events._SelectorDatagramTransport": ("_loop", "_sock", "_sock_fd", "_protocol", "_conn_lost"),
    "asyncio.selector_events.BaseSelectorEventLoop": ("_add_reader",),
    "pylibsrtp.Session": ("_srtp", "_cdata", "_buffer"),
    "pylibsrtp._binding": ("ffi", "lib"),
    # internals
    "aiortc.rtcrtpsender.RTCRtpSender": ("_send_keyframe", "_retransmit"),
    "aiortc.rtcrtptransceiver.RTCRtpTransceiver": ("_codecs",),
}


def _instance_names(cls: type) -> set[str]:
    """Attributes a class sets on its instances or defines (from the pinned sources)."""
    names = set(dir(cls))
    for klass in cls.__mro__:
        for value in vars(klass).values():
            code = getattr(value, "__code__", None)
            if code is not None:
                names |= set(code.co_names)
    return names


def test_every_private_attribute_named_exists_on_the_pinned_versions() -> None:
    import asyncio.selector_events as se
    import importlib

    import aioice.ice
    import pylibsrtp
    from aiortc import rtcdtlstransport, rtcicetransport, rtcrtpsender, rtcrtptransceiver

    from tonglu.recorder.aiortc import internals

    owners: dict[str, Any] = {
        "aiortc.rtcrtpreceiver.RTCRtpReceiver": rr.RTCRtpReceiver,
        "aiortc.mediastreams.MediaStreamTrack+RemoteStreamTrack": rr.RemoteStreamTrack,
        "aiortc.rtcdtlstransport.RTCDtlsTransport": rtcdtlstransport.RTCDtlsTransport,
        "aioice.ice.Connection": aioice.ice.Connection,
        "aiortc.rtcicetransport.RTCIceTransport": rtcicetransport.RTCIceTransport,
        "asyncio.selector_events._SelectorDatagramTransport": se._SelectorDatagramTransport,
        "asyncio.selector_events.BaseSelectorEventLoop": se.BaseSelectorEventLoop,
        "pylibsrtp.Session": pylibsrtp.Session,
        "pylibsrtp._binding": importlib.import_module("pylibsrtp._binding"),
        "aiortc.rtcrtpsender.RTCRtpSender": rtcrtpsender.RTCRtpSender,
        "aiortc.rtcrtptransceiver.RTCRtpTransceiver": rtcrtptransceiver.RTCRtpTransceiver,
    }
    assert set(owners) == set(PRIVATE_ATTRIBUTES)
    for owner, names in PRIVATE_ATTRIBUTES.items():
        obj = owners[owner]
        known = set(dir(obj)) if not isinstance(obj, type) else _instance_names(obj)
        for name in names:
            assert name in known, f"{owner}.{name} is gone from the pinned version"
    for owner, names in internals.PRIVATE_NAMES.items():
        assert set(names) <= set(PRIVATE_ATTRIBUTES.get(owner, ())), owner
    # recorder.aiortc.iceports: Connection._protocols, RTCIceTransport._connection, and the shape of
    # the method it replaces per connection (host candidates bound with port 0, no range option)
    import inspect

    from tonglu.recorder.aiortc import iceports

    for owner, names in iceports.PRIVATE_NAMES.items():
        assert set(names) <= set(PRIVATE_ATTRIBUTES.get(owner, ())), owner
    gcc = aioice.ice.Connection.get_component_candidates
    assert list(inspect.signature(gcc).parameters) == ["self", "component", "addresses", "timeout"]
    assert "local_addr=(address, 0)" in inspect.getsource(gcc)


def _private_attributes_outside(root: Path, skip: Path) -> list[str]:
    import ast

    used = {name for names in PRIVATE_ATTRIBUTES.values() for name in names if name.startswith("_")}
    found = []
    for path in sorted(root.rglob("*.py")):
        if skip in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in used:
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue  # our own attribute of the same name
                found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr")
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value in used):
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.func.id}(.., {node.args[1].value!r})")
    return found


def test_private_internals_are_used_only_in_recorder_aiortc() -> None:
    src = Path(__file__).resolve().parents[2] / "src" / "tonglu"
    assert _private_attributes_outside(src, src / "recorder" / "aiortc") == []
    # the scan does see them where they are
    assert _private_attributes_outside(src / "recorder" / "aiortc", src / "nowhere")


def test_minio_conditional_put_is_pinned() -> None:
    """`ObjectStore.put_if_absent` calls the SDK's `_put_object` (the public `put_object` turns
    If-None-Match into user metadata): pinned version, same signature."""
    import inspect

    import minio

    assert importlib.metadata.version("minio") == "7.2.20"
    params = list(inspect.signature(minio.Minio._put_object).parameters)
    assert params[:5] == ["self", "bucket_name", "object_name", "data", "headers"], params


class _Tap:
    def __init__(self) -> None:
        self.video: list[Any] = []
        self.audio = 0
        self.reports = 0
        self.q: seam.DropQueue | None = None

    def on_video(self, packet: Any, codec: Any, repaired: bool) -> None:
        self.video.append(packet)

    def on_audio(self, packet: Any) -> None:
        self.audio += 1

    def on_sender_report(self, ntp: int, rtp: int, ssrc: int) -> None:
        self.reports += 1


@pytest.mark.slow
def test_loopback_seam() -> None:
    async def scenario() -> tuple[_Tap, list[Any], int]:
        seam.install()
        sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sender.addTrack(TestPattern(160, 120, 15))
        sender.addTrack(Tone())
        tap = _Tap()
        got: list[Any] = []
        decoded: list[Any] = []
        tasks: list[Any] = []

        def runner(q: queue.Queue[Any]) -> None:
            while (item := q.get()) is not None:
                got.append(item)

        @receiver.on("track")
        def on_track(track: Any) -> None:
            rcv = next(t.receiver for t in receiver.getTransceivers() if t.receiver._track is track)
            if track.kind == "audio":
                seam.attach(rcv, "audio", runner, tap)
            else:  # unregistered: aiortc's own decoder must still run

                async def consume() -> None:
                    while len(decoded) < 5:
                        decoded.append(await track.recv())

                tasks.append(asyncio.ensure_future(consume()))

        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        assert fastpath.install(receiver) == 1 and fastpath.install(receiver) == 0  # one bundled transport
        dtls = receiver.getTransceivers()[0].receiver.transport
        queued_rtp = []
        slow = dtls._handle_rtp_data

        async def counted(data: bytes, arrival_time_ms: int) -> None:
            queued_rtp.append(len(data))
            await slow(data, arrival_time_ms)

        dtls._handle_rtp_data = counted
        await sender.setRemoteDescription(receiver.localDescription)
        for _ in range(100):
            if len(decoded) >= 5 and tap.audio > 20:
                break
            await asyncio.sleep(0.1)
        assert fastpath.installed(receiver)
        stats = await receiver.getStats()
        transport = next(s for s in stats.values() if s.type == "transport")
        await sender.close()
        await receiver.close()
        # every RTP packet took the fast path (none through aiortc's queue), and is still counted
        assert queued_rtp == [] and transport.packetsReceived > tap.audio
        return tap, got, len(decoded)

    loop = asyncio.new_event_loop()
    tap, _got, n_decoded = loop.run_until_complete(scenario())
    loop.close()
    assert seam.installed()
    assert n_decoded >= 5  # original decoder for the unregistered video track
    assert tap.audio > 20  # audio packets reach the tap before aiortc's jitter buffer


@pytest.mark.slow
def test_video_frames_forwarded_encoded() -> None:
    """A registered video track: aiortc's receiver thread runs our runner on encoded frames."""

    async def scenario() -> list[Any]:
        sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sender.addTrack(TestPattern(160, 120, 15))
        frames: list[Any] = []
        tap_holder: dict[str, Any] = {}

        class VideoTap(_Tap):
            def on_video(self, packet: Any, codec: Any, repaired: bool) -> None:
                from aiortc.codecs import depayload
                from aiortc.jitterbuffer import JitterFrame

                # one packet per frame at this size: forward as a frame
                assert self.q is not None
                self.q.put((codec, JitterFrame(depayload(codec, packet.payload), packet.timestamp)))

        def runner(q: queue.Queue[Any]) -> None:
            while (item := q.get()) is not None:
                frames.append(item)

        @receiver.on("track")
        def on_track(track: Any) -> None:
            rcv = next(t.receiver for t in receiver.getTransceivers() if t.receiver._track is track)
            tap = VideoTap()
            tap.q = seam.attach(rcv, "video", runner, tap)
            tap_holder["tap"] = tap

        await sender.setLocalDescription(await sender.createOffer())
        await receiver.setRemoteDescription(sender.localDescription)
        await receiver.setLocalDescription(await receiver.createAnswer())
        await sender.setRemoteDescription(receiver.localDescription)
        for _ in range(100):
            if len(frames) >= 10:
                break
            await asyncio.sleep(0.1)
        await sender.close()
        await receiver.close()
        return frames

    loop = asyncio.new_event_loop()
    frames = loop.run_until_complete(scenario())
    loop.close()
    assert len(frames) >= 10
    codec, first = frames[0]
    assert codec.name == "VP8" and isinstance(first.data, bytes)
    assert vp8_keyframe(first.data) == (True, (160, 120))  # encoded bitstream, never decoded


def test_lean_rtp_parse_matches_aiortc_on_every_field_it_keeps() -> None:
    from aiortc.rtp import RtpPacket

    def build(cc: int, ext_words: int, pad: int, marker: int) -> bytes:
        first = 0x80 | (0x20 if pad else 0) | (0x10 if ext_words >= 0 else 0) | cc
        head = bytes([first, (marker << 7) | 96]) + (4711).to_bytes(2, "big") + (90000).to_bytes(4, "big")
        head += (0xCAFE).to_bytes(4, "big") + b"".join(i.to_bytes(4, "big") for i in range(cc))
        if ext_words >= 0:
            head += b"\xbe\xde" + ext_words.to_bytes(2, "big") + b"\x10\x01\x00\x00" * ext_words
        return head + b"payload-bytes" + (bytes(pad - 1) + bytes([pad]) if pad else b"")

    for cc in (0, 2):
        for ext in (-1, 0, 1, 3):
            for pad in (0, 1, 4):
                for marker in (0, 1):
                    data = build(cc, ext, pad, marker)
                    ours, theirs = fastpath.parse_rtp(data), RtpPacket.parse(data)
                    for field in ("version", "marker", "payload_type", "sequence_number", "timestamp", "ssrc"):
                        assert getattr(ours, field) == getattr(theirs, field), field
                    assert (ours.csrc, ours.payload, ours.padding_size) == (
                        theirs.csrc,
                        theirs.payload,
                        theirs.padding_size,
                    )
    truncated_extension = b"\x90\x60" + bytes(10) + b"\xbe\xde\x00\x05"
    for bad in (b"\x80\x60\x00", b"\x40" + bytes(11), truncated_extension, b"\xa0" + bytes(11)):
        with pytest.raises(ValueError):
            fastpath.parse_rtp(bad)
        with pytest.raises(ValueError):
            RtpPacket.parse(bad)


def test_direct_unprotect_matches_pylibsrtp() -> None:
    """`fastpath.direct_unprotect` (libsrtp through pylibsrtp's private binding) gives the same
    bytes as `Session.unprotect`, and fails the same way on a forged, replayed or oversize packet."""
    import os

    import pylibsrtp
    from pylibsrtp import Policy, Session

    key = os.urandom(30)
    profile = Policy.SRTP_PROFILE_AES128_CM_SHA1_80

    def session(direction: int) -> Session:
        return Session(policy=Policy(key=key, ssrc_type=direction, srtp_profile=profile))

    tx = session(Policy.SSRC_ANY_OUTBOUND)
    theirs, ours = session(Policy.SSRC_ANY_INBOUND), session(Policy.SSRC_ANY_INBOUND)
    unprotect = fastpath.direct_unprotect(ours)
    for seq in range(200):
        plain = bytes([0x80, 96]) + seq.to_bytes(2, "big") + (seq * 3000).to_bytes(4, "big") + b"\0\0\0\1"
        plain += os.urandom(seq * 7 % 1300)
        packet = tx.protect(plain)
        assert unprotect(packet) == theirs.unprotect(packet) == plain
    forged = bytearray(packet)
    forged[20] ^= 1
    for bad in (bytes(forged), packet):  # altered; replayed
        with pytest.raises(pylibsrtp.Error):
            theirs.unprotect(bad)
        with pytest.raises(pylibsrtp.Error):
            unprotect(bad)
    with pytest.raises(ValueError):
        unprotect(bytes(70000))
