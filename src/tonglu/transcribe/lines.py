"""Transcript lines on the session's wall clock, and ISO-8601 formatting (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from tonglu.transcribe.guards import RawLine

SHANGHAI = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # China has no DST


def iso(ns: int) -> str:
    """UTC ISO-8601 with milliseconds and a Z."""
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).replace(microsecond=(ns % 1_000_000_000) // 1000)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> int:
    """ISO-8601 (with zone; Z allowed) -> UTC ns. Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"time {value!r} is not a string")
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no time zone")
    delta = t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def local_hms(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, SHANGHAI).strftime("%H:%M:%S")


@dataclass(frozen=True)
class Word:
    start_ns: int
    end_ns: int
    word: str
    probability: float


@dataclass(frozen=True)
class Line:
    source: str
    track: str
    start_ns: int
    end_ns: int
    text: str
    confidence: float = 1.0
    words: tuple[Word, ...] = field(default_factory=tuple)
    level_db: float | None = None  # speech level of this track over the line's words (see `levels`)
    heard_on: tuple[str, ...] = ()  # other sources that heard the same utterance (see `crosstalk`)

    def to_json(self, speaker: dict[str, str] | None = None) -> dict[str, Any]:
        speaker = speaker or {}
        return {
            "start": iso(self.start_ns),
            "end": iso(self.end_ns),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "speaker": speaker.get("label", f"{self.source}/{self.track}"),
            "role": speaker.get("role", ""),
            "source": self.source,
            "track": self.track,
            "text": self.text,
            "confidence": round(self.confidence, 3),
            "level_db": None if self.level_db is None else round(self.level_db, 1),
            "heard_on": list(self.heard_on),
            "words": [
                {"start": iso(w.start_ns), "end": iso(w.end_ns), "word": w.word, "p": round(w.probability, 3)}
                for w in self.words
            ],
        }


def to_wall(raw: RawLine, base_ns: int, source: str, track: str, text: str, level_db: float | None = None) -> Line:
    """Map a raw line (seconds from the start of the window) onto the wall clock."""
    words = tuple(
        Word(base_ns + round(w.start * 1e9), base_ns + round(w.end * 1e9), w.word, w.probability) for w in raw.words
    )
    start = words[0].start_ns if words else base_ns + round(raw.start * 1e9)
    end = words[-1].end_ns if words else base_ns + round(raw.end * 1e9)
    return Line(source, track, start, max(start, end), text, raw.confidence, words, level_db)
