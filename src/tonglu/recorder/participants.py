"""Remote participants (prosecutor, judge, defence...) as extra sources of a running session.

A participant joins through an invitation bound to one session and publishes its own camera and
microphone as source `remote-<invitation id>`, recorded by the same rules as the room's cameras.
The manifest is the source of truth: a `participant` entry {"source", "event": "joined"|"left",
"name", "role", "time_ns"} adds the source (joined) or marks it absent (left). These helpers fold
those entries (pure functions, no I/O).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable
from typing import Any

from tonglu.recorder.errors import BadRequest, SessionStopped, SourceNotFound, TooManyParticipants

REMOTE_PREFIX = "remote-"
_REMOTE = re.compile(r"^remote-[A-Za-z0-9_-]{1,64}$")


def is_remote_source(name: str) -> bool:
    return bool(_REMOTE.match(name))


def fold(bodies: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{source: {"name", "role", "joined_ns", "left_ns", "present"}} from `participant` bodies in
    manifest order (first join time kept; a rejoin clears `left_ns`)."""
    out: dict[str, dict[str, Any]] = {}
    for b in bodies:
        source = b.get("source")
        if not isinstance(source, str) or not is_remote_source(source):
            continue
        p = out.get(source)
        if b.get("event") == "joined":
            if p is None:
                p = out[source] = {"joined_ns": b.get("time_ns"), "left_ns": None}
            p.update(name=b.get("name", ""), role=b.get("role", ""), present=True, left_ns=None)
        elif b.get("event") == "left" and p is not None:
            p.update(present=False, left_ns=b.get("time_ns"))
    return out


