"""Failpoints: named instants in the recorder where a test (or a drill) can make it crash.

    TONGLU_FAILPOINTS="seal.after_spool=kill"        # SIGKILL this process when it gets there
    TONGLU_FAILPOINTS="seal.after_spool=raise"       # raise SimulatedCrash (in-process tests)
    TONGLU_FAILPOINTS_ONCE=/some/dir                 # each failpoint fires once across processes
                                                     # (a marker file per name, created O_EXCL)

Unset (production), `failpoint()` is one dictionary lookup. The names are listed in `POINTS`.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "TONGLU_FAILPOINTS"
ONCE_ENV = "TONGLU_FAILPOINTS_ONCE"
POINTS = frozenset(
    {
        "seal.before_spool",  # segment hashed, its final record written next to it, not spooled yet
        "seal.after_spool",  # segment moved into the spool, its manifest entry not appended yet
        "seal.after_append",  # entry appended, the sidecar not removed yet
    }
)


class SimulatedCrash(BaseException):
    """Raised by a `raise` failpoint; a BaseException so that no `except Exception` swallows it."""


def _armed(name: str) -> str | None:
    spec = os.environ.get(ENV)
    if not spec:
        return None
    for item in spec.split(","):
        point, _, action = item.strip().partition("=")
        if point == name:
            return action or "kill"
    return None


def failpoint(name: str) -> None:
    action = _armed(name)
    if action is None:
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            fd = os.open(Path(once) / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        os.close(fd)
    if action == "raise":
        raise SimulatedCrash(name)
    os.kill(os.getpid(), signal.SIGKILL)
