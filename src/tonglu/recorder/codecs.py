"""Codec facts read from the encoded bitstream (no decoding), and aiortc's extra H.264 profiles."""

from __future__ import annotations

KEYFRAME_UNKNOWN = None

# Profiles aiortc does not list (it offers constrained baseline only). Pass-through does not care
# about the profile, so main/high must negotiate too (OBS and ffmpeg offer them; OBS may claim
# 42e01f while sending High).
EXTRA_H264_PROFILES = ("4d001f", "640c1f", "64001f")
_registered = False


def register_h264_profiles() -> None:
    """Add main, constrained-high and high H.264 to aiortc's receive capabilities (idempotent)."""
    global _registered
    if _registered:
        return
    from aiortc.codecs import CODECS
    from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

    video = CODECS["video"]
    used = {c.payloadType for c in video if c.payloadType is not None}
    pt = max(used) + 1 if used else 97
    for plid in EXTRA_H264_PROFILES:
        if any(c.parameters.get("profile-level-id") == plid for c in video):
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=pt,
                rtcpFeedback=[RTCRtcpFeedback(type="nack"), RTCRtcpFeedback(type="nack", parameter="pli")],
                parameters={
                    "level-asymmetry-allowed": "1",
                    "packetization-mode": "1",
                    "profile-level-id": plid,
                },
            )
        )
        video.append(
            RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90000, payloadType=pt + 1, parameters={"apt": pt})
        )
        pt += 2
    _registered = True


def vp8_keyframe(data: bytes) -> tuple[bool, tuple[int, int] | None]:
    """(is_keyframe, (width, height) from the keyframe header or None)."""
    if len(data) < 3:
        return False, None
    if data[0] & 0x01:
        return False, None
    if len(data) >= 10 and data[3:6] == b"\x9d\x01\x2a":
        width = int.from_bytes(data[6:8], "little") & 0x3FFF
        height = int.from_bytes(data[8:10], "little") & 0x3FFF
        return True, (width, height)
    return True, None


def h264_nals(data: bytes) -> list[bytes]:
    """Split an Annex-B access unit into NAL units (without start codes)."""
    nals = []
    i = 0
    n = len(data)
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        if k + 1 < len(starts) and e > s and data[e - 1] == 0:
            e -= 1
        nals.append(data[s:e])
    return nals


class _Bits:
    def __init__(self, data: bytes) -> None:
        # remove emulation prevention bytes
        out = bytearray()
        zeros = 0
        for b in data:
            if zeros >= 2 and b == 3:
                zeros = 0
                continue
            out.append(b)
            zeros = zeros + 1 if b == 0 else 0
        self.data = bytes(out)
        self.pos = 0

    def u(self, n: int) -> int:
        v = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            v = (v << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return v

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-golomb")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def h264_sps_size(sps: bytes) -> tuple[int, int] | None:
    """Width and height from an SPS NAL (with its header byte), or None if it cannot be parsed."""
    try:
        b = _Bits(sps[1:])
        profile = b.u(8)
        b.u(16)
        b.ue()
        chroma = 1
        if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
            chroma = b.ue()
            if chroma == 3:
                b.u(1)
            b.ue()
            b.ue()
            b.u(1)
            if b.u(1):
                for i in range(8 if chroma != 3 else 12):
                    if b.u(1):
                        size = 16 if i < 6 else 64
                        last = nxt = 8
                        for _ in range(size):
                            if nxt:
                                nxt = (last + b.se() + 256) % 256
                            last = nxt or last
        b.ue()
        poc = b.ue()
        if poc == 0:
            b.ue()
        elif poc == 1:
            b.u(1)
            b.se()
            b.se()
            for _ in range(b.ue()):
                b.se()
        b.ue()
        b.u(1)
        w_mbs = b.ue() + 1
        h_units = b.ue() + 1
        frame_mbs_only = b.u(1)
        if not frame_mbs_only:
            b.u(1)
        b.u(1)
        crop = (0, 0, 0, 0)
        if b.u(1):
            crop = (b.ue(), b.ue(), b.ue(), b.ue())
        sub_w, sub_h = (2, 2) if chroma == 1 else ((2, 1) if chroma == 2 else (1, 1))
        crop_x = sub_w if chroma else 1
        crop_y = (sub_h if chroma else 1) * (2 - frame_mbs_only)
        width = w_mbs * 16 - crop_x * (crop[0] + crop[1])
        height = (2 - frame_mbs_only) * h_units * 16 - crop_y * (crop[2] + crop[3])
        return width, height
    except (IndexError, ValueError):
        return None


def h264_keyframe(data: bytes) -> tuple[bool, tuple[int, int] | None]:
    """(contains an IDR slice, (width, height) from an in-band SPS or None)."""
    key = False
    size = None
    for nal in h264_nals(data):
        if not nal:
            continue
        t = nal[0] & 0x1F
        if t == 5:
            key = True
        elif t == 7 and size is None:
            size = h264_sps_size(nal)
    return key, size


def opus_duration(data: bytes) -> int:
    """Duration of one Opus packet in 48 kHz samples, from its TOC byte (RFC 6716 §3.1)."""
    if not data:
        return 0
    toc = data[0]
    config = toc >> 3
    if config < 12:
        ms10 = (100, 200, 400, 600)[config & 3]  # tenths of a millisecond
    elif config < 16:
        ms10 = (100, 200)[config & 1]
    else:
        ms10 = (25, 50, 100, 200)[config & 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        count = data[1] & 0x3F if len(data) > 1 else 1
    return ms10 * 48 * count // 10


def vp8_payload(data: bytes) -> bytes:
    """The VP8 payload of one RTP packet without its descriptor (RFC 7741 §4.2).

    Same result and same `ValueError`s as aiortc's `vp8_depayload`, without building a descriptor
    object per packet (this runs for every received video packet)."""
    n = len(data)
    if n < 1:
        raise ValueError("VPX descriptor is too short")
    if not data[0] & 0x80:
        return data[1:]
    if n < 2:
        raise ValueError("VPX descriptor has truncated extended bits")
    ext = data[1]
    pos = 2
    if ext & 0x80:  # I: picture id, 7 or 15 bits
        if n < pos + 1:
            raise ValueError("VPX descriptor has truncated PictureID")
        if data[pos] & 0x80:
            if n < pos + 2:
                raise ValueError("VPX descriptor has truncated long PictureID")
            pos += 2
        else:
            pos += 1
    if ext & 0x40:  # L: TL0PICIDX
        if n < pos + 1:
            raise ValueError("VPX descriptor has truncated TL0PICIDX")
        pos += 1
    if ext & 0x30:  # T or K: one shared byte
        if n < pos + 1:
            raise ValueError("VPX descriptor has truncated T/K")
        pos += 1
    return data[pos:]
