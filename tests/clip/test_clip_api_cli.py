"""`tonglu clip` and `POST /api/sessions/{sid}/clip` over a session read the way the running system
reads it (ledger + spool); both clips verify with both verifiers; the API call is audited."""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.clip.conftest import gap_scenario
from tests.clip.helpers import TONGLU, both
from tests.integrity.builder import build
from tests.integrity.test_api_cli import AUTH, settings_for


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("clip-api")
    settings = settings_for(tmp)
    b = build(tmp, gap_scenario(), settings=settings, spool_segments=True)
    pem = tmp / "site.pem"
    pem.write_bytes(b.key.public_pem)
    return tmp, b, pem


def run_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TONGLU_DATA_DIR": str(tmp / "data")}
    return subprocess.run([TONGLU, *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli_clip_by_offsets_and_by_wall_time(live) -> None:
    tmp, b, pem = live
    out = tmp / "cli-clip.zip"
    r = run_cli(tmp, "clip", b.sid, "--from", "00:00:01", "--to", "00:00:03.5", "--sources", "main", "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["from"] == "2024-05-01T06:00:01.000Z" and doc["to"] == "2024-05-01T06:00:03.500Z"
    assert doc["tracks"] == ["main/audio", "main/video"] and doc["intact"] is True and doc["gaps"] == 1
    ra, rb = both(out, pem)
    assert ra["ok"] and rb["ok"], (ra["problems"], rb["problems"])
    # The same range as Beijing wall time (no offset) and as UTC give the same claim.
    out2 = tmp / "cli-clip-wall.zip"
    r = run_cli(
        tmp,
        "clip",
        b.sid,
        "--from",
        "2024-05-01T14:00:01",
        "--to",
        "2024-05-01T06:00:03.5Z",
        "-o",
        str(out2),
        "--sources",
        "main",
        "--no-media",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["from"] == doc["from"] and json.loads(r.stdout)["to"] == doc["to"]
    v = run_cli(tmp, "verify", str(out2), "--key", str(pem))
    assert v.returncode == 0 and "片段 Clip of session" in v.stdout, v.stdout
    digest = b.ledger.checkpoints(b.sid)[-1].digest  # the one signed on paper
    assert run_cli(tmp, "verify", str(out2), "--key", str(pem), "--digest", digest).returncode == 0
    wrong = run_cli(tmp, "verify", str(out2), "--key", str(pem), "--digest", "00000-00000-00000-00000")
    assert wrong.returncode == 1 and "checkpoint_digest_not_found" in wrong.stdout


def test_cli_bad_ranges(live) -> None:
    tmp, b, _ = live
    r = run_cli(tmp, "clip", b.sid, "--from", "00:00:05", "--to", "00:00:09", "-o", str(tmp / "no.zip"))
    assert r.returncode == 1 and "no media" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(tmp, "clip", b.sid, "--from", "noon", "--to", "00:00:02", "-o", str(tmp / "no.zip"))
    assert r.returncode == 1 and "bad time" in r.stderr
    assert not (tmp / "no.zip").exists()


def test_api_clip_download_verifies_and_is_audited(live) -> None:
    from tonglu.web.app import create_app
    from tonglu.web.services import Services

    tmp, b, pem = live
    services = Services.local(b.settings)
    client = TestClient(create_app(services))
    url = f"/api/sessions/{b.sid}/clip"
    r = client.post(url, json={"from": "00:00:02.5", "to": "00:00:05", "sources": ["panorama"]}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    path = tmp / "api-clip.zip"
    path.write_bytes(r.content)
    ra, rb = both(path, pem)
    assert ra["ok"] and rb["ok"], (ra["problems"], rb["problems"])
    assert ra["clip"]["tracks"] == ["panorama/audio", "panorama/video"]
    with zipfile.ZipFile(path) as zf:
        assert "clip/panorama.mp4" in zf.namelist()
        assert json.loads(zf.read("clip.json"))["body"]["created_by"] == "admin-token"
    assert services.audit is not None
    rows = services.audit.query(obj=url)
    assert rows and rows[-1]["action"] == "clip_export" and rows[-1]["outcome"] == "ok"
    ranged = services.audit.query(action="clip_range")
    assert ranged and "2024-05-01T06:00:02.500Z" in json.dumps(ranged[-1]["detail"], ensure_ascii=False)
    bad = client.post(url, json={"from": "00:00:05", "to": "00:00:04"}, headers=AUTH)
    assert bad.status_code == 422 and "ends" in bad.json()["detail"]
    bad = client.post(url, json={"from": "00:00:01", "to": "00:00:02", "sources": ["../x"]}, headers=AUTH)
    assert bad.status_code == 422
    assert client.post("/api/sessions/nope/clip", json={"from": "0:00", "to": "0:01"}, headers=AUTH).status_code == 404
    assert client.post(url, json={"from": "00:00:01", "to": "00:00:02"}).status_code == 401
