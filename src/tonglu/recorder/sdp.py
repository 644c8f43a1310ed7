"""SDP checks before an offer reaches aiortc, and the munging of our answer.

`check_offer` refuses what aiortc would choke on or silently record nothing from, with a precise
reason. `munge_answer` removes `goog-remb` feedback and the `abs-send-time` header extension from
the answer: aiortc's REMB estimate throttles Chromium's 720p VP8 to 5-6 fps for a minute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tonglu.recorder.errors import OfferMalformed, OfferNoMedia, OfferUnsupportedCodec

SUPPORTED = {"video": frozenset({"VP8", "H264"}), "audio": frozenset({"OPUS"})}
_MLINE = re.compile(r"^m=(\w+) (\d+)(?:/\d+)? (\S+)( .*)?$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/(\d+)")


@dataclass
class MediaSection:
    kind: str
    port: int
    codecs: list[str] = field(default_factory=list)
    direction: str = "sendrecv"

    @property
    def supported(self) -> list[str]:
        return [c for c in self.codecs if c.upper() in SUPPORTED.get(self.kind, frozenset())]


@dataclass
class OfferSummary:
    media: list[MediaSection]

    @property
    def kinds(self) -> list[str]:
        return [m.kind for m in self.media if m.supported]


def parse_offer(text: str) -> OfferSummary:
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines:
        raise OfferMalformed("SDP 为空 (empty SDP offer)")
    if lines[0] != "v=0":
        raise OfferMalformed("SDP 首行必须是 v=0 (SDP offer does not start with v=0)")
    for n, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise OfferMalformed(f"SDP 第 {n} 行格式错误 (malformed SDP line {n}: {line[:40]!r})")
    media: list[MediaSection] = []
    session_direction = "sendrecv"
    for line in lines:
        if line.startswith("m="):
            m = _MLINE.match(line)
            if not m:
                raise OfferMalformed(f"SDP 媒体行格式错误 (malformed m= line {line[:60]!r})")
            media.append(MediaSection(kind=m.group(1), port=int(m.group(2)), direction=session_direction))
        elif line.startswith("a=rtpmap:") and media:
            r = _RTPMAP.match(line)
            if r:
                media[-1].codecs.append(r.group(2))
        elif line[2:] in ("sendrecv", "sendonly", "recvonly", "inactive") and line.startswith("a="):
            if media:
                media[-1].direction = line[2:]
            else:
                session_direction = line[2:]
    return OfferSummary(media=media)


def check_offer(text: str) -> OfferSummary:
    """Return the offer's summary or raise an `OfferError` naming the cause."""
    summary = parse_offer(text)
    av = [m for m in summary.media if m.kind in ("audio", "video") and m.port != 0]
    if not av:
        raise OfferNoMedia("SDP 中没有音频或视频 (offer has no audio or video m= section)")
    sending = [m for m in av if m.direction in ("sendrecv", "sendonly")]
    if not sending:
        raise OfferNoMedia("SDP 不发送任何媒体 (offer sends no media: every section is recvonly/inactive)")
    if not any(m.supported for m in sending):
        offered = sorted({f"{m.kind}/{c}" for m in sending for c in m.codecs}) or ["none"]
        raise OfferUnsupportedCodec(
            "不支持的编码 (no supported codec: need video VP8/H264 or audio Opus; offered " + ", ".join(offered) + ")"
        )
    if "a=fingerprint:" not in text or "a=ice-ufrag:" not in text:
        raise OfferMalformed("SDP 缺少 ICE/DTLS 参数 (offer lacks a=ice-ufrag or a=fingerprint)")
    return summary


_DROP = (re.compile(r"^a=rtcp-fb:\S+ goog-remb\s*$"), re.compile(r"^a=extmap:\S+ \S*abs-send-time\S*\s*$"))


def munge_answer(text: str) -> str:
    out = [ln for ln in text.split("\r\n") if not any(p.match(ln) for p in _DROP)]
    return "\r\n".join(out)
