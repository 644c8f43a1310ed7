"""WHEP (draft-ietf-wish-whep) egress on aiortc: live viewers of a session's sources.

A viewer POSTs a recvonly offer for one source (`main`, `panorama`, `remote-<id>`); the
`WhepHub` answers with an aiortc peer whose senders are fed `av.Packet`s straight from the relay
(`recorder.relay`): aiortc's VP8/H.264/Opus encoders only `pack()` them into RTP, nothing is
decoded or re-encoded, so a viewer receives the publisher's bitstream as the recorder got it.

- The video codec offered back is the one the source publishes (VP8 or H.264); a viewer that does
  not offer it gets 422. Audio is Opus.
- Each viewer subscribes when its connection is up (bounded queues, drop-oldest; see relay).
  A viewer's PLI becomes a rate-limited PLI to the publisher.
- `goog-remb` and `abs-send-time` are stripped from the answer, as for WHIP.
- Viewers end on DELETE, on connection failure, if they never connect, or when the session stops;
  `on_end` (given by the web layer, for the audit trail) is called exactly once per viewer.
- Limits: `MAX_VIEWERS_PER_SESSION` viewers per session (every viewer costs the recorder's core
  SRTP and RTP packetization of its streams), shared out by `admit` (see there): slots per
  principal, pending (not yet connected) slots expire after `CONNECT_TIMEOUT_S`, and slots kept for
  admins and supervisors, so that nobody can starve the room's supervision.
- Nobody watches covertly: every viewer, whatever its role, is listed on the room's screen by name
  and role (`monitoring_summary`, the capture page's status). A remote participant watches only
  after it has joined the session (so the room lists it among the participants too).
- A viewer ends when what let it in ends: its invitation revoked or expired, its account disabled
  (`end_viewers`, called by the web layer), or at `expires_ns` (checked every recorder tick).
- Party viewers (`watch_party`, remote hearings): one peer per *party* (the room display, or one
  remote participant) carries every other party's sources, one (video, audio) pair of m-sections
  per source, in the order the answer's `sources` list gives; every room microphone is a track of
  its own (no mixing on the server: the browser mixes). They have their own slots (`admit_party`)
  and never take a staff slot. The room's display is not a monitor of the room.
- A lawyer consultation makes its parties' sources private to each other (`relay.TrackTap.private_to`):
  every subscriber carries its viewer's party.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from tonglu.recorder.aiortc.iceports import IcePorts, bind_ice
from tonglu.recorder.aiortc.internals import negotiated_codecs, on_keyframe_request
from tonglu.recorder.context import spawn
from tonglu.recorder.errors import (
    NotJoined,
    OfferMalformed,
    OfferNoMedia,
    OfferUnsupportedCodec,
    RecorderError,
    SessionStopped,
    SourceNotFound,
    TooManyViewers,
    ViewerNotFound,
)
from tonglu.recorder.relay import CLOCK_RATE, Rebaser, Relay, Subscriber, TrackTap
from tonglu.recorder.sdp import MediaSection, munge_answer, parse_offer

log = logging.getLogger(__name__)

MAX_VIEWERS_PER_SESSION = 16
MONITOR_ROLES = ("admin", "supervisor")
RESERVED_FOR_MONITORS = 4  # slots of a session only admins and supervisors may take
MAX_PER_PRINCIPAL = 4  # viewers of one principal in one session (both cameras, a reload, ...)
MAX_PENDING_PER_PRINCIPAL = 2  # of those, not yet connected
CONNECT_TIMEOUT_S = 5.0  # a viewer not connected by then ends, and frees its slot
VIDEO_CODECS = ("vp8", "h264")
_STEP = {"video": 3000, "audio": 960}  # one frame at 30 fps / one 20 ms Opus packet
PARTY_ROLES = ("participant", "room")
MAX_PARTY_VIEWERS = 2  # party viewers of one party at a time (a reload, a second screen)

OnEnd = Callable[[dict[str, Any]], None]


class _Recorder(Protocol):
    """What the hub needs from `recorder.local.LocalRecorder`."""

    store: Any
    relay: Relay
    live: dict[str, Any]

    async def _load(self, sid: str) -> Any: ...


# -- offers ----------------------------------------------------------------------------------------
@dataclass
class WhepOffer:
    video: MediaSection | None
    audio: MediaSection | None

    @property
    def kinds(self) -> list[str]:
        return [k for k, m in (("video", self.video), ("audio", self.audio)) if m is not None]

    def video_codecs(self) -> list[str]:
        return [c.lower() for c in (self.video.codecs if self.video else []) if c.lower() in VIDEO_CODECS]


def check_whep_offer(text: str) -> WhepOffer:
    """A viewer's offer: at least one audio/video section that can receive, with ICE/DTLS."""
    summary = parse_offer(text)
    av_sections = [m for m in summary.media if m.kind in ("audio", "video") and m.port != 0]
    if not av_sections:
        raise OfferNoMedia("SDP 中没有音频或视频 (offer has no audio or video m= section)")
    receiving = [m for m in av_sections if m.direction in ("recvonly", "sendrecv")]
    if not receiving:
        raise OfferNoMedia("观看端 SDP 必须是 recvonly (WHEP offer must receive: every section is sendonly/inactive)")
    video = next((m for m in receiving if m.kind == "video"), None)
    audio = next((m for m in receiving if m.kind == "audio"), None)
    if video is not None and not [c for c in video.codecs if c.lower() in VIDEO_CODECS]:
        raise OfferUnsupportedCodec(
            "观看端不支持 VP8/H264 (viewer offers no VP8 or H264 video; offered "
            + (", ".join(video.codecs) or "none")
            + ")"
        )
    if audio is not None and "opus" not in [c.lower() for c in audio.codecs]:
        audio = None if video is not None else audio
        if audio is not None:
            raise OfferUnsupportedCodec("观看端不支持 Opus (viewer offers no Opus audio)")
    if "a=fingerprint:" not in text or "a=ice-ufrag:" not in text:
        raise OfferMalformed("SDP 缺少 ICE/DTLS 参数 (offer lacks a=ice-ufrag or a=fingerprint)")
    return WhepOffer(video, audio)


