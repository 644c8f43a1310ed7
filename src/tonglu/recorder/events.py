"""Typed events of the recorder's state machines (the gap detector returns them; unused
event classes were removed)."""

from __future__ import annotations

from dataclasses import dataclass

from tonglu.evidence.manifest import GapRecord


@dataclass(frozen=True)
class GapOpened:
    """Media stopped arriving on a track (reported while it lasts; not yet in the manifest)."""

    source: str
    track: str
    reason: str
    start_ns: int
    rtp_start: int | None = None


@dataclass(frozen=True)
class GapClosed:
    """A gap with known bounds: written into the manifest."""

    record: GapRecord
    seq_resume: int | None = None  # first (unwrapped) sequence number after a hole
