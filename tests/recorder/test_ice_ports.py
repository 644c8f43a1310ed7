"""ICE on a configured UDP port range and host address (TONGLU_ICE_PORT_MIN/MAX, TONGLU_ICE_HOST):
a real aiortc publisher connects to a recorder-side peer whose host candidates all use ports in
the range (recorder.aiortc.iceports), and a full range is refused rather than left."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from tests.recorder.peers import WhipPublisher
from tonglu.config import Settings, SettingsError
from tonglu.recorder.aiortc.iceports import IcePorts, bind_ice, bind_socket_in_range

LOW, HIGH = 47310, 47319


def candidate_ports(sdp: str) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(r"a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", sdp)]


def test_answer_candidates_use_the_range_and_the_publisher_connects():
    async def run() -> tuple[list[int], str]:
        pub = WhipPublisher("http://unused", "t")
        offer = await pub.offer()
        rec = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        await rec.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        bind_ice(rec, IcePorts("127.0.0.1", LOW, HIGH))
        await rec.setLocalDescription(await rec.createAnswer())
        answer = rec.localDescription.sdp
        await pub.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await pub.wait_connected()
        state = rec.connectionState
        await pub.close()
        await rec.close()
        return candidate_ports(answer), state

    ports, state = asyncio.run(run())
    assert ports and all(LOW <= p <= HIGH for p in ports), ports
    assert state == "connected"


def test_without_the_seam_aioice_picks_ephemeral_ports():
    async def run() -> list[int]:
        pub = WhipPublisher("http://unused", "t")
        sdp = await pub.offer()
        await pub.close()
        return candidate_ports(sdp)

    assert not any(LOW <= p <= HIGH for p in asyncio.run(run()))


def test_a_full_range_is_an_error_not_a_port_outside_it():
    held = []
    try:
        for _ in range(HIGH - LOW + 1):
            held.append(bind_socket_in_range("127.0.0.1", LOW, HIGH))
        assert sorted(s.getsockname()[1] for s in held) == list(range(LOW, HIGH + 1))
        with pytest.raises(OSError, match="no free UDP port"):
            bind_socket_in_range("127.0.0.1", LOW, HIGH)
    finally:
        for s in held:
            s.close()


def test_settings_validate_the_range(tmp_path):
    base = {"TONGLU_DATA_DIR": str(tmp_path)}
    s = Settings.from_env({**base, "TONGLU_ICE_PORT_MIN": "40000", "TONGLU_ICE_PORT_MAX": "40099",
                           "TONGLU_ICE_HOST": "10.0.0.11"})
    assert IcePorts.from_settings(s) == IcePorts("10.0.0.11", 40000, 40099)
    for bad in ({"TONGLU_ICE_PORT_MIN": "40000"}, {"TONGLU_ICE_PORT_MIN": "500", "TONGLU_ICE_PORT_MAX": "600"},
                {"TONGLU_ICE_PORT_MIN": "41000", "TONGLU_ICE_PORT_MAX": "40000"}):
        with pytest.raises(SettingsError):
            Settings.from_env({**base, **bad})
