"""Speech level of a track over a line (pure numpy): which microphone heard an utterance best.

Every microphone in an interview room hears everyone; the one nearest the speaker hears them
loudest. The worker already holds the decoded audio of the window it transcribed, so the RMS
level over the line's words costs one pass over a few seconds of samples. Only the words' spans
count (not the pauses around them), so a line padded with silence is not diluted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tonglu.transcribe.audio import RATE
from tonglu.transcribe.guards import RawLine

FLOOR_DB = -120.0


def rms_db(audio: np.ndarray, spans_s: Sequence[tuple[float, float]]) -> float | None:
    """RMS level in dBFS of `audio` (16 kHz mono float in [-1, 1]) over the given spans (seconds).

    None when the spans hold no samples (the line lies outside the audio).
    """
    total = 0.0
    count = 0
    n = len(audio)
    for a, b in spans_s:
        lo = max(0, min(n, round(a * RATE)))
        hi = max(lo, min(n, round(b * RATE)))
        if hi > lo:
            chunk = audio[lo:hi].astype(np.float64, copy=False)
            total += float(np.dot(chunk, chunk))
            count += hi - lo
    if count == 0:
        return None
    mean = total / count
    return FLOOR_DB if mean <= 10 ** (FLOOR_DB / 10) else 10 * math.log10(mean)


def line_level_db(audio: np.ndarray, line: RawLine) -> float | None:
    """Level of a raw line (times in seconds from the start of `audio`) over its words, else its span."""
    spans = [(w.start, w.end) for w in line.words if w.end > w.start] or [(line.start, line.end)]
    return rms_db(audio, spans)
