"""Hand-built inputs for the 笔录 tests: transcript documents in the stored format and records (text, DOCX)."""

from __future__ import annotations

import io
from typing import Any

T0 = 1_714_536_000_000_000_000  # 2024-05-01 04:00:00 UTC = 12:00 Beijing time
S = 1_000_000_000
SPEAKERS = {
    "panorama/audio": {"role": "interviewer", "label": "讯问人", "qa": "问"},
    "main/audio": {"role": "suspect", "label": "被讯问人 张三", "qa": "答"},
}

# (start s, end s, "问"|"答", text): an interrogation as the recording has it
SAID: list[tuple[float, float, str, str]] = [
    (0, 3, "问", "你叫什么名字？"),
    (4, 6, "答", "我叫张三。"),
    (10, 14, "问", "五月一号晚上你在哪里？"),
    (15, 20, "答", "我在家里看电视，没有出门。"),
    (25, 27, "问", "你认识李四吗？"),
    (28, 31, "答", "认识，他是我同事。"),
    (35, 38, "问", "你从他那里拿了多少钱？"),
    (39, 42, "答", "我拿了三百元，后来交给了王小明。"),
    (45, 46, "问", "后来呢？"),
    (47, 50, "答", "后来我就回家睡觉了。"),
]


def transcript_doc(said: list[tuple[float, float, str, str]] | None = None, t0: int = T0) -> dict[str, Any]:
    lines = []
    for start, end, qa, text in said if said is not None else SAID:
        source = "panorama" if qa == "问" else "main"
        sp = SPEAKERS[f"{source}/audio"]
        lines.append(
            {
                "start_ns": t0 + int(start * S),
                "end_ns": t0 + int(end * S),
                "speaker": sp["label"],
                "role": sp["role"],
                "source": source,
                "track": "audio",
                "text": text,
            }
        )
    return {"format": "tonglu-transcript/1", "version": 1, "speakers": SPEAKERS, "lines": lines}


def record_pairs(said: list[tuple[float, float, str, str]] | None = None) -> list[tuple[str, str]]:
    """The record as the recording has it: [(marker, text)]."""
    return [(qa, text) for _, _, qa, text in (said if said is not None else SAID)]


def record_text(pairs: list[tuple[str, str]], header: str = "讯问笔录\n地点：执法办案中心第一讯问室\n") -> str:
    return header + "".join(f"{qa}：{text}\n" for qa, text in pairs)


def record_docx(pairs: list[tuple[str, str]]) -> bytes:
    from docx import Document

    doc = Document()
    doc.add_heading("讯问笔录", level=1)
    doc.add_paragraph("时间：2024年5月1日12时00分至12时01分")
    for qa, text in pairs:
        doc.add_paragraph(f"{qa}：{text}")
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
