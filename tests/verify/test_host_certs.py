"""Checkpoints signed by a recorder host's own key: accepted only with a certificate from the site key.

The session is built by the real ledger; its key plays the recorder host's key and a separate site
key certifies it. Both verifiers are run: the library (`verify_path`) and the shipped stdlib-only
file (`python3 -I verify.py`, pure-Python Ed25519 when `cryptography` is absent)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.verify.session_builder import T0, BuiltSession, build_session
from tonglu.evidence import canonical, hostcert
from tonglu.evidence.evidence_dir import install_verifier, spooled_objects, write_session_dir
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.verify import verify_path

SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def host_built(tmp_path_factory: pytest.TempPathFactory) -> BuiltSession:
    return build_session(tmp_path_factory.mktemp("host-built"))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> SiteKey:
    return SiteKey.load_or_create(tmp_path_factory.mktemp("site-keys"))


def lay(
    built: BuiltSession, site: SiteKey, dest: Path, cert: bytes | None, extra: dict[str, bytes] | None = None
) -> Path:
    objects = dict(extra or {})
    if cert is not None:
        objects[f"site/hosts/{built.key.key_id}.json"] = cert
    return write_session_dir(
        built.ledger.entries(built.sid),
        built.ledger.checkpoints(built.sid),
        spooled_objects(built.spool, built.sid),
        site.public_pem,
        dest,
        objects=objects,
    )


def stdlib_verify(path: Path, site: SiteKey, tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    verifier = install_verifier(tmp)
    key = tmp / "site.pem"
    key.write_bytes(site.public_pem)
    proc = subprocess.run(
        [sys.executable, "-I", str(verifier), str(path), "--key", str(key), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return json.loads(proc.stdout)


def test_certified_host_key_verifies_anchored_to_site_key(host_built, site, tmp_path):
    cert = hostcert.issue(site, "rec-1", host_built.key.public_pem, now_ns=T0 - SECOND)
    ev = lay(host_built, site, tmp_path / "ev", cert.to_bytes())
    r = verify_path(ev, trusted_keys=[site.public_pem])
    assert r.errors == [], [p.message for p in r.errors]
    assert r.verdict == "intact"
    assert any("certifies host rec-1" in a for a in r.anchors), r.anchors
    out = stdlib_verify(ev, site, tmp_path / "v")
    assert out["verdict"] == "intact", out
    # without an anchor it is consistent but not anchored (like a site-signed session)
    assert verify_path(ev).verdict == "consistent_not_anchored"


def test_uncertified_host_key_fails_naming_the_key(host_built, site, tmp_path):
    ev = lay(host_built, site, tmp_path / "ev", None)
    r = verify_path(ev, trusted_keys=[site.public_pem])
    kid = host_built.key.key_id
    assert r.verdict == "tampered_or_incomplete"
    bad = [p for p in r.errors if p.code == "public_key_untrusted"]
    assert bad and all(kid in p.message for p in bad)
    r2 = verify_path(ev)  # no --key: still named as neither a site key nor a certified host key
    missing = [p for p in r2.errors if p.code == "public_key_missing"]
    assert missing and kid in missing[0].message and "certified host key" in missing[0].message
    assert stdlib_verify(ev, site, tmp_path / "v")["verdict"] == "tampered_or_incomplete"


def test_host_key_planted_as_a_site_key_is_untrusted(host_built, site, tmp_path):
    planted = {f"site/keys/{host_built.key.key_id}.pem": host_built.key.public_pem}
    ev = lay(host_built, site, tmp_path / "ev", None, planted)
    r = verify_path(ev, trusted_keys=[site.public_pem])
    assert "public_key_untrusted" in r.codes() and r.verdict == "tampered_or_incomplete"


def test_self_certified_host_key_fails(host_built, site, tmp_path):
    forged = hostcert.issue(host_built.key, "rec-1", host_built.key.public_pem, now_ns=T0 - SECOND)
    ev = lay(host_built, site, tmp_path / "ev", forged.to_bytes())
    for r in (verify_path(ev), verify_path(ev, trusted_keys=[site.public_pem])):
        assert r.verdict == "tampered_or_incomplete"
        bad = [p for p in r.errors if p.code == "host_certificate_invalid"]
        assert bad and bad[0].object == f"site/hosts/{host_built.key.key_id}.json"
        assert host_built.key.key_id in bad[0].message
    assert stdlib_verify(ev, site, tmp_path / "v")["verdict"] == "tampered_or_incomplete"


def test_certificate_from_another_site_key_fails_with_the_anchor(host_built, site, tmp_path):
    other = SiteKey.load_or_create(tmp_path / "other")
    cert = hostcert.issue(other, "rec-1", host_built.key.public_pem, now_ns=T0 - SECOND)
    ev = lay(host_built, site, tmp_path / "ev", cert.to_bytes(), {f"site/keys/{other.key_id}.pem": other.public_pem})
    r = verify_path(ev, trusted_keys=[site.public_pem])
    bad = [p for p in r.errors if p.code == "host_certificate_invalid"]
    assert bad and other.key_id in bad[0].message and "not a trusted key" in bad[0].message


def test_edited_certificate_fails(host_built, site, tmp_path):
    cert = hostcert.issue(site, "rec-1", host_built.key.public_pem, now_ns=T0 - SECOND)
    doc = canonical.decode(cert.to_bytes())
    doc["body"]["not_after_ns"] += 365 * 86400 * SECOND  # extend its validity
    ev = lay(host_built, site, tmp_path / "ev", canonical.encode(doc))
    r = verify_path(ev, trusted_keys=[site.public_pem])
    assert "host_certificate_invalid" in r.codes() and r.verdict == "tampered_or_incomplete"


def test_expired_certificate_fails_the_later_checkpoints(host_built, site, tmp_path):
    # valid from T0-1s for 3 s: the checkpoint at T0+2.1 s is covered, the final one at T0+5 s is not
    cert = hostcert.issue(site, "rec-1", host_built.key.public_pem, now_ns=T0 - SECOND, validity_s=4)
    ev = lay(host_built, site, tmp_path / "ev", cert.to_bytes())
    r = verify_path(ev, trusted_keys=[site.public_pem])
    bad = [p for p in r.errors if p.code == "checkpoint_signature_invalid"]
    assert [p.object.rsplit("/", 1)[1] for p in bad] == ["00000001.json"]
    assert "outside its certificate" in bad[0].message


def test_registration_refuses_uncertified_and_wrongly_certified_keys(host_built, site, tmp_path):
    now = T0
    claims = {"host": "rec-1", "url": "http://10.0.0.2:9000", "capacity": 4, "time_ns": now}
    proof = hostcert.registration_proof(host_built.key, claims)
    good = hostcert.issue(site, "rec-1", host_built.key.public_pem, now_ns=T0 - SECOND)
    assert hostcert.check_registration(good.to_bytes(), claims, proof, site.public_pem, now).host == "rec-1"
    self_signed = hostcert.issue(host_built.key, "rec-1", host_built.key.public_pem, now_ns=T0 - SECOND)
    with pytest.raises(hostcert.HostCertError, match="not by the site key"):
        hostcert.check_registration(self_signed.to_bytes(), claims, proof, site.public_pem, now)
    # a certificate of another host's key, presented with a proof by this (uncertified) key
    stranger = SiteKey.load_or_create(tmp_path / "stranger")
    theirs = hostcert.issue(site, "rec-1", stranger.public_pem, now_ns=T0 - SECOND)
    with pytest.raises(hostcert.HostCertError, match="not signed by the certified host key"):
        hostcert.check_registration(theirs.to_bytes(), claims, proof, site.public_pem, now)
    with pytest.raises(hostcert.HostCertError, match="stale"):
        hostcert.check_registration(good.to_bytes(), claims, proof, site.public_pem, now + 3600 * SECOND)
    with pytest.raises(hostcert.HostCertError, match="does not match"):
        hostcert.check_registration(good.to_bytes(), {**claims, "host": "rec-2"}, proof, site.public_pem, now)
    tampered = base64.b64encode(b"\0" * 64).decode()
    with pytest.raises(hostcert.HostCertError):
        hostcert.check_registration(good.to_bytes(), claims, tampered, site.public_pem, now)


def test_identity_refuses_a_certificate_for_another_key(site, tmp_path):
    keys_dir = tmp_path / "keys"
    key = hostcert.load_host_key(keys_dir)
    other = SiteKey.load_or_create(tmp_path / "o")
    (keys_dir / hostcert.HOST_CERT_FILE).write_bytes(hostcert.issue(site, "rec-1", other.public_pem).to_bytes())
    with pytest.raises(hostcert.HostCertError, match="this host's key"):
        hostcert.load_identity(keys_dir)
    (keys_dir / hostcert.HOST_CERT_FILE).write_bytes(hostcert.issue(site, "rec-1", key.public_pem).to_bytes())
    ident = hostcert.load_identity(keys_dir)
    assert ident is not None and ident.key.key_id == key.key_id and ident.host == "rec-1"
    shutil.rmtree(keys_dir)