# -- the track aiortc's sender reads -----------------------------------------------------------------
class RelayTrack(MediaStreamTrack):
    """Yields the relayed frames of one subscriber as `av.Packet`s (aiortc packs, never encodes)."""

    def __init__(self, kind: str, sub: Subscriber) -> None:
        super().__init__()
        self.kind = kind
        self.sub = sub
        self._ready = asyncio.Event()
        sub.on_ready = self._ready.set
        clock = CLOCK_RATE[kind]
        self._time_base = fractions.Fraction(1, clock)
        self._rebase = Rebaser(clock, _STEP[kind])

    async def recv(self) -> av.Packet:
        while True:
            if self.readyState != "live" or self.sub.closed:
                raise MediaStreamError
            frame = self.sub.take()
            if frame is not None:
                packet = av.Packet(frame.data)
                packet.pts = self._rebase.map(frame.rtp)
                packet.time_base = self._time_base
                return packet
            self._ready.clear()
            await self._ready.wait()

    def stop(self) -> None:
        super().stop()
        self._ready.set()


def _keyframe_request(tap: TrackTap) -> Callable[[], None]:
    def request() -> None:
        tap.request_keyframe(time.time_ns())

    return request


# -- viewers -------------------------------------------------------------------------------------------
@dataclass
class Viewer:
    session: str
    source: str
    user: str
    role: str
    name: str
    address: str
    pc: Any
    codec: str | None
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    etag: str = field(default_factory=lambda: '"' + secrets.token_hex(6) + '"')
    since_ns: int = field(default_factory=time.time_ns)
    state: str = "new"
    closed: bool = False
    subs: list[tuple[TrackTap, Subscriber]] = field(default_factory=list)
    on_end: OnEnd | None = None
    participant_source: str | None = None  # a remote participant's own source (remote-<id>)
    expires_ns: int | None = None  # what let it in ends then (an invitation's expiry)
    connected_ns: int | None = None
    party: str | None = None  # the viewer's party: its own remote source, or "room"; None for staff
    party_view: bool = False  # a party viewer (watch_party): every other party's sources in one peer
    sources: list[str] = field(default_factory=list)  # a party viewer's sources, one per m-section pair

    def pending(self, now_ns: int) -> bool:
        """Holding a slot without media yet (and for at most CONNECT_TIMEOUT_S)."""
        return self.connected_ns is None and now_ns - self.since_ns < CONNECT_TIMEOUT_S * 1e9

    def to_json(self) -> dict[str, Any]:
        return {
            "viewer_id": self.id,
            "source": self.source,
            "user": self.user,
            "name": self.name,
            "role": self.role,
            "since_ns": self.since_ns,
            "state": self.state,
            "codec": self.codec,
            "participant_source": self.participant_source,
            "party": self.party,
            "sources": list(self.sources),
            "tracks": {f"{tap.source}/{sub.kind}" if self.party_view else sub.kind: sub.stats()
                       for tap, sub in self.subs},
        }


