"""Audio/video drift per source (REQUIREMENTS §11: target +45/−125 ms, acceptable +90/−185 ms).

Each track's segments relate two clocks: the wall clock the recorder stamped (from RTCP sender
reports, so that audio and video of one source share it) and the track's own media clock (RTP).
Within a stretch where RTP runs continuously, the *slip* of a segment is
``(wall_first − anchor wall) − (rtp_first − anchor rtp) / clock_rate``: how far its wall stamps
have moved against its media since the stretch began. If audio slips against video, the sound
drifts against the picture; the A/V offset at a video segment start is
``slip(video) − slip(audio covering that instant)`` — positive when sound comes early (ITU-R
BT.1359 sign). Consecutive video segments outside the window merge into one finding.
A constant offset present from the first frame cannot be seen from the manifest alone.
"""

from __future__ import annotations

import bisect

from tonglu.integrity.checks.tracks import RTP_RESET_REASONS, frame_ns, rtp_to_ns
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.findings import AV_DRIFT, CRITICAL, WARNING, Finding
from tonglu.integrity.session import Seg, SessionView


def _slips(view: SessionView, segs: list[Seg], config: AnalysisConfig) -> list[int]:
    """Slip of every segment against the anchor of its continuous-RTP stretch."""
    slips: list[int] = []
    anchor: Seg | None = None
    prev: Seg | None = None
    step_ns = config.clock_step_ms * 1_000_000
    for seg in segs:
        if anchor is None or prev is None:
            anchor = seg
        else:
            p, n = prev.rec, seg.rec
            rtp_gap = rtp_to_ns(n.rtp_first - p.rtp_last, p.clock_rate) - frame_ns(prev, config)
            wall_gap = n.wall_first_ns - p.wall_last_ns
            reset = (
                n.rtp_first < p.rtp_last or n.clock_rate != p.clock_rate or abs(wall_gap - rtp_gap) > step_ns
            )
            reset = reset or any(
                g.rec.source == p.source
                and g.rec.reason in RTP_RESET_REASONS
                and g.rec.start_ns <= n.wall_first_ns
                and g.rec.end_ns >= p.wall_last_ns
                for g in view.gaps
            )
            if reset:
                anchor = seg
        a = anchor.rec
        slips.append(
            (seg.rec.wall_first_ns - a.wall_first_ns)
            - rtp_to_ns(seg.rec.rtp_first - a.rtp_first, a.clock_rate)
        )
        prev = seg
    return slips


def check(view: SessionView, config: AnalysisConfig) -> list[Finding]:
    tracks = view.tracks()
    out: list[Finding] = []
    for source in view.sources():
        video = tracks.get(f"{source}/video")
        audio = tracks.get(f"{source}/audio")
        if not video or not audio:
            continue
        v_slips = _slips(view, video, config)
        a_slips = _slips(view, audio, config)
        run: list[tuple[Seg, int]] = []
        a_starts = [a.rec.wall_first_ns for a in audio]
        for v, v_slip in zip(video, v_slips, strict=True):
            w = v.rec.wall_first_ns
            i = bisect.bisect_right(a_starts, w) - 1  # the audio segment playing when this video starts
            offset = None
            if i >= 0 and w < audio[i].rec.wall_last_ns + config.drift_accept_lag_ms * 1_000_000:
                offset = v_slip - a_slips[i]
            outside = offset is not None and (
                offset > config.drift_lead_ms * 1_000_000 or offset < -config.drift_lag_ms * 1_000_000
            )
            if outside and offset is not None:
                run.append((v, offset))
                continue
            if run:
                out.append(_finding(source, run, config))
                run = []
        if run:
            out.append(_finding(source, run, config))
    return out


def _finding(source: str, run: list[tuple[Seg, int]], config: AnalysisConfig) -> Finding:
    worst = max((o for _, o in run), key=abs)
    beyond = (
        worst > config.drift_accept_lead_ms * 1_000_000 or worst < -config.drift_accept_lag_ms * 1_000_000
    )
    side = "声音超前画面 sound ahead of picture" if worst > 0 else "声音滞后画面 sound behind picture"
    return Finding(
        AV_DRIFT,
        source,
        "video+audio",
        run[0][0].rec.wall_first_ns,
        run[-1][0].rec.wall_last_ns,
        CRITICAL if beyond else WARNING,
        f"音画偏差最大 {worst / 1e6:+.0f} ms（{side}），"
        f"超出 +{config.drift_lead_ms}/−{config.drift_lag_ms} ms "
        f"(A/V offset up to {worst / 1e6:+.0f} ms over {len(run)} video segments)",
        objects=tuple(v.rec.key for v, _ in run),
    )
