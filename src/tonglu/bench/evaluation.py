"""Accuracy figures (pure): word and character error rates with the usual normalisation; the bundled corpus.

Normalisation before scoring: NFKC, lower case, punctuation removed; English "mr" -> "mister" and
numbers 0-20 spelled out; Chinese digits 0-9 written as Han numerals (一二三...) and traditional
characters converted to simplified. This is what makes "1, 2, 3" and "one two three" equal, not
what makes wrong words right.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "speech"  # in a source checkout
_EN_NUM = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty"
).split()
_ZH_DIGIT = dict(zip("0123456789", "零一二三四五六七八九", strict=True))


@dataclass(frozen=True)
class Clip:
    path: Path
    language: str
    reference: str
    group: str


def corpus(root: Path = CORPUS) -> list[Clip]:
    clips = []
    for wav in sorted(root.glob("*/*/*.wav")):
        txt = wav.with_suffix(".txt")
        if txt.exists():
            lang, group = wav.parent.parent.name, wav.parent.name
            clips.append(Clip(wav, lang, txt.read_text(encoding="utf-8").strip(), group))
    return clips


def _edits(a: Sequence[str], b: Sequence[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _strip(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch if unicodedata.category(ch)[0] in ("L", "N") else " " for ch in text)


def en_words(text: str) -> list[str]:
    words = _strip(text.replace("'", "")).split()
    out = []
    for w in words:
        if w == "mr":
            w = "mister"
        elif w.isdigit() and int(w) <= 20:
            w = _EN_NUM[int(w)]
        out.append(w)
    return out


def zh_chars(text: str) -> list[str]:
    from tonglu.transcribe.guards import clean_text

    text = clean_text(text, "zh")
    return [_ZH_DIGIT.get(ch, ch) for ch in _strip(text) if not ch.isspace()]


def error_rate(refs: Sequence[str], hyps: Sequence[str], language: str) -> float:
    """Corpus-level WER (en) or CER (zh): total edits / total reference tokens."""
    tok = en_words if language == "en" else zh_chars
    edits = total = 0
    for r, h in zip(refs, hyps, strict=True):
        rt, ht = tok(r), tok(h)
        edits += _edits(rt, ht)
        total += len(rt)
    return edits / max(1, total)


_SPACES = re.compile(r"\s+")


def join_lines(texts: Sequence[str], language: str) -> str:
    return _SPACES.sub(" ", ("" if language.startswith("zh") else " ").join(texts)).strip()


def noise_clips(seconds: float = 20.0, rate: int = 16_000) -> dict[str, np.ndarray]:
    """Deterministic non-speech audio: silence, white, brown noise, mains hum, clicks, fan-like noise."""
    rng = np.random.default_rng(20240601)
    n = round(seconds * rate)
    brown = np.cumsum(rng.standard_normal(n))
    brown = (brown - np.convolve(brown, np.ones(4001) / 4001, mode="same")) / 400
    clicks = np.zeros(n)
    clicks[rng.integers(0, n, 40)] = 0.8
    t = np.arange(n) / rate
    sets = {
        "silence": np.zeros(n),
        "white": rng.standard_normal(n) * 0.05,
        "brown": brown,
        "hum": 0.1 * np.sin(2 * np.pi * 50 * t) + 0.03 * np.sin(2 * np.pi * 150 * t),
        "clicks": clicks,
        "fan": np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same") * 0.1,
    }
    return {k: np.clip(v, -1, 1).astype(np.float32) for k, v in sets.items()}
