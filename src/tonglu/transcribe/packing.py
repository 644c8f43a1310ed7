"""Pack the speech of several live windows into one Whisper call, and map the lines back (pure).

Whisper's encoder always runs over a 30 s window, however little audio it is given: with many
tracks recording, one call per 4 s segment spends most of its time encoding padding. A worker
therefore claims several tracks' windows at once, lays their speech (VAD chunks) side by side
with `GAP_S` of silence between tracks, transcribes the pack once, and gives each track back the
words that fall inside its pieces, on its own timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tonglu.transcribe.audio import RATE
from tonglu.transcribe.guards import RawLine, RawWord

GAP_S = 1.5  # silence between pieces (>= guards.PAUSE_S, so lines never run across two pieces)
MAX_PACK_S = 30.0


@dataclass(frozen=True)
class Piece:
    owner: int  # index of the window the audio came from
    src_start_s: float  # where it is in that window
    src_end_s: float
    packed_start_s: float  # where it is in the pack

    @property
    def packed_end_s(self) -> float:
        return self.packed_start_s + (self.src_end_s - self.src_start_s)


def regions(chunks: Sequence[tuple[float, float]], merge_gap_s: float = GAP_S) -> list[tuple[float, float]]:
    """Speech chunks of one window, merged where the pause between them is shorter than `merge_gap_s`."""
    out: list[tuple[float, float]] = []
    for a, b in chunks:
        if out and a - out[-1][1] < merge_gap_s:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def pack(
    audios: Sequence[np.ndarray], spans: Sequence[Sequence[tuple[float, float]]], max_s: float = MAX_PACK_S
) -> list[tuple[np.ndarray, list[Piece]]]:
    """Greedy packs of at most `max_s` (a longer single piece gets a pack of its own)."""
    packs: list[tuple[np.ndarray, list[Piece]]] = []
    parts: list[np.ndarray] = []
    pieces: list[Piece] = []
    t = 0.0

    def flush() -> None:
        nonlocal parts, pieces, t
        if pieces:
            packs.append((np.concatenate(parts).astype(np.float32), pieces))
        parts, pieces, t = [], [], 0.0

    gap = np.zeros(round(GAP_S * RATE), np.float32)
    for owner, (audio, owner_spans) in enumerate(zip(audios, spans, strict=True)):
        for a, b in owner_spans:
            seg = audio[round(a * RATE) : round(b * RATE)]
            if len(seg) == 0:
                continue
            length = len(seg) / RATE
            if pieces and t + GAP_S + length > max_s:
                flush()
            if pieces:
                parts.append(gap)
                t += GAP_S
            pieces.append(Piece(owner, a, a + length, t))
            parts.append(seg)
            t += length
    flush()
    return packs


def _owner_of(t: float, pieces: Sequence[Piece]) -> Piece:
    def distance(p: Piece) -> float:
        return (
            0.0 if p.packed_start_s <= t <= p.packed_end_s else min(abs(t - p.packed_start_s), abs(t - p.packed_end_s))
        )

    return min(pieces, key=distance)


def unpack(lines: Sequence[RawLine], pieces: Sequence[Piece], language: str | None) -> dict[int, list[RawLine]]:
    """Lines of a pack -> lines per window (times in that window's seconds)."""
    out: dict[int, list[RawLine]] = {}
    joiner = "" if language and language.startswith("zh") else " "
    for line in lines:
        if not line.words:
            p = _owner_of((line.start + line.end) / 2, pieces)
            shift = p.src_start_s - p.packed_start_s
            out.setdefault(p.owner, []).append(
                RawLine(
                    line.start + shift,
                    line.end + shift,
                    line.text,
                    line.avg_logprob,
                    line.no_speech_prob,
                    line.compression_ratio,
                )
            )
            continue
        groups: list[tuple[Piece, list[RawWord]]] = []
        for w in line.words:
            p = _owner_of((w.start + w.end) / 2, pieces)
            if groups and groups[-1][0] == p:
                groups[-1][1].append(w)
            else:
                groups.append((p, [w]))
        for p, words in groups:
            shift = p.src_start_s - p.packed_start_s
            moved = tuple(RawWord(w.start + shift, w.end + shift, w.word, w.probability) for w in words)
            text = line.text if len(groups) == 1 else joiner.join(w.word.strip() for w in words)
            out.setdefault(p.owner, []).append(
                RawLine(
                    moved[0].start,
                    moved[-1].end,
                    text,
                    line.avg_logprob,
                    line.no_speech_prob,
                    line.compression_ratio,
                    moved,
                )
            )
    return out
