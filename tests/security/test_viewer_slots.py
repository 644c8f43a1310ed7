"""Finding 8 (viewer-slot exhaustion): 16 WHEP requests that never connect held every viewer slot of a
session for 20 s (repeatable), so the supervisor got 429.

Now slots are per principal (at most MAX_PENDING_PER_PRINCIPAL of them still connecting), slots are
kept for admins and supervisors, and a pending slot expires after CONNECT_TIMEOUT_S (5 s). Checked
with the recorder in this process and in a worker process; the slot rule itself is a pure function.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live.conftest import FAST_HASHER, LiveServer
from tests.live.media import offer_sdp
from tests.recorder.conftest import ADMIN, make_settings
from tests.recorder.workerfix import cluster, run
from tonglu.recorder.whep import (
    CONNECT_TIMEOUT_S,
    MAX_PENDING_PER_PRINCIPAL,
    MAX_PER_PRINCIPAL,
    MAX_VIEWERS_PER_SESSION,
    RESERVED_FOR_MONITORS,
    Viewer,
    admit,
)
from tonglu.web.accounts import Accounts

BURST = 16


@pytest.fixture(scope="module")
def offers() -> list[str]:
    """Real offers whose peers are gone: the recorder's answer never connects."""
    loop = asyncio.new_event_loop()
    try:
        return [loop.run_until_complete(offer_sdp()) for _ in range(BURST + 8)]
    finally:
        loop.close()


def attack(base: str, sid: str, attacker: dict[str, str], supervisor: dict[str, str], offers: list[str],
           rounds: int = 2) -> dict[str, Any]:
    seen: dict[str, Any] = {"rounds": []}
    url = f"/whep/{sid}/main"

    def post(c: httpx.Client, headers: dict[str, str], sdp: str) -> httpx.Response:
        return c.post(url, content=sdp, headers={**headers, "Content-Type": "application/sdp"})

    with httpx.Client(base_url=base, timeout=30) as c:
        for _round in range(rounds):  # repeatable: a second burst right after the first fails the same way
            t_last = time.monotonic()
            codes = []
            for sdp in offers[:BURST]:
                r = post(c, attacker, sdp)
                codes.append(r.status_code)
                if r.status_code == 201:
                    t_last = time.monotonic()
                else:
                    seen["reason"] = r.json()["detail"]
            sup = post(c, supervisor, offers[BURST])
            assert sup.status_code == 201, sup.text
            assert c.delete(sup.headers["location"], headers=supervisor).status_code == 200
            # the attacker's pending slots expire: it may try again after CONNECT_TIMEOUT_S at most
            freed = None
            for sdp in offers[BURST + 1:] * 40:
                r = post(c, attacker, sdp)
                if r.status_code == 201:
                    freed = time.monotonic() - t_last
                    break
                time.sleep(0.2)
            seen["rounds"].append({"codes": codes, "supervisor": sup.status_code, "freed_s": freed})
    return seen


def check(seen: dict[str, Any]) -> None:
    for rnd in seen["rounds"]:
        print(f"burst: {rnd['codes'].count(201)} admitted, {rnd['codes'].count(429)} refused; "
              f"supervisor {rnd['supervisor']}; attacker's pending slot freed after {rnd['freed_s']:.2f} s")
        assert rnd["codes"].count(201) <= MAX_PENDING_PER_PRINCIPAL and rnd["codes"].count(429) >= BURST - 2
        assert rnd["supervisor"] == 201
        assert rnd["freed_s"] is not None and rnd["freed_s"] <= CONNECT_TIMEOUT_S + 1.0
    assert "未连接" in seen["reason"] and "5 s" in seen["reason"]


@pytest.mark.slow
def test_never_connecting_viewers_cannot_starve_the_supervisor(live_server: LiveServer, offers: list[str]) -> None:
    srv = live_server
    s = srv.create_session()  # interviewers 李四, 王五
    srv.services.accounts.create_user("li4", "interviewer", "pw-li4-0123456789", display_name="李四")
    attacker = {"Authorization": f"Bearer {srv.services.accounts.issue_api_token('li4', 't')[1]}"}
    check(attack(srv.url, s["id"], attacker, srv.auth("supervisor"), offers))


@pytest.mark.slow
def test_never_connecting_viewers_through_a_recorder_worker(tmp_path: Path, offers: list[str]) -> None:
    settings = make_settings(tmp_path)
    with cluster(settings, 1) as (server, _handle):
        accounts = server.services.accounts = Accounts.from_url(settings.db_url, hasher=FAST_HASHER)
        accounts.create_user("li4", "interviewer", "pw-li4-0123456789", display_name="李四")
        accounts.create_user("zhao", "supervisor", "pw-zhao-0123456789", display_name="赵主任")
        attacker = {"Authorization": f"Bearer {accounts.issue_api_token('li4', 't')[1]}"}
        supervisor = {"Authorization": f"Bearer {accounts.issue_api_token('zhao', 't')[1]}"}
        s = server.create_session()
        seen = run(asyncio.to_thread(attack, server.url, s["id"], attacker, supervisor, offers, 1))
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            assert c.post(f"/api/sessions/{s['id']}/stop").status_code == 200
    check(seen)


# -- the slot rule (pure) -------------------------------------------------------------------------------
def viewer(user: str, role: str, since_ns: int, connected: bool) -> Viewer:
    return Viewer("s", "main", user, role, user, "-", pc=None, codec="vp8", since_ns=since_ns,
                  connected_ns=since_ns if connected else None)


def test_slots_per_principal_reserved_for_supervisors_and_pending_ones_expire() -> None:
    now = 100 * 10**9
    pending_ok = now - int(CONNECT_TIMEOUT_S * 1e9) + 10**8  # 0.1 s before its slot expires
    expired = now - int(CONNECT_TIMEOUT_S * 1e9)
    # pending per principal, expiring
    two_pending = [viewer("a", "interviewer", pending_ok, False) for _ in range(MAX_PENDING_PER_PRINCIPAL)]
    assert not admit(two_pending, "a", "interviewer", now).ok
    assert admit(two_pending, "b", "interviewer", now).ok  # someone else is not affected
    assert admit([viewer("a", "interviewer", expired, False)] * 8, "a", "interviewer", now).ok
    # connected per principal
    assert not admit([viewer("a", "participant", 1, True)] * MAX_PER_PRINCIPAL, "a", "participant", now).ok
    # non-monitors fill the session up to the reserve; supervisors still get in
    others = [viewer(f"u{i}", "participant", 1, True) for i in range(MAX_VIEWERS_PER_SESSION - RESERVED_FOR_MONITORS)]
    assert not admit(others, "new", "interviewer", now).ok
    assert admit(others, "sup", "supervisor", now).ok
    # a full session: a supervisor takes the oldest pending slot, nobody else gets one
    full = others + [viewer(f"m{i}", "admin", 1, True) for i in range(RESERVED_FOR_MONITORS - 1)]
    full.append(viewer("adm", "admin", pending_ok, False))
    assert len(full) == MAX_VIEWERS_PER_SESSION
    assert not admit(full, "new", "participant", now).ok
    taken = admit(full, "sup", "supervisor", now)
    assert taken.ok and taken.evict == full[-1].id
