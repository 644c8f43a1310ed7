"""`LocalRecorder`: records sessions in this process (tests, small sites, and each worker process).

It implements the recorder interface the web routes call (see `recorder.api.RecorderAPI`):
create/list/status/stop sessions, publish/unpublish WHIP peers. All aiortc objects live on the
event loop that calls it. Blocking work (ledger, spool, hashing) runs in the context's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from tonglu.config import Settings
from tonglu.evidence.errors import ManifestError
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import GapRecord, SegmentRecord
from tonglu.evidence.spool import Spool
from tonglu.evidence.verify_core import ANNOTATION_KINDS
from tonglu.recorder import consultation as consult
from tonglu.recorder import participants
from tonglu.recorder.aiortc import fastpath, seam
from tonglu.recorder.aiortc.iceports import IcePorts, bind_ice
from tonglu.recorder.aiortc.internals import ice_sockets, receiver_of
from tonglu.recorder.codecs import register_h264_profiles
from tonglu.recorder.context import RecorderContext, spawn
from tonglu.recorder.errors import (
    BadRequest,
    ConsultationConflict,
    OfferMalformed,
    OfferUnsupportedCodec,
    PeerNotFound,
    RecorderError,
    SessionStopped,
    SourceBusy,
    SourceNotFound,
)
from tonglu.recorder.events import GapClosed
from tonglu.recorder.muxer import SegmentWriter
from tonglu.recorder.recovery import recover_session
from tonglu.recorder.relay import Relay
from tonglu.recorder.sdp import check_offer, munge_answer
from tonglu.recorder.session import LiveSession, Peer
from tonglu.recorder.store import SessionStore
from tonglu.recorder.track import QUEUE_LIMIT, PeerTrack, consultation_detail
from tonglu.recorder.whep import WhepHub, is_monitor, monitoring_summary

log = logging.getLogger(__name__)

# what the web tier on another host may append to a session held here: annotations, never media,
# the session's start or stop (the recorder writes those) or transcript versions (the publisher)
REMOTE_APPEND_KINDS = ANNOTATION_KINDS - {"session_start", "session_stop", "transcript", "consultation"}
TICK_S = 0.1
PIPELINE_END_S = 60.0  # a closed peer's last segments are sealed by then (else: logged, stop goes on)
EXPECTED_TRACKS = ("video", "audio")


RECV_BUFFER_BYTES = 4 * 1024 * 1024


def _grow_socket_buffers(pc: Any) -> None:
    """Bursts (RTX answers to a NACK storm after an outage, keyframes) must not overflow the
    kernel's receive buffer while the event loop is busy: that would be loss we caused."""
    import socket

    for sock in ice_sockets(pc):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER_BYTES)


