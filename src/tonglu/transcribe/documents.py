"""Transcript version documents (pure): built from lines, corrected by people, diffed.

A version document (stored as JSON under ``keys.transcript_key(sid, version)``):

    {"format": "tonglu-transcript/1", "session", "version", "origin": "live"|"final"|"rerun"|"correction",
     "draft": true, "label": "ASR 草稿，未经核对", "created": iso, "created_by",
     "model": {"name", "sha256", "compute_type", "language"}, "timeline_start": iso, "timeline_start_ns",
     "segments": [{"key", "sha256", "source", "track", "index"}],      # what it was made from
     "speakers": {"<source>/<track>": {"role", "label", "qa"}},
     "lines": [{"start", "end", "start_ns", "end_ns", "speaker", "role", "source", "track", "text",
                "confidence", "level_db", "heard_on": [sources], "words": [...]}],
     "duplicates": [{...line..., "kept": {"source", "track", "start", "start_ns"}}],  # see below
     "untranscribable": [{"start", "end", "start_ns", "end_ns", "source", "track", "speaker", "reason",
                          "segment_key"}],
     "base_version": null|int, "corrected_by", "verified_by", "verified": iso|null, "note",
     "diff": [...], "asr_version": int|null, "diff_from_asr": [...]}

Cross-talk: every microphone hears everyone, so `build` merges an utterance transcribed on several tracks
into one line (`crosstalk.merge`): the copy from the track that heard it best stays in ``lines`` with
``heard_on`` naming the other sources; the copies left out are kept, word for word, in ``duplicates``
(nothing the ASR produced is hidden), each pointing at the line that stands for it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from tonglu.transcribe import crosstalk
from tonglu.transcribe.audio import SegmentRef
from tonglu.transcribe.errors import CorrectionError
from tonglu.transcribe.lines import Line, iso, parse_iso
from tonglu.transcribe.speakers import speaker_for

FORMAT = "tonglu-transcript/1"
DRAFT_LABEL = "ASR 草稿，未经核对"
ASR_ORIGINS = ("live", "final", "rerun")


def speakers_map(
    tracks: Iterable[tuple[str, str]],
    session_start: dict[str, Any] | None,
    participants: dict[str, dict[str, Any]] | None,
) -> dict[str, dict[str, str]]:
    return {f"{s}/{t}": speaker_for(s, session_start, participants) for s, t in sorted(set(tracks))}


def build(
    *,
    sid: str,
    origin: str,
    lines: Sequence[Line],
    bad: Sequence[dict[str, Any]],
    segments: Sequence[SegmentRef],
    model: dict[str, str],
    session_start: dict[str, Any] | None,
    participants: dict[str, dict[str, Any]] | None,
    created_by: str,
    now_ns: int,
) -> dict[str, Any]:
    tracks = {(s.source, s.track) for s in segments} | {(ln.source, ln.track) for ln in lines}
    speakers = speakers_map(tracks, session_start, participants)
    zero = min((s.wall_first_ns for s in segments), default=min((ln.start_ns for ln in lines), default=now_ns))
    merged = crosstalk.merge(lines)  # one utterance heard on several microphones -> one line
    ordered = sorted(merged.lines, key=lambda ln: (ln.start_ns, ln.source, ln.track))
    gaps = []
    for b in sorted(bad, key=lambda b: (b["start_ns"], b["source"])):
        sp = speakers.get(f"{b['source']}/{b['track']}", {})
        gaps.append(
            {
                "start": iso(b["start_ns"]),
                "end": iso(b["end_ns"]),
                "start_ns": b["start_ns"],
                "end_ns": b["end_ns"],
                "source": b["source"],
                "track": b["track"],
                "speaker": sp.get("label", b["source"]),
                "reason": b["reason"],
                "segment_key": b.get("segment_key", ""),
            }
        )
    return {
        "format": FORMAT,
        "session": sid,
        "version": None,
        "origin": origin,
        "draft": True,
        "label": DRAFT_LABEL,
        "created": iso(now_ns),
        "created_by": created_by,
        "model": model,
        "timeline_start": iso(zero),
        "timeline_start_ns": zero,
        "segments": [
            {"key": s.key, "sha256": s.sha256, "source": s.source, "track": s.track, "index": s.index}
            for s in sorted(segments, key=lambda s: (s.source, s.track, s.index))
        ],
        "speakers": speakers,
        "lines": [ln.to_json(speakers.get(f"{ln.source}/{ln.track}")) for ln in ordered],
        "duplicates": [
            {
                **d.line.to_json(speakers.get(f"{d.line.source}/{d.line.track}")),
                "kept": {
                    "source": d.kept.source,
                    "track": d.kept.track,
                    "start": iso(d.kept.start_ns),
                    "start_ns": d.kept.start_ns,
                },
            }
            for d in merged.duplicates
        ],
        "untranscribable": gaps,
        "base_version": None,
        "corrected_by": None,
        "verified_by": None,
        "verified": None,
        "note": "",
        "diff": [],
        "asr_version": None,
        "diff_from_asr": [],
    }


def _line_key(line: dict[str, Any]) -> str:
    return f"{line.get('start', '')}|{line.get('speaker', '')}|{line.get('text', '')}"


def diff_lines(before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Line-level changes from `before` to `after` (difflib opcodes, equal runs left out)."""
    a = [_line_key(x) for x in before]
    b = [_line_key(x) for x in after]
    out: list[dict[str, Any]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        out.append(
            {
                "op": op,
                "before": [{k: before[i][k] for k in ("start", "end", "speaker", "text")} for i in range(i1, i2)],
                "after": [{k: after[j][k] for k in ("start", "end", "speaker", "text")} for j in range(j1, j2)],
            }
        )
    return out


def normalise_lines(raw: Any, base: dict[str, Any]) -> list[dict[str, Any]]:
    """Validate edited lines from a person; keep ASR fields (source, words...) of unchanged lines."""
    if not isinstance(raw, list) or not raw:
        raise CorrectionError("lines must be a non-empty list of {start, end, speaker, text}")
    by_speaker = {sp["label"]: (key, sp) for key, sp in (base.get("speakers") or {}).items()}
    out: list[dict[str, Any]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise CorrectionError(f"lines[{i}] is not an object")
        for field in ("start", "end", "text"):
            if field not in item:
                raise CorrectionError(f"lines[{i}] lacks {field!r}")
        if not isinstance(item["text"], str):
            raise CorrectionError(f"lines[{i}].text is not a string")
        try:
            start_ns, end_ns = parse_iso(item["start"]), parse_iso(item["end"])
        except ValueError as exc:
            raise CorrectionError(f"lines[{i}]: {exc}") from exc
        if end_ns < start_ns:
            raise CorrectionError(f"lines[{i}] ends before it starts")
        speaker = str(item.get("speaker") or "")
        track_key, sp = by_speaker.get(speaker, ("", {}))
        source, _, track = (
            (item.get("source") and f"{item['source']}/{item.get('track', '')}") or track_key
        ).partition("/")
        out.append(
            {
                "start": iso(start_ns),
                "end": iso(end_ns),
                "start_ns": start_ns,
                "end_ns": end_ns,
                "speaker": speaker,
                "role": str(item.get("role") or sp.get("role", "")),
                "source": source,
                "track": track,
                "text": item["text"].strip(),
                "confidence": None,
                "words": [],
            }
        )
    out.sort(key=lambda x: x["start_ns"])
    return out


def correct(
    base: dict[str, Any],
    raw_lines: Any,
    *,
    by: str,
    verified: bool,
    note: str,
    now_ns: int,
    asr: dict[str, Any] | None,
) -> dict[str, Any]:
    """A new version document: the person's lines, who/when, and the diffs to the base and the ASR draft."""
    lines = normalise_lines(raw_lines, base)
    base_by_key = {_line_key(x): x for x in base.get("lines", [])}
    for ln in lines:  # an unchanged line keeps its ASR confidence and word times
        same = base_by_key.get(_line_key(ln))
        if same is not None:
            ln["confidence"], ln["words"] = same.get("confidence"), same.get("words", [])
    doc = dict(base)
    doc.update(
        {
            "version": None,
            "origin": "correction",
            "draft": not verified,
            "label": "已核对 verified" if verified else DRAFT_LABEL,
            "created": iso(now_ns),
            "created_by": by,
            "lines": lines,
            "base_version": base.get("version"),
            "corrected_by": by,
            "note": note,
            "verified_by": by if verified else None,
            "verified": iso(now_ns) if verified else None,
            "diff": diff_lines(base.get("lines", []), lines),
            "asr_version": asr.get("version") if asr else None,
            "diff_from_asr": diff_lines(asr.get("lines", []), lines) if asr else [],
        }
    )
    return doc
