"""Time formatting: evidence stores UTC nanoseconds; people read Asia/Shanghai (UTC+8, no DST)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

try:
    from zoneinfo import ZoneInfo

    SHANGHAI: timezone | ZoneInfo = ZoneInfo("Asia/Shanghai")
except Exception:  # no tzdata: China has used UTC+8 without DST since 1991
    SHANGHAI = timezone(timedelta(hours=8), "CST")

NS = 1_000_000_000
SHANGHAI_OFFSET_S = 8 * 3600


def iso_utc(ns: int) -> str:
    """ISO-8601 UTC with millisecond precision, e.g. 2024-05-01T06:03:07.250Z."""
    dt = datetime.fromtimestamp(ns // NS, UTC).replace(microsecond=(ns % NS) // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(ns % NS) // 1_000_000:03d}Z"


def parse_iso(value: str) -> int:
    """ISO-8601 (with offset or Z; naive means UTC) to UTC nanoseconds."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    whole = int(dt.replace(microsecond=0).timestamp())
    return whole * NS + dt.microsecond * 1000


def local_text(ns: int, seconds: bool = True) -> str:
    """Asia/Shanghai wall time, 24-hour: 2024-05-01 14:03:07."""
    dt = datetime.fromtimestamp(ns / NS, SHANGHAI)
    return dt.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def local_time_only(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, SHANGHAI).strftime("%H:%M:%S")


def duration_text(ns: int) -> str:
    """Human duration in Chinese: 1小时02分03.5秒 / 850毫秒."""
    if ns < NS:
        return f"{ns // 1_000_000}毫秒"
    total_ms = ns // 1_000_000
    h, rem = divmod(total_ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s = rem / 1000
    if h:
        return f"{h}小时{m:02d}分{s:04.1f}秒"
    if m:
        return f"{m}分{s:04.1f}秒"
    return f"{s:.1f}秒"
