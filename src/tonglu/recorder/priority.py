"""CPU priority of the recorder's background threads.

A recorder worker runs on one pinned core. The event loop receives every packet of every stream
and must never wait long; sealing (hash, fsync, ledger) and muxing only have to keep up on
average (their queues are bounded and deep: seconds of media). So they run at a lower Linux
per-thread nice value: when the core is contended at a segment boundary, the scheduler runs the
event loop first and the background threads catch up in its idle time, instead of every thread
getting an equal share and the loop lagging by tens of milliseconds.
"""

from __future__ import annotations

import os
import threading

PIPELINE_NICE = 5  # muxing: weight ~1/3 of the loop's
SEAL_NICE = 10  # hashing, fsync, ledger: weight ~1/10 of the loop's
INDEX_NICE = 15  # the index DB cache (recorder.indexfeed): whenever the core is idle


def lower_this_thread(by: int) -> None:
    """Raise the calling thread's nice value by `by` (Linux; a no-op where unsupported)."""
    if not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + by))
    except OSError:
        pass


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
