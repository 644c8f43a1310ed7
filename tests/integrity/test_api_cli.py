"""The review API (FastAPI app) and the CLI commands, over a session read the way the running
system reads it: ledger + spool (segments as the recorder spools them)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.integrity.builder import T0, Scenario, build
from tonglu.config import Settings
from tonglu.evidence import verify_core
from tonglu.evidence.manifest import GapRecord

S = 1_000_000_000
TOKEN = "test-admin-token-integrity"
TONGLU = str(Path(sys.executable).with_name("tonglu"))


def settings_for(tmp: Path) -> Settings:
    return Settings.from_env({"TONGLU_DATA_DIR": str(tmp / "data"), "TONGLU_ADMIN_TOKEN": TOKEN})


@pytest.fixture
def app_session(tmp_path: Path):
    from tonglu.web.app import create_app
    from tonglu.web.services import Services

    settings = settings_for(tmp_path)
    gap = GapRecord("main", "video", "peer_disconnect", T0 + 3 * S, T0 + 3500 * S // 1000)
    b = build(tmp_path, Scenario(gaps=[gap]), settings=settings, spool_segments=True)
    build(tmp_path / "live", Scenario(sid="live-001", stop_ns=None), settings=settings, spool_segments=True)
    client = TestClient(create_app(Services.local(settings)))
    return client, b


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_report_json_and_html(app_session) -> None:
    client, b = app_session
    r = client.get(f"/api/sessions/{b.sid}/report", headers=AUTH)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["verified"] is True
    [gap] = doc["gaps"]
    assert {k: gap[k] for k in ("source", "track", "kind", "start", "end", "explained")} == {
        "source": "main",
        "track": "video",
        "kind": "recorder_gap",
        "start": "2024-05-01T06:00:03.000Z",
        "end": "2024-05-01T06:00:03.500Z",
        "explained": False,
    }
    assert doc["facts"]["case_number"] == "A-2024-0501" and doc["verification"]["final_digest"]
    h = client.get(f"/api/sessions/{b.sid}/report?format=html", headers=AUTH)
    assert h.status_code == 200 and h.headers["content-type"].startswith("text/html")
    assert "同步录音录像完整性审查报告" in h.text and "<svg" in h.text and "录制已结束" in h.text
    assert "14:00:03" in h.text  # Beijing time shown (06:00:03 UTC)


def test_explanation_api(app_session) -> None:
    client, b = app_session
    findings = client.get(f"/api/sessions/{b.sid}/gaps", headers=AUTH).json()["findings"]
    assert {f["kind"] for f in findings} == {"recorder_gap", "segment_unconfirmed"}  # spool only: info
    fid = next(f["id"] for f in findings if f["kind"] == "recorder_gap")
    url = f"/api/sessions/{b.sid}/gaps/{fid}/explanations"
    body = {"reason_code": "network", "text": "推流端网络中断", "approver": "张所长"}
    r = client.post(url, json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    doc = client.get(f"/api/sessions/{b.sid}/report", headers=AUTH).json()
    assert doc["gaps"][0]["explained"] is True and doc["verified"] is True
    assert doc["gaps"][0]["explanations"][0]["by"] == "admin-token"
    assert client.post(url, json={**body, "reason_code": "holiday"}, headers=AUTH).status_code == 422
    assert client.post(url, json={**body, "approver": ""}, headers=AUTH).status_code == 422
    bad = client.post(f"/api/sessions/{b.sid}/gaps/0123456789abcdef/explanations", json=body, headers=AUTH)
    assert bad.status_code == 404 and "0123456789abcdef" in bad.json()["detail"]
    assert client.post(url, json=body).status_code == 401


def test_unknown_and_recording_sessions(app_session) -> None:
    client, _ = app_session
    r = client.get("/api/sessions/nope/report", headers=AUTH)
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    live = client.get("/api/sessions/live-001/report", headers=AUTH)
    assert live.status_code == 200 and live.json()["status_text"] == "录制进行中 recording in progress"
    assert "录制进行中" in client.get("/api/sessions/live-001/report?format=html", headers=AUTH).text
    refused = client.get("/api/sessions/live-001/export.zip", headers=AUTH)
    assert refused.status_code == 409 and "仍在录制" in refused.json()["detail"]


def test_export_download_verifies(app_session) -> None:
    client, b = app_session
    r = client.get(f"/api/sessions/{b.sid}/export.zip?workcopy=false", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    path = b.settings.data_dir / "downloaded.zip"
    path.write_bytes(r.content)
    result = verify_core.verify_path(str(path))
    assert result.ok, [p.to_json() for p in result.problems]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert "audit/audit.csv" in zf.namelist()


def test_workcopy_api(app_session) -> None:
    client, b = app_session
    assert client.get(f"/api/sessions/{b.sid}/workcopy.mp4", headers=AUTH).status_code == 404
    made = client.post(f"/api/sessions/{b.sid}/workcopy?height=180", headers=AUTH)
    assert made.status_code == 202, made.text  # a background job: answered at once
    job = made.json()
    deadline = time.monotonic() + 120
    while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = client.get(job["url"], headers=AUTH).json()
    assert job["state"] == "done", job
    mp4 = client.get(f"/api/sessions/{b.sid}/workcopy.mp4", headers=AUTH)
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    assert len(mp4.content) == job["result"]["bytes"]
    again = client.post(f"/api/sessions/{b.sid}/workcopy?height=180", headers=AUTH)
    assert again.status_code == 200 and again.json()["id"] == job["id"]  # the same manifest: not rebuilt
    side = client.get(f"/api/sessions/{b.sid}/workcopy.json", headers=AUTH).json()
    assert len(side["made_from"]) == 12


# -- CLI --------------------------------------------------------------------------------------


def run_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TONGLU_DATA_DIR": str(tmp / "data")}
    return subprocess.run(
        [TONGLU, *args], capture_output=True, text=True, env=env, timeout=300, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def cli_session(tmp_path: Path):
    gap = GapRecord("panorama", "audio", "rtp_loss", T0 + 1 * S, T0 + 1 * S + 200_000_000)
    b = build(tmp_path, Scenario(gaps=[gap]), settings=settings_for(tmp_path), spool_segments=True)
    build(tmp_path / "live", Scenario(sid="live-001", stop_ns=None), settings=b.settings, spool_segments=True)
    return tmp_path, b


def test_cli_report_explain_export(cli_session) -> None:
    tmp, b = cli_session
    r = run_cli(tmp, "report", b.sid, "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verified"] is True and len(doc["gaps"]) == 1
    fid = doc["gaps"][0]["id"]
    e = run_cli(
        tmp,
        "gap",
        "explain",
        b.sid,
        fid,
        "--reason",
        "equipment_fault",
        "--text",
        "麦克风故障",
        "--approver",
        "张所长",
        "--by",
        "李警官",
    )
    assert e.returncode == 0, e.stderr
    doc = json.loads(run_cli(tmp, "report", b.sid).stdout)
    assert doc["gaps"][0]["explained"] is True
    html = run_cli(tmp, "report", b.sid, "--format", "html")
    assert html.returncode == 0 and "已说明" in html.stdout and "麦克风故障" in html.stdout
    out = tmp / "pkg.zip"
    x = run_cli(tmp, "export", b.sid, "-o", str(out), "--no-workcopy")
    assert x.returncode == 0, x.stderr
    v = run_cli(tmp, "verify", str(out))
    assert v.returncode == 3 and "一致但未锚定" in v.stdout, v.stdout + v.stderr  # no anchor given
    v = run_cli(tmp, "verify", str(out), "--key", str(b.settings.keys_dir / "site-ed25519.pub.pem"))
    assert v.returncode == 0 and "完整 INTACT" in v.stdout, v.stdout + v.stderr


def test_cli_bad_input(cli_session) -> None:
    tmp, b = cli_session
    r = run_cli(tmp, "report", "no-such-session")
    assert r.returncode == 1 and "no-such-session" in r.stderr and "Traceback" not in r.stderr
    x = run_cli(tmp, "export", "live-001", "-o", str(tmp / "live.zip"))
    assert x.returncode == 1 and "仍在录制" in x.stderr and not (tmp / "live.zip").exists()
    live = run_cli(tmp, "report", "live-001")
    assert (
        live.returncode == 0 and json.loads(live.stdout)["status_text"] == "录制进行中 recording in progress"
    )
    e = run_cli(
        tmp, "gap", "explain", b.sid, "ffffffffffffffff", "--reason", "rest", "--text", "x", "--approver", "y"
    )
    assert e.returncode == 1 and "ffffffffffffffff" in e.stderr
    f = run_cli(tmp, "report", b.sid, "--format", "xml")
    assert f.returncode == 2


@pytest.mark.skipif(
    not shutil.which("pdftoppm") or not shutil.which("chromium"), reason="needs chromium + poppler"
)
def test_cli_pdf_renders_chinese(cli_session) -> None:
    tmp, b = cli_session
    pdf = tmp / "report.pdf"
    r = run_cli(tmp, "report", b.sid, "--format", "pdf", "-o", str(pdf))
    assert r.returncode == 0, r.stderr
    assert pdf.read_bytes()[:5] == b"%PDF-"
    fonts = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    rows = [ln.split() for ln in fonts.splitlines()[2:] if ln.strip()]
    assert rows and all("yes" in r[-5:-2][:1] for r in rows), fonts  # every font embedded (emb = yes)
    text = subprocess.run(
        ["pdftotext", "-l", "1", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "完整性审查报告" in text and "案件编号" in text  # real Chinese text, not tofu boxes
    subprocess.run(
        ["pdftoppm", "-gray", "-r", "30", "-f", "1", "-l", "1", str(pdf), str(tmp / "page")], check=True
    )
    [page] = list(tmp.glob("page*.pgm"))
    pixels = page.read_bytes()[-20000:]
    assert sum(1 for p in pixels if p < 128) > 200  # ink on the page: the text rendered
    art = Path("test-artifacts")
    if art.is_dir():
        shutil.copyfile(pdf, art / "integrity-report.pdf")
