"""Chinese-aware text normalisation for comparing a 笔录 (written record) with a transcript (pure).

`normalise(text)` is what both sides are compared on:

- full-width -> half-width (NFKC), lower case;
- traditional -> simplified characters (OpenCC ``t2s``);
- Chinese numerals -> digits: 一百二十三 -> 123, 两 -> 2, 二零二四 -> 2024, 十五 -> 15;
- punctuation, symbols and whitespace removed (only letters and digits remain).

Also here: the markers the classifier looks for (negations, numbers, person names).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNITS = {"十": 10, "百": 100, "千": 1000}
_BIG = {"万": 10_000, "亿": 100_000_000}
_NUMERAL_RUN = re.compile(r"[零〇一二两三四五六七八九十百千万亿]+")
_DIGIT_RUN = re.compile(r"\d+")


@lru_cache(maxsize=1)
def _t2s() -> Any:
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return str(_t2s().convert(text))


def _section(chars: str) -> int:
    """Value of a numeral without 万/亿: 三千零五 -> 3005, 十二 -> 12."""
    total, digit = 0, None
    for ch in chars:
        if ch in _DIGITS:
            digit = _DIGITS[ch]
        else:  # a unit: 十 alone means 10
            total += (1 if digit is None else digit) * _UNITS[ch]
            digit = None
    return total + (digit or 0)


def numeral_value(run: str) -> int | None:
    """The integer a run of Chinese numeral characters stands for, None if it is not a numeral."""
    if not run:
        return None
    if all(ch in _DIGITS for ch in run):
        if len(run) == 1:
            return _DIGITS[run]
        return int("".join(str(_DIGITS[ch]) for ch in run))  # read digit by digit: 二零二四
    if run[0] in _BIG:  # 万一, 亿万: not a number
        return None
    total, section = 0, ""
    for ch in run:
        if ch in _BIG:
            if not section:
                total *= _BIG[ch]  # 万亿
            else:
                total += _section(section) * _BIG[ch]
            section = ""
        else:
            section += ch
    return total + (_section(section) if section else 0)


# 一 and 十 in words that are not numbers: 一直, 一起, 统一, 十分 (very; 十分钟 is ten minutes).
_YI_BEFORE = frozenset("直起下样定般些点切旦边会早向同律再度贯时致面共齐道概并心身生")
_YI_AFTER = frozenset("统唯专同万划")


def _not_a_number(text: str, start: int, end: int) -> bool:
    run = text[start:end]
    after = text[end : end + 1]
    before = text[start - 1 : start]
    if run == "一" and (after in _YI_BEFORE or before in _YI_AFTER):
        return True
    return run == "十" and after == "分" and text[end + 1 : end + 2] != "钟"


def numerals_to_digits(text: str) -> str:
    def repl(m: re.Match[str]) -> str:
        if _not_a_number(text, m.start(), m.end()):
            return m.group(0)
        value = numeral_value(m.group(0))
        return m.group(0) if value is None else str(value)

    return _NUMERAL_RUN.sub(repl, text)


@lru_cache(maxsize=8192)
def simplify(text: str) -> str:
    """NFKC, lower case, simplified characters, digits for numerals; punctuation kept."""
    return numerals_to_digits(to_simplified(unicodedata.normalize("NFKC", text).lower()))


def strip_marks(text: str) -> str:
    """Only letters and digits remain (CJK included)."""
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in ("L", "N"))


@lru_cache(maxsize=8192)
def normalise(text: str) -> str:
    return strip_marks(simplify(text))


# -- markers ---------------------------------------------------------------------------------------
# Words containing a negation character that do not negate (不过 "but", 未来 "future", ...).
_NOT_NEGATIONS = (
    "不过", "不少", "不错", "不久", "不同", "不但", "不仅", "不管", "不论", "不断", "不如", "不然", "要不",
    "差不多", "了不起", "不得不", "未来", "未成年", "无论", "无关紧要", "无锡", "没准", "没收", "淹没",
    "别人", "别的", "别处", "特别", "分别", "区别", "告别", "级别", "性别", "类别", "个别", "识别", "别墅",
)  # fmt: skip
_CJK_NEGATION = re.compile(r"没有|否认|从未|从来没|没|不|未|无|别")
_EN_NEGATION = re.compile(r"\b(?:not|no|never|none|nobody|nothing|neither|nor|cannot)\b|n't\b")


def negations(text: str) -> list[str]:
    """Negation markers in order (没有/不/未/没/否认/无..., English not/no/never/n't)."""
    s = simplify(text)
    for word in _NOT_NEGATIONS:
        s = s.replace(word, " " * len(word))
    found = _CJK_NEGATION.findall(s)
    found += [m.group(0) for m in _EN_NEGATION.finditer(s.replace("’", "'"))]
    return found


def numbers(text: str) -> list[str]:
    """Numbers (as digit strings, numerals converted) in order; 1,000 and 1 000 read as 1000."""
    s = simplify(text)
    s = re.sub(r"(?<=\d)[,\s](?=\d{3}(?!\d))", "", s)
    return [str(int(n)) for n in _DIGIT_RUN.findall(s)]


# The most common Chinese surnames (single character); a name is a surname followed by 1-2 Han characters.
SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付方邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵钱严覃武戴莫孔汤"
)
_HAN = re.compile(r"[\u3400-\u9fff]")
_QUOTED = re.compile(r"[“\"「『‘]([^”\"」』’]{1,20})[”\"」』’]")


def is_han(ch: str) -> bool:
    return bool(_HAN.match(ch))


def quoted(text: str) -> list[str]:
    """Quoted names/words: “王小明”, 「阿强」, "Tom"."""
    return [normalise(q) for q in _QUOTED.findall(text)]


def name_at(s: str, i1: int, i2: int) -> str | None:
    """The person name (surname + 1-2 Han characters) of `s` that covers the span s[i1:i2], if any."""
    for p in range(max(0, i1 - 2), min(i1, len(s) - 1) + 1):
        if s[p] not in SURNAMES:
            continue
        end = p + 1
        while end < len(s) and end < p + 3 and is_han(s[end]):
            end += 1
        if end - p >= 2 and i2 <= end:
            return s[p:end]
    return None
