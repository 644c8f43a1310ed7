"""The review page in headless Chromium (real uvicorn server): paste a 笔录, see the side-by-side with the
discrepancies highlighted and their recording times (Beijing time) as links that seek the player."""

from __future__ import annotations

import time
from collections.abc import Generator
from pathlib import Path

import pytest

from tests.bilu.builders import T0, record_pairs, record_text, transcript_doc
from tests.browser.conftest import BrowserFactory
from tests.recorder.conftest import Server, make_settings, run_server
from tests.web.test_journeys import fill, login
from tonglu.transcribe.service import TranscriptService

pytestmark = [pytest.mark.slow, pytest.mark.browser]
PASSWORD = "journey-password-1"


def test_review_page_imports_and_shows_the_comparison(tmp_path: Path, chromium: BrowserFactory) -> None:
    servers: Generator[Server, None, None] = run_server(make_settings(tmp_path))  # type: ignore[assignment]
    server = next(servers)
    try:
        services = server.services
        services.transcripts = TranscriptService(services.settings, services.spool, services.ledger)
        services.accounts.create_user("boss", "admin", PASSWORD, display_name="boss admin")
        sid = "s-bilu-page"
        services.ledger.append(sid, "session_start", {"room": "room-1", "case_number": "B-1", "suspect": "张三",
                                                      "interviewers": ["李四", "王五"], "sources": {}},
                               now_ns=T0)
        services.transcripts.versions_store.publish(sid, transcript_doc(), by="asr")
        pairs = [(qa, t.replace("三百", "五百").replace("没有出门", "出门了")) for qa, t in record_pairs()]

        b = chromium()
        login(b, f"{server.url}/review/{sid}", "boss")
        b.wait_for("return document.getElementById('bilu-summary').textContent.includes('404')",
                   what="no record yet")
        fill(b, "bilu-text", record_text(pairs))
        b.js("document.getElementById('bilu-form').requestSubmit()")
        b.wait_for("return document.querySelectorAll('#bilu-rows tbody tr').length === 10", timeout=20,
                   what="side-by-side rows")
        changed = b.js("return [...document.querySelectorAll('#bilu-rows tr.bilu-changed')].map("
                       "tr => [...tr.children].map(td => td.textContent))")
        assert [row[0] for row in changed] == ["2024/5/1 12:00:15", "2024/5/1 12:00:39"]
        assert "肯定/否定颠倒" in changed[0][3] and "出门了" in changed[0][1] and "没有出门" in changed[0][2]
        assert "数字不符" in changed[1][3]
        assert "发现 2 处差异" in b.js("return document.getElementById('bilu-summary').textContent")
        # a time is a link that seeks the player (t0 is the session start: 15 s in)
        b.js("window.seeks = []; window.tongluPlayer.seekWall = (ms) => window.seeks.push(ms);"
             "document.querySelector('#bilu-rows tr.bilu-changed a').click()")
        assert b.js("return window.seeks") == [T0 // 1_000_000 + 15_000]
        b.js("document.getElementById('bilu').scrollIntoView()")
        b.screenshot("bilu-side-by-side")
        entries = [e for e in services.ledger.entries(sid) if e.kind == "record_document"]
        assert len(entries) == 1 and entries[0].body["by"] == "boss" and entries[0].body["origin"] == "pasted"
    finally:
        servers.close()
        time.sleep(0.1)
