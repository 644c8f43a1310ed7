"""Transcript exports (pure): WebVTT, SRT and the 笔录 draft (DOCX, question-and-answer layout).

Cue times in VTT/SRT are relative to the document's `timeline_start_ns` (the first audio of the
session), so they line up with a working copy that starts there. The DOCX shows local time (Asia/Shanghai).
"""

from __future__ import annotations

import io
from typing import Any

from tonglu.transcribe.lines import local_hms

UNTRANSCRIBABLE = "无法转写 untranscribable"


def _clock(ns: int, sep: str) -> str:
    ms = max(0, ns) // 1_000_000
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(doc: dict[str, Any]) -> list[tuple[int, int, str, str]]:
    zero = int(doc.get("timeline_start_ns") or 0)
    cues = [
        (ln["start_ns"] - zero, ln["end_ns"] - zero, ln.get("speaker", ""), ln.get("text", ""))
        for ln in doc.get("lines", [])
    ]
    cues += [
        (g["start_ns"] - zero, g["end_ns"] - zero, g.get("speaker", ""), f"[{UNTRANSCRIBABLE}]")
        for g in doc.get("untranscribable", [])
    ]
    return sorted(cues)


def to_vtt(doc: dict[str, Any]) -> str:
    out = [
        "WEBVTT",
        "",
        f"NOTE {doc.get('label', '')} session {doc.get('session')} version {doc.get('version')}",
        "",
    ]
    for i, (a, b, speaker, text) in enumerate(_cues(doc), 1):
        clean = text.replace("-->", "→").replace("\n", " ")
        out += [str(i), f"{_clock(a, '.')} --> {_clock(max(a, b), '.')}", f"<v {speaker}>{clean}", ""]
    return "\n".join(out)


def to_srt(doc: dict[str, Any]) -> str:
    out = []
    for i, (a, b, speaker, text) in enumerate(_cues(doc), 1):
        out += [str(i), f"{_clock(a, ',')} --> {_clock(max(a, b), ',')}", f"{speaker}：{text}", ""]
    return "\n".join(out)


def to_docx(doc: dict[str, Any], session_start: dict[str, Any] | None = None) -> bytes:
    """A 笔录 draft: header 「ASR 草稿，未经核对」 (or verified), case facts, then 问/答 lines with times."""
    from docx import Document
    from docx.shared import Pt

    facts = session_start or {}
    d = Document()
    header = d.sections[0].header.paragraphs[0]
    header.text = "ASR 草稿，未经核对" if doc.get("draft", True) else f"已核对 verified: {doc.get('verified_by')}"
    d.add_heading("讯问笔录（草稿）" if doc.get("draft", True) else "讯问笔录", level=1)
    lines = doc.get("lines", [])
    gaps = doc.get("untranscribable", [])
    times = [x["start_ns"] for x in lines + gaps] + [x["end_ns"] for x in lines + gaps]
    meta = [
        ("案件编号", facts.get("case_number", "")),
        ("地点", facts.get("room", "")),
        ("被讯问人", facts.get("suspect", "")),
        ("讯问人", "、".join(facts.get("interviewers", []) or [])),
        ("时间", f"{local_hms(min(times))} 至 {local_hms(max(times))}（北京时间）" if times else ""),
        (
            "版本",
            f"第 {doc.get('version')} 版（{doc.get('origin')}），模型 {(doc.get('model') or {}).get('name', '')}",
        ),
    ]
    for k, v in meta:
        p = d.add_paragraph()
        p.add_run(f"{k}：").bold = True
        p.add_run(str(v))
    speakers = doc.get("speakers", {})
    items: list[tuple[int, str, str, str]] = []
    for ln in lines:
        sp = speakers.get(f"{ln.get('source')}/{ln.get('track')}", {})
        tag = sp.get("qa") or ln.get("speaker", "")
        items.append((ln["start_ns"], tag, ln.get("speaker", ""), ln.get("text", "")))
    for g in gaps:
        items.append(
            (
                g["start_ns"],
                "",
                g.get("speaker", ""),
                f"〔{local_hms(g['start_ns'])}–{local_hms(g['end_ns'])} {UNTRANSCRIBABLE}：{g.get('reason', '')}〕",
            )
        )
    for start_ns, tag, speaker, text in sorted(items, key=lambda x: x[0]):
        p = d.add_paragraph()
        t = p.add_run(f"[{local_hms(start_ns)}] ")
        t.font.size = Pt(9)
        if tag:
            p.add_run(f"{tag}：").bold = True
        if tag in ("问", "答") and speaker:
            p.add_run(f"（{speaker}）").font.size = Pt(9)
        p.add_run(text)
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()
