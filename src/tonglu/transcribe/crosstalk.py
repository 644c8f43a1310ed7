"""Cross-talk de-duplication (pure): one utterance heard on two microphones becomes one line.

Every microphone in the room hears everyone, and each track is transcribed on its own, so the same
sentence comes back on two (or more) tracks with two speakers. `merge` finds such duplicates and
keeps the copy from the track that heard it best.

The rule, deterministic for the same input lines in any order:

1. **Match.** Two lines on different tracks are the same utterance when their time spans overlap by
   at least `MIN_OVERLAP` (50 %) of the shorter span and their normalised texts are similar
   (difflib ratio >= `MIN_SIMILARITY`, 0.7). Text is normalised by NFKC, lower case, no
   punctuation or spaces; texts with Han characters are compared character by character, others
   word by word.
2. **Split lines.** One track may split an utterance into several lines where another has one long
   line. A line on track A also matches a *run* of up to `MAX_RUN` consecutive lines on track B when
   each of them lies mostly (>= 50 % of its own span) inside A's line, the run's span overlaps A's
   line as in 1, and the run's texts joined are similar to A's text as in 1.
2b. **Fragments.** Live windows cut an utterance at different words on different tracks, so a short
   piece ("he was.") may stand alone on one track while its words end another track's lines. A line
   whose words all appear, contiguous and in order, among the words of the other track's overlapping
   lines, *each word at the same moment* (start within `FRAGMENT_SLACK_S`, `SINGLE_WORD_SLACK_S` for
   a one-token line), is the same utterance and joins those lines. The same words said again later
   (an interviewer repeating an answer) are seconds apart and do not match. Needs word timestamps;
   lines without them use rules 1 and 2 only.
3. **Groups.** Matches link lines into groups (connected components). In each group the lines of
   every track are taken together (joined text, in time order).
4. **Who heard it best.** Only a track whose joined text covers every other track's joined text
   (>= `MIN_COVER` of the other's tokens found in it, in order) may speak for the group, so a track
   that heard only half of an utterance never replaces one that heard all of it. Among those, the
   track with the highest speech level (`Line.level_db`, RMS over the words, duration-weighted)
   wins when every line of the group has a level; otherwise the highest confidence (mean word
   probability) wins; ties go to the higher confidence, then the (source, track) name.
   If no track qualifies the group is left as it is (nothing merged: a duplicate is better than a
   lost line).
5. **Result.** The winning track's lines of the group are kept (split the way that track split
   them), each with ``heard_on`` = the other sources of the group; the other lines are returned as
   `Duplicate`s pointing at the kept line they overlap most.

Two people speaking at once say different things: their lines fail the text test and both stay.
"""

from __future__ import annotations

import bisect
import difflib
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from tonglu.transcribe.lines import Line

MIN_OVERLAP = 0.5
MIN_SIMILARITY = 0.7
MIN_COVER = 0.7
MAX_RUN = 4
FRAGMENT_SLACK_S = 0.6
SINGLE_WORD_SLACK_S = 0.3

_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\W_]+")

TrackKey = tuple[str, str]


@lru_cache(maxsize=4096)
def tokens(text: str) -> tuple[str, ...]:
    """Normalised comparison units: characters for text with Han characters, else words."""
    norm = unicodedata.normalize("NFKC", text).lower()
    if _HAN.search(norm):
        return tuple(ch for ch in norm if unicodedata.category(ch)[0] in ("L", "N"))
    return tuple(_WORD.findall(norm))


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """difflib ratio of two token sequences (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def cover(of: Sequence[str], by: Sequence[str]) -> float:
    """Share of `of`'s tokens found, in order, in `by`."""
    if not of:
        return 1.0
    blocks = difflib.SequenceMatcher(None, of, by, autojunk=False).get_matching_blocks()
    return sum(m.size for m in blocks) / len(of)


