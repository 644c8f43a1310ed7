"""Lawyer consultation pause (会见, Criminal Procedure Law art. 39): pure logic, no I/O.

A consultation between the defendant and the defence lawyer must not be monitored. While it runs:
- forwarding: the media of the consulting parties goes to nobody but each other. A *party* is
  either ``ROOM`` (the room's own sources: the defendant in the dock, seen by the room display) or
  one remote participant's source (``remote-<id>``). A viewer belongs to a party: a remote
  participant to its own source, the room display to ``ROOM``; staff viewers to none.
- recording: decided by one setting (`Settings.consultation_recording`). ``not_recorded`` (the
  default): the recorder writes none of the parties' media and each of their tracks gets exactly
  one gap with reason ``lawyer_consultation``, bounded by the consultation's start and the first
  frame recorded after its end. ``recorded``: media is recorded as usual (only the forwarding stops).
- the manifest holds a ``consultation`` entry when it starts and one when it ends (who started it,
  who ended it, the parties, the setting); the next checkpoint signs them (one is written at once).
  The integrity report treats a ``lawyer_consultation`` gap as explained only when such a pair of
  entries bounds it (`tonglu.integrity`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tonglu.recorder.errors import BadRequest
from tonglu.recorder.participants import is_remote_source

REASON = "lawyer_consultation"
ROOM = "room"
MODES = ("not_recorded", "recorded")
LAWYER_ROLES = ("lawyer",)
DEFENDANT_ROLES = ("defendant",)


def party_of(source: str) -> str:
    """The party a source belongs to: a remote participant is its own party, the rest is the room."""
    return source if is_remote_source(source) else ROOM


@dataclass(frozen=True)
class Consultation:
    id: str
    parties: tuple[str, ...]  # ROOM and/or remote sources
    sources: tuple[str, ...]  # every source of those parties: not forwarded to others, maybe not recorded
    started_ns: int
    started_by: str
    recording: str  # one of MODES

    def allowed(self, source: str) -> frozenset[str] | None:
        """Which viewer parties may still receive `source` (None: everybody, it is not private)."""
        if source not in self.sources:
            return None
        own = party_of(source)
        return frozenset(p for p in self.parties if p != own)

    @property
    def withholds(self) -> bool:
        return self.recording == "not_recorded"

    def started_body(self) -> dict[str, Any]:
        return {
            "event": "started",
            "consultation_id": self.id,
            "reason": REASON,
            "parties": list(self.parties),
            "sources": list(self.sources),
            "recording": self.recording,
            "by": self.started_by,
            "time_ns": self.started_ns,
        }

    def ended_body(self, now_ns: int, by: str) -> dict[str, Any]:
        return {
            "event": "ended",
            "consultation_id": self.id,
            "reason": REASON,
            "parties": list(self.parties),
            "sources": list(self.sources),
            "recording": self.recording,
            "started_by": self.started_by,
            "started_ns": self.started_ns,
            "by": by,
            "time_ns": now_ns,
        }


def _pick(participants: Mapping[str, Mapping[str, Any]], roles: tuple[str, ...], wanted: str | None,
          what: str) -> str | None:
    present = {s: p for s, p in participants.items() if p.get("present")}
    if wanted:
        p = present.get(wanted)
        if p is None:
            raise BadRequest(f"{what} {wanted} 不在场 (no present remote participant {wanted!r})")
        if p.get("role") not in roles:
            raise BadRequest(f"{wanted} 的身份不是{what} ({wanted!r} has role {p.get('role')!r}, not {roles[0]})")
        return wanted
    matches = sorted(s for s, p in present.items() if p.get("role") in roles)
    if len(matches) > 1:
        raise BadRequest(f"有多名{what}在场，请指定 (several {roles[0]}s present: name one of {matches})")
    return matches[0] if matches else None


def plan(
    sources: Iterable[str],
    participants: Mapping[str, Mapping[str, Any]],
    *,
    lawyer: str | None,
    defendant: str | None,
    now_ns: int,
    by: str,
    recording: str,
) -> Consultation:
    """The consultation between the defence lawyer (a present remote participant with role
    lawyer; named, or the only one) and the defendant (a present remote participant with role
    defendant, named or the only one; else the room itself)."""
    if recording not in MODES:
        raise BadRequest(f"consultation recording must be one of {MODES}, got {recording!r}")
    law = _pick(participants, LAWYER_ROLES, lawyer, "辩护律师")
    if law is None:
        raise BadRequest("没有在场的辩护律师 (no defence lawyer has joined the session)")
    if defendant == ROOM:
        dfd = ROOM
    else:
        dfd = _pick(participants, DEFENDANT_ROLES, defendant, "被告人") or ROOM
    parties = (dfd, law)
    all_sources = list(sources)
    withheld = tuple(s for s in all_sources if party_of(s) in parties)
    return Consultation(secrets.token_hex(6), parties, withheld, now_ns, by, recording)


def open_consultation(bodies: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The `started` body of the consultation still open in these `consultation` entries, if any."""
    current: dict[str, Any] | None = None
    for b in bodies:
        if b.get("event") == "started":
            current = dict(b)
        elif b.get("event") == "ended" and current is not None and b.get("consultation_id") == current.get(
            "consultation_id"
        ):
            current = None
    return current


def from_body(body: Mapping[str, Any]) -> Consultation:
    return Consultation(
        str(body["consultation_id"]),
        tuple(body.get("parties") or ()),
        tuple(body.get("sources") or ()),
        int(body["time_ns"]),
        str(body.get("by", "")),
        str(body.get("recording", "not_recorded")),
    )


class Withhold:
    """One track through a consultation that is not recorded (sans I/O).

    Every frame from `begin` on is withheld (the first one tells the pipeline to seal the open
    segment). After `end`, the first frame that can start a segment (any audio frame; a video
    keyframe) is recorded again and closes the track's single gap: [start_ns, that frame's wall time].
    """

    def __init__(self, kind: str, start_ns: int, consultation_id: str) -> None:
        self.kind = kind
        self.start_ns = start_ns
        self.consultation_id = consultation_id
        self.ended_ns: int | None = None
        self.ended_by = ""
        self.rtp_start: int | None = None
        self.cut_sent = False
        self.withheld = 0
        self.keyframe_asked_ns = 0

    def end(self, now_ns: int, by: str) -> None:
        self.ended_ns = now_ns
        self.ended_by = by

    def on_frame(self, rtp: int, keyframe: bool, wall_ns: int) -> tuple[bool, tuple[int, int] | None]:
        """(record this frame?, the gap's (start_ns, end_ns) when this frame closes it)."""
        if self.ended_ns is None or (self.kind == "video" and not keyframe):
            if self.rtp_start is None:
                self.rtp_start = rtp
            self.withheld += 1
            return False, None
        return True, (self.start_ns, max(self.ended_ns, wall_ns))  # never ends before the signed end

    def close(self, now_ns: int) -> tuple[int, int]:
        """The gap when no frame came after the end (peer gone, session stopping)."""
        return self.start_ns, max(self.start_ns, self.ended_ns or now_ns)