# -- who gets a viewer slot (pure) -------------------------------------------------------------------
@dataclass(frozen=True)
class Admission:
    ok: bool
    evict: str | None = None  # a viewer id to end first (a pending viewer making room for a monitor)
    reason: str = ""


def admit(viewers: list[Viewer], user: str, role: str, now_ns: int) -> Admission:
    """May `user` (`role`) open one more viewer on a session that has `viewers`?

    - one principal holds at most MAX_PER_PRINCIPAL viewers, MAX_PENDING_PER_PRINCIPAL of them
      not yet connected; a pending viewer stops counting after CONNECT_TIMEOUT_S (and is ended);
    - RESERVED_FOR_MONITORS of the session's MAX_VIEWERS_PER_SESSION slots are only for admins and
      supervisors; when the session is full, an admin or supervisor takes the slot of the oldest
      pending viewer, so never-connecting requests cannot keep supervision out.
    """
    live = [v for v in viewers if not v.party_view and not v.closed
            and (v.connected_ns is not None or v.pending(now_ns))]
    mine = [v for v in live if v.user == user]
    if len(mine) >= MAX_PER_PRINCIPAL:
        return Admission(False, reason=f"每人最多 {MAX_PER_PRINCIPAL} 路观看 (at most {MAX_PER_PRINCIPAL} viewers "
                                       f"per person in a session; DELETE one first)")
    if sum(1 for v in mine if v.pending(now_ns)) >= MAX_PENDING_PER_PRINCIPAL:
        return Admission(False, reason=f"未连接的观看请求过多 (at most {MAX_PENDING_PER_PRINCIPAL} viewers per person "
                                       f"still connecting; they expire after {CONNECT_TIMEOUT_S:.0f} s)")
    monitor = role in MONITOR_ROLES
    others = [v for v in live if v.role not in MONITOR_ROLES]
    if not monitor and len(others) >= MAX_VIEWERS_PER_SESSION - RESERVED_FOR_MONITORS:
        return Admission(False, reason=f"观看人数已达上限 (session has {len(others)} live viewers; the remaining "
                                       f"{RESERVED_FOR_MONITORS} are kept for supervisors)")
    if len(live) < MAX_VIEWERS_PER_SESSION:
        return Admission(True)
    pending = sorted((v for v in live if v.pending(now_ns) and v.user != user), key=lambda v: v.since_ns)
    if monitor and pending:
        return Admission(True, evict=pending[0].id)
    return Admission(False, reason=f"观看人数已达上限 (session already has {MAX_VIEWERS_PER_SESSION} live viewers)")


def admit_party(viewers: list[Viewer], user: str, now_ns: int) -> Admission:
    """A party viewer: at most MAX_PARTY_VIEWERS per party principal; they do not use staff slots
    (their number is bounded by the participants a session admits, TONGLU_MAX_PARTICIPANTS)."""
    mine = [v for v in viewers if v.party_view and not v.closed and v.user == user
            and (v.connected_ns is not None or v.pending(now_ns))]
    if len(mine) >= MAX_PARTY_VIEWERS:
        return Admission(False, reason=f"每方最多 {MAX_PARTY_VIEWERS} 路观看 (at most {MAX_PARTY_VIEWERS} party "
                                       f"viewers per participant or room; DELETE one first)")
    return Admission(True)


