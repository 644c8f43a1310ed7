"""Event-loop lag: how late a periodic ticker wakes up (> 50 ms sustained means overload).

lag = LoopLag()
task = asyncio.ensure_future(lag.run())
lag.stats(since_ns=t0)   # {"samples", "p50_ms", "p99_ms", "max_ms"} of the ticks after t0
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0.0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class LoopLag:
    def __init__(self, interval_s: float = 0.05, keep: int = 40_000) -> None:
        self.interval_s = interval_s
        self.samples: deque[tuple[int, float]] = deque(maxlen=keep)  # (wall ns, lag ms)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.samples.append((time.time_ns(), max(0.0, (loop.time() - expected) * 1000)))

    def stats(self, since_ns: int | None = None) -> dict[str, Any]:
        lags = [lag for t, lag in list(self.samples) if since_ns is None or t >= since_ns]
        return {
            "samples": len(lags),
            "p50_ms": round(percentile(lags, 50), 2),
            "p99_ms": round(percentile(lags, 99), 2),
            "max_ms": round(max(lags), 2) if lags else 0.0,
        }
