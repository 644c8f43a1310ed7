"""Placement of sessions on recorder hosts: pure logic, no sockets, no sleeps."""

from __future__ import annotations

import pytest

from tonglu.recorder.placement import (
    SECOND,
    HostDead,
    HostInfo,
    HostRegistered,
    HostReturned,
    NoCapacity,
    Placement,
    UnknownHost,
)


def hosts(p: Placement, now: int = 0, **caps: int) -> None:
    for name, cap in caps.items():
        assert p.register(HostInfo(name, f"http://{name}:9000", cap, "k" + name), now) == [
            HostRegistered(name, f"http://{name}:9000")
        ]


def test_places_by_free_capacity_and_refuses_when_full():
    p = Placement()
    hosts(p, a=2, b=3)
    placed = [p.place(f"S{i}", 0).info.host for i in range(5)]
    # b (3 free) first, then the tie a/b at 2 goes by name, and so on: both end full
    assert placed == ["b", "a", "b", "a", "b"]
    assert {h.info.host: h.free for h in p.hosts.values()} == {"a": 0, "b": 0}
    with pytest.raises(NoCapacity, match="2 live of 2"):
        p.place("S5", 0)
    p.finished("S0")
    assert p.place("S5", 0).info.host == "b"
    assert p.owner("S0").info.host == "b"  # a stopped session stays with its host (reads)


def test_missed_heartbeats_declare_a_host_dead_once_and_it_returns():
    p = Placement(heartbeat_timeout_ns=3 * SECOND)
    hosts(p, a=4, b=4)
    p.place("S1", 0)
    p.place("S2", 0)
    assert p.tick(2 * SECOND) == []
    p.heartbeat("a", 2 * SECOND)
    events = p.tick(4 * SECOND)
    assert events == [HostDead("b", "heartbeat", ("S2",))] or events == [HostDead("b", "heartbeat", ("S1",))]
    assert p.tick(5 * SECOND) == []  # once
    dead = events[0].host
    # new sessions avoid the dead host
    assert {p.place(f"N{i}", 5 * SECOND).info.host for i in range(3)} == {"a" if dead == "b" else "b"}
    assert p.heartbeat(dead, 9 * SECOND) == [HostReturned(dead, 5 * SECOND)]
    assert p.owner(events[0].sessions[0]).alive


def test_failed_probes_kill_a_host_even_while_it_heartbeats():
    p = Placement(max_probe_failures=2)
    hosts(p, a=1)
    assert p.probe("a", False, 1) == []
    assert p.probe("a", True, 2) == []  # a success resets the count
    assert p.probe("a", False, 3) == []
    assert p.probe("a", False, 4) == [HostDead("a", "probe", ())]
    with pytest.raises(NoCapacity):
        p.place("S1", 5)


def test_heartbeat_reassigns_sessions_a_restarted_web_tier_forgot():
    p = Placement()
    hosts(p, a=2)
    p.heartbeat("a", 1, sessions=["OLD1", "OLD2"], recording=["OLD2"])
    assert p.owner("OLD1").info.host == "a" and p.hosts["a"].free == 1
    with pytest.raises(UnknownHost):
        p.heartbeat("ghost", 1)
    with pytest.raises(ValueError):
        p.register(HostInfo("x", "http://x", -1, "k"), 0)


def test_a_slot_is_rebound_to_the_session_id_the_host_chose():
    p = Placement()
    hosts(p, a=1)
    p.place("pending-1", 0)
    p.rebind("pending-1", "S9")
    assert p.owner("S9").info.host == "a" and p.owner("pending-1") is None
    assert p.hosts["a"].recording == {"S9"}