def party_sources(sources: dict[str, Any], present: dict[str, Any], party: str) -> list[str]:
    """What a party watches: the room's sources (unless it is the room), then every other present
    remote participant's source, in join order."""
    from tonglu.recorder.participants import is_remote_source

    room = [s for s in sources if not is_remote_source(s)]
    remote = sorted((s for s, p in present.items() if p.get("present") and s in sources),
                    key=lambda s: (present[s].get("joined_ns") or 0, s))
    out = ([] if party == "room" else room) + remote
    return [s for s in out if s != party]


def offer_pairs(text: str) -> int:
    """How many (video, audio) recvonly m-section pairs a party viewer's offer holds."""
    summary = parse_offer(text)
    recv = [m for m in summary.media if m.port != 0 and m.direction in ("recvonly", "sendrecv")]
    videos = [m for m in recv if m.kind == "video"]
    audios = [m for m in recv if m.kind == "audio"]
    if not videos or len(videos) != len(audios):
        raise OfferNoMedia("观看端须按信号源成对提供视频和音频 (a party viewer offers one recvonly video and one "
                           f"audio m-section per source; got {len(videos)} video, {len(audios)} audio)")
    for m in videos:
        if not [c for c in m.codecs if c.lower() in VIDEO_CODECS]:
            raise OfferUnsupportedCodec("观看端不支持 VP8/H264 (viewer offers no VP8 or H264 video)")
    if "a=fingerprint:" not in text or "a=ice-ufrag:" not in text:
        raise OfferMalformed("SDP 缺少 ICE/DTLS 参数 (offer lacks a=ice-ufrag or a=fingerprint)")
    return len(videos)


