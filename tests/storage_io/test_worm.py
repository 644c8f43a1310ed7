"""WORM guarantees, identities and the conditional write, against a real SeaweedFS."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.objectlockconfig import DAYS, ObjectLockConfig

from tonglu.config import Settings
from tonglu.evidence.bootstrap import bootstrap
from tonglu.evidence.errors import ConfigError, ObjectConflict, ObjectNotFound, StoreAuthError, StoreError
from tonglu.evidence.keys import public_key_key
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.signing import SiteKey


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def until(seconds: int = 120) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


@pytest.fixture
def rec(seaweed, store_settings: Settings) -> ObjectStore:
    return seaweed.object_store(store_settings, "recorder")


def test_put_if_absent_is_exactly_once(rec: ObjectStore) -> None:
    data = os.urandom(50_000)
    first = rec.put_if_absent("sessions/s1/segments/main/video/00000000.webm", data, sha(data), "video/webm", until())
    assert first.created and first.version_id
    again = rec.put_if_absent("sessions/s1/segments/main/video/00000000.webm", data, sha(data), "video/webm", until())
    assert not again.created
    versions = rec.versions("sessions/s1/")
    assert [(v.key, v.version_id) for v in versions] == [(first.key, first.version_id)]
    assert rec.get(first.key) == data
    info = rec.stat(first.key)
    assert info.sha256 == sha(data) and info.size == len(data)
    assert info.lock_mode == COMPLIANCE and info.retain_until is not None


def test_same_key_different_content_is_a_conflict(rec: ObjectStore) -> None:
    rec.put_if_absent("k/a", b"original", sha(b"original"), retain_until=until())
    with pytest.raises(ObjectConflict, match="k/a"):
        rec.put_if_absent("k/a", b"changed!", sha(b"changed!"), retain_until=until())
    assert rec.get("k/a") == b"original"
    assert len(rec.versions("k/a")) == 1


def test_wrong_checksum_is_refused(rec: ObjectStore) -> None:
    with pytest.raises(StoreError, match="BadDigest"):
        rec.put_if_absent("k/bad", b"payload", sha(b"other payload"), retain_until=until())
    with pytest.raises(ObjectNotFound):
        rec.stat("k/bad")


def test_put_from_file_and_get_to_file(rec: ObjectStore, tmp_path: Path) -> None:
    src = tmp_path / "seg.ts"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    rec.put_if_absent("k/file", src, sha(src.read_bytes()), "video/mp2t", until())
    out = tmp_path / "out" / "copy.ts"
    assert rec.get_to_file("k/file", out) == src.stat().st_size
    assert out.read_bytes() == src.read_bytes()
    assert rec.list("k/") == ["k/file"]


def test_deleting_a_locked_version_is_refused(rec: ObjectStore) -> None:
    r = rec.put_if_absent("k/locked", b"evidence", sha(b"evidence"), retain_until=until())
    with pytest.raises(StoreAuthError, match="AccessDenied"):
        rec.delete_version("k/locked", r.version_id)
    assert rec.get("k/locked", version_id=r.version_id) == b"evidence"


def test_overwrite_creates_a_new_version_and_keeps_the_original(rec: ObjectStore) -> None:
    r = rec.put_if_absent("k/ow", b"original", sha(b"original"), retain_until=until())
    # A plain PUT (no If-None-Match), as a careless or hostile client would send it.
    rec.client.put_object(rec.evidence_bucket, "k/ow", io.BytesIO(b"replaced"), 8)
    versions = rec.versions("k/ow")
    assert len(versions) == 2
    latest = [v for v in versions if v.is_latest]
    assert len(latest) == 1 and latest[0].version_id != r.version_id
    assert rec.get("k/ow") == b"replaced"
    assert rec.get("k/ow", version_id=r.version_id) == b"original"
    # Readers of evidence take the first version and name the later one.
    kv = rec.original("k/ow")
    assert kv.original is not None and kv.original.version_id == r.version_id
    assert [v.version_id for v in kv.shadows] == [latest[0].version_id]
    assert rec.get_original("k/ow") == b"original"
    # A delete marker is refused outright: the bootstrap's bucket policy denies deletes to everyone.
    with pytest.raises(StoreAuthError, match="AccessDenied"):
        rec.delete_version("k/ow", None)
    assert rec.get("k/ow") == b"replaced" and len(rec.versions("k/ow")) == 2


def test_compliance_retention_cannot_be_shortened(rec: ObjectStore) -> None:
    t = until(300)
    r = rec.put_if_absent("k/ret", b"x", sha(b"x"), retain_until=t)
    with pytest.raises(StoreAuthError):
        rec.set_retention("k/ret", t - timedelta(seconds=200), version_id=r.version_id)
    mode, kept = rec.retention("k/ret", version_id=r.version_id)
    assert mode == COMPLIANCE and kept is not None and abs((kept - t).total_seconds()) < 1.5
    # Extending is allowed.
    rec.set_retention("k/ret", t + timedelta(seconds=600), version_id=r.version_id)
    _, longer = rec.retention("k/ret", version_id=r.version_id)
    assert longer is not None and longer > t + timedelta(seconds=500)


def test_legal_hold_blocks_deletes(seaweed, tmp_path: Path) -> None:
    # A locked bucket WITHOUT default retention, so only the hold protects the object.
    s = seaweed.settings(tmp_path / "d", bootstrap=False)
    admin = seaweed.object_store(s, "admin")
    admin.client.make_bucket(s.evidence_bucket, object_lock=True)
    rec = seaweed.object_store(s, "recorder")
    r = rec.put_if_absent("k/held", b"held", sha(b"held"))
    rec.set_legal_hold("k/held", True, version_id=r.version_id)
    assert rec.stat("k/held").legal_hold
    with pytest.raises(StoreAuthError):
        rec.delete_version("k/held", r.version_id)
    assert rec.get("k/held", version_id=r.version_id) == b"held"
    rec.set_legal_hold("k/held", False, version_id=r.version_id)
    rec.delete_version("k/held", r.version_id)  # the hold was the only thing in the way
    with pytest.raises(ObjectNotFound):
        rec.get("k/held", version_id=r.version_id)


def test_anonymous_and_wrong_keys_are_refused(seaweed, store_settings: Settings, rec: ObjectStore) -> None:
    rec.put_if_absent("k/secret", b"s", sha(b"s"), retain_until=until())
    host = seaweed.endpoint.removeprefix("http://")
    anon = ObjectStore(seaweed.endpoint, None, None, evidence_bucket=store_settings.evidence_bucket)
    with pytest.raises(StoreAuthError, match="AccessDenied"):
        anon.get("k/secret")
    with pytest.raises(StoreAuthError):
        anon.put_if_absent("k/anon", b"a", sha(b"a"))
    access, _ = seaweed.credentials["recorder"]
    wrong = ObjectStore(seaweed.endpoint, access, "not-the-secret", evidence_bucket=store_settings.evidence_bucket)
    with pytest.raises(StoreAuthError, match="SignatureDoesNotMatch"):
        wrong.get("k/secret")
    unknown = ObjectStore(seaweed.endpoint, "NOSUCHKEY0000", "whatever", evidence_bucket=store_settings.evidence_bucket)
    with pytest.raises(StoreAuthError, match="InvalidAccessKeyId"):
        unknown.put_if_absent("k/unknown", b"u", sha(b"u"))
    # Raw anonymous HTTP as well (no SDK involved).
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{host}/{store_settings.evidence_bucket}/k/secret", timeout=5)
    assert err.value.code == 403


def test_recorder_cannot_administer(seaweed, store_settings: Settings, rec: ObjectStore) -> None:
    c: Minio = rec.client
    b = store_settings.evidence_bucket
    with pytest.raises(StoreAuthError):
        with rec.errors("make bucket"):
            c.make_bucket(f"rogue-{b}")
    with pytest.raises(StoreAuthError):
        with rec.errors("delete bucket"):
            c.remove_bucket(store_settings.work_bucket)
    with pytest.raises(StoreAuthError):
        with rec.errors("change lock config"):
            c.set_object_lock_config(b, ObjectLockConfig(GOVERNANCE, 1, DAYS))
    admin = seaweed.object_store(store_settings, "admin")
    cfg = admin.client.get_object_lock_config(b)
    assert cfg.mode == COMPLIANCE
    assert admin.client.bucket_exists(store_settings.work_bucket)


def test_reviewer_reads_but_cannot_write(seaweed, store_settings: Settings, rec: ObjectStore) -> None:
    rec.put_if_absent("k/r", b"r", sha(b"r"), retain_until=until())
    rev = seaweed.object_store(store_settings, "reviewer")
    assert rev.get("k/r") == b"r"
    assert rev.list("k/") == ["k/r"]
    with pytest.raises(StoreAuthError):
        rev.put_if_absent("k/rev", b"x", sha(b"x"))


def test_bootstrap_is_idempotent(seaweed, store_settings: Settings) -> None:
    admin = seaweed.object_store(store_settings, "admin")
    key = SiteKey.load(store_settings.keys_dir)
    again = bootstrap(admin, store_settings, key)
    assert again.created == [] and set(again.existing) == {
        store_settings.evidence_bucket,
        store_settings.work_bucket,
    }
    assert admin.client.get_bucket_versioning(store_settings.evidence_bucket).status == "Enabled"
    cfg = admin.client.get_object_lock_config(store_settings.evidence_bucket)
    assert (cfg.mode, cfg.duration) == (COMPLIANCE, 1)
    assert admin.get(public_key_key(key.key_id)) == key.public_pem
    assert len(admin.versions("site/")) == 1


def test_bootstrap_refuses_an_unlocked_evidence_bucket(seaweed, tmp_path: Path) -> None:
    s = seaweed.settings(tmp_path / "d", bootstrap=False)
    admin = seaweed.object_store(s, "admin")
    admin.client.make_bucket(s.evidence_bucket)  # no Object Lock
    with pytest.raises(ConfigError, match="without Object Lock"):
        bootstrap(admin, s, None)


def test_filer_http_port_refuses_unsigned_deletes(seaweed, rec: ObjectStore, store_settings: Settings) -> None:
    rec.put_if_absent("k/jwt", b"j", sha(b"j"), retain_until=until())
    port = seaweed.store.endpoint.ports["filer"]
    url = f"http://127.0.0.1:{port}/buckets/{store_settings.evidence_bucket}/k/jwt"
    for method in ("DELETE", "GET"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5)
        assert err.value.code in (401, 404)  # 404: -disableHttp; 401 "wrong jwt" without it
    assert rec.get("k/jwt") == b"j"


def _listening_addresses(pid: int) -> list[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # LISTEN
                out.append(f[1])
    return out


def test_nothing_listens_beyond_loopback(seaweed) -> None:
    addrs = _listening_addresses(seaweed.store.pid)
    assert addrs, "weed listens on nothing?"
    for a in addrs:
        host = a.split(":")[0]
        assert host in ("0100007F", "00000000000000000000000001000000"), f"weed listens on {a}"
    ports = {int(a.split(":")[1], 16) for a in addrs}
    assert seaweed.store.endpoint.ports["s3"] in ports


def test_identity_files_are_private(seaweed) -> None:
    d = seaweed.store.store_dir
    for name in ("identities.json", "s3.json", "security.toml", "endpoint.json"):
        assert (d / name).stat().st_mode & 0o077 == 0, name
    assert "[jwt.filer_signing]" in (d / "security.toml").read_text()


def test_racing_writers_one_wins(rec: ObjectStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    bodies = [f"writer {i}".encode() * 1000 for i in range(8)]

    def attempt(body: bytes) -> str:
        try:
            return "created" if rec.put_if_absent("k/race", body, sha(body)).created else "same"
        except ObjectConflict:
            return "conflict"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, bodies))
    assert outcomes.count("created") == 1 and outcomes.count("conflict") == 7
    assert len(rec.versions("k/race")) == 1
    assert rec.get("k/race") == bodies[outcomes.index("created")]
    # Identical bodies racing: one creates, the others find it identical.
    same = b"identical" * 1000
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: rec.put_if_absent("k/race2", same, sha(same)).created, range(8)))
    assert results.count(True) == 1 and len(rec.versions("k/race2")) == 1


def test_master_http_admin_api_cannot_wipe_a_bucket(seaweed, rec: ObjectStore, store_settings: Settings) -> None:
    # Without -disableHttp, this unauthenticated GET deleted every object of the locked bucket.
    rec.put_if_absent("k/wipe", b"w" * 1000, sha(b"w" * 1000), retain_until=until())
    master = seaweed.store.endpoint.ports["master"]
    for path in (f"/col/delete?collection={store_settings.evidence_bucket}", "/vol/vacuum", "/dir/status"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{master}{path}", timeout=5)
        assert err.value.code == 404, path
    assert rec.get("k/wipe") == b"w" * 1000


def test_volume_server_refuses_unsigned_deletes(seaweed) -> None:
    volume = seaweed.store.endpoint.ports["volume"]
    req = urllib.request.Request(f"http://127.0.0.1:{volume}/1,01637037d6", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 401


def _grpc_probe(port: int, tls_dir: Path, client_cert: bool) -> bytes:
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    if client_cert:
        ctx.load_cert_chain(str(tls_dir / "grpc.pem"), str(tls_dir / "grpc.key"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        return s.recv(64)


def test_grpc_needs_the_client_certificate(seaweed) -> None:
    import ssl

    tls_dir = seaweed.store.store_dir / "tls"
    for name in ("master", "filer", "volume"):
        port = seaweed.store.endpoint.ports[name] + 10000
        assert _grpc_probe(port, tls_dir, client_cert=True)[3:4] == b"\x04"  # an HTTP/2 SETTINGS frame
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _grpc_probe(port, tls_dir, client_cert=False)
    for name in ("ca.pem", "grpc.pem", "grpc.key"):
        assert (tls_dir / name).stat().st_mode & 0o077 == 0
    assert not list(tls_dir.glob("*ca*.key")), "the CA key must not be kept"


def test_weed_unix_sockets_are_private(seaweed) -> None:
    ports = seaweed.store.endpoint.ports
    socks = [
        p
        for p in Path("/tmp").glob("seaweedfs-*.sock")
        if any(f"-{v}.sock" in p.name or f"-{v + 10000}.sock" in p.name for v in ports.values())
    ]
    assert socks
    for p in socks:
        assert p.stat().st_mode & 0o077 == 0, p


def test_versions_of_a_key_range_only(rec: ObjectStore) -> None:
    """`versions_range` (a clip's segments): exactly the keys first..last of a folder, every version of
    each (a shadow put over a sealed key included), nothing before or after."""
    folder = "sessions/range-1/segments/main/video/"
    keys_ = [f"{folder}{i:08d}.webm" for i in range(12)]
    for k in keys_:
        rec.put_if_absent(k, k.encode(), sha(k.encode()), "video/webm", until())
    rec.put_if_absent("sessions/range-1/segments/main/videoX/00000004.webm", b"x", sha(b"x"), retain_until=until())
    rec.client.put_object(rec.evidence_bucket, keys_[5], io.BytesIO(b"shadow"), 6)  # a later version
    got = rec.versions_range(folder, keys_[3], keys_[7])
    assert sorted({v.key for v in got}) == keys_[3:8]
    assert len([v for v in got if v.key == keys_[5]]) == 2
    assert [v.key for v in rec.versions_range(folder, keys_[0], keys_[0])] == [keys_[0]]
    assert rec.versions_range(folder, keys_[11] + "z", keys_[11] + "zz") == []
