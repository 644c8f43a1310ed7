"""Where new sessions record: the recorder hosts registered with the web tier, their free
capacity, and which of them are alive. Pure logic (sans-I/O): fed registrations, heartbeats,
probe results and `now_ns`; returns events. The web tier's adapter (`recorder.hosts`) does the
HTTP and the timer.

    p = Placement(heartbeat_timeout_ns=6 * SECOND)
    p.register(HostInfo("rec-1", "https://10.0.0.2:9000", capacity=8, key_id="..."), now_ns)
    p.heartbeat("rec-1", now_ns, sessions=["S1", "S2"])   # the sessions whose ledger it holds
    host = p.place("S3", now_ns)                            # most free capacity among live hosts
    for ev in p.tick(now_ns): ...                           # HostDead after missed heartbeats

A host is dead when no heartbeat came within `heartbeat_timeout_ns` or `max_probe_failures`
probes in a row failed. Its sessions stay assigned to it (their ledger and spool are on that
host): calls for them fail with "host unreachable" until it registers again (`HostReturned`),
when its start-up recovery has sealed and spooled what the killed process left, and a publisher
that reconnects continues the session after a `recorder_restart` gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SECOND = 1_000_000_000


@dataclass(frozen=True)
class HostInfo:
    host: str
    url: str
    capacity: int  # sessions it may record at once
    key_id: str  # its certified checkpoint key


@dataclass
class HostState:
    info: HostInfo
    registered_ns: int
    last_seen_ns: int
    alive: bool = True
    probe_failures: int = 0
    sessions: set[str] = field(default_factory=set)  # every session this host owns (ledger)
    recording: set[str] = field(default_factory=set)  # those still recording (count against capacity)

    @property
    def free(self) -> int:
        return self.info.capacity - len(self.recording)

    def to_json(self) -> dict[str, object]:
        return {
            "host": self.info.host,
            "url": self.info.url,
            "capacity": self.info.capacity,
            "key_id": self.info.key_id,
            "alive": self.alive,
            "recording": len(self.recording),
            "sessions": len(self.sessions),
            "free": self.free,
            "last_seen_ns": self.last_seen_ns,
        }


# -- events ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HostRegistered:
    host: str
    url: str


@dataclass(frozen=True)
class HostReturned:
    """A host that was dead registered or answered again."""

    host: str
    down_ns: int  # how long it was gone


@dataclass(frozen=True)
class HostDead:
    host: str
    reason: str  # "heartbeat" | "probe"
    sessions: tuple[str, ...]  # sessions recording on it when it was declared dead


class NoCapacity(Exception):
    """No live recorder host has a free slot."""


class UnknownHost(Exception):
    pass


class Placement:
    def __init__(self, heartbeat_timeout_ns: int = 6 * SECOND, max_probe_failures: int = 2) -> None:
        self.heartbeat_timeout_ns = heartbeat_timeout_ns
        self.max_probe_failures = max_probe_failures
        self.hosts: dict[str, HostState] = {}
        self._owner: dict[str, str] = {}
        self._dead_since: dict[str, int] = {}

    # -- inputs ---------------------------------------------------------------------------------
    def register(self, info: HostInfo, now_ns: int) -> list[object]:
        """A (re-)registration: a new host, a changed URL/capacity, or a dead host back."""
        if info.capacity < 0:
            raise ValueError("capacity must be >= 0")
        state = self.hosts.get(info.host)
        if state is None:
            self.hosts[info.host] = HostState(info, now_ns, now_ns)
            return [HostRegistered(info.host, info.url)]
        state.info = info
        state.registered_ns = now_ns
        return self._seen(state, now_ns)

    def heartbeat(
        self, host: str, now_ns: int, sessions: list[str] | None = None, recording: list[str] | None = None
    ) -> list[object]:
        state = self.hosts.get(host)
        if state is None:
            raise UnknownHost(host)
        if sessions is not None:
            self._assign(state, sessions)
        if recording is not None:
            state.recording = set(recording)
            state.sessions |= state.recording
        return self._seen(state, now_ns)

    def probe(self, host: str, ok: bool, now_ns: int) -> list[object]:
        """The web tier's own health probe of a host (independent of its heartbeats)."""
        state = self.hosts.get(host)
        if state is None:
            raise UnknownHost(host)
        if ok:
            state.probe_failures = 0
            return []
        state.probe_failures += 1
        if state.alive and state.probe_failures >= self.max_probe_failures:
            return [self._die(state, "probe", now_ns)]
        return []

    def tick(self, now_ns: int) -> list[object]:
        """Hosts whose heartbeats stopped are declared dead (once)."""
        out: list[object] = []
        for state in self.hosts.values():
            if state.alive and now_ns - state.last_seen_ns > self.heartbeat_timeout_ns:
                out.append(self._die(state, "heartbeat", now_ns))
        return out

    # -- decisions ------------------------------------------------------------------------------
    def place(self, sid: str, now_ns: int) -> HostState:
        """The live host with the most free capacity (ties: by name), which takes `sid`.
        Raises NoCapacity when every live host is full."""
        live = [s for s in self.hosts.values() if s.alive and s.free > 0]
        if not live:
            total = sum(1 for s in self.hosts.values() if s.alive)
            raise NoCapacity(
                f"没有可用的录像主机 (no recorder host with free capacity: {total} live of {len(self.hosts)})"
            )
        best = min(live, key=lambda s: (-s.free, s.info.host))
        best.recording.add(sid)
        best.sessions.add(sid)
        self._owner[sid] = best.info.host
        return best

    def owner(self, sid: str) -> HostState | None:
        host = self._owner.get(sid)
        return self.hosts.get(host) if host is not None else None

    def rebind(self, slot: str, sid: str) -> None:
        """A slot taken with `place(slot)` before the host named the session gets its real id."""
        host = self._owner.pop(slot, None)
        state = self.hosts.get(host) if host is not None else None
        if state is None:
            return
        for group in (state.recording, state.sessions):
            if slot in group:
                group.discard(slot)
                group.add(sid)
        self._owner[sid] = state.info.host

    def finished(self, sid: str) -> None:
        """A session stopped: its slot is free (it stays assigned for reads)."""
        state = self.owner(sid)
        if state is not None:
            state.recording.discard(sid)

    def live_hosts(self) -> list[HostState]:
        return sorted((s for s in self.hosts.values() if s.alive), key=lambda s: s.info.host)

    # -- internals ------------------------------------------------------------------------------
    def _assign(self, state: HostState, sessions: list[str]) -> None:
        state.sessions = set(sessions) | state.recording
        for sid in state.sessions:
            self._owner[sid] = state.info.host

    def _seen(self, state: HostState, now_ns: int) -> list[object]:
        state.last_seen_ns = now_ns
        state.probe_failures = 0
        if state.alive:
            return []
        state.alive = True
        since = self._dead_since.pop(state.info.host, now_ns)
        return [HostReturned(state.info.host, now_ns - since)]

    def _die(self, state: HostState, reason: str, now_ns: int) -> HostDead:
        state.alive = False
        self._dead_since[state.info.host] = now_ns
        return HostDead(state.info.host, reason, tuple(sorted(state.recording)))
