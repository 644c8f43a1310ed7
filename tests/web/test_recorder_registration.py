"""Recorder hosts registering with a `--role web` tier: the secret, the host certificate and the
proof are all checked; an uncertified key is refused and audited; heartbeats keep a host alive."""

from __future__ import annotations

import base64
import dataclasses
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import make_services
from tonglu.evidence import hostcert
from tonglu.evidence.signing import SiteKey
from tonglu.recorder.hosts import HostRouter
from tonglu.recorder.placement import Placement
from tonglu.web.app import create_app

SECRET = "registration-secret-0123456789"


@pytest.fixture
def hosts_client(web_settings):
    settings = dataclasses.replace(web_settings, registration_secret=SECRET)
    services = make_services(settings, risk_rules=False)
    services.recorder = HostRouter(Placement(), heartbeat_s=0.5)
    with TestClient(create_app(services), follow_redirects=False) as c:
        c.services = services  # type: ignore[attr-defined]
        yield c


def body(key: SiteKey, cert: bytes, host: str = "rec-1", **over) -> dict:
    claims = {"host": host, "url": "http://127.0.0.1:1", "capacity": 2, "rpc_secret": "r" * 32,
              "time_ns": time.time_ns(), **over}
    return {"claims": claims, "cert": base64.b64encode(cert).decode(),
            "proof": hostcert.registration_proof(key, claims)}


def auth(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}



def test_uncertified_key_is_refused_and_audited(hosts_client, tmp_path: Path):
    services = hosts_client.services
    host_key = hostcert.load_host_key(tmp_path / "h")
    self_cert = hostcert.issue(host_key, "rec-1", host_key.public_pem).to_bytes()
    r = hosts_client.post("/api/recorders/register", json=body(host_key, self_cert), headers=auth())
    assert r.status_code == 403, r.text
    assert "not by the site key" in r.json()["detail"]
    other_site = SiteKey.load_or_create(tmp_path / "other-site")
    foreign = hostcert.issue(other_site, "rec-1", host_key.public_pem).to_bytes()
    r = hosts_client.post("/api/recorders/register", json=body(host_key, foreign), headers=auth())
    assert r.status_code == 403
    assert hosts_client.services.recorder.placement.hosts == {}
    csv = services.audit.csv_text()
    assert csv.count("recorder_register") == 2 and "failed" in csv and "rec-1" in csv


def test_secret_is_required(hosts_client, tmp_path: Path):
    host_key = hostcert.load_host_key(tmp_path / "h")
    cert = hostcert.issue(hosts_client.services.site_key, "rec-1", host_key.public_pem).to_bytes()
    assert hosts_client.post("/api/recorders/register", json=body(host_key, cert)).status_code == 401
    r = hosts_client.post("/api/recorders/register", json=body(host_key, cert), headers=auth("wrong-secret-0123456789"))
    assert r.status_code == 401
    assert hosts_client.services.recorder.placement.hosts == {}


def test_certified_host_registers_heartbeats_and_is_listed(hosts_client, staff, tmp_path: Path):
    services = hosts_client.services
    host_key = hostcert.load_host_key(tmp_path / "h")
    cert = hostcert.issue(services.site_key, "rec-1", host_key.public_pem).to_bytes()
    r = hosts_client.post("/api/recorders/register", json=body(host_key, cert), headers=auth())
    assert r.status_code == 200, r.text
    assert r.json()["key_id"] == host_key.key_id
    listed = hosts_client.get("/api/recorders", headers=staff.auth("admin")).json()
    assert listed["mode"] == "hosts" and listed["hosts"][0]["host"] == "rec-1" and listed["hosts"][0]["free"] == 2
    assert hosts_client.get("/api/recorders", headers=staff.auth("interviewer")).status_code == 403

    claims = {"host": "rec-1", "time_ns": time.time_ns(), "sessions": ["S1"], "recording": ["S1"]}
    hb = {"claims": claims, "proof": hostcert.registration_proof(host_key, claims)}
    assert hosts_client.post("/api/recorders/heartbeat", json=hb, headers=auth()).status_code == 200
    assert services.recorder.placement.owner("S1").info.host == "rec-1"
    # a heartbeat signed by another key, for an unknown host, or garbage
    intruder = SiteKey.load_or_create(tmp_path / "intruder")
    forged = {"claims": claims, "proof": hostcert.registration_proof(intruder, claims)}
    assert hosts_client.post("/api/recorders/heartbeat", json=forged, headers=auth()).status_code == 403
    ghost = {**claims, "host": "rec-9"}
    r = hosts_client.post("/api/recorders/heartbeat", json={"claims": ghost, "proof": hb["proof"]}, headers=auth())
    assert r.status_code == 404
    assert hosts_client.post("/api/recorders/heartbeat", content=b"\xff{", headers=auth()).status_code == 400
    csv = services.audit.csv_text()
    assert "recorder_register" in csv and host_key.key_id in csv


def test_a_web_tier_that_records_itself_refuses_registration(client, tmp_path: Path):
    r = client.post("/api/recorders/register", json={"claims": {}, "cert": "", "proof": ""}, headers=auth())
    assert r.status_code == 409
