"""Pure logic: guards, speakers, live cut planning, times, metrics, documents, corrections, exports."""

from __future__ import annotations

import io

import pytest

from tonglu.bench.evaluation import en_words, error_rate, zh_chars
from tonglu.transcribe import documents, exports, guards
from tonglu.transcribe.audio import SegmentRef
from tonglu.transcribe.errors import CorrectionError
from tonglu.transcribe.guards import RawLine, RawWord
from tonglu.transcribe.lines import Line, Word, iso, parse_iso, to_wall
from tonglu.transcribe.live import plan_cut
from tonglu.transcribe.speakers import speaker_for

T0 = 1_717_200_000_000_000_000  # 2024-06-01T00:00:00Z


def raw(text: str = "hello there", **kw: float) -> RawLine:
    base = {"start": 0.0, "end": 1.0, "avg_logprob": -0.2, "no_speech_prob": 0.01, "compression_ratio": 1.2}
    base.update(kw)
    return RawLine(text=text, **base)  # type: ignore[arg-type]


def test_guards_drop_hallucinations_and_keep_speech() -> None:
    assert guards.rejection(raw()) is None
    assert guards.rejection(raw(compression_ratio=3.1)) == "compression_ratio"
    assert guards.rejection(raw(no_speech_prob=0.95)) == "no_speech"
    assert guards.rejection(raw(no_speech_prob=0.7, avg_logprob=-0.9)) == "no_speech"
    assert guards.rejection(raw(no_speech_prob=0.7, avg_logprob=-0.3)) is None  # confident speech stays
    assert guards.rejection(raw(avg_logprob=-1.8)) == "low_logprob"
    assert guards.rejection(raw(" ...! ")) == "empty"
    assert guards.rejection(raw("Thank you.")) == "hallucination_phrase"
    assert guards.rejection(raw("字幕由Amara.org社区提供")) == "hallucination_phrase"
    assert guards.rejection(raw("這次的影片就到此為止!")) == "hallucination_phrase"  # traditional characters too
    assert guards.rejection(raw("Thank you for the water, I was thirsty.")) is None


def test_clean_text_simplifies_chinese_only() -> None:
    assert guards.clean_text(" 現在開始訊問 ", "zh") == "现在开始讯问"
    assert guards.clean_text("天地 玄黄", "zh") == "天地玄黄"
    assert guards.clean_text(" Hello world ", "en") == "Hello world"


def test_speakers_by_source_and_participants() -> None:
    start = {
        "suspect": "张三",
        "sources": {
            "main": {"kind": "camera"},
            "panorama": {"kind": "camera"},
            "side": {"kind": "camera", "speaker_role": "lawyer"},
        },
    }
    assert speaker_for("main", start) == {"role": "suspect", "label": "被讯问人 张三", "qa": "答"}
    assert speaker_for("panorama", start) == {"role": "interviewer", "label": "讯问人", "qa": "问"}
    assert speaker_for("side", start)["label"] == "律师"
    parts = {"remote-7": {"role": "prosecutor", "name": "赵检察官"}}
    assert speaker_for("remote-7", start, parts) == {
        "role": "prosecutor",
        "label": "检察官 赵检察官",
        "qa": "问",
    }
    assert speaker_for("remote-9", start, parts)["role"] == "participant"


def test_plan_cut_commits_complete_speech_and_carries_running_sentence() -> None:
    assert plan_cut([], 8.0, closing=False) == 8.0
    assert plan_cut([(1.0, 3.0)], 8.0, closing=False) == 8.0  # ends in silence
    assert plan_cut([(1.0, 3.0), (6.0, 8.0)], 8.0, closing=False) == pytest.approx(5.85)
    assert plan_cut([(1.0, 3.0), (6.0, 8.0)], 8.0, closing=True) == 8.0  # last window of the track
    assert plan_cut([(0.5, 20.0)], 20.0, closing=False, max_carry_s=8.0) == 20.0  # too long to carry