class LocalRecorder:
    def __init__(
        self,
        settings: Settings,
        spool: Spool,
        ledger: Ledger,
        index: Any = None,
        owns: Callable[[str], bool] | None = None,
        store: SessionStore | None = None,
        queue_limit: int = QUEUE_LIMIT,
        writer_factory: Callable[..., SegmentWriter] = SegmentWriter,
    ) -> None:
        self.settings = settings
        self.queue_limit = queue_limit  # frames per track between the event loop and its pipeline
        self.writer_factory = writer_factory  # how segment files are written (tests slow it down)
        self.ctx = RecorderContext(settings, spool, ledger, index)
        self.relay = Relay()  # live fan-out of received frames to WHEP viewers
        self.ctx.relay = self.relay
        self.whep = WhepHub(self)
        self.store = store or SessionStore(ledger, settings.db_url)
        self.owns = owns or (lambda sid: True)
        self.live: dict[str, LiveSession] = {}
        # (session, remote source) -> (not_after_ns, reason): a participant's invitation expiry
        self.deadlines: dict[tuple[str, str], tuple[int, str]] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._loading: dict[str, asyncio.Future[LiveSession]] = {}
        self.loop_lag_ms: list[float] = []
        seam.install()
        register_h264_profiles()

    @classmethod
    def from_services(cls, services: Any, **kw: Any) -> LocalRecorder:
        return cls(services.settings, services.spool, services.ledger, services.index, **kw)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Recover what a previous process left behind, for the sessions this recorder owns."""
        self._ensure_ticker()
        for sid in await asyncio.to_thread(self.ctx.ledger.sessions):
            if not self.owns(sid):
                continue
            try:
                facts = await asyncio.to_thread(self.store.facts, sid)
            except RecorderError:
                continue
            if facts.stop is None:
                await self._catch_up_index(sid)
                await self._load(sid)

    async def _catch_up_index(self, sid: str) -> None:
        """Entries the index feed had queued when the previous process died are in the ledger only:
        apply them (on PostgreSQL, transcription on other hosts reads the session from the index)."""
        index = self.ctx.index
        if index is None:
            return
        try:
            n = await asyncio.to_thread(index.catch_up, self.ctx.ledger, sid)
        except Exception as exc:  # the index is a cache: recording goes on, `tonglu reindex` repairs
            context_logger(__name__, session=sid).error("index catch-up after restart failed: %s", exc)
            return
        if n:
            context_logger(__name__, session=sid).info("index caught up after restart: %d ledger entries applied", n)

    async def close(self) -> None:
        """Stop taking media (peers closed, open segments sealed); sessions stay open in the ledger."""
        await self.whep.close()
        for live in list(self.live.values()):
            for peer in list(live.peers.values()):
                await self._end_peer(live, peer, None, "")
        await self.ctx.drain()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick_loop())

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        expected = loop.time() + TICK_S
        while True:
            await asyncio.sleep(max(0.0, expected - loop.time()))
            lag = (loop.time() - expected) * 1000
            self.loop_lag_ms.append(lag)
            if len(self.loop_lag_ms) > 10000:
                del self.loop_lag_ms[:5000]
            expected = loop.time() + TICK_S
            now = time.time_ns()
            self.whep.tick(now)
            participants.check_deadlines(self, now)
            for live in list(self.live.values()):
                for peer in list(live.peers.values()):
                    if not peer.closed:
                        for pt in peer.tracks.values():
                            pt.tick(now)
                if not live.stopping and now - live.last_checkpoint_ns >= self.settings.checkpoint_interval_s * 1e9:
                    live.last_checkpoint_ns = now
                    self.ctx.submit(self.ctx.ledger.checkpoint, live.id)

    # -- sessions --------------------------------------------------------------------------
    async def create_session(self, request: dict[str, Any], created_by: str) -> tuple[str, dict[str, str]]:
        return await asyncio.to_thread(self.store.create, request, created_by)

    async def list_sessions(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.list)

    async def _load(self, sid: str) -> LiveSession:
        live = self.live.get(sid)
        if live is not None:
            return live
        fut = self._loading.get(sid)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._loading[sid] = fut
        try:
            facts = await asyncio.to_thread(self.store.facts, sid)
            if facts.stop is None:
                recovered = await asyncio.to_thread(recover_session, self.ctx, sid, facts.room)
                if recovered:
                    facts = await asyncio.to_thread(self.store.facts, sid)
            live = LiveSession(facts)
            opened = consult.open_consultation(facts.consultation_entries)
            if opened is not None:  # a consultation ran when the previous process ended: it goes on
                self._apply_consultation(live, consult.from_body(opened), time.time_ns())
            # A session with media in the ledger that this process did not record: the recorder
            # that did was restarted (or killed). Each track's gap runs from its last sealed
            # segment to its next first frame.
            for (source, track), body in facts.last_segments.items():
                st = live.track_state(source, track)
                st.next_index = body["index"] + 1
                st.last_end_ns = body["wall_last_ns"]
                if facts.stop is None:
                    st.pending_gap = (
                        "recorder_restart",
                        body["wall_last_ns"],
                        body["rtp_last"],
                        "录像服务重启 recorder restarted",
                    )
            self.live[sid] = live
            self._ensure_ticker()
            fut.set_result(live)
            return live
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            self._loading.pop(sid, None)

    async def status(self, sid: str) -> dict[str, Any]:
        facts = await asyncio.to_thread(self.store.facts, sid)
        out = facts.summary()
        live = self.live.get(sid)
        now = time.time_ns()
        sources: dict[str, Any] = {}
        open_gaps: list[dict[str, Any]] = []
        for name, spec in facts.sources.items():
            entry: dict[str, Any] = {**spec, "connected": False, "peer": None}
            if live is not None:
                peer = live.peers.get(name)
                if peer is not None and not peer.closed:
                    entry["connected"] = peer.state == "connected"
                    entry["peer"] = peer.status()
                    for pt in peer.tracks.values():
                        g = pt.detector.open_gap(now)
                        if g is not None:
                            open_gaps.append(
                                {
                                    "source": g.source,
                                    "track": g.track,
                                    "reason": g.reason,
                                    "start_ns": g.start_ns,
                                    "rtp_start": g.rtp_start,
                                    "detail": "无数据包 (no packets; may be Opus DTX on audio)",
                                }
                            )
                for (src, track), st in live.tracks.items():
                    if src == name and st.pending_gap is not None:
                        reason, start, rtp, detail = st.pending_gap
                        open_gaps.append(
                            {
                                "source": src,
                                "track": track,
                                "reason": reason,
                                "start_ns": start,
                                "rtp_start": rtp,
                                "detail": detail,
                            }
                        )
            sources[name] = entry
        out["sources"] = sources
        out["connected_peers"] = [s["peer"]["peer_id"] for s in sources.values() if s["peer"]]
        out["open_gaps"] = open_gaps
        out["gap_events"] = facts.gaps
        out["viewers"] = self.whep.status(sid)  # live WHEP viewers: who, role, since
        out["monitored"] = any(is_monitor(v) for v in out["viewers"])
        out["remote_participants"] = participants.status(facts, live)
        c = live.consultation if live is not None else None
        out["consultation"] = c.started_body() if c is not None else None
        return out

    # -- WHIP ------------------------------------------------------------------------------
    async def publish(self, sid: str, source: str, token: str | None, offer: str) -> dict[str, Any]:
        facts = await asyncio.to_thread(self.store.facts, sid)
        if source not in facts.sources:
            raise SourceNotFound(f"会话 {sid} 没有信号源 {source} (session has no source {source!r})")
        await asyncio.to_thread(self.store.check_token, sid, source, token)
        if facts.stop is not None:
            raise SessionStopped(f"会话已结束 (session {sid} was stopped)")
        limit = await asyncio.to_thread(self.store.source_limit, sid, source)
        if limit is not None:  # e.g. a participant that joined before this process started
            self.deadlines[(sid, source)] = limit
        summary = check_offer(offer)
        live = await self._load(sid)
        async with live.lock:
            if live.stopping or live.facts.stop is not None:
                raise SessionStopped(f"会话已结束 (session {sid} was stopped)")
            now = time.time_ns()
            old = live.peers.get(source)
            if old is not None and old.busy(now):
                raise SourceBusy(
                    f"信号源 {source} 已有连接 (source {source!r} is already being published by "
                    f"peer {old.id}; DELETE it or wait until it is silent for 2 s)"
                )
            if old is not None:
                await self._end_peer(live, old, "peer_disconnect", "对端被新连接取代 replaced by a new WHIP offer")
            peer = await self._new_peer(live, source, offer)
            try:  # cut off while it was negotiating (an invitation revoked that very moment)?
                await asyncio.to_thread(self.store.check_token, sid, source, token)
            except RecorderError:
                await self._discard(peer)
                raise
            live.peers[source] = peer
        log.info("peer %s publishes %s/%s (%s)", peer.id, sid, source, ",".join(summary.kinds))
        return {"peer_id": peer.id, "sdp": peer.answer, "etag": peer.etag}

    async def _new_peer(self, live: LiveSession, source: str, offer: str) -> Peer:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        peer = Peer(source=source, pc=pc)
        loop = asyncio.get_running_loop()
        room = live.facts.room

        @pc.on("track")
        def on_track(track: Any) -> None:
            n = sum(1 for t in peer.tracks.values() if t.kind == track.kind)
            name = track.kind if n == 0 else f"{track.kind}-{n}"
            receiver = receiver_of(pc, track)
            pt = PeerTrack(
                ctx=self.ctx,
                session=live.id,
                room=room,
                source=source,
                track=name,
                kind=track.kind,
                peer_id=peer.id,
                state=live.track_state(source, name),
                source_clock=live.clock(source),
                loop=loop,
                on_gap=lambda ev: self._gap(live, ev),
                on_first_packet=lambda t, rtp: self._first_packet(live, t, rtp),
                on_sealed=lambda rec: None,
                queue_limit=self.queue_limit,
                writer_factory=self.writer_factory,
            )
            pt.attach(receiver)
            peer.tracks[name] = pt

        @pc.on("connectionstatechange")
        def on_state() -> None:
            peer.state = pc.connectionState
            if pc.connectionState == "failed" and not peer.closed:
                reason = "ice_failure" if pc.iceConnectionState == "failed" else "dtls_failure"
                spawn(self._end_peer(live, peer, reason, f"连接失败 connection {reason}"))
            elif pc.connectionState == "closed" and not peer.closed:
                spawn(self._end_peer(live, peer, "peer_disconnect", "对端关闭连接 peer closed"))

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            bind_ice(pc, IcePorts.from_settings(self.settings))  # TONGLU_ICE_HOST/PORT_MIN/MAX
            if not peer.tracks:
                raise OfferUnsupportedCodec("没有可录制的音视频轨 (no audio/video track could be negotiated)")
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except RecorderError:
            await self._discard(peer)
            raise
        except Exception as exc:
            await self._discard(peer)
            raise OfferMalformed(f"SDP 无法协商 (offer could not be negotiated: {exc})") from exc
        peer.answer = munge_answer(pc.localDescription.sdp)
        _grow_socket_buffers(pc)
        fastpath.install(pc)
        return peer

    async def _discard(self, peer: Peer) -> None:
        peer.closed = True
        for pt in peer.tracks.values():
            seam.unregister(pt.receiver)
        await peer.pc.close()

    def _first_packet(self, live: LiveSession, pt: PeerTrack, rtp: int) -> None:
        st = pt.state
        if st.pending_gap is None:
            return
        reason, start, rtp_start, detail = st.pending_gap
        st.pending_gap = None
        end = max(start, pt.clock.wall_ns(rtp))
        self._gap(
            live,
            GapClosed(
                GapRecord(
                    source=pt.source,
                    track=pt.track,
                    reason=reason,
                    start_ns=start,
                    end_ns=end,
                    rtp_start=rtp_start,
                    rtp_end=rtp,
                    detail=detail,
                )
            ),
        )

    def _gap(self, live: LiveSession, ev: GapClosed) -> None:
        live.gaps_written += 1
        rec = ev.record
        context_logger(__name__, room=live.facts.room, session=live.id, track=f"{rec.source}/{rec.track}").warning(
            "gap %s %.3f s (%s)", rec.reason, (rec.end_ns - rec.start_ns) / 1e9, rec.detail
        )
        self.ctx.submit(self.ctx.append, live.id, "gap", rec.to_body())

    async def _end_peer(self, live: LiveSession, peer: Peer, reason: str | None, detail: str) -> None:
        """End a peer. With a reason, each track it carried has an open gap until media returns."""
        if peer.closed:
            return
        peer.closed = True
        peer.end_reason = reason
        now = time.time_ns()
        for pt in peer.tracks.values():
            pt.flush_gaps(now)
            last = pt.detector.last_packet
            if reason is not None and last is not None:
                pt.state.pending_gap = (
                    reason,
                    pt.clock.wall_ns(last.rtp + last.duration),
                    last.rtp + last.duration,
                    detail,
                )
        for pt in peer.tracks.values():
            if pt.first_arrival_ns is None:
                seam.unregister(pt.receiver)
        await peer.pc.close()
        # closing put end-of-stream on each started track's queue; the pipeline thread seals the
        # last segments (a session stop drains the sealer right after, so wait for it here)
        started = [pt for pt in peer.tracks.values() if pt.lane is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(pt.ended.wait() for pt in started)), PIPELINE_END_S)
        except TimeoutError:
            for pt in started:
                if not pt.ended.is_set():
                    pt.log.error("pipeline did not finish the track within %.0f s of the peer closing", PIPELINE_END_S)
        if live.peers.get(peer.source) is peer:
            del live.peers[peer.source]

    async def unpublish(self, sid: str, source: str, peer_id: str, token: str | None) -> None:
        await asyncio.to_thread(self.store.check_token, sid, source, token)
        live = self.live.get(sid)
        peer = live.peers.get(source) if live else None
        if live is None or peer is None or peer.id != peer_id:
            raise PeerNotFound(f"没有这个连接 (no peer {peer_id!r} on {sid}/{source})")
        await self._end_peer(live, peer, "peer_disconnect", "对端结束推流 WHIP DELETE")

    # -- stop ------------------------------------------------------------------------------
    async def stop(self, sid: str, stopped_by: str, reason: str = "") -> dict[str, Any]:
        facts = await asyncio.to_thread(self.store.facts, sid)
        if facts.stop is not None:
            raise SessionStopped(f"会话已结束 (session {sid} was already stopped)")
        live = await self._load(sid)
        async with live.lock:
            if live.stopping:
                raise SessionStopped(f"会话正在结束 (session {sid} is being stopped)")
            live.stopping = True
            await self.whep.end_session(sid)  # live viewing only while recording
            stop_ns = time.time_ns()
            for peer in list(live.peers.values()):
                await self._end_peer(live, peer, None, "")
            await self.ctx.drain()
            if live.consultation is not None:  # a consultation still running ends with the session
                c, live.consultation = live.consultation, None
                self._end_withholds(live, c, stop_ns, stopped_by, at_once=True)
                await asyncio.to_thread(self.ctx.append, sid, "consultation", c.ended_body(stop_ns, stopped_by))
                await self.ctx.drain()
            # open gaps end now; expected tracks that never sent anything are not_connected
            seen = {k for k, st in live.tracks.items() if st.last_end_ns is not None or st.pending_gap}
            for (source, track), st in live.tracks.items():
                if st.pending_gap is not None:
                    r, start, rtp, detail = st.pending_gap
                    st.pending_gap = None
                    self._gap(
                        live,
                        GapClosed(
                            GapRecord(source, track, r, start, max(start, stop_ns), rtp_start=rtp, detail=detail)
                        ),
                    )
            for source in facts.sources:
                for track in EXPECTED_TRACKS:
                    if (source, track) not in seen:
                        self._gap(
                            live,
                            GapClosed(
                                GapRecord(
                                    source,
                                    track,
                                    "not_connected",
                                    facts.source_start_ns(source),
                                    stop_ns,
                                    detail="信号源未推流 source never published this track",
                                )
                            ),
                        )
            await self.ctx.drain()
            body = {"stopped_by": stopped_by, "reason": reason}
            await asyncio.to_thread(self.ctx.append, sid, "session_stop", body, stop_ns)
            cp = await asyncio.to_thread(self.ctx.ledger.checkpoint, sid, final=True)
            self.live.pop(sid, None)
        return {
            "id": sid,
            "state": "stopped",
            "digest": cp.digest,
            "tree_size": cp.tree_size,
            "root": cp.root,
            "stopped_ns": stop_ns,
        }

    # -- live viewing (WHEP) and remote participants: recorder.whep, recorder.participants ----
    async def watch(
        self, sid: str, source: str, offer: str, viewer: dict[str, str], on_end: Any = None
    ) -> dict[str, Any]:
        return await self.whep.watch(sid, source, offer, viewer, on_end)

    async def unwatch(self, sid: str, source: str, viewer_id: str, user: str | None = None) -> dict[str, Any]:
        return await self.whep.unwatch(sid, source, viewer_id, user)

    async def watch_party(
        self, sid: str, offer: str, viewer: dict[str, Any], on_end: Any = None
    ) -> dict[str, Any]:
        return await self.whep.watch_party(sid, offer, viewer, on_end)

    async def monitoring(self, sid: str) -> dict[str, Any]:
        facts = await asyncio.to_thread(self.store.facts, sid)
        remote = participants.status(facts, self.live.get(sid))
        return monitoring_summary(sid, facts.state, self.whep.status(sid), remote)

    async def check_source_token(self, sid: str, source: str, token: str | None) -> None:
        await asyncio.to_thread(self.store.facts, sid)  # unknown session: 404
        await asyncio.to_thread(self.store.check_token, sid, source, token)

    async def join_participant(self, sid: str, source: str, name: str, role: str, expires_ns: int | None = None) -> str:
        return await participants.join(self, sid, source, name, role, expires_ns)

    async def cut_off_participant(self, sid: str, source: str, reason: str, by: str) -> dict[str, Any]:
        """An invitation revoked (or expired): token, peer and viewers of its source end now."""
        return await participants.cut_off(self, sid, source, reason, by)

    async def end_viewers(self, user: str, reason: str) -> int:
        """A disabled account (or a changed role): its live viewers on every session end now."""
        return await self.whep.end_viewers(None, reason, user=user)

    async def leave_participant(self, sid: str, source: str, by: str) -> None:
        await participants.leave(self, sid, source, by)

    # -- the session's chain for the web tier on another host (recorder.hostledger) -----------
    async def ledger_entries(self, sid: str, after: int = 0) -> list[str]:
        await asyncio.to_thread(self.store.facts, sid)  # unknown session: 404
        entries = await asyncio.to_thread(self.ctx.ledger.entries, sid)
        return [e.to_bytes().decode() for e in entries[max(0, int(after)):]]

    async def ledger_append(self, sid: str, kind: str, body: dict[str, Any], while_recording: bool = False) -> str:
        if kind not in REMOTE_APPEND_KINDS:
            raise BadRequest(f"不能远程写入此类条目 (entry kind {kind!r} is not appended for another host)")
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        await asyncio.to_thread(self.store.facts, sid)  # unknown session: 404
        try:
            entry = await asyncio.to_thread(self.ctx.append, sid, kind, body, None, while_recording)
        except ManifestError as exc:
            raise SessionStopped(f"会话已结束 (session {sid}: {exc})") from exc
        return entry.to_bytes().decode()

    # -- lawyer consultation (recorder.consultation) -----------------------------------------
    async def consultation(
        self, sid: str, action: str, by: str, lawyer: str | None = None, defendant: str | None = None
    ) -> dict[str, Any]:
        """Start or end the lawyer consultation of a session (CPL art. 39): the parties' media is
        forwarded only to each other and, by default, not recorded (one explained gap per track)."""
        if action not in ("start", "end"):
            raise BadRequest(f"action must be start or end, got {action!r}")
        facts = await asyncio.to_thread(self.store.facts, sid)
        if facts.stop is not None:
            raise SessionStopped(f"会话已结束 (session {sid} was stopped)")
        live = await self._load(sid)
        async with live.lock:
            if live.stopping:
                raise SessionStopped(f"会话正在结束 (session {sid} is being stopped)")
            now = time.time_ns()
            if action == "start":
                if live.consultation is not None:
                    raise ConsultationConflict(
                        f"律师会见正在进行 (consultation {live.consultation.id} is already running)"
                    )
                c = consult.plan(
                    facts.sources,
                    participants.fold(facts.participant_entries),
                    lawyer=lawyer,
                    defendant=defendant,
                    now_ns=now,
                    by=by,
                    recording=self.settings.consultation_recording,
                )
                self._apply_consultation(live, c, now)
                await self.ctx.append_async(sid, "consultation", c.started_body())
                body = c.started_body()
            else:
                c0 = live.consultation
                if c0 is None:
                    raise ConsultationConflict("没有正在进行的律师会见 (no consultation is running)")
                live.consultation = None
                for source in c0.sources:
                    self.relay.set_private(sid, source, None, now)
                self._end_withholds(live, c0, now, by)
                body = c0.ended_body(now, by)
                await self.ctx.append_async(sid, "consultation", body)
            self.ctx.submit(self.ctx.ledger.checkpoint, sid)  # both ends are signed at once
        context_logger(__name__, room=facts.room, session=sid).info(
            "consultation %s %s by %s (%s)", body["consultation_id"], body["event"], by, ",".join(body["sources"])
        )
        return body

    def _apply_consultation(self, live: LiveSession, c: consult.Consultation, now_ns: int) -> None:
        live.consultation = c
        for source in c.sources:
            self.relay.set_private(live.id, source, c.allowed(source), now_ns)
        for st in live.tracks.values():
            live.withhold(st)

    def _end_withholds(
        self, live: LiveSession, c: consult.Consultation, now_ns: int, by: str, at_once: bool = False
    ) -> None:
        """The consultation ended: each withheld track records again from its next frame that can
        start a segment (which closes its gap); a track with no peer sending closes its gap now."""
        for (source, track), st in live.tracks.items():
            w = st.withhold
            if w is None or w.consultation_id != c.id:
                continue
            w.end(now_ns, by)
            peer = live.peers.get(source)
            pt = peer.tracks.get(track) if peer is not None and not peer.closed else None
            if pt is not None and not at_once:
                pt.request_keyframe()
                continue
            st.withhold = None
            start, end = w.close(now_ns)
            self._gap(
                live,
                GapClosed(
                    GapRecord(
                        source=source,
                        track=track,
                        reason="lawyer_consultation",
                        start_ns=start,
                        end_ns=end,
                        rtp_start=w.rtp_start,
                        detail=consultation_detail(w),
                    )
                ),
            )

    def sealed_records(self) -> list[SegmentRecord]:  # pragma: no cover - debugging aid
        return []
