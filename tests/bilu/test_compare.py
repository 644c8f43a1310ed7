"""笔录 vs transcript (pure): each kind of discrepancy is found and linked to the right moment; an
identical record (also in traditional characters, full-width, digits for numerals) gives none."""

from __future__ import annotations

from typing import Any

from tests.bilu.builders import SAID, T0, S, record_pairs, record_text, transcript_doc
from tonglu.integrity import bilu
from tonglu.integrity.bilu_compare import Comparison, compare, transcript_units


def run(pairs: list[tuple[str, str]], doc: dict[str, Any] | None = None) -> Comparison:
    doc = doc or transcript_doc()
    record = bilu.parse(record_text(pairs))
    return compare(record.items, transcript_units(doc["lines"], doc["speakers"]))


def replaced(old: str, new: str) -> list[tuple[str, str]]:
    pairs = record_pairs()
    assert any(t == old for _, t in pairs)
    return [(qa, new if t == old else t) for qa, t in pairs]


def test_identical_record_gives_no_finding() -> None:
    result = run(record_pairs())
    assert result.findings == []
    assert result.answers == result.matched == 5
    assert [r.status for r in result.rows] == ["same"] * 10


def test_same_words_in_other_writing_give_no_finding() -> None:
    pairs = replaced("我在家里看电视，没有出门。", "我在家裏看電視，沒有出門！")
    pairs = [(qa, "我拿了300元,后来交给了“王小明”" if t.startswith("我拿了") else t) for qa, t in pairs]
    pairs = [(qa, "认识　他是我同事" if t.startswith("认识") else t) for qa, t in pairs]
    assert run(pairs).findings == []


def test_inserted_answer_is_found_between_its_neighbours() -> None:
    pairs = record_pairs()
    pairs[6:6] = [("问", "你有没有打他？"), ("答", "我打了他两下，用的是木棍。")]
    result = run(pairs)
    assert [(f.kind, f.item.text if f.item else None) for f in result.findings] == [
        ("inserted", "我打了他两下，用的是木棍。")
    ]
    f = result.findings[0]
    # between the answer before (ends at 31 s) and the question after (starts at 35 s)
    assert (f.start_ns, f.end_ns) == (T0 + 31 * S, T0 + 35 * S)


def test_deleted_answer_is_found_at_its_time() -> None:
    pairs = [p for p in record_pairs() if p[1] not in ("你认识李四吗？", "认识，他是我同事。")]
    result = run(pairs)
    assert [(f.kind, f.transcript_text) for f in result.findings] == [("omitted", "认识，他是我同事。")]
    f = result.findings[0]
    assert (f.start_ns, f.end_ns) == (T0 + 28 * S, T0 + 31 * S)
    assert f.to_json()["start"] == "2024-05-01T04:00:28.000Z"


def test_flipped_negation_is_found_at_its_time() -> None:
    result = run(replaced("我在家里看电视，没有出门。", "我在家里看电视，后来出门了。"))
    assert [(f.kind, f.subkind) for f in result.findings] == [("changed", "negation_flipped")]
    f = result.findings[0]
    assert (f.start_ns, f.end_ns) == (T0 + 15 * S, T0 + 20 * S)
    assert f.detail["negations"] == {"said": ["没有"], "record": []}


def test_negation_added_in_a_short_edit_is_found() -> None:
    result = run(replaced("后来我就回家睡觉了。", "后来我没回家睡觉了。"))
    assert [(f.subkind, f.start_ns) for f in result.findings] == [("negation_flipped", T0 + 47 * S)]


def test_changed_number_is_found_at_its_time() -> None:
    result = run(replaced("我拿了三百元，后来交给了王小明。", "我拿了五百元，后来交给了王小明。"))
    assert [(f.kind, f.subkind) for f in result.findings] == [("changed", "number_changed")]
    f = result.findings[0]
    assert (f.start_ns, f.end_ns) == (T0 + 39 * S, T0 + 42 * S)
    assert f.detail["numbers"]["only_said"] == ["300"] and f.detail["numbers"]["only_record"] == ["500"]


def test_changed_name_is_found() -> None:
    result = run(replaced("我拿了三百元，后来交给了王小明。", "我拿了三百元，后来交给了李小明。"))
    assert [(f.subkind, f.start_ns) for f in result.findings] == [("name_changed", T0 + 39 * S)]
    assert result.findings[0].detail["names"] == [{"said": "王小明", "record": "李小明"}]


def test_rewritten_answer_is_text_changed() -> None:
    result = run(replaced("后来我就回家睡觉了。", "后来我去找朋友喝酒唱歌。"))
    assert [(f.subkind, f.start_ns) for f in result.findings] == [("text_changed", T0 + 47 * S)]


