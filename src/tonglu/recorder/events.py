"""Typed events of the recorder's state machines."""

from __future__ import annotations

from dataclasses import dataclass

from tonglu.evidence.manifest import GapRecord, SegmentRecord


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


@dataclass(frozen=True)
class SegmentSealed:
    record: SegmentRecord
    seq: int  # manifest entry number


@dataclass(frozen=True)
class KeyframeWanted:
    track: str
