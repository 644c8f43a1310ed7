"""Fixtures for the transcription tests: real speech clips, real Whisper models (tiny.en, base)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tonglu.bench.evaluation import CORPUS, noise_clips
from tonglu.config import Settings
from tonglu.evidence.ledger import Ledger
from tonglu.evidence.signing import SiteKey
from tonglu.evidence.spool import Spool
from tonglu.transcribe.audio import RATE, decode

SPEECH = CORPUS
LIBRIVOX = sorted((SPEECH / "en" / "librivox").glob("*.wav"))


def load(path: Path) -> np.ndarray:
    return decode(path)


def first_word_s(wav: Path) -> float:
    """Start of the first word in a LibriVox clip, from the pocketsphinx alignment shipped with it."""
    align = json.loads(wav.with_name(wav.stem + ".align.json").read_text())
    return float(next(w["b"] for w in align["w"] if not w["t"].startswith("<")))


def reference(wav: Path) -> str:
    return wav.with_suffix(".txt").read_text(encoding="utf-8").strip()


@dataclass
class Placed:
    wav: Path
    offset_s: float  # where the clip starts in the composed audio
    text: str

    @property
    def speech_start_s(self) -> float:
        return self.offset_s + first_word_s(self.wav)


def compose(clips: list[tuple[Path, float]], tail_s: float = 2.0) -> tuple[np.ndarray, list[Placed]]:
    """Silence `gap` seconds, then the clip, for each (clip, gap); returns audio and where each clip went."""
    parts, placed, t = [], [], 0.0
    for wav, gap in clips:
        parts.append(np.zeros(round(gap * RATE), np.float32))
        t += gap
        pcm = load(wav)
        placed.append(Placed(wav, t, reference(wav)))
        parts.append(pcm)
        t += len(pcm) / RATE
    parts.append(np.zeros(round(tail_s * RATE), np.float32))
    return np.concatenate(parts), placed


def noise_set(seconds: float = 20.0) -> dict[str, np.ndarray]:
    return noise_clips(seconds)


@pytest.fixture(scope="session")
def tiny_engine():  # type: ignore[no-untyped-def]
    from tonglu.transcribe.engine import Engine
    from tonglu.transcribe.models import resolve_model

    return Engine(resolve_model("tiny.en"), language="en")


@pytest.fixture(scope="session")
def base_engine():  # type: ignore[no-untyped-def]
    from tonglu.transcribe.engine import Engine
    from tonglu.transcribe.models import resolve_model

    return Engine(resolve_model("base"), language="zh")


@dataclass
class Env:
    settings: Settings
    spool: Spool
    ledger: Ledger


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    settings = Settings.from_env(
        {
            "TONGLU_DATA_DIR": str(tmp_path / "data"),
            "TONGLU_RETENTION_SECONDS": "60",
            "TONGLU_WHISPER_MODEL": "tiny.en",
            "TONGLU_WHISPER_LANGUAGE": "en",
        }
    )
    spool = Spool(settings.spool_dir)
    ledger = Ledger(settings.ledger_dir, spool, SiteKey.load_or_create(settings.keys_dir))
    yield Env(settings, spool, ledger)
