"""Tamper tests: every kind of alteration is caught and the altered object is named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.verify.session_builder import BuiltSession, build_session, lay_out
from tests.verify.tamper import TAMPERS, edit_entry_value, flip_byte, manifest_files, path_of, write_entry
from tonglu.evidence import keys, merkle, verify_core
from tonglu.evidence.checkpoint import sign_checkpoint
from tonglu.evidence.evidence_dir import write_sha256sums, zip_dir
from tonglu.evidence.manifest import GENESIS, HashChain, ManifestEntry
from tonglu.evidence.signing import SiteKey


def verify(path: Path, **kw: object) -> verify_core.Result:
    return verify_core.verify_path(str(path), **kw)


def test_intact_session_verifies(evidence: Path, built: BuiltSession) -> None:
    result = verify(evidence)
    assert result.ok, result.problems
    assert result.problems == []
    (s,) = result.sessions
    assert s.session == built.sid
    assert s.entries == s.signed_entries == len(built.entries)
    assert s.segments == 7 and s.tracks == {"main/video": 4, "main/audio": 3}
    assert s.stopped and s.final
    assert [c.signature for c in s.checkpoints] == ["valid", "valid"]
    assert s.final_digest == built.ledger.checkpoints(built.sid)[-1].digest
    assert result.key_ids == [built.key.key_id]
    assert result.bytes_hashed == sum(path.stat().st_size for path in (evidence / "sessions").rglob("*.webm"))


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tamper_is_caught_and_named(name: str, evidence: Path, built: BuiltSession) -> None:
    expected = TAMPERS[name](evidence, built)
    result = verify(evidence)
    assert not result.ok
    found = {(p.code, p.object) for p in result.errors}
    missing = [e for e in expected if e not in found]
    assert not missing, f"{name}: expected {missing} among {sorted(found)}"
    for p in result.problems:
        assert p.message and p.message_zh


def test_tampered_zip_is_caught(evidence: Path, built: BuiltSession, tmp_path: Path) -> None:
    TAMPERS["swap_segments"](evidence, built)
    result = verify(zip_dir(evidence, tmp_path / "p.zip", top="export-1"))
    assert ("segment_reordered", built.segment_keys[1]) in {(p.code, p.object) for p in result.errors}


def test_live_session_has_an_unsigned_tail_warning_only(tmp_path: Path) -> None:
    b = build_session(tmp_path / "b", stop=False)
    result = verify(lay_out(b, tmp_path / "ev"))
    assert result.ok, result.errors
    assert {p.code for p in result.warnings} == {"unsigned_tail", "checkpoint_final_missing"}
    tail = next(p for p in result.warnings if p.code == "unsigned_tail")
    assert tail.object == f"sessions/{b.sid}/manifest/00000004.json"


def test_forged_key_passes_alone_but_not_against_the_trusted_key_or_paper_digest(
    evidence: Path, built: BuiltSession
) -> None:
    """Rebuilding the chain and re-signing with a new key is self-consistent: only an outside anchor
    (the site's key given with --key, or the digest signed on paper) catches it."""
    edit_entry_value(evidence, built)
    chain = HashChain(built.sid)
    rebuilt = []
    for f in manifest_files(evidence, built.sid):
        e = ManifestEntry.from_bytes(f.read_bytes())
        rebuilt.append(chain.append(e.kind, e.body, e.time_ns))
        write_entry(evidence, rebuilt[-1])
    mallory = SiteKey(Ed25519PrivateKey.generate())
    prev = GENESIS
    for ordinal, old in enumerate(built.ledger.checkpoints(built.sid)):
        cp = sign_checkpoint(
            mallory,
            session=built.sid,
            tree_size=old.tree_size,
            root=merkle.root([e.to_bytes() for e in rebuilt[: old.tree_size]]),
            head=rebuilt[old.tree_size - 1].entry_hash,
            now_ns=old.time_ns,
            prev_checkpoint=prev,
            final=old.final,
        )
        prev = cp.body_hash
        path_of(evidence, keys.checkpoint_key(built.sid, ordinal)).write_bytes(cp.to_bytes())
    path_of(evidence, keys.public_key_key(built.key.key_id)).unlink()
    path_of(evidence, keys.public_key_key(mallory.key_id)).write_bytes(mallory.public_pem)

    assert verify(evidence).ok  # self-consistent forgery: the documented limit without an anchor
    trusted = verify(evidence, trusted_keys=[built.key.public_pem])
    found = {(p.code, p.object) for p in trusted.errors}
    assert ("public_key_untrusted", keys.checkpoint_key(built.sid, 1)) in found
    paper = built.ledger.checkpoints(built.sid)[-1].digest
    by_digest = verify(evidence, expected_digests=[paper])
    assert [(p.code, p.object) for p in by_digest.errors] == [("checkpoint_digest_not_found", paper)]


def test_paper_digest_of_the_intact_session_is_found(evidence: Path, built: BuiltSession) -> None:
    paper = built.ledger.checkpoints(built.sid)[-1].digest
    assert verify(evidence, expected_digests=[paper.lower()], trusted_keys=[built.key.public_pem]).ok


def test_intact_package_verifies(package: Path) -> None:
    result = verify(package)
    assert result.ok and result.problems == []
    assert result.package_sums == "signed" and result.package_files == 3


@pytest.mark.parametrize("victim", ["README.txt", "verify.py", "report/integrity.json"])
def test_package_file_altered_is_named(package: Path, victim: str) -> None:
    flip_byte(package / victim, 3)
    result = verify(package)
    assert ("package_file_altered", victim) in {(p.code, p.object) for p in result.errors}


def test_package_file_added_or_removed(package: Path) -> None:
    (package / "report" / "integrity.json").unlink()
    (package / "extra.txt").write_text("x", encoding="utf-8")
    found = {(p.code, p.object) for p in verify(package).errors}
    assert {("package_file_missing", "report/integrity.json"), ("package_file_extra", "extra.txt")} <= found


def test_package_sums_regenerated_without_the_key_breaks_the_signature(package: Path) -> None:
    (package / "README.txt").write_text("changed\n", encoding="utf-8")
    write_sha256sums(package)
    found = {(p.code, p.object) for p in verify(package).errors}
    assert found == {("package_signature_invalid", "SHA256SUMS.sig")}


def _package_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_in_any_file_is_caught_and_named(
    data: st.DataObject, pristine_package: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    files = _package_files(pristine_package)
    victim = data.draw(st.sampled_from(files), label="file")
    size = (pristine_package / victim).stat().st_size
    offset = data.draw(st.integers(0, size - 1), label="offset")
    xor = data.draw(st.integers(1, 255), label="xor")
    root = tmp_path_factory.mktemp("flip") / "p"
    shutil.copytree(pristine_package, root)
    flip_byte(root / victim, offset, xor)
    result = verify(root)
    assert not result.ok, f"flip {victim}@{offset}^{xor} not caught"
    assert any(p.object == victim or victim in p.message for p in result.errors), (
        f"flip {victim}@{offset}^{xor}: {[(p.code, p.object) for p in result.errors]}"
    )
