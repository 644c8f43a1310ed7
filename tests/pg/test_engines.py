"""The storage layer on both engines, in every run: the same tests against SQLite and a real
PostgreSQL (index writes and reads, session search in Chinese, accounts, the audit trail, WHIP
source tokens). The whole web/search/index area runs on PostgreSQL with `pytest --db=pg`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select

from tests.search.test_search import S1_T0, S2_T0, World, lines_doc, start_body
from tonglu.config import Settings
from tonglu.evidence.index import Index, SessionSearch, search_text
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.recorder.errors import TokenInvalid
from tonglu.recorder.store import SessionStore
from tonglu.web.accounts import Accounts
from tonglu.web.audit import AuditLog
from tonglu.web.tables import engine_for

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)


@pytest.fixture(params=["sqlite", "pg"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "pg":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'index.db'}"


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> World:
    settings = Settings.from_env({"TONGLU_DATA_DIR": str(tmp_path / "data"), "TONGLU_DATABASE_URL": db_url})
    w = World(settings)
    w.session("S1", S1_T0, start_body("A-2026-001", "审讯室1", "张三", ["李警官"], "li"), lawyer="赵律师")
    w.versions.publish("S1", lines_doc(S1_T0, "那天晚上我在朋友家", "我没有去过仓库"), by="li")
    w.session("S2", S2_T0, start_body("B-2026-017", "审讯室2", "李四", ["王警官"], "wang"))
    w.versions.publish("S2", lines_doc(S2_T0, "开始讯问", "仓库的钥匙在我这里"), by="asr")
    return w


def test_session_search_in_chinese(world: World) -> None:
    assert world.find() == ["S2", "S1"]
    assert world.find(text="仓") == ["S2", "S1"]  # one character: a scan, as on SQLite
    assert world.find(text="仓库的钥匙") == ["S2"]  # 3+: the trigram index (FTS5 / pg_trgm)
    assert world.find(text="朋友家") == ["S1"]
    assert world.find(case="a-2026") == ["S1"]  # ASCII case ignored on both
    assert world.find(person="赵律师") == ["S1"]
    assert world.find(person="王") == ["S2"]
    assert world.find(room="审讯室2", text="钥匙") == ["S2"]
    assert world.find(owners=("wang",)) == ["S2"]
    assert world.find(text="50%") == [] and world.find(case="_") == []  # LIKE wildcards are literal
    (s2,) = world.index.search(SessionSearch(text="钥匙"))
    assert [h.text for h in s2.hits] == ["仓库的钥匙在我这里"]


def test_index_reads_and_reset(world: World) -> None:
    info = world.index.get_session("S1")
    assert info is not None and info.state == "stopped" and info.interviewers == ["李警官"]
    assert world.index.applied_seqs("S1") == world.ledger.entries("S1")[-1].seq + 1
    assert [a.body["name"] for a in world.index.annotations("S1", "participant")] == ["赵律师"]
    assert world.index.count_sessions() == 2
    world.index.reset()
    assert world.index.count_sessions() == 0
    assert world.index.sync_from_ledger(world.ledger, "S1") > 0
    assert world.find(person="赵律师") == ["S1"]


def test_concurrent_writers_apply_each_entry_once(db_url: str, tmp_path: Path) -> None:
    """Four threads apply the same ledger at once: every (session, seq) lands exactly once."""
    spool = Spool(tmp_path / "spool")
    ledger = Ledger(tmp_path / "ledger", spool, SiteKey.load_or_create(tmp_path / "keys"))
    ledger.append("S", "session_start", start_body("C-1", "审讯室3", "某某", ["李警官"], "li"))
    for i in range(40):
        ledger.append("S", "marker", {"time_ns": i, "note": f"第{i}条", "by": "li"})
    index = Index(db_url)
    entries = ledger.entries("S")
    errors: list[BaseException] = []

    def apply_all() -> None:
        try:
            for e in entries:
                index.apply(e)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=apply_all) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert index.applied_seqs("S") == len(entries)
    assert len(index.annotations("S", "marker")) == 40
    with index.engine.connect() as conn:
        persons = conn.execute(select(func.count()).select_from(search_text).where(search_text.c.field == "person"))
        assert persons.scalar_one() == 3  # 某某, 李警官, li (the creator)
    assert index.get_session("S") is not None


def test_accounts(db_url: str) -> None:
    acc = Accounts.from_url(db_url, hasher=FAST_HASHER)
    acc.create_user("li", "interviewer", "correct horse 1", "李警官")
    assert acc.authenticate("li", "correct horse 1") is not None
    assert acc.authenticate("li", "wrong horse 1") is None
    cookie = acc.start_page_session("li")
    p = acc.resolve_session_token(cookie)
    assert p is not None and p.user == "li" and p.display_name == "李警官"
    rec, token = acc.issue_api_token("li", "脚本")
    bearer = acc.resolve_bearer(token)
    assert bearer is not None and bearer.user == "li"
    assert [t.id for t in acc.list_api_tokens("li")] == [rec.id]
    assert acc.revoke_api_token(rec.id) and acc.resolve_bearer(token) is None
    acc.set_disabled("li", True)
    assert acc.authenticate("li", "correct horse 1") is None


def test_audit_trail(db_url: str, tmp_path: Path) -> None:
    log = AuditLog(engine_for(db_url), tmp_path / "audit")
    for i in range(5):
        log.append(user=f"u{i}", role="reviewer", address="10.0.0.1", action="view", obj=f"/review/s{i}")
    assert log.count() == 5 and log.verify().ok
    assert [r["user"] for r in log.query(action="view")][:1] in (["u0"], ["u4"])
    reopened = AuditLog(engine_for(db_url), tmp_path / "audit")
    reopened.append(user="u5", role="auditor", address="10.0.0.2", action="export", obj="/audit.csv")
    assert reopened.count() == 6 and reopened.verify().ok


def test_source_tokens(db_url: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ledger = Ledger(tmp_path / "ledger", spool, SiteKey.load_or_create(tmp_path / "keys"))
    store = SessionStore(ledger, db_url)
    req: dict[str, Any] = {"room": "审讯室1", "case_number": "A-1", "suspect": "张三",
                           "interviewers": ["李警官", "王警官"]}
    sid, tokens = store.create(req, "li")
    store.check_token(sid, "main", tokens["main"])
    with pytest.raises(TokenInvalid):
        store.check_token(sid, "main", tokens["panorama"])
    extra = store.add_source_token(sid, "remote-1", not_after_ns=2**62, reason="invitation_expired")
    store.check_token(sid, "remote-1", extra)
    assert store.source_limit(sid, "remote-1") == (2**62, "invitation_expired")
