"""Fixtures of the verifier tests: one real session built once, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.verify.session_builder import BuiltSession, build_session, lay_out
from tonglu.evidence.evidence_dir import install_verifier, sign_sha256sums, write_sha256sums


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuiltSession:
    return build_session(tmp_path_factory.mktemp("verify-built"))


@pytest.fixture(scope="session")
def pristine(built: BuiltSession, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lay_out(built, tmp_path_factory.mktemp("verify-pristine") / "evidence")


@pytest.fixture(scope="session")
def pristine_package(built: BuiltSession, pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evidence plus package files, SHA256SUMS and its signature: what an export looks like."""
    dest = tmp_path_factory.mktemp("verify-package") / "package"
    shutil.copytree(pristine, dest)
    readme = "同录 Tonglu export package — run: python3 verify.py .\n"
    (dest / "README.txt").write_text(readme, encoding="utf-8")
    (dest / "report").mkdir()
    (dest / "report" / "integrity.json").write_text('{"findings": []}\n', encoding="utf-8")
    install_verifier(dest)
    write_sha256sums(dest)
    sign_sha256sums(dest, built.key)
    return dest


@pytest.fixture
def evidence(pristine: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "evidence"
    shutil.copytree(pristine, dest)
    return dest


@pytest.fixture
def package(pristine_package: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "package"
    shutil.copytree(pristine_package, dest)
    return dest
