"""Coverage: does each expected source's media cover the session from start to stop, and does
the 笔录 (written record) lie inside the recording?

The session runs from its `session_start` entry to its `session_stop` entry (or `now` while it
is still recording, less `live_tail_s` for segments not yet sealed). Time before a track's first
segment and after its last one is a `coverage` hole unless the recorder reported it as a gap. An
expected source that never sent any media is `never_published`; a camera that sent pictures but
never sound gets the same finding for its audio track (REQUIREMENTS §13 needs the audio).
"""

from __future__ import annotations

from tonglu.integrity.checks.intervals import subtract
from tonglu.integrity.checks.tracks import hole_threshold_ns, recorder_gap_cover
from tonglu.integrity.config import AnalysisConfig
from tonglu.integrity.findings import COVERAGE, CRITICAL, NEVER_PUBLISHED, RECORD_TIME_OUTSIDE, WARNING, Finding
from tonglu.integrity.session import SessionView
from tonglu.integrity.timefmt import duration_text, parse_iso

RECORD_SOURCE = "笔录"


def session_end_ns(view: SessionView, now_ns: int | None, config: AnalysisConfig) -> int | None:
    """The end of the interval the media must cover; None while recording with no `now`."""
    if view.stop_ns is not None:
        return view.stop_ns
    if now_ns is None:
        return None
    return now_ns - config.live_tail_s * 1_000_000_000


def check(view: SessionView, config: AnalysisConfig, now_ns: int | None) -> list[Finding]:
    out: list[Finding] = []
    if view.start_ns is None:
        return out
    start = view.start_ns
    end = session_end_ns(view, now_ns, config)
    tracks = view.tracks()
    for source, meta in view.expected_sources.items():
        source_tracks = {
            tid.split("/", 1)[1]: segs for tid, segs in tracks.items() if tid.split("/", 1)[0] == source
        }
        if not source_tracks:
            stop = end if end is not None and end > start else (now_ns or start)
            out.append(
                Finding(
                    NEVER_PUBLISHED,
                    source,
                    "*",
                    start,
                    max(start, stop),
                    CRITICAL,
                    f"预期信号源「{meta.get('label', source)}」从未推流，无任何录像 "
                    f"(expected source {source} never published any media)",
                )
            )
            continue
        if (
            meta.get("kind", "camera") == "camera"
            and "audio" not in source_tracks
            and "video" in source_tracks
        ):
            stop = end if end is not None and end > start else (now_ns or start)
            out.append(
                Finding(
                    NEVER_PUBLISHED,
                    source,
                    "audio",
                    start,
                    max(start, stop),
                    WARNING,
                    f"信号源「{meta.get('label', source)}」只有画面，没有声音 "
                    f"(source {source} sent video but never audio)",
                )
            )
        for track, segs in source_tracks.items():
            threshold = hole_threshold_ns(segs[0], config)
            cover = recorder_gap_cover(view, source, track, tolerance_ns=threshold)
            holes = [(start, segs[0].rec.wall_first_ns, "开始后", "after session start")]
            if end is not None:
                last_end = max(s.rec.wall_last_ns for s in segs)
                holes.append((last_end, end, "结束前", "before session stop"))
            for lo0, hi0, zh, en in holes:
                if hi0 - lo0 <= threshold:
                    continue
                for lo, hi in subtract((lo0, hi0), cover):
                    if hi - lo <= threshold:
                        continue
                    severity = CRITICAL if hi - lo > config.critical_hole_s * 1_000_000_000 else WARNING
                    out.append(
                        Finding(
                            COVERAGE,
                            source,
                            track,
                            lo,
                            hi,
                            severity,
                            f"会话{zh} {duration_text(hi - lo)} 无录像 "
                            f"({(hi - lo) / 1e9:.3f} s without media {en})",
                        )
                    )
    out.extend(check_record_times(view, config))
    return out


def check_record_times(view: SessionView, config: AnalysisConfig) -> list[Finding]:
    rt = view.record_times
    bounds = view.media_bounds()
    if rt is None:
        return []
    if bounds is None:
        bounds = (view.start_ns or 0, view.start_ns or 0)
    first, last = bounds
    tol = config.record_time_tolerance_ms * 1_000_000
    out: list[Finding] = []
    for name, zh in (("record_start_iso", "开始"), ("record_end_iso", "结束")):
        raw = rt.body.get(name)
        if not isinstance(raw, str) or not raw:
            continue
        try:
            t = parse_iso(raw)
        except ValueError:
            out.append(
                Finding(
                    RECORD_TIME_OUTSIDE,
                    RECORD_SOURCE,
                    "*",
                    first,
                    first,
                    CRITICAL,
                    f"笔录{zh}时间无法识别：{raw!r} (unreadable record time {name})",
                )
            )
            continue
        if t < first - tol:
            lo, hi = t, first
        elif t > last + tol:
            if view.recording:
                continue  # still recording: the media may yet reach it
            lo, hi = last, t
        else:
            continue
        out.append(
            Finding(
                RECORD_TIME_OUTSIDE,
                RECORD_SOURCE,
                "*",
                lo,
                hi,
                CRITICAL,
                f"笔录记载的{zh}时间 {raw} 在录像范围之外，相差 {duration_text(hi - lo)} "
                f"(the written record's {name.split('_')[1]} time lies {(hi - lo) / 1e9:.3f} s "
                "outside the recording)",
            )
        )
    return out
