"""Reading a 笔录: DOCX and text, 问/答 with either colon, multi-line answers, times; refusals (pure)."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from tests.bilu.builders import record_docx, record_pairs
from tonglu.integrity import bilu
from tonglu.integrity.errors import RecordEmpty, RecordNoQuestions, RecordNotADocument, RecordTooLarge


def test_text_with_both_colons_multiline_answers_and_times() -> None:
    text = (
        "讯问笔录\r\n时间：2024年5月1日\r\n"
        "问：（10:32）你叫什么名字？\r\n答: 我叫张三。\r\n"
        "问（10:33）：那天晚上你在哪里？\r\n答：我在家，\r\n　　没有出门。（10:35）\r\n"
        "【问】：你拿了多少钱？\n答：（１０：３６：０５）两百元\n"
    )
    record = bilu.parse(text)
    assert record.preamble == ["讯问笔录", "时间：2024年5月1日"]
    got = [(i.marker, i.text, i.time, i.line) for i in record.items]
    assert got == [
        ("问", "你叫什么名字？", "10:32", 3),
        ("答", "我叫张三。", None, 4),
        ("问", "那天晚上你在哪里？", "10:33", 5),
        ("答", "我在家，\n没有出门。", "10:35", 6),
        ("问", "你拿了多少钱？", None, 8),
        ("答", "两百元", "10:36:05", 9),
    ]
    assert len(record.answers) == 3 and len(record.questions) == 3


def test_a_time_inside_an_answer_is_text() -> None:
    record = bilu.parse("问：几点到的？\n答：我是10:30到的。\n")
    assert record.items[1].text == "我是10:30到的。" and record.items[1].time is None


def test_docx_paragraphs_tables_and_line_breaks() -> None:
    from docx import Document

    doc = Document()
    doc.add_paragraph("讯问笔录")
    p = doc.add_paragraph("问：你在哪里？")
    p = doc.add_paragraph("答：我在家，")
    p.add_run().add_break()
    p.add_run("没有出门。")
    table = doc.add_table(rows=1, cols=1)
    table.cell(0, 0).text = "问：你认识李四吗？"
    doc.add_paragraph("答：认识。")
    out = io.BytesIO()
    doc.save(out)
    kind, record = bilu.read(out.getvalue(), "bilu.docx")
    assert kind == "docx"
    assert [(i.marker, i.text) for i in record.items] == [
        ("问", "你在哪里？"),
        ("答", "我在家，\n没有出门。"),
        ("问", "你认识李四吗？"),
        ("答", "认识。"),
    ]


def test_docx_builder_round_trip() -> None:
    kind, record = bilu.read(record_docx(record_pairs()))
    assert kind == "docx" and [(i.marker, i.text) for i in record.items] == record_pairs()


def test_gb18030_and_utf16_text() -> None:
    text = "问：你叫什么？\n答：张三。\n"
    for data in (text.encode("gb18030"), text.encode("utf-16"), ("\ufeff" + text).encode("utf-8")):
        assert [i.text for i in bilu.read(data)[1].items] == ["你叫什么？", "张三。"]


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", RecordEmpty, "empty"),
        (b"   \n", RecordEmpty, "empty"),
        (os.urandom(4096), RecordNotADocument, "not"),
        (b"\x89PNG\r\n\x1a\n" + os.urandom(500), RecordNotADocument, "PNG"),
        (b"\xff\xd8\xff\xe0" + os.urandom(500), RecordNotADocument, "JPEG"),
        (b"%PDF-1.7\n" + os.urandom(100), RecordNotADocument, "PDF"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500), RecordNotADocument, ".doc"),
        (b"PK\x03\x04" + os.urandom(300), RecordNotADocument, "zip"),
        ("讯问笔录\n张三说他没去。\n".encode(), RecordNoQuestions, "问"),
    ],
)
def test_refusals_say_why(data: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as exc:
        bilu.read(data, "x")
    assert words in str(exc.value)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in str(exc.value))  # Chinese reason too


def test_zip_that_is_not_a_word_document() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("hello.txt", "问：x\n答：y\n")
    with pytest.raises(RecordNotADocument, match=r"word/document\.xml"):
        bilu.read(out.getvalue())


def test_too_large() -> None:
    data = ("问：你叫什么？\n答：" + "张" * bilu.MAX_BYTES + "\n").encode()
    with pytest.raises(RecordTooLarge, match=str(bilu.MAX_BYTES)):
        bilu.read(data)


def test_signature_lines_and_page_numbers_are_not_part_of_an_answer() -> None:
    text = (
        "问：你叫什么？\n答：张三。\n第 1 页 共 2 页\n被讯问人：张三（捺指印）\n2024年5月1日\n"
        "问：还有补充吗？\n答：没有了。\n以上笔录我看过，和我说的相符。\n"
        "被讯问人（签名）：张三\n讯问人：李四、王五\n记录人：王五\n2024年5月1日\n"
    )
    record = bilu.parse(text)
    assert [i.text for i in record.items] == [
        "你叫什么？", "张三。", "还有补充吗？", "没有了。\n以上笔录我看过，和我说的相符。",
    ]  # fmt: skip
    assert record.footer == [
        "被讯问人：张三（捺指印）", "2024年5月1日",
        "被讯问人（签名）：张三", "讯问人：李四、王五", "记录人：王五", "2024年5月1日",
    ]  # fmt: skip