def test_iso_round_trip_and_wall_mapping() -> None:
    assert iso(T0 + 1_234_000_000) == "2024-06-01T00:00:01.234Z"
    assert parse_iso("2024-06-01T08:00:01.234+08:00") == T0 + 1_234_000_000
    with pytest.raises(ValueError):
        parse_iso("2024-06-01T00:00:01")
    r = RawLine(1.0, 2.5, "hi there", -0.1, 0.0, 1.0, (RawWord(1.2, 1.5, "hi", 0.9), RawWord(1.6, 2.4, "there", 0.8)))
    ln = to_wall(r, T0, "main", "audio", "hi there")
    assert (ln.start_ns, ln.end_ns) == (T0 + 1_200_000_000, T0 + 2_400_000_000)
    assert ln.confidence == pytest.approx(0.85)


def test_error_rates_normalise_numbers_and_punctuation() -> None:
    assert en_words("Mr. Dashwood, 3 dogs!") == ["mister", "dashwood", "three", "dogs"]
    assert error_rate(["one two three"], ["1, 2, 3."], "en") == 0.0
    assert error_rate(["a b c d"], ["a x c"], "en") == 0.5
    assert zh_chars("一二三，開始") == ["一", "二", "三", "开", "始"]
    assert error_rate(["一二三四"], ["1234"], "zh") == 0.0
    assert error_rate(["现在开始讯问"], ["现在开始询问"], "zh") == pytest.approx(1 / 6)


def _doc() -> dict:
    segs = [
        SegmentRef("panorama", "audio", 0, "k/p0", "a" * 64, T0, T0 + 4 * 10**9),
        SegmentRef("main", "audio", 0, "k/m0", "b" * 64, T0, T0 + 4 * 10**9),
    ]
    lines = [
        Line(
            "panorama",
            "audio",
            T0 + 10**9,
            T0 + 2 * 10**9,
            "你叫什么名字",
            0.9,
            (Word(T0 + 10**9, T0 + 2 * 10**9, "你叫什么名字", 0.9),),
        ),
        Line("main", "audio", T0 + 3 * 10**9, T0 + 4 * 10**9, "我叫张三", 0.8),
    ]
    bad = [
        {
            "start_ns": T0 + 4 * 10**9,
            "end_ns": T0 + 8 * 10**9,
            "reason": "decode_error: x",
            "segment_key": "k/m1",
            "source": "main",
            "track": "audio",
        }
    ]
    start = {"suspect": "张三", "case_number": "A-1", "room": "R1", "interviewers": ["李四"], "sources": {}}
    doc = documents.build(
        sid="S1",
        origin="final",
        lines=lines,
        bad=bad,
        segments=segs,
        model={"name": "whisper-base", "sha256": "f" * 64},
        session_start=start,
        participants={},
        created_by="asr",
        now_ns=T0 + 10 * 10**9,
    )
    doc["version"] = 2
    return doc


def test_document_shape() -> None:
    doc = _doc()
    assert doc["draft"] is True and doc["label"] == "ASR 草稿，未经核对"
    assert [ln["speaker"] for ln in doc["lines"]] == ["讯问人", "被讯问人 张三"]
    assert doc["lines"][0]["start"] == "2024-06-01T00:00:01.000Z"
    assert doc["untranscribable"][0]["segment_key"] == "k/m1"
    assert {s["key"] for s in doc["segments"]} == {"k/p0", "k/m0"}


