"""Login throttling: a sans-I/O state machine fed `(key, now_s)`.

Each key (we use "user|address", "user" and "address") may fail `max_failures` times within
`window_s`; the next failure locks it for `base_lock_s`, doubling with every further failure up
to `max_lock_s`. A success clears the key. Memory is bounded: the oldest keys are dropped beyond
`max_keys` (an attacker rotating keys only buys themselves the base rate again).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class _KeyState:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0
    lock_s: float = 0.0


@dataclass
class LoginThrottle:
    max_failures: int = 5
    window_s: float = 300.0
    base_lock_s: float = 30.0
    max_lock_s: float = 900.0
    max_keys: int = 10_000
    _keys: OrderedDict[str, _KeyState] = field(default_factory=OrderedDict)

    def retry_after(self, key: str, now_s: float) -> float:
        """Seconds until `key` may try again; 0.0 when it may try now."""
        state = self._keys.get(key)
        if state is None:
            return 0.0
        return max(0.0, state.locked_until - now_s)

    def failure(self, key: str, now_s: float) -> float:
        """Record a failed attempt; return the lock (seconds) it caused, 0.0 if none."""
        state = self._keys.pop(key, None) or _KeyState()
        self._keys[key] = state  # most recently used last
        state.failures = [t for t in state.failures if now_s - t < self.window_s]
        state.failures.append(now_s)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        if len(state.failures) <= self.max_failures:
            return 0.0
        state.lock_s = min(self.max_lock_s, state.lock_s * 2 if state.lock_s else self.base_lock_s)
        state.locked_until = now_s + state.lock_s
        return state.lock_s

    def success(self, key: str) -> None:
        self._keys.pop(key, None)
