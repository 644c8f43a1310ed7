"""The coverage timeline picture: inline SVG, one lane per source/track.

Green: recorded media. Red: findings on that lane (gaps, holes, failures). Hatched amber band on
top: breaks. Blue ticks: markers. The axis shows Asia/Shanghai times (UTC noted in the caption).
"""

from __future__ import annotations

from html import escape

from tonglu.integrity.analysis import Analysis
from tonglu.integrity.checks.intervals import merge
from tonglu.integrity.findings import CRITICAL, INFO, WARNING
from tonglu.integrity.timefmt import local_time_only

WIDTH = 960
LABEL_W = 170
LANE_H = 26
TOP = 34


def _lanes(analysis: Analysis) -> list[tuple[str, str]]:
    view = analysis.view
    lanes: list[tuple[str, str]] = []
    tracks = view.tracks()
    for source in view.sources():
        own = sorted(t.split("/", 1)[1] for t in tracks if t.split("/", 1)[0] == source)
        for track in own or ["*"]:
            lanes.append((source, track))
        if own and source in view.expected_sources and "audio" not in own:
            lanes.append((source, "audio"))
    return lanes


def render(analysis: Analysis) -> str:
    view = analysis.view
    lanes = _lanes(analysis)
    bounds = view.media_bounds()
    starts = [x for x in (view.start_ns, bounds[0] if bounds else None) if x is not None]
    ends = [
        x
        for x in (view.stop_ns, bounds[1] if bounds else None, analysis.now_ns if view.recording else None)
        if x is not None
    ]
    ends += [f.end_ns for f in analysis.findings]
    starts += [f.start_ns for f in analysis.findings]
    if not starts or not ends:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    t0, t1 = min(starts), max(ends)
    t1 = max(t1, t0 + 1_000_000_000)
    span = t1 - t0
    plot_w = WIDTH - LABEL_W - 10
    height = TOP + LANE_H * max(1, len(lanes)) + 30

    def x(ns: int) -> float:
        return LABEL_W + (ns - t0) * plot_w / span

    def w(a: int, b: int) -> float:
        return max(1.5, (b - a) * plot_w / span)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" '
        'role="img" aria-label="录像覆盖时间轴 coverage timeline" '
        'font-family="Noto Sans CJK SC, sans-serif" font-size="12">',
        '<defs><pattern id="brk" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)">'
        '<rect width="3" height="6" fill="#f0b429"/></pattern></defs>',
    ]
    for b in view.breaks:
        end = b.end_ns if b.end_ns is not None else t1
        parts.append(
            f'<rect x="{x(b.start_ns):.1f}" y="4" width="{w(b.start_ns, end):.1f}" height="12" '
            f'fill="url(#brk)">'
            f"<title>休息/中断 break: {escape(b.reason_code)} {escape(b.text)}</title></rect>"
        )
    for m in view.markers:
        t = int(m.body.get("time_ns", m.time_ns))
        parts.append(
            f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="18" y2="{height - 26}" stroke="#2b6cb0" '
            f'stroke-width="1.5"><title>标记 marker: {escape(str(m.body.get("note", "")))}</title></line>'
        )
    tracks = view.tracks()
    colors = {CRITICAL: "#d62728", WARNING: "#ff7f0e"}
    for i, (source, track) in enumerate(lanes):
        y = TOP + i * LANE_H
        label = view.expected_sources.get(source, {}).get("label", source)
        parts.append(f'<text x="4" y="{y + 16}">{escape(str(label))} · {escape(track)}</text>')
        parts.append(
            f'<rect x="{LABEL_W}" y="{y + 3}" width="{plot_w}" height="{LANE_H - 8}" fill="#eef1f4"/>'
        )
        segs = tracks.get(f"{source}/{track}", [])
        for lo, hi in merge((s.rec.wall_first_ns, s.rec.wall_last_ns) for s in segs):
            parts.append(
                f'<rect x="{x(lo):.1f}" y="{y + 3}" width="{w(lo, hi):.1f}" height="{LANE_H - 8}" '
                f'fill="#2ca02c"/>'
            )
        for f in analysis.findings:
            if f.severity == INFO:
                continue  # e.g. "upload pending": not a gap, would hide the media underneath
            on_lane = f.source in (source, "*") and (f.track in (track, "*") or track in f.track.split("+"))
            if not on_lane:
                continue
            state = "已说明 explained" if f.explained else "未说明 unexplained"
            parts.append(
                f'<rect x="{x(f.start_ns):.1f}" y="{y + 1}" width="{w(f.start_ns, f.end_ns):.1f}" '
                f'height="{LANE_H - 4}" fill="{colors.get(f.severity, "#d62728")}" '
                f'fill-opacity="{0.45 if f.explained else 0.9}" class="finding" data-id="{f.id}">'
                f"<title>{escape(f.kind)} {f.id} ({state}): {escape(f.detail)}</title></rect>"
            )
    axis_y = TOP + LANE_H * max(1, len(lanes)) + 4
    parts.append(f'<line x1="{LABEL_W}" x2="{LABEL_W + plot_w}" y1="{axis_y}" y2="{axis_y}" stroke="#333"/>')
    ticks = 6
    for k in range(ticks + 1):
        t = t0 + span * k // ticks
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{axis_y}" y2="{axis_y + 5}" stroke="#333"/>')
        anchor = "start" if k == 0 else "end" if k == ticks else "middle"
        parts.append(
            f'<text x="{x(t):.1f}" y="{axis_y + 18}" text-anchor="{anchor}">{local_time_only(t)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
