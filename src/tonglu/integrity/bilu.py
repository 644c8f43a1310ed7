"""The signed written record (笔录) of an interrogation: read its file, parse its 问/答 structure (pure).

    kind = sniff(data, name)                 # "docx" | "text", or RecordNotADocument / RecordEmpty
    text = extract_text(data, kind)          # the document's text, paragraphs in order
    record = parse(text)                     # ParsedRecord: preamble + 问/答 items, RecordNoQuestions if none

A 问/答 line starts with 问 or 答 and a colon (half- or full-width): ``问：你叫什么名字？`` /
``答: 张三``; a bracketed time may follow the marker or open the text (``问（10:32）：`` or
``答：（10:32:05）…``). Lines that start with neither continue the item above them (multi-line
answers); lines before the first item are the preamble (title, time, place, people).
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from dataclasses import dataclass, field
from typing import Any

from tonglu.integrity.errors import RecordEmpty, RecordNoQuestions, RecordNotADocument, RecordTooLarge

PARSER = "tonglu-bilu/1"
MAX_BYTES = 5 * 1024 * 1024  # a 笔录 of hundreds of pages is far below this
MAX_UNPACKED_BYTES = 50 * 1024 * 1024  # a DOCX is a zip: no zip bombs
QUESTION = "question"
ANSWER = "answer"

_TIME = r"([0-9０-９]{1,2})\s*[:：时点]\s*([0-9０-９]{2})(?:\s*[:：分]\s*([0-9０-９]{2}))?\s*[分秒]?"
_MARK = re.compile(
    r"^\s*[\[【]?\s*(问|答)\s*[\]】]?\s*(?:[(（]\s*" + _TIME + r"\s*[)）])?\s*[:：]\s*(.*)$", re.DOTALL
)
_LEAD_TIME = re.compile(r"^\s*[(（]\s*" + _TIME + r"\s*[)）]\s*(.*)$", re.DOTALL)
_TAIL_TIME = re.compile(r"^(.*?)\s*[(（]\s*" + _TIME + r"\s*[)）]\s*$", re.DOTALL)

# Signature block and page furniture: not part of the answer above them.
_FOOTER = re.compile(
    r"^\s*(?:(?:被讯问人|被询问人|讯问人|询问人|记录人|翻译人|见证人|监护人|法定代理人|签名|签字|捺印|指印|日期)"
    r"\s*[:：(（]|.*[(（]\s*(?:签名|签字|捺指印|指印|盖章)\s*[)）])"
)
_PAGE = re.compile(r"^\s*(?:第\s*[0-9０-９]+\s*页(?:\s*[,，/]?\s*共\s*[0-9０-９]+\s*页)?|-\s*[0-9]+\s*-)\s*$")
_ZIP = b"PK\x03\x04"
_REFUSED_MAGIC = (
    (b"\xd0\xcf\x11\xe0", "旧版 Word (.doc) 文件，请另存为 DOCX (legacy .doc: save it as DOCX)"),
    (b"%PDF", "PDF 文件，请上传 DOCX 或纯文本 (a PDF: upload DOCX or plain text)"),
    (b"\x89PNG", "PNG 图片 (a PNG image)"),
    (b"\xff\xd8\xff", "JPEG 图片 (a JPEG image)"),
    (b"GIF8", "GIF 图片 (a GIF image)"),
    (b"{\\rtf", "RTF 文件，请另存为 DOCX (RTF: save it as DOCX)"),
)


@dataclass(frozen=True)
class RecordItem:
    n: int  # position among the items, from 0
    role: str  # QUESTION | ANSWER
    text: str
    time: str | None  # "HH:MM" or "HH:MM:SS" as written in the record (local time), if any
    line: int  # line number in the document's text, from 1

    @property
    def marker(self) -> str:
        return "问" if self.role == QUESTION else "答"

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "role": self.role, "marker": self.marker, "text": self.text, "time": self.time,
                "line": self.line}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RecordItem:
        return cls(int(d["n"]), str(d["role"]), str(d["text"]), d.get("time"), int(d.get("line", 0)))


@dataclass(frozen=True)
class ParsedRecord:
    items: list[RecordItem]
    preamble: list[str] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)  # signature lines (被讯问人：…（签名）, 记录人：…)

    @property
    def answers(self) -> list[RecordItem]:
        return [i for i in self.items if i.role == ANSWER]

    @property
    def questions(self) -> list[RecordItem]:
        return [i for i in self.items if i.role == QUESTION]


# -- reading the file ------------------------------------------------------------------------------
def sniff(data: bytes, name: str = "") -> str:
    """"docx" or "text"; refuses what is neither, with the reason."""
    if not data.strip():
        raise RecordEmpty("文件为空 (the document is empty)")
    if data.startswith(_ZIP):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                names = set(zf.namelist())
                unpacked = sum(info.file_size for info in zf.infolist())
        except (zipfile.BadZipFile, ValueError) as exc:
            raise RecordNotADocument(f"文件损坏，不是有效的 DOCX (a damaged zip, not a DOCX): {exc}") from exc
        if "word/document.xml" not in names:
            raise RecordNotADocument("压缩文件但不是 Word 文档 (a zip archive without word/document.xml, not a DOCX)")
        if unpacked > MAX_UNPACKED_BYTES:
            raise RecordTooLarge(
                f"DOCX 解压后 {unpacked} 字节，超过上限 {MAX_UNPACKED_BYTES} (unpacks to more than the limit)"
            )
        return "docx"
    for magic, what in _REFUSED_MAGIC:
        if data.startswith(magic):
            raise RecordNotADocument(f"不支持的文件类型：{what} (only DOCX or plain text)")
    decode_text(data)  # raises when it is not text
    return "text"


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, or GB18030; refuses binary data."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise RecordNotADocument(f"UTF-16 文本无法解码 (undecodable UTF-16 text): {exc}") from exc
    else:
        for encoding in ("utf-8-sig", "gb18030"):
            try:
                text = data.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise RecordNotADocument(
                "不是文本或 DOCX 文件，无法识别编码 (not a text or DOCX document: undecodable bytes)"
            )
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in "\r\n\t\f\v")
    if "\x00" in text or controls > max(2, len(text) // 200):
        raise RecordNotADocument(
            f"含有 {controls} 个控制字符，不是文本文件 (binary data with {controls} control characters, not text)"
        )
    return text


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def docx_text(data: bytes) -> str:
    """Paragraphs of a DOCX in document order (table cells included), soft line breaks kept."""
    try:
        import docx  # python-docx

        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises several kinds for a damaged package
        raise RecordNotADocument(f"DOCX 文件无法读取 (the DOCX cannot be read): {exc}") from exc
    paragraphs = []
    for p in document.element.body.iter(f"{_W}p"):
        parts = []
        for node in p.iter():
            if node.tag == f"{_W}t" and node.text:
                parts.append(node.text)
            elif node.tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
            elif node.tag == f"{_W}tab":
                parts.append(" ")
        paragraphs.append("".join(parts))
    return "\n".join(paragraphs)


def extract_text(data: bytes, kind: str) -> str:
    return docx_text(data) if kind == "docx" else decode_text(data)


# -- parsing ---------------------------------------------------------------------------------------
def _hhmm(h: str | None, m: str | None, s: str | None) -> str | None:
    if h is None or m is None:
        return None
    hh, mm = int(unicodedata.normalize("NFKC", h)), int(unicodedata.normalize("NFKC", m))
    if hh > 23 or mm > 59:
        return None
    out = f"{hh:02d}:{mm:02d}"
    if s is not None:
        ss = int(unicodedata.normalize("NFKC", s))
        if ss > 59:
            return None
        out += f":{ss:02d}"
    return out


@dataclass
class _Open:
    role: str
    time: str | None
    line: int
    lines: list[str]


def parse(text: str) -> ParsedRecord:
    """问/答 items of a record's text; RecordNoQuestions when it has none."""
    items: list[_Open] = []
    preamble: list[str] = []
    footer: list[str] = []
    in_footer = False
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), start=1):
        line = raw.replace("\u3000", " ").strip()
        if _PAGE.match(line):
            continue
        m = _MARK.match(line)
        if m is None and items and line and (in_footer or _FOOTER.match(line)):
            footer.append(line)  # a signature block (per page or at the end) is not part of an answer
            in_footer = True
            continue
        in_footer = in_footer and m is None
        if m is not None:
            role = QUESTION if m.group(1) == "问" else ANSWER
            time = _hhmm(m.group(2), m.group(3), m.group(4))
            body = m.group(5).strip()
            if time is None and (lead := _LEAD_TIME.match(body)) is not None:
                time = _hhmm(lead.group(1), lead.group(2), lead.group(3))
                body = lead.group(4).strip()
            items.append(_Open(role, time, number, [body] if body else []))
        elif items:
            if line:
                items[-1].lines.append(line)
        elif line:
            preamble.append(line)
    if not items:
        raise RecordNoQuestions(
            "未找到问答内容：笔录应含以“问：”“答：”开头的行 "
            "(no question/answer lines found: a record needs lines starting with 问： and 答：)"
        )
    out = []
    for i, it in enumerate(items):
        body, time = "\n".join(it.lines), it.time
        if time is None and (tail := _TAIL_TIME.match(body)) is not None:
            time = _hhmm(tail.group(2), tail.group(3), tail.group(4))
            if time is not None:
                body = tail.group(1).strip()
        out.append(RecordItem(i, it.role, body, time, it.line))
    return ParsedRecord(out, preamble, footer)


def read(data: bytes, name: str = "") -> tuple[str, ParsedRecord]:
    """(kind, parsed record) of a file's bytes; every refusal is a RecordDocumentError."""
    if len(data) > MAX_BYTES:
        raise RecordTooLarge(
            f"文件 {len(data)} 字节，超过上限 {MAX_BYTES} 字节 (the document exceeds {MAX_BYTES} bytes)"
        )
    kind = sniff(data, name)
    return kind, parse(extract_text(data, kind))