def overlap_ns(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def overlap_ratio(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Overlap of two spans as a share of the shorter one (a zero-length span: 1 if inside the other)."""
    shorter = min(a[1] - a[0], b[1] - b[0])
    if shorter <= 0:
        point = a if a[1] - a[0] <= 0 else b
        other = b if point is a else a
        return 1.0 if other[0] <= point[0] <= other[1] else 0.0
    return overlap_ns(a, b) / shorter


@dataclass(frozen=True)
class Duplicate:
    """A line left out because `kept` is the same utterance, heard better on another track."""

    line: Line
    kept: Line


@dataclass(frozen=True)
class Merged:
    lines: list[Line]  # kept lines, in time order (those that were merged carry heard_on)
    duplicates: list[Duplicate]


def _key(ln: Line) -> TrackKey:
    return (ln.source, ln.track)


def _order(ln: Line) -> tuple[int, str, str, int, str]:
    return (ln.start_ns, ln.source, ln.track, ln.end_ns, ln.text)


def _span(lines: Sequence[Line]) -> tuple[int, int]:
    return (min(ln.start_ns for ln in lines), max(ln.end_ns for ln in lines))


def _joined(lines: Sequence[Line]) -> tuple[str, ...]:
    return tuple(t for ln in lines for t in tokens(ln.text))


def _matches_run(a: Line, run: Sequence[Line]) -> bool:
    a_span = (a.start_ns, a.end_ns)
    if len(run) > 1 and any(overlap_ratio((b.start_ns, b.end_ns), a_span) < MIN_OVERLAP for b in run):
        return False  # each piece of a split must lie mostly inside the long line
    if overlap_ratio(a_span, _span(run)) < MIN_OVERLAP:
        return False
    return similarity(tokens(a.text), _joined(run)) >= MIN_SIMILARITY


def _timed_tokens(ln: Line) -> list[tuple[str, int]]:
    """(token, word start) for every token of the line's words (empty without word timestamps)."""
    return [(t, w.start_ns) for w in ln.words for t in tokens(w.word)]


def fragment_matches(a: Line, others: Sequence[Line]) -> list[int]:
    """Indexes into `others` (one track's lines overlapping `a`, in time order) whose words contain all of
    `a`'s words, contiguous, in order and at the same moments (rule 2b); empty when there is no such place."""
    mine = _timed_tokens(a)
    if not mine:
        return []
    theirs = [(tok, at, k) for k, b in enumerate(others) for tok, at in _timed_tokens(b)]
    n = len(mine)
    slack = round((SINGLE_WORD_SLACK_S if n == 1 else FRAGMENT_SLACK_S) * 1e9)
    words = [t for t, _ in mine]
    for p in range(len(theirs) - n + 1):
        if theirs[p][0] != words[0]:
            continue
        window = theirs[p : p + n]
        if [t for t, _, _ in window] != words:
            continue
        if all(abs(at - at_mine) <= slack for (_, at, _), (_, at_mine) in zip(window, mine, strict=True)):
            return sorted({k for _, _, k in window})
    return []


class _Groups:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def _score(lines: Sequence[Line], use_level: bool) -> tuple[float, float]:
    weights = [max(1, ln.end_ns - ln.start_ns) for ln in lines]
    total = sum(weights)
    conf = sum(w * ln.confidence for w, ln in zip(weights, lines, strict=True)) / total
    if not use_level:
        return (conf, conf)
    level = sum(w * (ln.level_db or 0.0) for w, ln in zip(weights, lines, strict=True)) / total
    return (level, conf)


def _nearest(winners: Sequence[Line], ln: Line) -> Line:
    """The kept line that overlaps `ln` most (the earliest on a tie)."""

    def rank(w: Line) -> tuple[int, int]:
        return (overlap_ns((w.start_ns, w.end_ns), (ln.start_ns, ln.end_ns)), -w.start_ns)

    return max(winners, key=rank)


def merge(lines: Sequence[Line]) -> Merged:
    """De-duplicate lines heard on several tracks (see the module docstring for the rule)."""
    ordered = sorted(lines, key=_order)
    n = len(ordered)
    by_track: dict[TrackKey, list[int]] = {}
    for i, ln in enumerate(ordered):
        by_track.setdefault(_key(ln), []).append(i)
    if len(by_track) < 2:
        return Merged(list(ordered), [])
    starts = {k: [ordered[i].start_ns for i in idx] for k, idx in by_track.items()}
    longest = {k: max(ordered[i].end_ns - ordered[i].start_ns for i in idx) for k, idx in by_track.items()}

    groups = _Groups(n)
    for i, a in enumerate(ordered):
        for k, idx in by_track.items():
            if k == _key(a):
                continue
            # lines of track k that overlap a: start in [a.start - longest, a.end]
            lo = bisect.bisect_left(starts[k], a.start_ns - longest[k])
            hi = bisect.bisect_right(starts[k], a.end_ns)
            a_span = (a.start_ns, a.end_ns)
            cands = [j for j in idx[lo:hi] if overlap_ratio(a_span, (ordered[j].start_ns, ordered[j].end_ns)) > 0]
            for x in range(len(cands)):
                for y in range(x, min(len(cands), x + MAX_RUN)):
                    run = [ordered[j] for j in cands[x : y + 1]]
                    if _matches_run(a, run):
                        for j in cands[x : y + 1]:
                            groups.union(i, j)
            for m in fragment_matches(a, [ordered[j] for j in cands]):
                groups.union(i, cands[m])

    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(groups.find(i), []).append(i)

    kept: dict[int, Line] = {}
    duplicates: list[Duplicate] = []
    for root in sorted(members):
        group = members[root]
        per_track: dict[TrackKey, list[int]] = {}
        for i in group:
            per_track.setdefault(_key(ordered[i]), []).append(i)
        if len(per_track) < 2:
            for i in group:
                kept[i] = ordered[i]
            continue
        texts = {k: _joined([ordered[i] for i in idx]) for k, idx in per_track.items()}
        eligible = [
            k for k in sorted(per_track) if all(cover(texts[u], texts[k]) >= MIN_COVER for u in per_track if u != k)
        ]
        if not eligible:
            for i in group:
                kept[i] = ordered[i]
            continue
        use_level = all(ordered[i].level_db is not None for i in group)
        scores = {k: _score([ordered[i] for i in per_track[k]], use_level) for k in eligible}
        best = min(eligible, key=lambda k: (-scores[k][0], -scores[k][1], k))
        others = tuple(sorted({k[0] for k in per_track if k != best and k[0] != best[0]}))
        winners = [
            replace(ordered[i], heard_on=tuple(sorted({*ordered[i].heard_on, *others}))) for i in per_track[best]
        ]
        for i, w in zip(per_track[best], winners, strict=True):
            kept[i] = w
        for k in sorted(per_track):
            if k == best:
                continue
            for i in per_track[k]:
                ln = ordered[i]
                duplicates.append(Duplicate(ln, _nearest(winners, ln)))
    out = [kept[i] for i in sorted(kept)]
    duplicates.sort(key=lambda d: _order(d.line))
    return Merged(out, duplicates)


@dataclass(frozen=True)
class LiveMark:
    """How a live line (by id, in commit order) relates to the others, for a stream that cannot retract.

    `duplicate_of`: the id of the kept line this one duplicates (show nothing new);
    `replaces`: earlier ids (already shown) that this line supersedes as the better-heard copy.
    """

    duplicate_of: int | None = None
    replaces: tuple[int, ...] = ()
    heard_on: tuple[str, ...] = ()


def live_marks(lines: Mapping[int, Line]) -> dict[int, LiveMark]:
    """`merge` applied to live lines keyed by their commit ids (ids grow in commit order)."""
    ids = {(ln.source, ln.track, ln.start_ns): i for i, ln in lines.items()}
    merged = merge(list(lines.values()))
    marks: dict[int, LiveMark] = {}
    for d in merged.duplicates:
        marks[ids[(d.line.source, d.line.track, d.line.start_ns)]] = LiveMark(
            duplicate_of=ids[(d.kept.source, d.kept.track, d.kept.start_ns)]
        )
    for ln in merged.lines:
        i = ids[(ln.source, ln.track, ln.start_ns)]
        # earlier copies this line stands for (all pieces of a split line replace the long one they overlap)
        replaces = [
            ids[(d.line.source, d.line.track, d.line.start_ns)]
            for d in merged.duplicates
            if (d.kept.source, d.kept.track) == (ln.source, ln.track)
            and overlap_ns((d.line.start_ns, d.line.end_ns), (ln.start_ns, ln.end_ns)) > 0
        ]
        marks[i] = LiveMark(replaces=tuple(sorted(r for r in replaces if r < i)), heard_on=ln.heard_on)
    return marks
