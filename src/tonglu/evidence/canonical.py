"""Canonical byte encoding of evidence records.

JSON with sorted keys, no insignificant whitespace, UTF-8, no floats (times are integer
nanoseconds, rates integers), so that one record has exactly one byte form and its hash is stable
across languages. `decode` refuses bytes that are not in that form: an edited manifest entry that
still parses as JSON is still caught.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tonglu.evidence.errors import CanonicalError


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise CanonicalError(f"{path}: integer out of 64-bit range")
        return
    if isinstance(value, float):
        raise CanonicalError(f"{path}: floats are not allowed in evidence records")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: key {key!r} is not a string")
            _check(item, f"{path}.{key}")
        return
    raise CanonicalError(f"{path}: {type(value).__name__} cannot be encoded")


def encode(value: Any) -> bytes:
    """The canonical bytes of a JSON-like value."""
    _check(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _float(text: str) -> Any:
    raise CanonicalError(f"$: floats are not allowed in evidence records ({text})")


_DECODER = json.JSONDecoder(parse_float=_float, parse_constant=_float)
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
# |n| >= 2**63 (9223372036854775808) needs 20 digits, or 19 starting with a 9: others are in range
# (a nanosecond time has 19 digits and starts with a 9 only from the year 2255).
_LONG_DIGITS = re.compile(rb"\d{20}|9\d{18}")


def decode(data: bytes) -> Any:
    """Parse canonical bytes; raise CanonicalError if they are not canonical.

    What `encode` refuses is refused here without walking the value (a session's ledger of ~10^5
    entries is read at every start): floats and NaN/Infinity by the parser's hooks, integers beyond
    64 bits only where the bytes hold such a long number; JSON keys are always strings."""
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CanonicalError(f"not valid UTF-8 JSON: {exc}") from exc
    if _LONG_DIGITS.search(data):
        _check(value, "$")
    if _ENCODER.encode(value).encode("utf-8") != data:
        raise CanonicalError("bytes are not in canonical form (edited or re-serialised)")
    return value