def test_several_discrepancies_at_once_are_each_linked() -> None:
    pairs = replaced("我拿了三百元，后来交给了王小明。", "我拿了五百元，后来交给了王小明。")
    pairs = [(qa, "我在家里看电视，出门了。" if t == "我在家里看电视，没有出门。" else t) for qa, t in pairs]
    pairs = [p for p in pairs if p[1] != "认识，他是我同事。"]
    pairs.append(("答", "我愿意赔偿损失。"))
    result = run(pairs)
    got = [(f.kind, f.subkind, (f.start_ns - T0) // S) for f in result.findings]
    assert got == [
        ("changed", "negation_flipped", 15),
        ("omitted", None, 28),
        ("changed", "number_changed", 39),
        ("inserted", None, 50),
    ]


def test_one_turn_written_as_two_answers_or_two_turns_as_one() -> None:
    said = [*SAID[:9], (47, 50, "答", "后来我就回家睡觉了。"), (51, 53, "答", "第二天一早去上班。")]
    doc = transcript_doc(said)  # the last two lines form one turn
    pairs = [*record_pairs()[:9], ("答", "后来我就回家睡觉了。"), ("答", "第二天一早去上班。")]
    assert run(pairs, doc).findings == []
    pairs = [*record_pairs()[:9], ("答", "后来我就回家睡觉了，第二天一早去上班。")]
    assert run(pairs, doc).findings == []


def test_record_times_steer_the_alignment() -> None:
    # the same short answer twice; the record's time says which one it is
    said = [
        (0, 2, "问", "你拿了吗？"),
        (3, 4, "答", "是的。"),
        (600, 602, "问", "你打了吗？"),
        (603, 604, "答", "是的。"),
    ]
    doc = transcript_doc(said)
    record = bilu.parse("问（12:10）：你打了吗？\n答（12:10）：是的。\n")
    result = compare(record.items, transcript_units(doc["lines"], doc["speakers"]))
    omitted = [f for f in result.findings if f.kind == "omitted"]
    assert [(f.start_ns - T0) // S for f in omitted] == [3]


def test_roles_unknown_each_line_is_a_turn() -> None:
    doc = transcript_doc()
    for ln in doc["lines"]:
        ln["role"] = ""
        ln["source"] = "mixed"
    doc["speakers"] = {}
    result = run(replaced("我拿了三百元，后来交给了王小明。", "我拿了五百元，后来交给了王小明。"), doc)
    assert [(f.subkind, (f.start_ns - T0) // S) for f in result.findings] == [("number_changed", 39)]


def test_to_json_has_findings_rows_and_summary() -> None:
    doc = run(replaced("我拿了三百元，后来交给了王小明。", "我拿了五百元，后来交给了王小明。")).to_json()
    assert doc["summary"]["changed"] == 1 and doc["summary"]["by_kind"] == {"number_changed": 1}
    assert doc["findings"][0]["record"]["text"] == "我拿了五百元，后来交给了王小明。"
    assert doc["findings"][0]["transcript"]["text"] == "我拿了三百元，后来交给了王小明。"
    assert len(doc["rows"]) == 10 and doc["rows"][7]["status"] == "changed"


def test_words_that_only_look_negative_do_not_flip() -> None:
    from tonglu.integrity import bilu_text as bt

    assert bt.negations("别人给的钱我不过是保管，东西被没收了，他还未成年") == []
    assert bt.negations("我沒有去，也不認識他，從未見過") == ["没有", "不", "从未"]
    assert bt.negations("I didn't take it, I was not there") == ["n't", "not"]
    result = run(replaced("后来我就回家睡觉了。", "后来别人就回家睡觉了。"))
    assert all(f.subkind != "negation_flipped" for f in result.findings)


def test_flipped_negation_in_traditional_characters() -> None:
    result = run(replaced("我在家里看电视，没有出门。", "我在家裏看電視，出門了。"))
    assert [(f.subkind, (f.start_ns - T0) // S) for f in result.findings] == [("negation_flipped", 15)]


def test_numerals_become_digits() -> None:
    from tonglu.integrity import bilu_text as bt

    cases = {
        "一百二十三": "123", "两": "2", "十五": "15", "二十": "20", "三千零五": "3005", "一万二千": "12000",
        "二〇二四年": "2024年", "一直在家": "一直在家", "十分害怕": "十分害怕", "十分钟": "10分钟", "万一": "万一",
    }  # fmt: skip
    for text, want in cases.items():
        assert bt.numerals_to_digits(text) == want, text
    assert bt.normalise("我拿了３００元，“王小明”！") == bt.normalise("我拿了三百元 王小明")
