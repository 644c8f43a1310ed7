"""Cross-talk de-duplication (pure): the merge rule, speech levels, live marks, documents, the queue column."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import numpy as np

from tonglu.transcribe import crosstalk, documents, exports
from tonglu.transcribe.audio import RATE
from tonglu.transcribe.crosstalk import merge
from tonglu.transcribe.guards import RawLine, RawWord
from tonglu.transcribe.levels import line_level_db, rms_db
from tonglu.transcribe.lines import Line, Word
from tonglu.transcribe.queue import JobQueue

T0 = 1_717_200_000_000_000_000
S = 1_000_000_000


def ln(source: str, a: float, b: float, text: str, level: float | None = None, conf: float = 0.9) -> Line:
    return Line(source, "audio", T0 + round(a * S), T0 + round(b * S), text, conf, (), level)


def timed(source: str, a: float, b: float, text: str, level: float | None = None, shift: float = 0.0) -> Line:
    """A line with word timestamps spread evenly over [a, b] (each word moved by `shift` seconds)."""
    said = text.split()
    step = (b - a) / len(said)
    words = tuple(
        Word(T0 + round((a + k * step + shift) * S), T0 + round((a + (k + 1) * step + shift) * S), w, 0.9)
        for k, w in enumerate(said)
    )
    return Line(source, "audio", words[0].start_ns, words[-1].end_ns, text, 0.9, words, level)


def texts(lines: list[Line]) -> list[tuple[str, str]]:
    return [(x.source, x.text) for x in lines]


def test_identical_lines_become_one_from_the_louder_track() -> None:
    main = ln("main", 1.0, 4.0, "He was not an ill-disposed young man.", level=-20.0)
    pano = ln("panorama", 1.05, 4.1, "He was not an ill-disposed young man.", level=-32.0)
    out = merge([pano, main])
    assert texts(out.lines) == [("main", "He was not an ill-disposed young man.")]
    assert out.lines[0].heard_on == ("panorama",)
    assert [(d.line.source, d.kept.source) for d in out.duplicates] == [("panorama", "main")]
    # the other way round: the panorama microphone heard it best
    out = merge([ln("main", 1.0, 4.0, main.text, level=-40.0), ln("panorama", 1.05, 4.1, main.text, level=-25.0)])
    assert texts(out.lines) == [("panorama", main.text)] and out.lines[0].heard_on == ("main",)


def test_near_identical_lines_merge_english_by_words_chinese_by_characters() -> None:
    en_a = ln("main", 0.0, 5.0, "Unless to be rather cold hearted and rather selfish is to be ill disposed.", -18.0)
    en_b = ln(
        "panorama", 0.2, 5.1, "unless to be rather cold-hearted, and rather selfless, is to be ill-disposed", -30.0
    )
    out = merge([en_a, en_b])
    assert texts(out.lines) == [("main", en_a.text)]
    zh_a = ln("main", 10.0, 13.0, "你昨天晚上八点在哪里？", -35.0)
    zh_b = ln("panorama", 10.1, 13.2, "你昨天晚上八点再哪里", -22.0)  # one character misheard, no punctuation
    out = merge([zh_a, zh_b])
    assert texts(out.lines) == [("panorama", zh_b.text)] and out.lines[0].heard_on == ("main",)
    assert crosstalk.tokens("你好, World!") == tuple("你好world")
    assert crosstalk.tokens("Ill-disposed, SIR.") == ("ill", "disposed", "sir")


def test_without_levels_the_more_confident_copy_wins() -> None:
    a = ln("main", 0.0, 3.0, "where were you last night", conf=0.55)
    b = ln("panorama", 0.0, 3.0, "where were you last night", conf=0.92)
    assert texts(merge([a, b]).lines) == [("panorama", b.text)]
    # one line lacking a level: levels are not compared at all (confidence decides)
    a2 = ln("main", 0.0, 3.0, a.text, level=-10.0, conf=0.5)
    assert texts(merge([a2, b]).lines) == [("panorama", b.text)]


def test_overlapping_but_different_content_is_kept() -> None:
    q = ln("panorama", 0.0, 4.0, "Where were you on the night of the third?", -20.0)
    a = ln("main", 2.5, 6.0, "I was at home with my wife the whole evening.", -20.0)
    out = merge([q, a])
    assert sorted(texts(out.lines)) == sorted([("panorama", q.text), ("main", a.text)])
    assert out.duplicates == [] and all(x.heard_on == () for x in out.lines)
    # the interviewer repeats the answer inside a longer sentence: it contains the answer, yet is not it
    short = ln("main", 2.0, 3.5, "I was at home.", -30.0)
    longer = ln("panorama", 1.8, 6.0, "I was at home with my wife the whole evening, you say?", -15.0)
    assert len(merge([short, longer]).lines) == 2


def test_simultaneous_speakers_both_stay() -> None:
    # two people talk at once: same span, different words (each microphone transcribed its own speaker)
    q = ln("panorama", 5.0, 8.0, "你把手机放在哪里了", -20.0)
    a = ln("main", 5.0, 8.0, "我不知道你在说什么", -21.0)
    assert len(merge([q, a]).lines) == 2
    en_q = ln("panorama", 5.0, 8.0, "tell me what happened", -20.0)
    en_a = ln("main", 5.0, 8.0, "I want my lawyer here", -20.0)
    assert len(merge([en_q, en_a]).lines) == 2


def test_same_words_at_different_times_are_not_merged() -> None:
    # "是的" said by the suspect at 3 s and by the interviewer at 20 s: same text, no time overlap
    a = ln("main", 3.0, 3.6, "是的", -20.0)
    b = ln("panorama", 20.0, 20.6, "是的", -20.0)
    assert len(merge([a, b]).lines) == 2
    # touching but hardly overlapping (< 50 % of the shorter) also stays apart
    c = ln("panorama", 3.5, 4.1, "是的", -30.0)
    assert len(merge([a, c]).lines) == 2


def test_split_lines_long_line_wins_or_the_pieces_win() -> None:
    long = "Had he married a more amiable woman he might have been made still more respectable than he was."
    first, second = (
        "Had he married a more amiable woman,",
        "he might have been made still more respectable than he was.",
    )
    a = ln("main", 0.0, 6.0, long, -18.0)
    b1 = ln("panorama", 0.1, 2.6, first, -30.0)
    b2 = ln("panorama", 3.0, 6.1, second, -30.0)
    out = merge([b2, a, b1])
    assert texts(out.lines) == [("main", long)] and out.lines[0].heard_on == ("panorama",)
    assert {d.line.text for d in out.duplicates} == {first, second}
    # the split track heard it best: its two lines stay (as it split them), the long one goes
    louder = [ln("panorama", 0.1, 2.6, first, -15.0), ln("panorama", 3.0, 6.1, second, -15.0)]
    out = merge([a, *louder])
    assert texts(out.lines) == [("panorama", first), ("panorama", second)]
    assert all(x.heard_on == ("main",) for x in out.lines)
    assert [d.line.text for d in out.duplicates] == [long]


SENTENCE = "Had he married a more amiable woman he might have been made still more respectable than he was."


def _sentence_at(source: str, level: float, words: slice, shift: float = 0.0) -> Line:
    """Part of SENTENCE as one line, its words where they fall when the sentence runs 10.0 s to 16.0 s."""
    said = SENTENCE.split()
    step = 6.0 / len(said)
    first, stop, _ = words.indices(len(said))
    a, b = 10.0 + first * step, 10.0 + stop * step
    return timed(source, a, b, " ".join(said[words]), level, shift)


def test_a_fragment_cut_elsewhere_by_a_live_window_joins_the_same_words_on_the_other_track() -> None:
    # as a live pass once cut it: the louder panorama has "... than he" + "was.", the quieter main
    # microphone has the sentence up to "than" and then "he was." alone at the same moments
    pano = [_sentence_at("panorama", -20.0, slice(0, -1)), _sentence_at("panorama", -20.0, slice(-1, None))]
    main = [_sentence_at("main", -32.0, slice(0, -2), shift=0.15), _sentence_at("main", -32.0, slice(-2, None), 0.2)]
    out = merge([*main, *pano])
    assert [x.source for x in out.lines] == ["panorama", "panorama"]
    assert all(x.heard_on == ("main",) for x in out.lines)
    assert sorted(d.line.text for d in out.duplicates) == sorted(x.text for x in main)
    marks = crosstalk.live_marks(dict(enumerate([*pano, *main])))
    assert marks[3].duplicate_of is not None  # "he was." on main: nothing new to show
    # the mirror: the fragment is on the louder track, so both of its lines stay
    main_loud = [replace(x, level_db=-15.0) for x in main]
    out = merge([*main_loud, *pano])
    assert [x.text for x in out.lines] == [x.text for x in main]
    # a one-word fragment must fall on the very moment of the other track's word
    whole = [_sentence_at("panorama", -20.0, slice(0, None))]
    one = _sentence_at("main", -32.0, slice(-1, None), shift=0.1)
    assert [x.source for x in merge([one, *whole]).lines] == ["panorama"]
    assert len(merge([_sentence_at("main", -32.0, slice(-1, None), shift=0.4), *whole]).lines) == 2


def test_the_same_words_said_again_or_by_someone_else_later_are_not_a_fragment() -> None:
    pano = [_sentence_at("panorama", -20.0, slice(0, None))]
    # someone echoes "than he was" 0.8 s behind the speaker: same words, other moments
    repeat = _sentence_at("main", -20.0, slice(-3, None), shift=0.8)
    assert repeat.start_ns < pano[0].end_ns  # still overlapping in time, so only the word times tell
    assert len(merge([*pano, repeat]).lines) == 2
    # two speakers at once who share two words at different moments within the overlap
    other = timed("main", 14.0, 16.0, "he was never there", -20.0)
    assert len(merge([*pano, other]).lines) == 2


def test_a_track_that_heard_only_half_never_replaces_the_whole() -> None:
    long = "Had he married a more amiable woman he might have been made still more respectable than he was."
    a = ln("main", 0.0, 6.0, long, -30.0)
    b1 = ln("panorama", 0.1, 2.6, "Had he married a more amiable woman,", -30.0)
    b2 = ln("panorama", 3.0, 6.1, "he might have been made still more respectable than he was.", -30.0)
    half = ln("remote-1", 3.0, 6.0, "he might have been made still more respectable than he was", -5.0)
    out = merge([a, b1, b2, half])
    kept = " ".join(x.text for x in out.lines)
    assert "married" in kept and "respectable" in kept
    assert "remote-1" not in {x.source for x in out.lines}


def test_three_tracks_one_line_heard_on_the_other_two() -> None:
    text = "Mister John Dashwood had then leisure to consider how much there might be in his power."
    lines = [
        ln("main", 1.0, 7.0, text, -28.0),
        ln("panorama", 1.1, 7.1, text.lower(), -31.0),
        ln(
            "remote-7",
            1.2,
            7.3,
            "Mr John Dashwood had then leisure to consider how much there might be in his power",
            -12.0,
        ),
    ]
    out = merge(lines)
    assert [x.source for x in out.lines] == ["remote-7"]
    assert out.lines[0].heard_on == ("main", "panorama")
    assert sorted(d.line.source for d in out.duplicates) == ["main", "panorama"]


def test_merge_is_deterministic_whatever_the_input_order() -> None:
    lines = [
        ln("main", 0.0, 3.0, "where were you", -20.0),
        ln("panorama", 0.1, 3.0, "where were you", -20.0),  # equal levels and confidence: the name decides
        ln("main", 4.0, 6.0, "at home", -25.0),
        ln("panorama", 4.0, 6.1, "at home", -21.0),
        ln("panorama", 8.0, 9.0, "who was with you", -20.0),
        ln("main", 8.2, 9.5, "nobody", -20.0),
    ]
    first = merge(lines)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = lines[:]
        rng.shuffle(shuffled)
        again = merge(shuffled)
        assert again == first
    assert texts(first.lines) == [
        ("main", "where were you"),
        ("panorama", "at home"),
        ("panorama", "who was with you"),
        ("main", "nobody"),
    ]


def test_one_track_only_is_left_alone() -> None:
    lines = [ln("main", 0.0, 1.0, "yes"), ln("main", 0.5, 1.5, "yes")]
    assert merge(lines).lines == sorted(lines, key=lambda x: x.start_ns) and merge([]).lines == []


def test_speech_level_over_the_words() -> None:
    t = np.arange(4 * RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    assert abs(rms_db(tone, [(0.0, 4.0)]) - 20 * np.log10(0.5 / np.sqrt(2))) < 0.05
    quiet = tone * 10 ** (-12 / 20)
    assert abs(rms_db(tone, [(0, 4)]) - rms_db(quiet, [(0, 4)]) - 12.0) < 0.01  # type: ignore[operator]
    assert rms_db(tone, [(5.0, 6.0)]) is None
    assert rms_db(np.zeros(RATE, np.float32), [(0, 1)]) == -120.0
    # speech then silence: only the words count, so a line padded with silence is not diluted
    padded = np.concatenate([tone[:RATE], np.zeros(3 * RATE, np.float32)])
    words = (RawWord(0.0, 0.5, " hi", 0.9), RawWord(0.5, 1.0, " there", 0.9))
    line = RawLine(0.0, 4.0, "hi there", -0.2, 0.01, 1.0, words)
    assert abs(line_level_db(padded, line) - rms_db(tone, [(0, 1)])) < 0.01  # type: ignore[operator]
    assert line_level_db(padded, RawLine(0.0, 4.0, "hi there", -0.2, 0.01, 1.0)) < line_level_db(padded, line)  # type: ignore[operator]


def test_live_marks_for_a_stream_that_cannot_retract() -> None:
    text = "where were you last night"
    lines = {
        3: ln("panorama", 0.0, 3.0, text, -30.0),  # sent first (committed first), heard worse
        4: ln("panorama", 5.0, 7.0, "at home", -30.0),
        8: ln("main", 0.1, 3.0, text, -18.0),  # the better copy arrives later: it replaces line 3
        9: ln("main", 5.0, 7.0, "at home", -40.0),  # a worse copy of line 4 arrives later: a duplicate
    }
    marks = crosstalk.live_marks(lines)
    assert marks[8] == crosstalk.LiveMark(replaces=(3,), heard_on=("panorama",))
    assert marks[3].duplicate_of == 8
    assert marks[9] == crosstalk.LiveMark(duplicate_of=4)
    assert marks[4].heard_on == ("main",) and marks[4].replaces == ()


def test_documents_and_exports_show_each_utterance_once() -> None:
    lines = [
        ln("main", 1.0, 3.0, "I was at home.", -20.0),
        ln("panorama", 1.0, 3.1, "I was at home.", -33.0),
        ln("panorama", 4.0, 6.0, "Who was with you?", -19.0),
        ln("main", 4.1, 6.0, "Who was with you?", -31.0),
    ]
    doc = documents.build(
        sid="S-x",
        origin="final",
        lines=lines,
        bad=[],
        segments=[],
        model={"name": "m", "sha256": "0" * 64},
        session_start={"suspect": "张三"},
        participants=None,
        created_by="asr",
        now_ns=T0,
    )
    assert [(x["speaker"], x["text"], x["heard_on"]) for x in doc["lines"]] == [
        ("被讯问人 张三", "I was at home.", ["panorama"]),
        ("讯问人", "Who was with you?", ["main"]),
    ]
    assert doc["lines"][0]["level_db"] == -20.0
    assert [(d["source"], d["kept"]["source"]) for d in doc["duplicates"]] == [
        ("panorama", "main"),
        ("main", "panorama"),
    ]
    vtt = exports.to_vtt(doc)
    assert vtt.count("I was at home.") == 1 and vtt.count("Who was with you?") == 1
    assert "<v 讯问人>Who was with you?" in vtt


def test_queue_made_before_levels_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE live_lines(id INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT, source TEXT, track TEXT, kind TEXT,"
        " start_ns INTEGER, end_ns INTEGER, text TEXT, confidence REAL, words TEXT, reason TEXT, segment_key TEXT,"
        " available_ns INTEGER, UNIQUE(sid, source, track, kind, start_ns))"
    )
    db.execute(
        "INSERT INTO live_lines(sid,source,track,kind,start_ns,end_ns,text) VALUES ('S','main','a','line',1,2,'x')"
    )
    db.commit()
    db.close()
    q = JobQueue(path)
    rows = q.live_rows("S")
    assert rows[0]["level_db"] is None and rows[0]["text"] == "x"
    q.close()
    JobQueue(path).close()  # opening again is fine
