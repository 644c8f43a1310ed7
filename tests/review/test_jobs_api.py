"""Working copies, export packages and clips as background jobs over the web API: answered at once
(202) with a job id, progress and ETA while running, the result downloadable when done, the working
copy of an unchanged manifest never rebuilt, and a job visible only to those who may reach its session."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integrity.builder import media_file
from tests.review.conftest import with_admin
from tests.web.conftest import ADMIN_TOKEN, make_services
from tonglu.bench.synth import synthesize, upload
from tonglu.config import Settings
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.signing import SiteKey
from tonglu.web.app import create_app

S = 1_000_000_000
T0 = 1_767_250_800 * S
SID = "jobs-2min"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def stop_jobs() -> Iterator[list[Any]]:
    """Services whose job runner threads are stopped at teardown (before the store goes away)."""
    made: list[Any] = []
    yield made
    for services in made:
        if services.jobs is not None:
            services.jobs.stop()


def _app(store_settings: Settings, made: list[Any], seconds: int = 120) -> tuple[TestClient, Any]:
    settings = with_admin(store_settings, ADMIN_TOKEN)
    media = {(s, t): [media_file(s, t, i) for i in range(3)] for s in ("main", "panorama") for t in ("video", "audio")}
    synth = synthesize(settings, SiteKey.load_or_create(settings.keys_dir), SID, seconds, media, t0_ns=T0,
                       gaps=[("main", 20, 30)])
    upload(ObjectStore.from_settings(settings, role="admin"), synth.objects)
    services = make_services(settings, risk_rules=False)
    services.store = ObjectStore.from_settings(settings, role="reviewer")
    made.append(services)
    return TestClient(create_app(services)), services


def _follow(client: TestClient, job: dict[str, Any], timeout: float = 240) -> tuple[dict[str, Any], list[dict]]:
    seen = [job]
    deadline = time.monotonic() + timeout
    while job["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, seen[-3:]
        time.sleep(0.25)
        r = client.get(job["url"], headers=AUTH)
        assert r.status_code == 200, r.text
        job = r.json()
        seen.append(job)
    return job, seen


def test_workcopy_job_progress_cache_and_ownership(store_settings: Settings, stop_jobs: list[Any]) -> None:
    client, services = _app(store_settings, stop_jobs)
    t = time.perf_counter()
    r = client.post(f"/api/sessions/{SID}/workcopy?height=90", headers=AUTH)
    answered = time.perf_counter() - t
    assert r.status_code == 202, r.text
    assert answered < 1.0, f"the request waited {answered:.2f} s"
    job, seen = _follow(client, r.json())
    assert job["state"] == "done" and job["percent"] == 100.0, job
    running = [j for j in seen if j["state"] == "running" and 0 < j["progress"] < 1]
    assert running, [(j["state"], j["progress"]) for j in seen]
    assert any(j["eta_s"] is not None and j["eta_s"] > 0 for j in running), running
    assert job["result"]["duration_ms"] == 120_000 and "file" not in job["result"]
    mp4 = client.get(job["download"], headers=AUTH)
    assert mp4.status_code == 200 and mp4.content[4:8] == b"ftyp"
    # the same manifest: the finished job is returned, nothing is rebuilt
    again = client.post(f"/api/sessions/{SID}/workcopy?height=90", headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert len(services.jobs.queue.jobs(session=SID)) == 1
    # an interviewer of other sessions sees no such job
    services.accounts.create_user("other", "interviewer", "pw-other-0123456789")
    _rec, token = services.accounts.issue_api_token("other", "t")
    other = {"Authorization": f"Bearer {token}"}
    assert client.get(job["url"], headers=other).status_code == 404
    assert client.get(job["download"], headers=other).status_code == 404
    assert client.get("/api/jobs/nope", headers=AUTH).status_code == 404
    # the session's own interviewer may follow it
    services.accounts.create_user("interviewer", "interviewer", "pw-interviewer-0123456789")
    _rec, token = services.accounts.issue_api_token("interviewer", "t")
    assert client.get(job["url"], headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # a new manifest entry (an explanation, a marker...) makes a new working copy
    services.ledger.append(SID, "custody", {"event": "note", "text": "补记"}, now_ns=T0 + 200 * S)
    newer = client.post(f"/api/sessions/{SID}/workcopy?height=90", headers=AUTH)
    assert newer.status_code == 202 and newer.json()["id"] != job["id"]
    _follow(client, newer.json())


def test_export_and_clip_jobs(store_settings: Settings, tmp_path: Path, stop_jobs: list[Any]) -> None:
    client, _services = _app(store_settings, stop_jobs, seconds=40)
    r = client.post(f"/api/sessions/{SID}/jobs/export", json={"workcopy": False}, headers=AUTH)
    assert r.status_code == 202, r.text
    job, _ = _follow(client, r.json())
    assert job["state"] == "done", job
    z = client.get(job["download"], headers=AUTH)
    assert z.status_code == 200 and z.content[:2] == b"PK"
    with zipfile.ZipFile(BytesIO(z.content)) as zf:
        assert any(n.endswith(".webm") for n in zf.namelist())
    bad = client.post(f"/api/sessions/{SID}/jobs/clip", json={"from": "00:00:30", "to": "00:00:10"}, headers=AUTH)
    assert bad.status_code == 422, bad.text  # checked before a job is made
    r = client.post(f"/api/sessions/{SID}/jobs/clip", json={"from": "00:00:04", "to": "00:00:12", "media": False},
                    headers=AUTH)
    assert r.status_code == 202, r.text
    job, _ = _follow(client, r.json())
    assert job["state"] == "done", job
    clip = client.get(job["download"], headers=AUTH)
    assert clip.status_code == 200 and clip.content[:2] == b"PK"
    out = tmp_path / "clip.zip"
    out.write_bytes(clip.content)
    from tonglu.evidence.verify import verify_path

    result = verify_path(out, trusted_keys=[SiteKey.load_or_create(_services.settings.keys_dir).public_pem])
    assert result.verdict == "intact", result.to_json() if hasattr(result, "to_json") else result


def test_report_job_html_and_pdf_cached_per_manifest(store_settings: Settings, stop_jobs: list[Any]) -> None:
    client, services = _app(store_settings, stop_jobs, seconds=40)
    t = time.perf_counter()
    r = client.post(f"/api/sessions/{SID}/jobs/report", headers=AUTH)
    assert r.status_code == 202, r.text
    assert time.perf_counter() - t < 1.0  # answered at once; the re-hashing runs in the job
    job, _ = _follow(client, r.json())
    assert job["state"] == "done" and job["result"]["format"] == "html", job
    assert job["result"]["verified"] is True and job["result"]["gaps"] >= 1  # the 10 s gap of main
    page = client.get(job["download"], headers=AUTH)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert SID in page.text and "attachment" in page.headers["content-disposition"]
    again = client.post(f"/api/sessions/{SID}/jobs/report", headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == job["id"]  # unchanged manifest: not made again
    assert client.post(f"/api/sessions/{SID}/jobs/report", json={"format": "docx"}, headers=AUTH).status_code == 422
    r = client.post(f"/api/sessions/{SID}/jobs/report", json={"format": "pdf"}, headers=AUTH)
    assert r.status_code == 202 and r.json()["id"] != job["id"]
    pdf_job, _ = _follow(client, r.json())
    assert pdf_job["state"] == "done", pdf_job
    pdf = client.get(pdf_job["download"], headers=AUTH)
    assert pdf.status_code == 200 and pdf.content[:5] == b"%PDF-"
    # the session's own interviewer may have its report made and read it; others see no such session
    services.accounts.create_user("interviewer", "interviewer", "pw-interviewer-0123456789")
    _rec, token = services.accounts.issue_api_token("interviewer", "t")
    own = {"Authorization": f"Bearer {token}"}
    assert client.get(job["download"], headers=own).status_code == 200
    services.accounts.create_user("other", "interviewer", "pw-other-0123456789")
    _rec, token = services.accounts.issue_api_token("other", "t")
    assert client.post(f"/api/sessions/{SID}/jobs/report", headers={"Authorization": f"Bearer {token}"}
                       ).status_code == 404
