"""Thresholds of the gap analysis (REQUIREMENTS §7, §11, §12), with units in the names."""

from __future__ import annotations

from dataclasses import dataclass

from tonglu.config import Settings


@dataclass(frozen=True)
class AnalysisConfig:
    video_gap_frames: float = 2.0  # flag video holes longer than this many frame intervals
    audio_gap_ms: int = 60  # flag audio holes longer than this (Opus concealment covers less)
    default_fps: int = 25  # frame interval when a segment has a single frame
    clock_step_ms: int = 200  # wall clock vs RTP disagreement that counts as a clock step
    drift_lead_ms: int = 45  # audio ahead of picture: target +45 ms
    drift_lag_ms: int = 125  # audio behind picture: target -125 ms
    drift_accept_lead_ms: int = 90  # beyond the acceptability limits the finding is critical
    drift_accept_lag_ms: int = 185
    record_time_tolerance_ms: int = 1000  # the 笔录 times are typed by people, to the second
    live_tail_s: int = 20  # recording in progress: media this recent counts as current
    critical_hole_s: int = 10  # coverage holes longer than this are critical, shorter a warning

    @classmethod
    def from_settings(cls, settings: Settings) -> AnalysisConfig:
        return cls(
            video_gap_frames=settings.video_gap_frames,
            audio_gap_ms=settings.audio_gap_ms,
            live_tail_s=max(20, int(settings.segment_seconds * 3) + 5),
        )
