"""Export package: a fresh package verifies with both verifiers (`tonglu verify` and the bundled
`verify.py` run by a bare `python3 -I -S`); any changed byte of any file, a removed or added
segment, an edited manifest entry make both fail and name what changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.integrity.builder import T0, Scenario, build
from tonglu.evidence import canonical, verify_core
from tonglu.evidence.manifest import ManifestEntry
from tonglu.integrity.errors import SessionStillRecording
from tonglu.integrity.export import export_session

S = 1_000_000_000
TONGLU = str(Path(sys.executable).with_name("tonglu"))
PYTHON3 = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("export")
    sc = Scenario(annotations=[("marker", {"time_ns": T0 + S, "note": "开始讯问", "by": "李警官"}, T0 + S)])
    b = build(tmp, sc)
    out = tmp / "case.zip"
    result = export_session(b.review, b.sid, out, workcopy_height=180)
    bundled = tmp / "verify.py"
    with zipfile.ZipFile(out) as zf:
        bundled.write_bytes(zf.read("verify.py"))
    return b, result, out, bundled


def rewrite(
    src: Path,
    dst: Path,
    *,
    change: dict[str, bytes] | None = None,
    drop: set[str] | None = None,
    add: dict[str, bytes] | None = None,
) -> Path:
    change, drop, add = change or {}, drop or set(), add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = change.get(info.filename, zin.read(info.filename))
            zout.writestr(info, data)
        for name, data in add.items():
            zout.writestr(name, data)
    return dst


def both(path: Path, bundled: Path, *anchor: str) -> tuple[dict, dict]:
    """Run `tonglu verify --json` and the bundled verifier; return both JSON results."""
    a = subprocess.run(
        [TONGLU, "verify", str(path), "--json", *anchor],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    b = subprocess.run(
        [PYTHON3, "-I", "-S", str(bundled), str(path), "--json", *anchor],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    ra["_rc"], rb["_rc"] = a.returncode, b.returncode
    return ra, rb


def named(result: dict) -> set[str]:
    return {p["object"] for p in result.get("problems", []) if p["severity"] == "error"}


def test_fresh_package_verifies_with_both_verifiers(package) -> None:
    b, result, out, bundled = package
    ra, rb = both(out, bundled)  # no anchor: consistent, but not INTACT
    assert ra["_rc"] == 3 and rb["_rc"] == 3, (ra.get("problems"), rb.get("problems"))
    assert ra["verdict"] == rb["verdict"] == "consistent_not_anchored" and not ra["ok"] and not rb["ok"]
    ra, rb = both(out, bundled, "--digest", ra["sessions"][0]["final_digest"])
    assert ra["_rc"] == 0 and rb["_rc"] == 0, (ra.get("problems"), rb.get("problems"))
    assert ra["ok"] is True and rb["ok"] is True
    assert ra["package_sums"] == rb["package_sums"] == "signed"
    assert ra["sessions"][0]["final_digest"] == rb["sessions"][0]["final_digest"]
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        infos = {i.filename: i for i in zf.infolist()}
    for required in (
        "README.txt",
        "verify.py",
        "SHA256SUMS",
        "SHA256SUMS.sig",
        "report/report.html",
        "report/report.json",
        "audit/audit.csv",
        f"site/keys/{b.key.key_id}.pem",
    ):
        assert required in names
    assert any(n.startswith("workcopy/") and n.endswith(".mp4") for n in names)
    assert len([n for n in names if "/segments/" in n]) == 12 == result.segments
    assert all(
        i.compress_type == zipfile.ZIP_STORED for n, i in infos.items() if n.endswith((".webm", ".mp4"))
    )
    with zipfile.ZipFile(out) as zf:
        doc = json.loads(zf.read("report/report.json"))
        readme = zf.read("README.txt").decode()
    assert doc["verified"] is True and doc["gaps"] == []
    assert "如何校验" in readme and "How to verify" in readme
    fingerprint = verify_core.key_fingerprint(verify_core.raw_public_key_from_pem(b.key.public_pem))
    assert fingerprint in readme and "--digest" in readme and "--key" in readme
    assert "一致但未锚定" in readme and "CONSISTENT, NOT ANCHORED" in readme


def _all_names(out: Path) -> list[str]:
    with zipfile.ZipFile(out) as zf:
        return sorted(zf.namelist())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "member" in metafunc.fixturenames:
        # The package's file list does not depend on run-time values except the working copy's
        # content hash and key id: parametrize over roles, resolved against the real list below.
        metafunc.parametrize("member", ROLES)


def resolve(names: list[str], role: str) -> str:
    kind, _, arg = role.partition(":")
    groups = {
        "manifest": [n for n in names if "/manifest/" in n],
        "checkpoint": [n for n in names if "/checkpoints/" in n],
        "segment": [n for n in names if "/segments/" in n],
    }
    if kind in groups:
        items = groups[kind]
        return items[-1] if arg == "last" else items[int(arg)]
    if kind == "key":
        return next(n for n in names if n.startswith("site/keys/"))
    if kind.startswith("workcopy."):
        return next(n for n in names if n.startswith("workcopy/") and n.endswith(kind.split(".")[1]))
    return next(n for n in names if n.endswith(kind))


ROLES = [
    "manifest:0",
    "manifest:3",
    "manifest:last",
    "checkpoint:0",
    "checkpoint:last",
    "key",
    *[f"segment:{i}" for i in range(12)],
    "report.html",
    "report.json",
    "workcopy.mp4",
    "workcopy.json",
    "audit.csv",
    "README.txt",
    "verify.py",
    "SHA256SUMS",
    "SHA256SUMS.sig",
]


def test_parametrization_covers_every_kind_of_file(package) -> None:
    names = _all_names(package[2])
    covered = {resolve(names, r) for r in ROLES}
    assert len(covered) == len(ROLES)
    # every file is covered, except manifest entries and checkpoints beyond the sampled ones
    rest = set(names) - covered
    assert all("/manifest/" in n or "/checkpoints/" in n for n in rest), rest


def test_changing_any_byte_of_any_file_is_caught_by_both(package, member: str, tmp_path: Path) -> None:
    _, _, out, bundled = package
    name = resolve(_all_names(out), member)
    with zipfile.ZipFile(out) as zf:
        data = bytearray(zf.read(name))
    data[len(data) // 2] ^= 0x01
    tampered = rewrite(out, tmp_path / "t.zip", change={name: bytes(data)})
    ra, rb = both(tampered, bundled)
    assert ra["_rc"] == 1 and rb["_rc"] == 1
    assert ra["ok"] is False and rb["ok"] is False
    assert named(ra) == named(rb)
    if name == "SHA256SUMS":
        assert any("SHA256SUMS" in o for o in named(ra)) or len(named(ra)) >= 1
    else:
        assert name in named(ra), named(ra)


def test_removed_segment_is_named(package, tmp_path: Path) -> None:
    _, _, out, bundled = package
    seg = resolve(_all_names(out), "segment:4")
    ra, rb = both(rewrite(out, tmp_path / "t.zip", drop={seg}), bundled)
    assert ra["_rc"] == rb["_rc"] == 1 and named(ra) == named(rb)
    assert seg in named(ra)
    assert "segment_missing" in {p["code"] for p in ra["problems"]}


def test_added_segment_is_named(package, tmp_path: Path) -> None:
    b, _, out, bundled = package
    extra = f"sessions/{b.sid}/segments/main/video/00000003.webm"
    with zipfile.ZipFile(out) as zf:
        data = zf.read(resolve(zf.namelist(), "segment:0"))
    ra, rb = both(rewrite(out, tmp_path / "t.zip", add={extra: data}), bundled)
    assert ra["_rc"] == rb["_rc"] == 1 and named(ra) == named(rb)
    assert extra in named(ra)


def test_edited_manifest_entry_is_named(package, tmp_path: Path) -> None:
    _, _, out, bundled = package
    with zipfile.ZipFile(out) as zf:
        name = next(
            n
            for n in zf.namelist()
            if "/manifest/" in n and ManifestEntry.from_bytes(zf.read(n)).kind == "segment"
        )
        entry = ManifestEntry.from_bytes(zf.read(name))
    body = dict(entry.body, wall_first_ns=entry.body["wall_first_ns"] + S)  # move a segment by 1 s
    edited = canonical.encode({**entry.to_json(), "body": body})  # still canonical, still parses
    ra, rb = both(rewrite(out, tmp_path / "t.zip", change={name: edited}), bundled)
    assert ra["_rc"] == rb["_rc"] == 1 and named(ra) == named(rb)
    assert name in named(ra)
    assert "entry_edited" in {p["code"] for p in ra["problems"]}


def test_package_missing_its_manifest(package, tmp_path: Path) -> None:
    _, _, out, bundled = package
    manifest = {n for n in _all_names(out) if "/manifest/" in n}
    ra, rb = both(rewrite(out, tmp_path / "t.zip", drop=manifest), bundled)
    assert ra["_rc"] == rb["_rc"] == 1 and ra["ok"] is False and rb["ok"] is False
    assert manifest & named(ra)


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_package_is_a_clear_error(package, tmp_path: Path, kind: str) -> None:
    _, _, out, bundled = package
    bad = tmp_path / "bad.zip"
    if kind == "garbage":
        bad.write_bytes(b"this is not a zip file\n" * 100)
    else:
        bad.write_bytes(out.read_bytes()[: out.stat().st_size // 2])
    a = subprocess.run([TONGLU, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    c = subprocess.run(
        [PYTHON3, "-I", "-S", str(bundled), str(bad)], capture_output=True, text=True, timeout=60
    )
    assert a.returncode == 1 and c.returncode == 1
    for proc in (a, c):
        text = proc.stdout + proc.stderr
        assert "UNREADABLE" in text or "zip" in text.lower(), text
    assert verify_core.open_source  # the module API raises VerifyError on the same input
    with pytest.raises(verify_core.VerifyError):
        verify_core.verify_path(str(bad))


def test_still_recording_session_is_refused(tmp_path: Path) -> None:
    b = build(tmp_path, Scenario(stop_ns=None))
    out = tmp_path / "x.zip"
    with pytest.raises(SessionStillRecording, match="仍在录制"):
        export_session(b.review, b.sid, out, with_workcopy=False)
    assert not out.exists() and not out.with_name("x.zip.part").exists()


def test_every_file_flipped_in_process(package, tmp_path: Path) -> None:
    """Literally every file of the package (all manifest entries and checkpoints too), with the
    verifier's module API (the same code `tonglu verify` and `verify.py` run)."""
    _, _, out, _ = package
    names = _all_names(out)
    for name in names:
        with zipfile.ZipFile(out) as zf:
            data = bytearray(zf.read(name))
        data[len(data) // 3] ^= 0x40
        tampered = rewrite(out, tmp_path / "t.zip", change={name: bytes(data)})
        result = verify_core.verify_path(str(tampered))
        errors = {p.object for p in result.errors}
        assert not result.ok, name
        assert name in errors or (name.startswith("SHA256SUMS") and errors), (name, errors)
