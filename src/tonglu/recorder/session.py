"""A session being recorded in this process: its sources, their tracks and the current peers."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tonglu.recorder.clock import SourceClock
from tonglu.recorder.consultation import Consultation, Withhold
from tonglu.recorder.store import SessionFacts
from tonglu.recorder.track import PeerTrack, TrackState

PEER_STALE_NS = 2_000_000_000  # a peer silent this long may be replaced by a new offer
PEER_CONNECT_NS = 15_000_000_000  # a peer still connecting counts as busy this long


@dataclass
class Peer:
    source: str
    pc: Any
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    etag: str = field(default_factory=lambda: '"' + secrets.token_hex(6) + '"')
    created_ns: int = field(default_factory=time.time_ns)
    tracks: dict[str, PeerTrack] = field(default_factory=dict)
    state: str = "new"
    closed: bool = False
    end_reason: str | None = None
    answer: str = ""

    @property
    def last_arrival_ns(self) -> int | None:
        vals = [t.last_arrival_ns for t in self.tracks.values() if t.last_arrival_ns is not None]
        return max(vals) if vals else None

    def busy(self, now_ns: int) -> bool:
        if self.closed:
            return False
        last = self.last_arrival_ns
        if last is None:
            return now_ns - self.created_ns < PEER_CONNECT_NS and self.state not in ("failed", "closed")
        return now_ns - last < PEER_STALE_NS

    def status(self) -> dict[str, Any]:
        return {
            "peer_id": self.id,
            "state": self.state,
            "created_ns": self.created_ns,
            "last_packet_ns": self.last_arrival_ns,
            "tracks": {name: t.stats() for name, t in self.tracks.items()},
        }


@dataclass
class LiveSession:
    facts: SessionFacts
    stopping: bool = False
    peers: dict[str, Peer] = field(default_factory=dict)
    tracks: dict[tuple[str, str], TrackState] = field(default_factory=dict)
    clocks: dict[str, SourceClock] = field(default_factory=dict)
    gaps_written: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_checkpoint_ns: int = field(default_factory=time.time_ns)
    consultation: Consultation | None = None  # a lawyer consultation running now

    def withhold(self, st: TrackState) -> None:
        """A running consultation that is not recorded withholds this track of one of its parties."""
        c = self.consultation
        if c is not None and c.withholds and st.source in c.sources and st.withhold is None:
            kind = "video" if st.track.startswith("video") else "audio"
            st.withhold = Withhold(kind, c.started_ns, c.id)

    @property
    def id(self) -> str:
        return self.facts.id

    def track_state(self, source: str, track: str) -> TrackState:
        key = (source, track)
        st = self.tracks.get(key)
        if st is None:
            st = self.tracks[key] = TrackState(source, track)
            self.withhold(st)
        return st

    def clock(self, source: str) -> SourceClock:
        c = self.clocks.get(source)
        if c is None:
            c = self.clocks[source] = SourceClock()
        return c
