"""Where a live window is cut (pure): commit what is complete, carry a sentence still being spoken.

A live window is the uncommitted audio of one track: the carried tail of the previous window plus
the newly sealed segments. Lines that are complete are committed at once; speech that runs into
the end of the window may be a sentence cut in half, so it is carried into the next window
(unless the window is the last one of the track, or the carry would exceed `max_carry_s`).
"""

from __future__ import annotations

from collections.abc import Sequence

TOUCH_S = 0.3  # speech ending this close to the window end is considered still running


def plan_cut(
    speech: Sequence[tuple[float, float]],
    duration_s: float,
    *,
    closing: bool,
    max_carry_s: float = 8.0,
    min_pause_s: float = 0.3,
) -> float:
    """Return the cut point in seconds: audio before it is transcribed and committed now.

    `speech` holds VAD chunks (start_s, end_s) in the window, sorted.
    """
    if closing or not speech:
        return duration_s
    last_start, last_end = speech[-1]
    if last_end < duration_s - TOUCH_S:
        return duration_s  # the window ends in silence: everything is complete
    # The last chunk runs into the end. Cut just before it (after the pause that precedes it).
    cut = max(0.0, last_start - min_pause_s / 2)
    if duration_s - cut <= max_carry_s:
        return cut
    return duration_s  # a single utterance longer than max_carry_s: commit it now, cut where it is
