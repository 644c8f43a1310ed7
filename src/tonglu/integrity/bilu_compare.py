"""Compare a 笔录 (written record) with the transcript of the recording: align, then classify (pure).

    units = transcript_units(doc["lines"], doc.get("speakers"))   # turns of the recording
    result = compare(record.items, units)                         # Comparison: findings + side-by-side rows

Alignment: the record's items (问 and 答, in order) and the transcript's units (consecutive lines of one
side merged into a turn; with no speaker roles, each line is a unit) are aligned monotonically (a
dynamic programme maximising the summed similarity; a 问 pairs only with a questioning turn and a 答
with an answering one when the roles are known). Similarity is character-based on `bilu_text.normalise`
(punctuation/whitespace removed, full/half width, simplified characters, numerals as digits); a time
written in the record (``（10:32）``) that is far from the turn's time halves the similarity.

Findings (answers only; questions are shown side by side but not judged):

- ``inserted``: an answer in the record that nothing in the recording matches; linked to the time
  between the neighbouring matched items;
- ``omitted``: an answering turn of the recording that the record leaves out; linked to its own time;
- ``changed``: a matched answer whose content differs materially, sub-kind (first that applies)
  ``negation_flipped`` (没有/不/未/没/否认… on one side only, or added/removed in a short edit),
  ``number_changed`` (the numbers differ), ``name_changed`` (a person's name replaced: an edit inside
  surname + 1-2 characters on both sides, or different quoted names), else ``text_changed`` when the
  similarity is below `text_changed_below`. Linked to the matched turn's start/end.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tonglu.integrity import bilu_text as bt
from tonglu.integrity.bilu import ANSWER, QUESTION, RecordItem
from tonglu.integrity.timefmt import SHANGHAI_OFFSET_S, iso_utc

FORMAT = "tonglu-bilu-comparison/1"
INSERTED, OMITTED, CHANGED = "inserted", "omitted", "changed"
NEGATION_FLIPPED, NUMBER_CHANGED, NAME_CHANGED, TEXT_CHANGED = (
    "negation_flipped",
    "number_changed",
    "name_changed",
    "text_changed",
)
LABELS = {
    INSERTED: "笔录有、录音录像中无 in the record, never said",
    OMITTED: "录音录像中有、笔录未记 said, missing from the record",
    CHANGED: "笔录与所说不符 the record differs from what was said",
    NEGATION_FLIPPED: "肯定/否定颠倒 negation flipped",
    NUMBER_CHANGED: "数字不符 number changed",
    NAME_CHANGED: "人名不符 name changed",
    TEXT_CHANGED: "内容改动 text changed",
}
QUESTION_ROLES = frozenset({"interviewer", "prosecutor", "judge"})
ANSWER_ROLES = frozenset({"suspect"})
NS = 1_000_000_000


@dataclass(frozen=True)
class CompareConfig:
    match_min: float = 0.3  # similarity below which an item and a turn are never paired
    text_changed_below: float = 0.75  # a matched answer below this similarity is `text_changed`
    absorb_min: float = 0.7  # an unmatched turn this much contained in a neighbour's answer joins it
    omit_min_chars: int = 2  # shorter answering turns ("嗯") are not reported as omitted
    merge_gap_s: float = 20.0  # lines of one side closer than this form one turn
    time_tolerance_s: int = 15 * 60  # a record time further than this from the turn halves the similarity
    short_edit_chars: int = 4  # an edit this short that adds/removes a negation flips the meaning

    def to_json(self) -> dict[str, Any]:
        return {
            "match_min": self.match_min,
            "text_changed_below": self.text_changed_below,
            "absorb_min": self.absorb_min,
            "omit_min_chars": self.omit_min_chars,
            "merge_gap_s": self.merge_gap_s,
            "time_tolerance_s": self.time_tolerance_s,
            "short_edit_chars": self.short_edit_chars,
        }


@dataclass(frozen=True)
class Unit:
    """One turn of the recording: consecutive transcript lines of one side."""

    index: int
    qa: str  # "问" | "答" | "" (role unknown)
    speaker: str
    start_ns: int
    end_ns: int
    text: str
    lines: tuple[int, ...]  # indexes into the transcript's lines

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "qa": self.qa,
            "speaker": self.speaker,
            "start": iso_utc(self.start_ns),
            "end": iso_utc(self.end_ns),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "text": self.text,
            "lines": list(self.lines),
        }


@dataclass(frozen=True)
class BiluFinding:
    kind: str  # INSERTED | OMITTED | CHANGED
    subkind: str | None  # for CHANGED: NEGATION_FLIPPED | NUMBER_CHANGED | NAME_CHANGED | TEXT_CHANGED
    kinds: tuple[str, ...]  # every sub-kind that applies (CHANGED)
    start_ns: int
    end_ns: int
    item: RecordItem | None
    units: tuple[Unit, ...]
    similarity: float | None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        where = f"a{self.item.n}" if self.item is not None else f"u{self.units[0].index}"
        return f"bilu-{self.kind}-{where}"

    @property
    def transcript_text(self) -> str:
        return " ".join(u.text for u in self.units)

    def to_json(self) -> dict[str, Any]:
        label = LABELS[self.subkind or self.kind]
        return {
            "id": self.id,
            "kind": self.kind,
            "subkind": self.subkind,
            "kinds": list(self.kinds),
            "label": label,
            "start": iso_utc(self.start_ns),
            "end": iso_utc(self.end_ns),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "record": self.item.to_json() if self.item is not None else None,
            "transcript": {
                "text": self.transcript_text,
                "speaker": self.units[0].speaker if self.units else "",
                "units": [u.index for u in self.units],
            }
            if self.units
            else None,
            "similarity": None if self.similarity is None else round(self.similarity, 3),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Row:
    """One line of the side-by-side view: a record item, the turn(s) it matches, or either alone."""

    item: RecordItem | None
    units: tuple[Unit, ...]
    status: str  # "same" | CHANGED | INSERTED | OMITTED | "unmatched" (a question or an unjudged turn)
    finding: str | None
    similarity: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "record": self.item.to_json() if self.item is not None else None,
            "transcript": [u.to_json() for u in self.units],
            "start": iso_utc(self.units[0].start_ns) if self.units else None,
            "end": iso_utc(self.units[-1].end_ns) if self.units else None,
            "status": self.status,
            "finding": self.finding,
            "similarity": None if self.similarity is None else round(self.similarity, 3),
        }


@dataclass(frozen=True)
class Comparison:
    findings: list[BiluFinding]
    rows: list[Row]
    answers: int
    matched: int
    config: CompareConfig

    def to_json(self) -> dict[str, Any]:
        by_kind = Counter(f.subkind or f.kind for f in self.findings)
        return {
            "format": FORMAT,
            "summary": {
                "answers": self.answers,
                "matched": self.matched,
                "findings": len(self.findings),
                "inserted": sum(1 for f in self.findings if f.kind == INSERTED),
                "omitted": sum(1 for f in self.findings if f.kind == OMITTED),
                "changed": sum(1 for f in self.findings if f.kind == CHANGED),
                "by_kind": dict(sorted(by_kind.items())),
            },
            "findings": [f.to_json() for f in self.findings],
            "rows": [r.to_json() for r in self.rows],
            "labels": LABELS,
            "config": self.config.to_json(),
        }


# -- transcript turns ----------------------------------------------------------------------------
def _qa_of(line: dict[str, Any], speakers: dict[str, Any]) -> str:
    sp = speakers.get(f"{line.get('source', '')}/{line.get('track', '')}")
    if isinstance(sp, dict) and sp.get("qa") in ("问", "答"):
        return str(sp["qa"])
    role = str(line.get("role") or "")
    return "问" if role in QUESTION_ROLES else "答" if role in ANSWER_ROLES else ""


def transcript_units(
    lines: Sequence[dict[str, Any]], speakers: dict[str, Any] | None = None, config: CompareConfig | None = None
) -> list[Unit]:
    """Turns of the recording from a transcript document's lines (`start_ns`, `end_ns`, `text`, ...)."""
    config = config or CompareConfig()
    speakers = speakers or {}
    order = sorted(
        (i for i, ln in enumerate(lines) if str(ln.get("text") or "").strip()),
        key=lambda i: (int(lines[i]["start_ns"]), i),
    )
    qas = {i: _qa_of(lines[i], speakers) for i in order}
    known = any(qas.values())
    groups: list[list[int]] = []
    for i in order:
        if (
            known
            and groups
            and qas[i]
            and qas[groups[-1][-1]] == qas[i]
            and int(lines[i]["start_ns"]) - int(lines[groups[-1][-1]]["end_ns"]) <= config.merge_gap_s * NS
        ):
            groups[-1].append(i)
        else:
            groups.append([i])
    units = []
    for n, g in enumerate(groups):
        first = lines[g[0]]
        units.append(
            Unit(
                index=n,
                qa=qas[g[0]],
                speaker=str(first.get("speaker") or first.get("source") or ""),
                start_ns=int(first["start_ns"]),
                end_ns=max(int(lines[i]["end_ns"]) for i in g),
                text=" ".join(str(lines[i]["text"]).strip() for i in g),
                lines=tuple(g),
            )
        )
    return units