class WhepHub:
    def __init__(self, recorder: _Recorder) -> None:
        self.rec = recorder
        self.viewers: dict[str, Viewer] = {}

    def session_viewers(self, sid: str) -> list[Viewer]:
        return [v for v in self.viewers.values() if v.session == sid and not v.closed]

    def status(self, sid: str) -> list[dict[str, Any]]:
        return [v.to_json() for v in self.session_viewers(sid)]

    async def watch(
        self, sid: str, source: str, offer: str, viewer: dict[str, str], on_end: OnEnd | None = None
    ) -> dict[str, Any]:
        """WHEP POST: returns {"viewer_id", "sdp" (answer), "etag"}."""
        facts = await asyncio.to_thread(self.rec.store.facts, sid)
        if source not in facts.sources:
            raise SourceNotFound(f"会话 {sid} 没有信号源 {source} (session has no source {source!r})")
        if facts.stop is not None:
            raise SessionStopped(f"会话已结束，无法监看 (session {sid} was stopped: nothing to watch live)")
        role = str(viewer.get("role", "-"))
        own_source = viewer.get("participant_source") or None
        if role == "participant":
            from tonglu.recorder.participants import fold

            present = fold(facts.participant_entries).get(own_source or "", {}).get("present", False)
            if not own_source or not present:
                raise NotJoined("远程参与人须先加入本场才能观看 (a remote participant must join the session "
                                "before watching: POST /api/sessions/{id}/participants)")
        expires_ns = viewer.get("expires_ns")
        now = time.time_ns()
        if isinstance(expires_ns, int) and expires_ns <= now:
            raise NotJoined("邀请已过期 (invitation expired)")
        wanted = check_whep_offer(offer)
        live = await self.rec._load(sid)
        if live.stopping:
            raise SessionStopped(f"会话正在结束 (session {sid} is being stopped)")
        user = str(viewer.get("user", "-"))
        admission = admit(self.session_viewers(sid), user, role, now)
        if not admission.ok:
            raise TooManyViewers(admission.reason)
        if admission.evict is not None and admission.evict in self.viewers:
            await self._end(self.viewers[admission.evict], "slot_taken_by_monitor")
        codec = self._codec_for(live, facts, sid, source, wanted) if wanted.video else None
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        v = Viewer(
            session=sid,
            source=source,
            user=user,
            role=role,
            name=str(viewer.get("name", "")),
            address=str(viewer.get("address", "-")),
            pc=pc,
            codec=codec,
            on_end=on_end,
            participant_source=own_source if role == "participant" else None,
            expires_ns=expires_ns if isinstance(expires_ns, int) else None,
            party=own_source if role == "participant" else None,
        )
        for kind in wanted.kinds:
            tap = self.rec.relay.track(sid, source, kind, kind)
            sub = Subscriber(v.id, kind, codec if kind == "video" else "opus", party=v.party)
            transceiver = pc.addTransceiver(RelayTrack(kind, sub), direction="sendonly")
            if kind == "video":
                caps = RTCRtpSender.getCapabilities("video").codecs
                prefs = [c for c in caps if c.mimeType.lower() == f"video/{codec}"]
                rtx = [c for c in caps if c.mimeType.lower() == "video/rtx"]
                transceiver.setCodecPreferences(prefs + rtx)
                # a viewer's PLI asks the publisher for a keyframe (rate-limited by the tap)
                on_keyframe_request(transceiver.sender, _keyframe_request(tap))
            v.subs.append((tap, sub))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            v.state = pc.connectionState
            if pc.connectionState == "connected":
                now = time.time_ns()
                if v.connected_ns is None:
                    v.connected_ns = now
                for tap, sub in v.subs:
                    if not v.closed and sub not in tap.subscribers:
                        tap.subscribe(sub, now)
            elif pc.connectionState in ("failed", "closed") and not v.closed:
                spawn(self._end(v, f"connection_{pc.connectionState}"))

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            bind_ice(pc, IcePorts.from_settings(getattr(self.rec, "settings", None)))  # TONGLU_ICE_*
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except RecorderError:
            await pc.close()
            raise
        except Exception as exc:
            await pc.close()
            if wanted.video and codec and "video" in str(exc):
                raise OfferUnsupportedCodec(
                    f"观看端不支持该信号源的编码 {codec.upper()} (viewer does not offer {codec.upper()}, "
                    f"the codec source {source!r} is published in)"
                ) from exc
            raise OfferMalformed(f"SDP 无法协商 (offer could not be negotiated: {exc})") from exc
        self.viewers[v.id] = v
        if own_source is not None and role == "participant":
            # cut off while it was negotiating (the invitation revoked, or the participant left)?
            limit = await asyncio.to_thread(self.rec.store.source_limit, sid, own_source)
            if limit is not None and limit[0] <= time.time_ns():
                await self._end(v, limit[1])
                raise NotJoined(f"远程参与人已不在本场 (participant is no longer in the session: {limit[1]})")
        spawn(self._connect_watchdog(v))
        log.info("viewer %s (%s %s) watches %s/%s (%s)", v.id, v.role, v.user, sid, source, codec)
        return {"viewer_id": v.id, "sdp": munge_answer(pc.localDescription.sdp), "etag": v.etag}

    async def watch_party(self, sid: str, offer: str, viewer: dict[str, Any], on_end: OnEnd | None = None
                          ) -> dict[str, Any]:
        """A party viewer (see the module docstring): returns {"viewer_id", "sdp", "etag", "sources"}."""
        from aiortc import (
            RTCBundlePolicy,
            RTCConfiguration,
            RTCPeerConnection,
            RTCRtpSender,
            RTCSessionDescription,
        )

        from tonglu.recorder.participants import fold

        facts = await asyncio.to_thread(self.rec.store.facts, sid)
        if facts.stop is not None:
            raise SessionStopped(f"会话已结束 (session {sid} was stopped)")
        role = str(viewer.get("role", "-"))
        party = str(viewer.get("party") or "")
        if role not in PARTY_ROLES or not party:
            raise NotJoined("只有讯问室和远程参与人可以这样观看 (only the room and remote participants "
                            "watch as a party)")
        present = fold(facts.participant_entries)
        if role == "participant" and not present.get(party, {}).get("present", False):
            raise NotJoined("远程参与人须先加入本场才能观看 (a remote participant must join the session first)")
        expires_ns = viewer.get("expires_ns")
        now = time.time_ns()
        if isinstance(expires_ns, int) and expires_ns <= now:
            raise NotJoined("邀请已过期 (invitation expired)")
        pairs = offer_pairs(offer)
        live = await self.rec._load(sid)
        if live.stopping:
            raise SessionStopped(f"会话正在结束 (session {sid} is being stopped)")
        user = str(viewer.get("user", "-"))
        admission = admit_party(self.session_viewers(sid), user, now)
        if not admission.ok:
            raise TooManyViewers(admission.reason)
        sources = party_sources(facts.sources, present, party)[:pairs]
        # max-bundle: aiortc's "balanced" puts a second audio sender on the first audio sender's
        # transport, which BUNDLE then orphans (its packets never leave); one transport for all
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        v = Viewer(session=sid, source="party", user=user, role=role, name=str(viewer.get("name", "")),
                   address=str(viewer.get("address", "-")), pc=pc, codec=None, on_end=on_end,
                   participant_source=party if role == "participant" else None,
                   expires_ns=expires_ns if isinstance(expires_ns, int) else None,
                   party=party, party_view=True, sources=sources)
        caps = RTCRtpSender.getCapabilities("video").codecs
        rtx = [c for c in caps if c.mimeType.lower() == "video/rtx"]
        section = parse_offer(offer)
        video_sections = [m for m in section.media if m.kind == "video" and m.port != 0]
        for i, source in enumerate(sources):
            codec = self._codec_for(live, facts, sid, source, WhepOffer(video_sections[i], None))
            for kind in ("video", "audio"):
                tap = self.rec.relay.track(sid, source, kind, kind)
                sub = Subscriber(v.id, kind, codec if kind == "video" else "opus", party=party)
                transceiver = pc.addTransceiver(RelayTrack(kind, sub), direction="sendonly")
                if kind == "video":
                    prefs = [c for c in caps if c.mimeType.lower() == f"video/{codec}"]
                    transceiver.setCodecPreferences(prefs + rtx)
                    on_keyframe_request(transceiver.sender, _keyframe_request(tap))
                v.subs.append((tap, sub))
        self._on_connection(v)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:
            await pc.close()
            raise OfferMalformed(f"SDP 无法协商 (offer could not be negotiated: {exc})") from exc
        self.viewers[v.id] = v
        if role == "participant":
            limit = await asyncio.to_thread(self.rec.store.source_limit, sid, party)
            if limit is not None and limit[0] <= time.time_ns():
                await self._end(v, limit[1])
                raise NotJoined(f"远程参与人已不在本场 (participant is no longer in the session: {limit[1]})")
        spawn(self._connect_watchdog(v))
        log.info("party viewer %s (%s %s) watches %s: %s", v.id, role, user, sid, ",".join(sources))
        return {"viewer_id": v.id, "sdp": munge_answer(pc.localDescription.sdp), "etag": v.etag, "sources": sources}

    def _on_connection(self, v: Viewer) -> None:
        pc = v.pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            v.state = pc.connectionState
            if pc.connectionState == "connected":
                now = time.time_ns()
                if v.connected_ns is None:
                    v.connected_ns = now
                for tap, sub in v.subs:
                    if not v.closed and sub not in tap.subscribers:
                        tap.subscribe(sub, now)
            elif pc.connectionState in ("failed", "closed") and not v.closed:
                spawn(self._end(v, f"connection_{pc.connectionState}"))

    def _codec_for(self, live: Any, facts: Any, sid: str, source: str, wanted: WhepOffer) -> str:
        """The codec the source publishes now, else published last, else the viewer's first."""
        peer = live.peers.get(source)
        if peer is not None and not peer.closed:
            pt = peer.tracks.get("video")
            params = pt.codec_params if pt is not None else None
            if params is not None and params.name.lower() in VIDEO_CODECS:
                return str(params.name.lower())
            for t in peer.pc.getTransceivers():
                codecs = negotiated_codecs(t)
                if t.kind == "video" and codecs and codecs[0].name.lower() in VIDEO_CODECS:
                    return str(codecs[0].name.lower())
        tap = self.rec.relay.find(sid, source, "video")
        if tap is not None and tap.codec in VIDEO_CODECS:
            return tap.codec
        last = facts.last_segments.get((source, "video"))
        if last is not None and str(last.get("codec")) in VIDEO_CODECS:
            return str(last["codec"])
        return wanted.video_codecs()[0]

    async def _connect_watchdog(self, v: Viewer) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not v.closed and v.state != "connected":
            await self._end(v, "connect_timeout")

    async def unwatch(self, sid: str, source: str, viewer_id: str, user: str | None = None) -> dict[str, Any]:
        """WHEP DELETE. With `user`, only that user's viewer may be ended (admins pass None).
        Returns the ended viewer (`to_json()` plus "reason" and "ended_ns")."""
        v = self.viewers.get(viewer_id)
        if v is None or v.closed or v.session != sid or v.source != source or (user is not None and v.user != user):
            raise ViewerNotFound(f"没有这个观看连接 (no viewer {viewer_id!r} on {sid}/{source})")
        return await self._end(v, "delete")

    async def _end(self, v: Viewer, reason: str) -> dict[str, Any]:
        info = {**v.to_json(), "reason": reason, "ended_ns": time.time_ns(), "address": v.address}
        if v.closed:
            return info
        v.closed = True
        for tap, sub in v.subs:
            tap.unsubscribe(sub)
            sub.close()
        with contextlib.suppress(Exception):
            await v.pc.close()
        self.viewers.pop(v.id, None)
        log.info("viewer %s left %s/%s (%s)", v.id, v.session, v.source, reason)
        if v.on_end is not None:
            try:
                v.on_end(info)
            except Exception:
                log.exception("viewer end hook failed")
        return info

    async def end_viewers(self, sid: str | None, reason: str, *, user: str | None = None,
                          participant_source: str | None = None) -> int:
        """End the viewers of `user` (any session when `sid` is None) or of a participant's source."""
        ended = 0
        for v in list(self.viewers.values()):
            if v.closed or (sid is not None and v.session != sid):
                continue
            if (user is not None and v.user == user) or (
                participant_source is not None and v.participant_source == participant_source
            ):
                await self._end(v, reason)
                ended += 1
        return ended

    def tick(self, now_ns: int) -> None:
        """Every recorder tick: end viewers whose invitation ran out (the watchdog ends the pending)."""
        for v in list(self.viewers.values()):
            if not v.closed and v.expires_ns is not None and now_ns >= v.expires_ns:
                spawn(self._end(v, "invitation_expired"))

    async def end_session(self, sid: str) -> None:
        for v in self.session_viewers(sid):
            await self._end(v, "session_stopped")
        self.rec.relay.close_session(sid)

    async def close(self) -> None:
        for v in list(self.viewers.values()):
            await self._end(v, "recorder_closed")


def is_monitor(viewer: dict[str, Any]) -> bool:
    """Anyone watching live, whatever the role (admin, supervisor, the session's interviewers'
    console previews, remote participants): the room is told, with each viewer's name and role.
    Nobody watches covertly. The room's own display (it watches the remote parties) is no monitor."""
    return viewer.get("state") != "closed" and viewer.get("role") != "room"


def monitoring_summary(
    sid: str, state: str, viewers: list[dict[str, Any]], remote: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the room's capture page shows: 正在被监看 (and by whom), 远程参与人 (and who is connected)."""
    monitors = [
        {"name": v["name"], "role": v["role"], "source": v["source"], "since_ns": v["since_ns"]}
        for v in viewers
        if is_monitor(v)
    ]
    return {
        "session": sid,
        "state": state,
        "monitored": bool(monitors),
        "monitors": monitors,
        "viewers": len(viewers),
        "remote_participants": [
            {k: p.get(k) for k in ("source", "name", "role", "present", "connected", "joined_ns")} for p in remote
        ],
    }
