"""Per-track facts shared by the checks: frame interval, hole threshold, recorder gap cover."""

from __future__ import annotations

from tonglu.integrity.checks.intervals import Interval
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.session import Seg, SessionView

NS = 1_000_000_000
# Gap reasons after which the sender's RTP clock starts afresh (new peer or new recorder).
RTP_RESET_REASONS = frozenset(
    {"peer_disconnect", "recorder_restart", "ice_failure", "dtls_failure", "not_connected"}
)


def frame_ns(seg: Seg, config: AnalysisConfig) -> int:
    rec = seg.rec
    if rec.frames > 1 and rec.clock_rate > 0 and rec.rtp_last > rec.rtp_first:
        return (rec.rtp_last - rec.rtp_first) * NS // (rec.clock_rate * (rec.frames - 1))
    if rec.media == "audio":
        return 20_000_000
    return NS // config.default_fps


def hole_threshold_ns(seg: Seg, config: AnalysisConfig) -> int:
    if seg.rec.media == "audio":
        return config.audio_gap_ms * 1_000_000
    return int(config.video_gap_frames * frame_ns(seg, config))


def rtp_to_ns(ticks: int, clock_rate: int) -> int:
    return ticks * NS // clock_rate if clock_rate > 0 else 0


def media_span_ns(seg: Seg, config: AnalysisConfig) -> int:
    """Duration of a segment by its own media clock (first frame start to last frame end)."""
    rec = seg.rec
    return rtp_to_ns(rec.rtp_last - rec.rtp_first, rec.clock_rate) + frame_ns(seg, config)


def recorder_gap_cover(view: SessionView, source: str, track: str, tolerance_ns: int = 0) -> list[Interval]:
    """Intervals the recorder itself already reported as gaps for this track (or whole source)."""
    return [
        (g.rec.start_ns - tolerance_ns, g.rec.end_ns + tolerance_ns)
        for g in view.gaps
        if g.rec.source == source and g.rec.track in (track, "*", "")
    ]


def rtp_reset_between(
    view: SessionView, source: str, track: str, start_ns: int, end_ns: int, slack_ns: int
) -> bool:
    for g in view.gaps:
        if g.rec.source != source or g.rec.track not in (track, "*", ""):
            continue
        if (
            g.rec.reason in RTP_RESET_REASONS
            and g.rec.start_ns <= end_ns + slack_ns
            and g.rec.end_ns >= start_ns - slack_ns
        ):
            return True
    return False