# -- similarity -----------------------------------------------------------------------------------
def _grams(s: str) -> frozenset[str]:
    return frozenset(s) | frozenset(s[i : i + 2] for i in range(len(s) - 1))


def quick_similarity(a: frozenset[str], b: frozenset[str]) -> float:
    """Dice coefficient over the sets of characters and character pairs (cheap, for the alignment)."""
    total = len(a) + len(b)
    if total == 0:
        return 0.0
    return 2 * len(a & b) / total


def ratio(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _minute_of_day_local(ns: int) -> int:
    return ((ns // NS + SHANGHAI_OFFSET_S) % 86400) // 60


def _record_minutes(time: str) -> int:
    h, m = time.split(":")[:2]
    return int(h) * 60 + int(m)


def _time_far(item: RecordItem, unit: Unit, tolerance_s: int) -> bool:
    if not item.time:
        return False
    delta = abs(_record_minutes(item.time) - _minute_of_day_local(unit.start_ns))
    delta = min(delta, 1440 - delta)
    return delta * 60 > tolerance_s


def _compatible(item: RecordItem, unit: Unit) -> bool:
    if not unit.qa:
        return True
    return (item.role == QUESTION) == (unit.qa == "问")


# -- alignment ------------------------------------------------------------------------------------
def align(
    items: Sequence[RecordItem], units: Sequence[Unit], config: CompareConfig
) -> list[tuple[int | None, int | None]]:
    """Monotone alignment: a path of (item index | None, unit index | None), in order."""
    n, m = len(items), len(units)
    ig = [_grams(bt.normalise(it.text)) for it in items]
    ug = [_grams(bt.normalise(u.text)) for u in units]
    sim: dict[tuple[int, int], float] = {}
    for i, it in enumerate(items):
        for j, u in enumerate(units):
            if not _compatible(it, u):
                continue
            s = quick_similarity(ig[i], ug[j])
            if _time_far(it, u, config.time_tolerance_s):
                s *= 0.5
            if s >= config.match_min:
                sim[i, j] = s
    # score[i][j]: best total over items[:i], units[:j]
    score = [[0.0] * (m + 1) for _ in range(n + 1)]
    move = [[0] * (m + 1) for _ in range(n + 1)]  # 1 skip item, 2 skip unit, 3 match
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            best, how = -1.0, 0
            if i > 0 and score[i - 1][j] > best:
                best, how = score[i - 1][j], 1
            if j > 0 and score[i][j - 1] > best:
                best, how = score[i][j - 1], 2
            if i > 0 and j > 0 and (i - 1, j - 1) in sim:
                s = score[i - 1][j - 1] + sim[i - 1, j - 1]
                if s > best:
                    best, how = s, 3
            score[i][j], move[i][j] = best, how
    path: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        how = move[i][j]
        if how == 3:
            path.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif how == 1:
            path.append((i - 1, None))
            i -= 1
        else:
            path.append((None, j - 1))
            j -= 1
    path.reverse()
    return path


def _containment(part: str, whole: str) -> float:
    """How much of `part` appears, in order, in `whole` (0..1)."""
    if not part:
        return 1.0
    blocks = difflib.SequenceMatcher(None, part, whole, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks) / len(part)


# -- classification -------------------------------------------------------------------------------
def classify(record_text: str, said_text: str, config: CompareConfig) -> tuple[list[str], float, dict[str, Any]]:
    """Sub-kinds of change from what was said to what the record says, the similarity, and details."""
    a, b = bt.normalise(said_text), bt.normalise(record_text)
    similarity = ratio(a, b)
    kinds: list[str] = []
    detail: dict[str, Any] = {}
    neg_said, neg_rec = bt.negations(said_text), bt.negations(record_text)
    flipped = bool(neg_said) != bool(neg_rec)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    if not flipped:
        for op, i1, i2, j1, j2 in ops:
            if op == "equal" or max(i2 - i1, j2 - j1) > config.short_edit_chars:
                continue
            if len(bt.negations(a[i1:i2])) != len(bt.negations(b[j1:j2])):
                flipped = True
                break
    if flipped:
        kinds.append(NEGATION_FLIPPED)
        detail["negations"] = {"said": neg_said, "record": neg_rec}
    num_said, num_rec = bt.numbers(said_text), bt.numbers(record_text)
    if Counter(num_said) != Counter(num_rec):
        kinds.append(NUMBER_CHANGED)
        detail["numbers"] = {
            "said": num_said,
            "record": num_rec,
            "only_said": sorted((Counter(num_said) - Counter(num_rec)).elements()),
            "only_record": sorted((Counter(num_rec) - Counter(num_said)).elements()),
        }
    names: list[dict[str, str]] = []
    for op, i1, i2, j1, j2 in ops:
        if op != "replace":
            continue
        before, after = bt.name_at(a, i1, i2), bt.name_at(b, j1, j2)
        if before and after and before != after:
            names.append({"said": before, "record": after})
    q_said, q_rec = set(bt.quoted(said_text)), set(bt.quoted(record_text))
    if q_said and q_rec and q_said != q_rec:
        names.append({"said": "、".join(sorted(q_said - q_rec)), "record": "、".join(sorted(q_rec - q_said))})
    if names:
        kinds.append(NAME_CHANGED)
        detail["names"] = names
    if similarity < config.text_changed_below:
        kinds.append(TEXT_CHANGED)
    return kinds, similarity, detail


def _window(record_norm: str, unit_norm: str) -> tuple[int, int]:
    """The part of a (shared) turn that a record answer corresponds to, in normalised characters."""
    blocks = [b for b in difflib.SequenceMatcher(None, record_norm, unit_norm, autojunk=False).get_matching_blocks()
              if b.size >= 2]
    if not blocks:
        return 0, len(unit_norm)
    return blocks[0].b, blocks[-1].b + blocks[-1].size


def compare(items: Sequence[RecordItem], units: Sequence[Unit], config: CompareConfig | None = None) -> Comparison:
    config = config or CompareConfig()
    path = align(items, units, config)
    match: dict[int, list[int]] = {}  # item -> units
    unit_owner: dict[int, int] = {}
    for i, j in path:
        if i is not None and j is not None:
            match[i] = [j]
            unit_owner[j] = i
    # An answering turn left over next to a matched answer, mostly contained in its record text, joins it
    # (the record wrote one answer where the recording has two turns).
    for j, u in enumerate(units):
        if j in unit_owner or u.qa == "问":
            continue
        un = bt.normalise(u.text)
        for nb in (j - 1, j + 1):
            owner = unit_owner.get(nb)
            if owner is None or items[owner].role != ANSWER:
                continue
            if _containment(un, bt.normalise(items[owner].text)) >= config.absorb_min:
                match[owner] = sorted([*match[owner], j])
                unit_owner[j] = owner
                break
    # An answer left over next to a matched answer, mostly contained in that answer's turn, shares it
    # (the record split one turn into two answers).
    shared: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        if i in match or it.role != ANSWER:
            continue
        rn = bt.normalise(it.text)
        for nb in (i - 1, i + 1):
            if nb in match and items[nb].role == ANSWER:
                said = bt.normalise(" ".join(units[j].text for j in match[nb]))
                if _containment(rn, said) >= config.absorb_min:
                    shared[i] = match[nb]
                    break
    match.update(shared)
    # Between two matched anchors, one answer nobody said and one answering turn the record left out:
    # the record rewrote that answer (a change, not an insertion plus an omission).
    # Only right after a matched question: the same question, answered differently.
    forced: set[int] = set()
    pending_items: list[int] = []
    pending_units: list[int] = []
    anchor: int | None = None
    for i, j in [*path, (None, None)]:
        if (i is not None and i in match and j is not None and unit_owner.get(j) == i) or (i is None and j is None):
            if len(pending_items) == 1 and len(pending_units) == 1 and anchor is not None:
                if items[anchor].role == QUESTION and pending_items[0] == anchor + 1:
                    match[pending_items[0]] = [pending_units[0]]
                    unit_owner[pending_units[0]] = pending_items[0]
                    forced.add(pending_items[0])
            pending_items, pending_units = [], []
            anchor = i
            continue
        if i is not None and i not in match and items[i].role == ANSWER:
            pending_items.append(i)
        if (
            j is not None
            and j not in unit_owner
            and units[j].qa != "问"
            and len(bt.normalise(units[j].text)) >= config.omit_min_chars
        ):
            pending_units.append(j)

    sharers = Counter(j for js in match.values() for j in js)
    findings: list[BiluFinding] = []
    finding_of_item: dict[int, BiluFinding] = {}
    sims: dict[int, float] = {}
    for i, js in match.items():
        it = items[i]
        said_units = [units[j] for j in js]
        said = " ".join(u.text for u in said_units)
        if any(sharers[j] > 1 for j in js):
            sn = bt.normalise(said)
            lo, hi = _window(bt.normalise(it.text), sn)
            said = sn[lo:hi]
        if it.role != ANSWER:
            sims[i] = ratio(bt.normalise(it.text), bt.normalise(said))
            continue
        kinds, similarity, detail = classify(it.text, said, config)
        if i in forced:
            detail["paired_by_position"] = True  # below match_min: only the place in the record pairs them
        sims[i] = similarity
        if kinds:
            f = BiluFinding(
                CHANGED,
                kinds[0],
                tuple(kinds),
                said_units[0].start_ns,
                max(u.end_ns for u in said_units),
                it,
                tuple(said_units),
                similarity,
                detail,
            )
            findings.append(f)
            finding_of_item[i] = f

    # neighbours in time for what the record has and the recording does not
    def neighbour_times(i: int) -> tuple[int, int]:
        before = [max(units[j].end_ns for j in match[k]) for k in range(i - 1, -1, -1) if k in match]
        after = [min(units[j].start_ns for j in match[k]) for k in range(i + 1, len(items)) if k in match]
        first = units[0].start_ns if units else 0
        last = units[-1].end_ns if units else 0
        start = before[0] if before else first
        end = after[0] if after else last
        return start, max(start, end)

    for i, it in enumerate(items):
        if it.role == ANSWER and i not in match:
            start, end = neighbour_times(i)
            prev_item = next((items[k] for k in range(i - 1, -1, -1) if k in match), None)
            next_item = next((items[k] for k in range(i + 1, len(items)) if k in match), None)
            f = BiluFinding(
                INSERTED,
                None,
                (),
                start,
                end,
                it,
                (),
                None,
                {"after_item": prev_item.n if prev_item else None, "before_item": next_item.n if next_item else None},
            )
            findings.append(f)
            finding_of_item[i] = f
    finding_of_unit: dict[int, BiluFinding] = {}
    for j, u in enumerate(units):
        if j in unit_owner or u.qa == "问" or len(bt.normalise(u.text)) < config.omit_min_chars:
            continue
        f = BiluFinding(OMITTED, None, (), u.start_ns, u.end_ns, None, (u,), None, {"speaker": u.speaker})
        findings.append(f)
        finding_of_unit[j] = f
    findings.sort(key=lambda f: (f.start_ns, f.item.n if f.item is not None else -1))

    rows: list[Row] = []
    for i, j in path:
        if i is not None:
            fi = finding_of_item.get(i)
            us = tuple(units[k] for k in match.get(i, []))
            status = fi.kind if fi is not None else ("same" if us else "unmatched")
            rows.append(Row(items[i], us, status, fi.id if fi else None, sims.get(i)))
        elif j is not None and j not in unit_owner:
            fu = finding_of_unit.get(j)
            rows.append(Row(None, (units[j],), fu.kind if fu else "unmatched", fu.id if fu else None, None))
    answers = sum(1 for it in items if it.role == ANSWER)
    matched = sum(1 for i in match if items[i].role == ANSWER)
    return Comparison(findings, rows, answers, matched, config)


def lines_of(doc: dict[str, Any]) -> Iterable[dict[str, Any]]:
    lines = doc.get("lines")
    return lines if isinstance(lines, list) else []
