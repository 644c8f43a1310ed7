"""Finding 6: a re-signed forgery (new key, chain rebuilt) must not be called INTACT without an anchor.

The attacker removes a segment, rebuilds the manifest chain, signs fresh checkpoints with a key of
their own and ships that key in the package. Every internal check passes, so without an anchor
from outside the package (`--key` of the real site, `--digest` from the paper record) the verdict
is "CONSISTENT, NOT ANCHORED" (一致但未锚定, exit 3); with the real site's key or digest the forgery
is TAMPERED (exit 1) and the genuine evidence INTACT (exit 0).
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.verify.session_builder import BuiltSession, build_session, lay_out
from tonglu.cli import app
from tonglu.evidence import verify_core
from tonglu.evidence.evidence_dir import spooled_objects, write_session_dir
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool

CORE = Path(verify_core.__file__)
runner = CliRunner()


def forge(built: BuiltSession, root: Path) -> tuple[Path, str, SiteKey]:
    """The real session minus its last audio segment, chained and signed anew with a new key."""
    dropped = built.segment_keys[-1]
    key = SiteKey.load_or_create(root / "attacker-keys")
    ledger = Ledger(root / "ledger", Spool(root / "spool"), key)
    for e in built.ledger.entries(built.sid):
        if e.kind == "segment" and e.body["key"] == dropped:
            continue
        ledger.append(built.sid, e.kind, dict(e.body), now_ns=e.time_ns)
    ledger.checkpoint(built.sid, final=True, now_ns=built.entries[-1].time_ns + 1)
    objects = {k: p for k, p in spooled_objects(built.spool, built.sid).items() if k != dropped}
    dest = write_session_dir(
        ledger.entries(built.sid), ledger.checkpoints(built.sid), objects, key.public_pem, root / "forged"
    )
    return dest, ledger.checkpoints(built.sid)[-1].digest, key


def tonglu(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", *args])
    return result.exit_code, result.output


def standalone(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-S", str(CORE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> BuiltSession:
    """The genuine session (the verifier tests' builder: real VP8/Opus segments, signed checkpoints)."""
    return build_session(tmp_path_factory.mktemp("real-session"))


@pytest.fixture
def evidence_dir(real: BuiltSession, tmp_path: Path) -> Path:
    return lay_out(real, tmp_path / "evidence")


@pytest.fixture
def forged(real: BuiltSession, tmp_path: Path) -> tuple[Path, str, SiteKey]:
    return forge(real, tmp_path)


def test_unanchored_forgery_is_consistent_not_anchored_exit_3(forged: tuple[Path, str, SiteKey]) -> None:
    path, _digest, attacker = forged
    code, out = tonglu(str(path))
    assert code == 3, out
    assert "一致但未锚定" in out and "CONSISTENT, NOT ANCHORED" in out and "INTACT" not in out
    # the fingerprint of the key that signed is printed, so a person can compare it with the published one
    assert verify_core.key_fingerprint(attacker.public.public_bytes_raw()) in out
    code, out = tonglu(str(path), "--json")
    doc = json.loads(out)
    assert code == 3 and doc["verdict"] == "consistent_not_anchored" and doc["ok"] is False
    assert doc["anchored"] is False and doc["exit_code"] == 3
    proc = standalone(str(path))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "一致但未锚定" in proc.stdout and "INTACT" not in proc.stdout
    assert "Final digest from the paper record" not in proc.stderr  # no TTY: never asked


def test_anchored_genuine_evidence_is_intact_exit_0(evidence_dir: Path, real: BuiltSession, tmp_path: Path) -> None:
    pem = tmp_path / "site.pem"
    pem.write_bytes(real.key.public_pem)
    digest = real.ledger.checkpoints(real.sid)[-1].digest
    for args in (["--key", str(pem)], ["--digest", digest]):
        code, out = tonglu(str(evidence_dir), *args)
        assert code == 0 and "完整 INTACT" in out, out
        assert f"锚定 Anchored by: {args[0]}" in out
        proc = standalone(str(evidence_dir), *args)
        assert proc.returncode == 0, proc.stdout


def test_forgery_with_the_real_site_key_or_digest_is_tampered_exit_1(
    forged: tuple[Path, str, SiteKey], real: BuiltSession, tmp_path: Path
) -> None:
    path, _digest, _attacker = forged
    pem = tmp_path / "site.pem"
    pem.write_bytes(real.key.public_pem)
    code, out = tonglu(str(path), "--key", str(pem), "--json")
    assert code == 1
    assert "public_key_untrusted" in {p["code"] for p in json.loads(out)["problems"]}
    assert standalone(str(path), "--key", str(pem)).returncode == 1
    real_digest = real.ledger.checkpoints(real.sid)[-1].digest
    proc = standalone(str(path), "--digest", real_digest)
    assert proc.returncode == 1 and "checkpoint_digest_not_found" in proc.stdout


def _run_on_a_terminal(args: list[str], answer: str) -> tuple[int, str]:
    """Run the standalone verifier with a pseudo-terminal as stdin/stdout; type `answer` at the prompt."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(CORE), *args], stdin=slave, stdout=slave, stderr=slave, close_fds=True
    )
    os.close(slave)
    out = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if not answered and b"paper record" in out:
                os.write(master, answer.encode() + b"\n")
                answered = True
            if proc.poll() is not None and not ready:
                break
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
    return code, out.decode("utf-8", "replace")


def test_a_person_at_a_terminal_is_asked_for_the_paper_digest(
    evidence_dir: Path, real: BuiltSession, forged: tuple[Path, str, SiteKey]
) -> None:
    digest = real.ledger.checkpoints(real.sid)[-1].digest
    code, out = _run_on_a_terminal([str(evidence_dir)], digest)
    assert "纸面笔录" in out and code == 0, out
    code, out = _run_on_a_terminal([str(forged[0])], digest)
    assert code == 1 and "checkpoint_digest_not_found" in out, out
    code, out = _run_on_a_terminal([str(evidence_dir)], "")  # Enter: skipped
    assert code == 3 and "一致但未锚定" in out, out
