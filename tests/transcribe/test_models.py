"""Model provisioning from installed packages: reassembly with size/SHA-256 checks, idempotence, errors."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tonglu.transcribe.errors import ModelChecksumError, ModelError
from tonglu.transcribe.models import BASE_SHA256, BASE_SIZE, base_parts, prepare_base, resolve_model


def test_prepare_base_reassembles_and_is_idempotent(tmp_path: Path) -> None:
    target = tmp_path / "whisper-base"
    path, written = prepare_base(target)
    assert written and path == target
    model_bin = target / "model.bin"
    assert model_bin.stat().st_size == BASE_SIZE == 145_217_607
    h = hashlib.sha256()
    with open(model_bin, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    assert h.hexdigest() == BASE_SHA256
    assert BASE_SHA256.startswith("905e5bf8") and BASE_SHA256.endswith("c1a57")
    assert {p.name for p in target.iterdir()} >= {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.json",
    }
    t = time.perf_counter()
    _, again = prepare_base(target)
    assert not again and time.perf_counter() - t < 1.0


def test_prepare_base_refuses_wrong_bytes(tmp_path: Path) -> None:
    parts, side = base_parts()
    bad = tmp_path / "bad.part2"
    bad.write_bytes(b"\0" * 1000)
    with pytest.raises(ModelChecksumError, match="expected 145217607 bytes"):
        prepare_base(tmp_path / "m", parts=[parts[0], bad], side_dir=side)
    assert not (tmp_path / "m" / "model.bin").exists() and not (tmp_path / "m" / "model.bin.part").exists()
    with pytest.raises(ModelError, match="missing"):
        prepare_base(tmp_path / "m2", parts=[parts[0], tmp_path / "nope"], side_dir=side)


def test_resolve_models() -> None:
    tiny = resolve_model("tiny.en")
    assert tiny.english_only and tiny.name == "whisper-tiny.en" and len(tiny.sha256) == 64
    base = resolve_model(None)
    assert base.name == "whisper-base" and base.sha256 == BASE_SHA256 and not base.english_only
    with pytest.raises(ModelError, match="neither"):
        resolve_model("/nonexistent/model")


def test_cli_model_prepare() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tonglu.cli", "model", "prepare"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "whisper-base" in out.stdout and BASE_SHA256 in out.stdout
