"""笔录 import and comparison over HTTP (real app, real ledger and spool): the entry, the findings with
recording times and input hashes, refusals that store nothing, RBAC, the report, the verifier, the export."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.bilu.builders import record_docx, record_pairs, record_text, transcript_doc
from tests.web.conftest import Staff, start_session
from tonglu.evidence import verify_core
from tonglu.integrity import bilu
from tonglu.integrity.service import Review
from tonglu.web.services import Services

SID = "s-bilu-1"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def url(sid: str = SID, tail: str = "") -> str:
    return f"/api/sessions/{sid}/record-document{tail}"


@pytest.fixture
def session(services: Services) -> str:
    start_session(services, SID)
    assert services.transcripts is not None
    published = services.transcripts.versions_store.publish(SID, transcript_doc(), by="asr")
    assert published is not None and published["version"] == 1
    return SID


def stored(services: Services) -> tuple[int, list[str]]:
    """(record_document entries, spooled record files) of the session: what a refusal must not change
    (other parts, such as the risk-rule timer, may append entries of their own meanwhile)."""
    entries = [e for e in services.ledger.entries(SID) if e.kind == "record_document"]
    return len(entries), sorted(i.key for i in services.spool.pending() if i.key.startswith(f"sessions/{SID}/records/"))


def test_docx_import_then_comparison_finds_each_change_at_its_time(
    client: TestClient, staff: Staff, services: Services, session: str
) -> None:
    pairs = record_pairs()
    pairs = [(qa, t.replace("三百", "五百")) for qa, t in pairs]  # number changed (39-42 s)
    pairs = [(qa, t.replace("没有出门", "出门了")) for qa, t in pairs]  # negation flipped (15-20 s)
    pairs = [p for p in pairs if p[1] not in ("你认识李四吗？", "认识，他是我同事。")]  # omitted (28-31 s)
    pairs.insert(6, ("答", "他还打了我一拳。"))  # inserted after the answer at 39-42 s, before the question at 45 s
    data = record_docx(pairs)
    r = client.post(url(), files={"file": ("讯问笔录.docx", data, DOCX)}, headers=staff.auth("interviewer"))
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    assert entry["name"] == "讯问笔录.docx" and entry["by"] == "interviewer" and entry["format"] == "docx"
    assert entry["answers"] == 5 and entry["items"][1] == {
        "n": 1, "role": "answer", "marker": "答", "text": "我叫张三。", "time": None, "line": 4,
    }  # fmt: skip
    # the exact bytes are spooled for the evidence store, named by a hash-chained manifest entry
    last = services.ledger.entries(SID)[-1]
    assert last.kind == "record_document" and last.body["key"] == entry["key"]
    item = next(i for i in services.spool.pending() if i.key == entry["key"])
    assert item.data_path.read_bytes() == data and item.sha256 == entry["sha256"]

    r = client.get(url(tail="/comparison"), headers=staff.auth("reviewer"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["document"]["sha256"] == entry["sha256"] and doc["document"]["version"] == 1
    tv = services.transcripts.versions(SID)[-1]
    assert doc["transcript"]["version"] == 1 and doc["transcript"]["sha256"] == tv["sha256"]
    got = [(f["kind"], f["subkind"], f["start"], f["end"]) for f in doc["findings"]]
    iso = lambda s: f"2024-05-01T04:00:{s:02d}.000Z"  # noqa: E731
    assert got == [
        ("changed", "negation_flipped", iso(15), iso(20)),
        ("omitted", None, iso(28), iso(31)),
        ("changed", "number_changed", iso(39), iso(42)),
        ("inserted", None, iso(42), iso(45)),
    ]
    assert doc["summary"] == {
        "answers": 5, "matched": 4, "findings": 4, "inserted": 1, "omitted": 1, "changed": 2,
        "by_kind": {"inserted": 1, "negation_flipped": 1, "number_changed": 1, "omitted": 1},
    }  # fmt: skip
    assert any(row["status"] == "omitted" and row["record"] is None for row in doc["rows"])

    # the integrity report carries the comparison with both inputs' hashes, JSON and HTML
    rep = client.get(f"/api/sessions/{SID}/report", headers=staff.auth("reviewer")).json()
    assert rep["record_comparison"]["document"]["sha256"] == entry["sha256"]
    assert rep["record_comparison"]["transcript"]["sha256"] == tv["sha256"]
    assert len(rep["record_comparison"]["findings"]) == 4
    page = client.get(f"/api/sessions/{SID}/report?format=html", headers=staff.auth("reviewer")).text
    assert "笔录与录音录像比对" in page and entry["sha256"] in page and "他还打了我一拳。" in page
    assert "肯定/否定颠倒" in page and "数字不符" in page


def test_identical_pasted_record_gives_no_finding_and_reimport_is_idempotent(
    client: TestClient, staff: Staff, services: Services, session: str
) -> None:
    text = record_text(record_pairs())
    r = client.post(url(), json={"text": text}, headers=staff.auth("admin"))
    assert r.status_code == 201, r.text
    assert r.json()["origin"] == "pasted" and r.json()["format"] == "text"
    before = stored(services)
    again = client.post(url(), json={"text": text}, headers=staff.auth("admin"))
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["key"] == r.json()["key"]
    assert stored(services) == before
    doc = client.get(url(tail="/comparison"), headers=staff.auth("supervisor")).json()
    assert doc["findings"] == [] and doc["summary"]["matched"] == 5
    # a text file upload works the same way (a new version: other bytes)
    r = client.post(url(), files={"file": ("bilu.txt", text.encode("gb18030"), "text/plain")},
                    headers=staff.auth("interviewer"))
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["key"].endswith(".txt")


@pytest.mark.parametrize(
    ("what", "status", "words"),
    [
        ("random", 415, "not a text or DOCX"),
        ("png", 415, "PNG"),
        ("no_qa", 422, "no question/answer"),
        ("empty", 400, "empty"),
        ("huge", 413, "exceeds"),
        ("huge_text", 413, "exceeds"),
        ("bad_json", 422, "text"),
    ],
)
def test_bad_input_is_refused_with_a_reason_and_nothing_is_stored(
    client: TestClient, staff: Staff, services: Services, session: str, what: str, status: int, words: str
) -> None:
    before = stored(services)
    h = staff.auth("interviewer")
    if what == "random":
        r = client.post(url(), files={"file": ("x.docx", os.urandom(20_000), DOCX)}, headers=h)
    elif what == "png":
        png = b"\x89PNG\r\n\x1a\n" + os.urandom(5000)
        r = client.post(url(), files={"file": ("x.png", png, "image/png")}, headers=h)
    elif what == "no_qa":
        r = client.post(url(), json={"text": "讯问笔录\n张三称其当晚在家。\n"}, headers=h)
    elif what == "empty":
        r = client.post(url(), files={"file": ("x.txt", b"", "text/plain")}, headers=h)
    elif what == "huge":
        big = ("问：你叫什么？\n答：" + "张" * (bilu.MAX_BYTES // 3 + 10) + "\n").encode()
        r = client.post(url(), files={"file": ("x.txt", big, "text/plain")}, headers=h)
    elif what == "huge_text":
        r = client.post(url(), json={"text": "问：x\n答：" + "y" * (bilu.MAX_BYTES + 10)}, headers=h)
    else:
        r = client.post(url(), json={"body": "问：x\n答：y"}, headers=h)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert words in detail and any("\u4e00" <= ch <= "\u9fff" for ch in detail)
    assert stored(services) == before


def test_unknown_session_no_record_no_transcript(client: TestClient, staff: Staff, services: Services) -> None:
    text = record_text(record_pairs())
    assert client.post(url("s-none"), json={"text": text}, headers=staff.auth("admin")).status_code == 404
    start_session(services, SID)
    r = client.get(url(tail="/comparison"), headers=staff.auth("reviewer"))
    assert r.status_code == 404 and "no written record" in r.json()["detail"]
    assert client.post(url(), json={"text": text}, headers=staff.auth("admin")).status_code == 201
    r = client.get(url(tail="/comparison"), headers=staff.auth("reviewer"))
    assert r.status_code == 404 and "no stored transcript" in r.json()["detail"]
    rep = client.get(f"/api/sessions/{SID}/report", headers=staff.auth("reviewer")).json()
    assert "no stored transcript" in rep["record_comparison"]["error"]


def test_roles(client: TestClient, staff: Staff, session: str) -> None:
    text = record_text(record_pairs())
    for role in ("reviewer", "supervisor", "auditor"):
        assert client.post(url(), json={"text": text}, headers=staff.auth(role)).status_code == 403
    assert client.post(url(), json={"text": text}).status_code == 401
    assert client.get(url(tail="/comparison"), headers=staff.auth("auditor")).status_code == 403


def test_verified_transcript_is_preferred(client: TestClient, staff: Staff, services: Services, session: str) -> None:
    assert services.transcripts is not None
    fixed = transcript_doc()
    fixed["lines"][7]["text"] = "我拿了五百元，后来交给了王小明。"  # a person corrected the ASR draft and verified it
    fixed["draft"] = False
    services.transcripts.versions_store.publish(SID, fixed, by="li4")
    services.transcripts.versions_store.publish(SID, transcript_doc(), by="asr")  # a later unverified rerun
    pairs = [(qa, t.replace("三百", "五百")) for qa, t in record_pairs()]
    assert client.post(url(), json={"text": record_text(pairs)}, headers=staff.auth("admin")).status_code == 201
    doc = client.get(url(tail="/comparison"), headers=staff.auth("reviewer")).json()
    assert doc["transcript"]["version"] == 2 and doc["transcript"]["verified"] is True
    assert doc["findings"] == []


def test_record_file_is_verified_and_exported(
    client: TestClient, staff: Staff, services: Services, session: str, tmp_path: Path
) -> None:
    from tonglu.integrity.export import export_session

    services.ledger.append(SID, "session_stop", {"stopped_by": "tests", "reason": "end"}, now_ns=time.time_ns())
    services.ledger.checkpoint(SID, final=True)
    data = record_docx(record_pairs())
    r = client.post(url(), files={"file": ("bilu.docx", data, DOCX)}, headers=staff.auth("interviewer"))
    assert r.status_code == 201
    key = r.json()["key"]
    review = Review.from_services(services)
    summary = review.verify(review.load(SID))
    assert summary.ok, summary.problems
    out = tmp_path / "case.zip"
    export_session(review, SID, out, with_workcopy=False)
    with zipfile.ZipFile(out) as zf:
        assert zf.read(key) == data
        rep = json.loads(zf.read("report/report.json"))
    assert rep["record_comparison"]["document"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert rep["record_comparison"]["findings"] == []
    assert verify_core.verify_path(str(out)).ok
    # one altered byte of the record file in the spool is caught by the verifier
    item = next(i for i in services.spool.pending() if i.key == key)
    raw = bytearray(item.data_path.read_bytes())
    raw[100] ^= 1
    item.data_path.write_bytes(bytes(raw))
    summary = Review.from_services(services).verify(review.load(SID))
    assert not summary.ok and any(p.object == key and p.code == "object_altered" for p in summary.problems)


def test_review_page_has_the_side_by_side(client: TestClient, staff: Staff, session: str) -> None:
    page = client.get(f"/review/{SID}", headers=staff.auth("reviewer"))
    assert page.status_code == 200
    for needle in ('id="bilu-form"', 'id="bilu-rows"', "record-document/comparison", "seekTo(Date.parse(start))"):
        assert needle in page.text


def test_session_console_has_the_import_form(client: TestClient, staff: Staff, session: str) -> None:
    page = client.get(f"/console/{SID}", headers=staff.auth("interviewer"))
    assert page.status_code == 200
    assert 'id="bilu-form"' in page.text and "/record-document`" in page.text
