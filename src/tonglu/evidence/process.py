"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import signal
import sys
from collections.abc import Callable


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn`: prctl(PR_SET_PDEATHSIG, SIGTERM) on Linux (libc loaded before the fork).

    The signal comes when the *thread* that forked the child ends, so start long-lived children
    from a thread that lives as long as the process (the main thread or a supervisor thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return hook