def test_correction_keeps_diff_and_verification() -> None:
    doc = _doc()
    edited = [dict(ln) for ln in doc["lines"]]
    edited[1] = {**edited[1], "text": "我叫张三丰"}
    new = documents.correct(doc, edited, by="li4", verified=False, note="名字", now_ns=T0, asr=doc)
    assert new["draft"] is True and new["origin"] == "correction" and new["corrected_by"] == "li4"
    assert new["base_version"] == 2 and new["asr_version"] == 2
    assert new["diff"] == [
        {
            "op": "replace",
            "before": [{k: doc["lines"][1][k] for k in ("start", "end", "speaker", "text")}],
            "after": [{k: new["lines"][1][k] for k in ("start", "end", "speaker", "text")}],
        }
    ]
    assert new["lines"][0]["words"] == doc["lines"][0]["words"]  # unchanged line keeps ASR word times
    verified = documents.correct(new, new["lines"], by="li4", verified=True, note="", now_ns=T0, asr=doc)
    assert verified["draft"] is False and verified["verified_by"] == "li4" and verified["diff"] == []
    assert verified["diff_from_asr"] == new["diff"]
    with pytest.raises(CorrectionError):
        documents.correct(
            doc,
            [{"start": "x", "end": "y", "text": ""}],
            by="a",
            verified=False,
            note="",
            now_ns=T0,
            asr=None,
        )
    with pytest.raises(CorrectionError):
        documents.correct(doc, [], by="a", verified=False, note="", now_ns=T0, asr=None)
    with pytest.raises(CorrectionError):
        documents.correct(
            doc,
            [{"start": iso(T0 + 5 * 10**9), "end": iso(T0), "text": "a"}],
            by="a",
            verified=False,
            note="",
            now_ns=T0,
            asr=None,
        )


def test_exports_vtt_srt_docx() -> None:
    doc = _doc()
    vtt = exports.to_vtt(doc)
    assert vtt.startswith("WEBVTT\n")
    assert "00:00:01.000 --> 00:00:02.000\n<v 讯问人>你叫什么名字" in vtt
    assert "00:00:04.000 --> 00:00:08.000\n<v 被讯问人 张三>[无法转写 untranscribable]" in vtt
    srt = exports.to_srt(doc)
    assert "1\n00:00:01,000 --> 00:00:02,000\n讯问人：你叫什么名字\n" in srt
    from docx import Document

    d = Document(io.BytesIO(exports.to_docx(doc, {"case_number": "A-1", "suspect": "张三", "room": "R1"})))
    assert d.sections[0].header.paragraphs[0].text == "ASR 草稿，未经核对"
    text = [p.text for p in d.paragraphs]
    assert "案件编号：A-1" in text
    assert "[08:00:01] 问：（讯问人）你叫什么名字" in text
    assert "[08:00:03] 答：（被讯问人 张三）我叫张三" in text
    assert any("无法转写" in t and "08:00:04" in t for t in text)


def test_split_at_pauses_starts_a_new_line_when_the_speaker_pauses() -> None:
    words = (
        RawWord(0.0, 0.4, " He", 0.9),
        RawWord(0.5, 0.9, " was.", 0.9),
        RawWord(2.2, 2.5, " And", 0.8),
        RawWord(2.6, 3.0, " Mr.", 0.7),
    )
    parts = guards.split_at_pauses(RawLine(0.0, 3.0, " He was. And Mr.", -0.2, 0.0, 1.1, words))
    assert [(p.start, p.end, p.text.strip()) for p in parts] == [(0.0, 0.9, "He was."), (2.2, 3.0, "And Mr.")]
    one = RawLine(0.0, 0.9, " He was.", -0.2, 0.0, 1.1, words[:2])
    assert guards.split_at_pauses(one) == [one]


def test_packing_lays_tracks_side_by_side_and_maps_lines_back() -> None:
    import numpy as np

    from tonglu.transcribe import packing

    a = np.ones(16000 * 10, np.float32)
    b = np.full(16000 * 8, 0.5, np.float32)
    assert packing.regions([(1.0, 2.0), (2.5, 3.0), (6.0, 7.0)]) == [(1.0, 3.0), (6.0, 7.0)]
    packs = packing.pack([a, b], [[(1.0, 3.0), (6.0, 7.0)], [(2.0, 4.0)]])
    assert len(packs) == 1
    audio, pieces = packs[0]
    assert [(p.owner, p.src_start_s, p.packed_start_s) for p in pieces] == [(0, 1.0, 0.0), (0, 6.0, 3.5), (1, 2.0, 6.0)]
    assert len(audio) == round(8.0 * 16000)
    words = (RawWord(0.1, 0.5, " Hi", 0.9), RawWord(3.6, 3.9, " there", 0.9), RawWord(6.2, 6.6, " Yes", 0.8))
    line = RawLine(0.1, 6.6, " Hi there Yes", -0.2, 0.0, 1.0, words)
    out = packing.unpack([line], pieces, "en")
    # window 0's two pieces were 3 s apart there: two lines, each on window 0's own timeline
    assert [(ln.start, ln.text) for ln in out[0]] == [(pytest.approx(1.1), "Hi"), (pytest.approx(6.1), "there")]
    assert [(ln.start, ln.text) for ln in out[1]] == [(pytest.approx(2.2), "Yes")]
    many = packing.pack([a], [[(0.0, 9.0)]] * 1 + [], max_s=5.0)
    assert len(many) == 1  # one piece longer than a pack still gets a pack of its own


