"""`tonglu verify` and the standalone `verify.py`: exit codes, JSON, and agreement between the two."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.verify.session_builder import BuiltSession
from tests.verify.tamper import TAMPERS
from tonglu.cli import app
from tonglu.evidence import verify_core
from tonglu.evidence.evidence_dir import zip_dir

CORE = Path(verify_core.__file__)
runner = CliRunner()


def tonglu(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", *args])
    return result.exit_code, result.output


def standalone(*args: str, script: Path = CORE, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The shipped verifier under a bare interpreter: isolated mode, no site-packages."""
    return subprocess.run(
        [sys.executable, "-I", "-S", str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        stdin=subprocess.DEVNULL,  # not a TTY: never asked for the digest
    )


def test_intact_dir_exit_0_human_and_json(evidence: Path, built: BuiltSession) -> None:
    digest = built.ledger.checkpoints(built.sid)[-1].digest
    code, out = tonglu(str(evidence), "--digest", digest)
    assert code == 0, out
    assert "完整 INTACT" in out and digest in out
    code, out = tonglu(str(evidence), "--json", "--digest", digest)
    assert code == 0
    doc = json.loads(out)
    assert doc["ok"] is True and doc["verdict"] == "intact" and doc["problems"] == []
    assert doc["sessions"][0]["final_digest"] == digest
    # Without an anchor: consistent, but not INTACT (exit 3)
    code, out = tonglu(str(evidence), "--json")
    doc = json.loads(out)
    assert code == 3 and doc["verdict"] == "consistent_not_anchored" and doc["ok"] is False
    assert doc["consistent"] is True and doc["anchored"] is False


def test_tampered_exit_1_names_each_problem(evidence: Path, built: BuiltSession) -> None:
    expected = TAMPERS["flip_segment"](evidence, built) + TAMPERS["delete_entry"](evidence, built)
    code, out = tonglu(str(evidence))
    assert code == 1
    assert "已篡改或不完整 TAMPERED" in out
    for problem_code, obj in expected:
        assert problem_code in out and obj in out
    code, out = tonglu(str(evidence), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert set(expected) <= {(p["code"], p["object"]) for p in doc["problems"]}
    assert all(p["message"] and p["message_zh"] for p in doc["problems"])


@pytest.mark.parametrize(
    "args",
    [[], ["/nonexistent/package.zip"], ["--session", "S1", "."], ["--key", "/nonexistent.pem", "."]],
    ids=["nothing", "missing-path", "both", "missing-key-file"],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    code, out = tonglu(*args)
    assert code == 2, out
    assert "usage error" in out


def test_bad_session_id_is_a_usage_error() -> None:
    code, out = tonglu("--session", "../etc")
    assert code == 2 and "unsafe session id" in out


def test_unreadable_package_exit_1_with_reason(tmp_path: Path) -> None:
    bad = tmp_path / "export.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    code, out = tonglu(str(bad))
    assert code == 1 and "CANNOT VERIFY" in out and "export.zip" in out
    code, out = tonglu(str(bad), "--json")
    assert code == 1 and json.loads(out)["verdict"] == "unreadable"


def test_truncated_zip_is_unreadable_not_intact(evidence: Path, tmp_path: Path) -> None:
    z = zip_dir(evidence, tmp_path / "p.zip")
    z.write_bytes(z.read_bytes()[: z.stat().st_size - 100])  # the central directory is cut off
    assert tonglu(str(z))[0] == 1
    assert standalone(str(z)).returncode == 1


def test_zip_with_a_member_byte_flipped(evidence: Path, built: BuiltSession, tmp_path: Path) -> None:
    z = zip_dir(evidence, tmp_path / "p.zip")
    key = built.segment_keys[2]
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(key)
    data = bytearray(z.read_bytes())
    # local header: 30 bytes + name + extra, then the stored data
    name_len = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_len = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    data[info.header_offset + 30 + name_len + extra_len + 100] ^= 0xFF
    z.write_bytes(bytes(data))
    code, out = tonglu(str(z), "--json")
    assert code == 1
    assert ("segment_altered", key) in {(p["code"], p["object"]) for p in json.loads(out)["problems"]}


def test_zip_with_a_duplicate_member_name(evidence: Path, built: BuiltSession, tmp_path: Path) -> None:
    import warnings

    z = zip_dir(evidence, tmp_path / "p.zip")
    key = built.segment_keys[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(z, "a") as zf:
            zf.writestr(key, b"a second copy under the same name")
    code, out = tonglu(str(z), "--json")
    found = {(p["code"], p["object"]) for p in json.loads(out)["problems"]}
    assert code == 1 and ("package_file_extra", key) in found


def _pairs(doc: dict) -> set[tuple[str, str, str]]:
    return {(p["code"], p["object"], p["severity"]) for p in doc["problems"]}


@pytest.mark.parametrize(
    "tamper", [None, "swap_segments", "edit_entry_value", "random_signature", "replace_public_key"]
)
def test_standalone_bare_python_agrees_with_tonglu_verify(
    tamper: str | None, package: Path, built: BuiltSession, tmp_path: Path
) -> None:
    if tamper:
        TAMPERS[tamper](package, built)
    target = zip_dir(package, tmp_path / "export.zip", top="export")
    pem = tmp_path / "site.pem"
    pem.write_bytes(built.key.public_pem)
    code, out = tonglu(str(target), "--json", "--key", str(pem))
    proc = standalone(str(target), "--json", "--key", str(pem))
    assert proc.returncode == code == (1 if tamper else 0), proc.stderr
    ours, theirs = json.loads(out), json.loads(proc.stdout)
    assert theirs["signature_engine"] == "builtin-ed25519"  # no cryptography under -I -S
    assert ours["signature_engine"] == "cryptography"
    for doc in (ours, theirs):
        doc.pop("signature_engine")
    assert theirs == ours


def test_shipped_verify_py_runs_from_inside_the_unpacked_package(package: Path) -> None:
    proc = standalone(script=package / "verify.py", cwd=package)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # no anchor given
    assert "一致但未锚定 CONSISTENT, NOT ANCHORED" in proc.stdout and "SHA256SUMS signed" in proc.stdout
    assert "完整 INTACT" not in proc.stdout


def test_standalone_usage_errors(tmp_path: Path) -> None:
    lone = tmp_path / "verify.py"
    shutil.copyfile(CORE, lone)
    assert standalone(script=lone).returncode == 2  # no path and no package around it
    assert standalone(str(tmp_path / "nope")).returncode == 2
    assert standalone("--bogus").returncode == 2


def test_standalone_trust_anchors(evidence: Path, built: BuiltSession, tmp_path: Path) -> None:
    pem = tmp_path / "site.pem"
    pem.write_bytes(built.key.public_pem)
    digest = built.ledger.checkpoints(built.sid)[-1].digest
    assert standalone(str(evidence), "--key", str(pem), "--digest", digest).returncode == 0
    proc = standalone(str(evidence), "--digest", "AAAAA-BBBBB-CCCCC-DDDDD")
    assert proc.returncode == 1 and "checkpoint_digest_not_found" in proc.stdout