def source_specs(bodies: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sources participants added, in the layout of `session_start`'s "sources"."""
    return {
        source: {
            "kind": "remote",
            "label": f"远程 {p['name']} ({p['role']})",
            "role": p["role"],
            "joined_ns": p["joined_ns"],
        }
        for source, p in fold(bodies).items()
    }


def joined_body(source: str, name: str, role: str, time_ns: int) -> dict[str, Any]:
    return {"source": source, "event": "joined", "name": name, "role": role, "time_ns": time_ns}


def left_body(source: str, name: str, role: str, time_ns: int) -> dict[str, Any]:
    return {"source": source, "event": "left", "name": name, "role": role, "time_ns": time_ns}


# -- operations on a LocalRecorder (I/O: store, ledger, peers) --------------------------------------
async def join(rec: Any, sid: str, source: str, name: str, role: str, expires_ns: int | None = None) -> str:
    """Add (or re-open) `source` on a running session; returns its new WHIP token. A session admits
    at most `Settings.max_participants` present participants (429 beyond). Joining again while
    present replaces the earlier connection (see `_replace`). With
    `expires_ns` (the invitation's expiry) the token stops working then, and the participant's
    peer and viewers are cut off (see `check_deadlines`)."""

    if not is_remote_source(source):
        raise BadRequest(f"远程信号源名称无效 (remote source must be remote-<id>, got {source!r})")
    facts = await asyncio.to_thread(rec.store.facts, sid)
    if facts.stop is not None:
        raise SessionStopped(f"会话已结束 (session {sid} was stopped)")
    folded = fold(facts.participant_entries)
    present = folded.get(source, {}).get("present", False)
    others = sum(1 for s, p in folded.items() if p.get("present") and s != source)
    limit = int(getattr(rec.settings, "max_participants", 20))
    if not present and others >= limit:
        raise TooManyParticipants(
            f"远程参与人已达上限 {limit} 人 (session already has {others} remote participants; "
            f"TONGLU_MAX_PARTICIPANTS={limit})"
        )
    token: str = await asyncio.to_thread(rec.store.add_source_token, sid, source, expires_ns, "invitation_expired")
    if expires_ns is not None:
        rec.deadlines[(sid, source)] = (expires_ns, "invitation_expired")
        rec._ensure_ticker()  # the tick that checks deadlines runs even before any media arrives
    if present:
        await _replace(rec, sid, source)
    else:
        await rec.ctx.append_async(sid, "participant", joined_body(source, name, role, time.time_ns()))
    return token


async def _replace(rec: Any, sid: str, source: str) -> None:
    """A second join with the same invitation (a reloaded page, another device) replaces the first:
    the first one's token already stopped working (a new one was issued), now its peer and its
    viewers end too, so one invitation never has two live connections. The publisher's gap runs
    until the new connection's first packet (`peer_disconnect`, "replaced")."""
    await rec.whep.end_viewers(sid, "participant_replaced", participant_source=source)
    live = rec.live.get(sid)
    peer = live.peers.get(source) if live is not None else None
    if live is not None and peer is not None and not peer.closed:
        await rec._end_peer(live, peer, "peer_disconnect", "同一邀请再次加入，旧连接被取代 replaced by a second join")


async def cut_off(rec: Any, sid: str, source: str, reason: str, by: str) -> dict[str, Any]:
    """What let a participant in has ended (`reason`: invitation_revoked / invitation_expired):
    its source token stops working now, its peer and its viewers end, and if it was present a
    `left` entry says why its source is silent from now on. Idempotent."""
    now = time.time_ns()
    rec.deadlines.pop((sid, source), None)
    await asyncio.to_thread(rec.store.limit_source, sid, source, now, reason)
    viewers = await rec.whep.end_viewers(sid, reason, participant_source=source)
    peer_ended = False
    live = rec.live.get(sid)
    peer = live.peers.get(source) if live is not None else None
    if live is not None and peer is not None and not peer.closed:
        await rec._end_peer(live, peer, None, "")
        peer_ended = True
    facts = await asyncio.to_thread(rec.store.facts, sid)
    p = fold(facts.participant_entries).get(source)
    left = False
    if p is not None and p["present"] and facts.stop is None:
        body = left_body(source, p["name"], p["role"], time.time_ns())
        body.update(by=by, reason=reason)
        await rec.ctx.append_async(sid, "participant", body)
        left = True
    return {"session": sid, "source": source, "reason": reason, "viewers_ended": viewers,
            "peer_ended": peer_ended, "left": left}


def close_pending_gaps(rec: Any, live: Any, source: str, now_ns: int) -> None:
    """The participant leaves while its source has an open gap (its connection was replaced and
    did not come back): the gap ends now; the `left` entry explains the silence after it."""
    from tonglu.evidence.manifest import GapRecord
    from tonglu.recorder.events import GapClosed

    for (src, track), st in live.tracks.items():
        if src == source and st.pending_gap is not None:
            reason, start, rtp, detail = st.pending_gap
            st.pending_gap = None
            rec._gap(live, GapClosed(GapRecord(src, track, reason, start, max(start, now_ns), rtp_start=rtp,
                                               detail=detail)))


def check_deadlines(rec: Any, now_ns: int) -> None:
    """Every recorder tick: cut off participants whose invitation ran out."""
    from tonglu.recorder.context import spawn

    for (sid, source), (not_after, reason) in list(rec.deadlines.items()):
        if now_ns >= not_after:
            rec.deadlines.pop((sid, source), None)
            spawn(cut_off(rec, sid, source, reason, "system"))


async def leave(rec: Any, sid: str, source: str, by: str) -> None:
    """The participant leaves: its peer ends (no gap: the `left` entry says why the source is
    silent from now on) and a `left` entry is written."""

    facts = await asyncio.to_thread(rec.store.facts, sid)
    p = fold(facts.participant_entries).get(source)
    if p is None or not p["present"]:
        raise SourceNotFound(f"没有在场的远程参与人 {source} (no remote participant {source!r} present)")
    if facts.stop is not None:
        raise SessionStopped(f"会话已结束 (session {sid} was stopped)")
    # until it joins again (a new token), its token publishes nothing and it watches nothing
    await asyncio.to_thread(rec.store.limit_source, sid, source, time.time_ns(), "participant_left")
    rec.deadlines.pop((sid, source), None)
    await rec.whep.end_viewers(sid, "participant_left", participant_source=source)
    live = rec.live.get(sid)
    if live is not None:
        peer = live.peers.get(source)
        if peer is not None:
            await rec._end_peer(live, peer, None, "")
    if live is not None:
        close_pending_gaps(rec, live, source, time.time_ns())
    body = left_body(source, p["name"], p["role"], time.time_ns())
    body["by"] = by
    await rec.ctx.append_async(sid, "participant", body)


def status(facts: Any, live: Any) -> list[dict[str, Any]]:
    """Remote participants of a session for its status: who, role, present, connected."""
    out = []
    for source, p in fold(facts.participant_entries).items():
        peer = live.peers.get(source) if live is not None else None
        connected = bool(peer is not None and not peer.closed and peer.state == "connected")
        out.append({"source": source, **p, "connected": connected})
    return out
