"""The uploader and a hold placed or lifted while one of its PUTs is in flight: the bulk pass lists
the session's versions before that object exists, so the uploader must correct the new version."""

from __future__ import annotations

from typing import Any

from tests.hold.conftest import HoldEnv
from tonglu.evidence import keys
from tonglu.evidence.holds import Holds
from tonglu.evidence.objectstore import ObjectStore, PutResult
from tonglu.evidence.retention import RetentionPolicy
from tonglu.evidence.uploader import Uploader


class PlaceHoldBeforePut(ObjectStore):
    """The real store client; just before the PUT of `key` (its hold flag already chosen by the
    uploader) another person's request changes the hold through `action`."""

    def __init__(self, base: ObjectStore, key: str, action: Any) -> None:
        self.__dict__.update(base.__dict__)
        self.key, self.action, self.fired = key, action, False

    def put_if_absent(self, key: str, *args: Any, **kwargs: Any) -> PutResult:
        if key == self.key and not self.fired:
            self.fired = True
            self.action()
        return super().put_if_absent(key, *args, **kwargs)


def _held(env: HoldEnv, key: str) -> bool:
    return env.store.stat(key).legal_hold


def test_a_hold_placed_while_a_put_is_in_flight_reaches_that_object(hold_env: HoldEnv) -> None:
    env = hold_env
    sid = env.bare_session("S-race")
    holds = Holds(env.services.ledger, env.store, RetentionPolicy.from_settings(env.settings))
    entry = env.services.ledger.append(sid, "note", {"text": "在途", "by": "int1"})
    key = keys.manifest_key(sid, entry.seq)

    def place() -> None:
        _hold, _new, report = holds.place(sid, reason="排非", case_reference="R-1", by="sup1")
        assert report.complete and report.total == 1  # only session_start is stored yet

    store = PlaceHoldBeforePut(env.store, key, place)
    up = Uploader(env.services.spool, store, env.settings, ledger=env.services.ledger, threads=1)
    try:
        up.drain(max_wait_s=30)
    finally:
        up.close()
    assert store.fired
    assert _held(env, key), "the version created while the hold was being placed is not held"
    assert all(env.store.stat(v.key, version_id=v.version_id).legal_hold for v in env.versions(sid))


def test_a_lift_approved_while_a_put_is_in_flight_releases_that_object(hold_env: HoldEnv) -> None:
    env = hold_env
    sid = env.bare_session("S-race-lift")
    holds = Holds(env.services.ledger, env.store, RetentionPolicy.from_settings(env.settings))
    holds.place(sid, reason="排非", case_reference="R-2", by="sup1")
    req = holds.request_lift(sid, hold_id=None, reason="结束", by="sup1")
    key = keys.manifest_key(sid, env.services.ledger.head(sid)[0] - 1)  # the request, not stored yet

    store = PlaceHoldBeforePut(env.store, key, lambda: holds.approve_lift(sid, req.request_id, by="sup2"))
    up = Uploader(env.services.spool, store, env.settings, ledger=env.services.ledger, threads=1)
    try:
        up.drain(max_wait_s=30)
    finally:
        up.close()
    assert store.fired and not _held(env, key)
    assert not any(env.store.stat(v.key, version_id=v.version_id).legal_hold for v in env.versions(sid))