def test_final_pass_clips_group_speech_up_to_the_window_and_cut_longer_speech() -> None:
    from tonglu.transcribe.clips import clip_spans

    chunks = [(0.0, 5.0), (6.0, 20.0), (21.0, 28.0), (30.0, 35.0), (40.0, 110.0)]
    clips = clip_spans(chunks, max_s=29.0)
    assert clips == [(0.0, 28.0), (30.0, 35.0), (40.0, 69.0), (69.0, 98.0), (98.0, 110.0)]
    assert all(b - a <= 29.0 for a, b in clips)
    # every second of speech is inside exactly one clip, in order
    covered = sum(b - a for a, b in clips)
    assert covered == 28.0 + 5.0 + 70.0
    assert clip_spans([]) == []


def test_speech_the_decode_left_without_words_is_found_for_a_second_decode() -> None:
    from tonglu.transcribe.clips import merged, uncovered

    chunks = [(0.0, 10.0), (12.0, 20.0)]
    words = [(0.2, 0.6), (0.9, 1.5), (2.0, 3.0), (3.2, 4.0), (12.5, 13.0), (18.0, 19.6)]
    # 4.5-10 s of the first chunk and 13.5-17.5 s of the second have no word: speech the decode lost
    assert uncovered(chunks, words) == [(4.5, 10.0), (13.5, 17.5)]
    # pauses shorter than the minimum inside a sentence are not gaps
    assert uncovered([(0.0, 4.0)], [(0.0, 1.0), (1.8, 2.9), (3.5, 4.0)]) == []
    assert uncovered([(0.0, 3.0)], []) == [(0.0, 3.0)]
    assert uncovered([(0.0, 0.8)], []) == []
    assert merged([(5.0, 7.0), (0.0, 2.0), (2.0, 3.0), (7.5, 9.0)]) == [(0.0, 3.0), (5.0, 9.0)]


def test_compaction_maps_compact_times_back_to_the_recording() -> None:
    from tonglu.transcribe.clips import Compaction

    rate = 100
    cmap = Compaction.of([(100, 300), (1000, 1100), (5000, 5050)], rate)
    assert cmap.chunks_s(350) == [(0.0, 2.0), (2.0, 3.0), (3.0, 3.5)]
    assert cmap.original_s(0.5) == 1.5
    assert cmap.original_s(2.0) == 10.0  # a start on a boundary belongs to the later chunk
    assert cmap.original_s(2.0, end=True) == 3.0  # an end on a boundary to the earlier one
    assert cmap.original_s(3.25) == 50.25
    # a word across a cut-out silence stays in the chunk that holds most of it
    assert cmap.original_span_s(1.9, 2.4) == (10.0, 10.4)
    assert cmap.original_span_s(1.5, 2.1) == (2.5, 3.0)
    assert cmap.original_span_s(0.5, 1.0) == (1.5, 2.0)
    # hours in: no drift (positions are samples)
    long = Compaction.of([(i * 48_000 + 100, i * 48_000 + 16_100) for i in range(10_000)], 16_000)
    assert long.original_s(9_999 * 1.0 + 0.5) == (9_999 * 48_000 + 100 + 8_000) / 16_000
