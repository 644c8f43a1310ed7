"""Hallucination guards and text clean-up for raw Whisper output (pure functions).

Whisper invents text over silence and noise ("Thank you.", subtitle credits, loops). The guards,
applied to every decoded segment, are in order:
1. compression ratio > 2.4 (repetition loops) -> drop;
2. no-speech probability > 0.6 with a weak average log-probability (< -0.7), or > 0.9 at all -> drop;
3. average log-probability < -1.5 (garbage) -> drop;
4. text that is empty after removing punctuation, or a known hallucination phrase -> drop.
VAD (always on), skipping windows without speech, and no prompt conditioning are applied by the engine.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

MAX_COMPRESSION_RATIO = 2.4
NO_SPEECH_PROB = 0.6
NO_SPEECH_PROB_ALWAYS = 0.9
WEAK_LOGPROB = -0.7
MIN_LOGPROB = -1.5

# Phrases Whisper is known to produce on silence/noise (normalised: lower case, no punctuation/space).
HALLUCINATIONS = frozenset(
    {
        "thankyou",
        "thanksforwatching",
        "thankyouforwatching",
        "pleasesubscribe",
        "you",
        "bye",
        "byebye",
        "subtitlesbytheamaraorgcommunity",
        "字幕由amaraorg社区提供",
        "请不吝点赞订阅转发打赏支持明镜与点点栏目",
        "这次的影片就到此为止",
        "本期视频就到这里",
        "我们下期再见",
        "欢迎订阅我的频道",
        "感谢收看",
        "谢谢观看",
        "感谢观看",
        "谢谢大家",
        "字幕志愿者",
        "中文字幕志愿者",
        "优优独播剧场youkushow",
        "明镜需要您的支持欢迎订阅明镜",
    }
)


@dataclass(frozen=True)
class RawWord:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class RawLine:
    """One decoded Whisper segment, times in seconds from the start of the audio given to the engine."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    words: tuple[RawWord, ...] = field(default_factory=tuple)

    @property
    def confidence(self) -> float:
        if self.words:
            return sum(w.probability for w in self.words) / len(self.words)
        return float(min(1.0, 2.718281828**self.avg_logprob))


def squash(text: str) -> str:
    """Lower-case letters and digits only (for comparisons and the hallucination list)."""
    return "".join(
        ch for ch in unicodedata.normalize("NFKC", text).lower() if unicodedata.category(ch)[0] in ("L", "N")
    )


def rejection(line: RawLine) -> str | None:
    """Why this line must be dropped, or None to keep it."""
    if line.compression_ratio > MAX_COMPRESSION_RATIO:
        return "compression_ratio"
    if line.no_speech_prob > NO_SPEECH_PROB_ALWAYS:
        return "no_speech"
    if line.no_speech_prob > NO_SPEECH_PROB and line.avg_logprob < WEAK_LOGPROB:
        return "no_speech"
    if line.avg_logprob < MIN_LOGPROB:
        return "low_logprob"
    key = squash(line.text)
    if not key:
        return "empty"
    if key in HALLUCINATIONS or (_HAN.search(key) and squash(_t2s().convert(key)) in HALLUCINATIONS):
        return "hallucination_phrase"  # the list is in simplified characters; Whisper often writes traditional
    return None


def keep(lines: list[RawLine]) -> list[RawLine]:
    return [ln for ln in lines if rejection(ln) is None]


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


_HAN = re.compile(r"[\u3400-\u9fff]")
_SPACE_BETWEEN_HAN = re.compile(r"(?<=[\u3400-\u9fff])\s+(?=[\u3400-\u9fff])")


def clean_text(text: str, language: str | None) -> str:
    """Trim; for Chinese convert to simplified characters and drop spaces between Han characters."""
    text = text.strip()
    if language and language.startswith("zh"):
        text = _t2s().convert(text)
        text = _SPACE_BETWEEN_HAN.sub("", text)
    return text


PAUSE_S = 1.0


def split_at_pauses(line: RawLine, pause_s: float = PAUSE_S) -> list[RawLine]:
    """Split a decoded segment where its words pause for `pause_s` or more.

    Whisper often runs two utterances separated by a pause into one segment (VAD chunks are merged
    before decoding); a 笔录 line should start when its speaker starts, so a pause starts a new line.
    Word texts keep Whisper's leading spaces, so joining them restores the text in any language.
    """
    words = line.words
    if len(words) < 2:
        return [line]
    groups: list[list[RawWord]] = [[words[0]]]
    for w in words[1:]:
        if w.start - groups[-1][-1].end >= pause_s:
            groups.append([w])
        else:
            groups[-1].append(w)
    if len(groups) == 1:
        return [line]
    return [
        RawLine(
            g[0].start,
            g[-1].end,
            "".join(w.word for w in g),
            line.avg_logprob,
            line.no_speech_prob,
            line.compression_ratio,
            tuple(g),
        )
        for g in groups
    ]
