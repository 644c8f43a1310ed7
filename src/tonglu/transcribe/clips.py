"""How the final pass cuts speech into clips, and which speech a decode left without words (pure).

The final pass decodes clips of up to one Whisper window in batches. A batched decode cannot seek
back the way one-window-at-a-time decoding does when Whisper ends a window early, so speech can come
back without any words. `uncovered` finds that speech so it can be decoded again on its own: no
sentence VAD heard is silently missing from a final version.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

CLIP_S = 29.0
WORD_PAD_S = 0.5  # a word covers this much around itself (pauses inside a sentence are not gaps)
MIN_UNCOVERED_S = 1.0  # less than this without words is a pause, not missed speech


def clip_spans(chunks: Sequence[tuple[float, float]], max_s: float = CLIP_S) -> list[tuple[float, float]]:
    """Consecutive speech chunks grouped into clips no longer than `max_s` (a longer chunk is cut)."""
    out: list[tuple[float, float]] = []
    for a, b in chunks:
        while b - a > max_s:
            out.append((a, a + max_s))
            a += max_s
        if out and b - out[-1][0] <= max_s and a >= out[-1][1]:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def uncovered(
    chunks: Sequence[tuple[float, float]],
    words: Sequence[tuple[float, float]],
    *,
    pad_s: float = WORD_PAD_S,
    min_s: float = MIN_UNCOVERED_S,
) -> list[tuple[float, float]]:
    """Parts of the speech `chunks` (sorted) at least `min_s` long that no word (padded by `pad_s`) touches."""
    spans = sorted((max(0.0, a - pad_s), b + pad_s) for a, b in words)
    out: list[tuple[float, float]] = []
    for a, b in chunks:
        cursor = a
        for wa, wb in spans:
            if wb <= cursor:
                continue
            if wa >= b:
                break
            if wa - cursor >= min_s:
                out.append((cursor, wa))
            cursor = max(cursor, wb)
        if b - cursor >= min_s:
            out.append((cursor, b))
    return out


def merged(spans: Sequence[tuple[float, float]], gap_s: float = MIN_UNCOVERED_S) -> list[tuple[float, float]]:
    """Sorted spans with those closer than `gap_s` joined (one second decode instead of two)."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if out and a - out[-1][1] < gap_s:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


@dataclass(frozen=True)
class Compaction:
    """Speech chunks laid end to end without the silence between them, and the way back.

    Whisper's word times are worst after a long silence inside its window, and silence costs encoder
    time; the final pass therefore decodes only the speech, as one-window-at-a-time decoding does.
    All positions are in samples, so the map does not drift over hours.
    """

    starts: tuple[int, ...]  # original start of each chunk
    offsets: tuple[int, ...]  # where each chunk starts in the compact audio
    rate: int

    @classmethod
    def of(cls, chunks: Sequence[tuple[int, int]], rate: int) -> Compaction:
        offsets, at = [], 0
        for a, b in chunks:
            offsets.append(at)
            at += b - a
        return cls(tuple(a for a, _ in chunks), tuple(offsets), rate)

    def chunks_s(self, total: int) -> list[tuple[float, float]]:
        """The chunks on the compact timeline, in seconds (`total`: compact length in samples)."""
        ends = [*self.offsets[1:], total]
        return [(a / self.rate, b / self.rate) for a, b in zip(self.offsets, ends, strict=True)]

    def original_s(self, t: float, *, end: bool = False) -> float:
        """Original time of compact time `t` (an `end` on a chunk boundary stays in the earlier chunk)."""
        sample = round(t * self.rate)
        k = (bisect.bisect_left if end else bisect.bisect_right)(self.offsets, sample) - 1
        k = max(0, k)
        return (self.starts[k] + sample - self.offsets[k]) / self.rate

    def original_span_s(self, a: float, b: float) -> tuple[float, float]:
        """Original times of the compact span a..b (a word). A span that crosses a chunk boundary, i.e. the
        silence that was cut out, is kept inside the chunk that holds most of it: Whisper stretches a
        word's start back over a pause, and mapped naively that start would land seconds early."""
        start, end = self.original_s(a), self.original_s(b, end=True)
        k = bisect.bisect_right(self.offsets, round(a * self.rate)) - 1
        if k + 1 >= len(self.offsets) or round(b * self.rate) <= self.offsets[k + 1]:
            return start, end
        boundary = self.offsets[k + 1] / self.rate
        if boundary - a >= b - boundary:
            return start, self.original_s(boundary, end=True)
        return self.original_s(boundary), end
