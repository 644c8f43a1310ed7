"""Sans-I/O plan of the working copy: which master segments go where on the session's timeline,
and where each picture shows a gap card instead of media.

Layout by role: the big picture is the judge in a hearing (速裁庭审: the judge's remote source,
when it sent video), else `main`; the picture-in-picture is the next camera (`panorama`, or the
room in a hearing); every other source with video (remote participants: prosecutor, lawyer,
clerk...) is a small tile (`tiles`, lanes "tile0", "tile1"...), labelled with its role. Every
source's audio is in the mix (each microphone is its own master track).

The timeline runs from the session start to its stop (wall clock, UTC ns); every segment is placed
at its own `wall_first_ns`, so gaps keep their real length and the burned-in clock (derived from
the timeline position) shows the recording's own wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tonglu.integrity.checks.intervals import merge, subtract
from tonglu.integrity.session import Seg, SessionView
from tonglu.integrity.timefmt import iso_utc

NS = 1_000_000_000
MIN_CARD_NS = 100_000_000  # holes shorter than this (a few frames) get no card


@dataclass(frozen=True)
class Placed:
    seg: Seg
    offset_ns: int  # from the timeline start
    slot_ns: int  # until the next segment of the track starts (its concat `duration`)


@dataclass(frozen=True)
class Card:
    lane: str  # "main" (full picture) or "pip"
    start_ns: int  # from the timeline start
    end_ns: int
    seconds: int

    @property
    def text(self) -> str:
        return f"录像中断 {self.seconds} 秒 (gap)"


@dataclass
class Plan:
    session: str
    t0_ns: int
    t1_ns: int
    main: str | None
    pip: str | None
    video: dict[str, list[Placed]] = field(default_factory=dict)  # lane -> placed segments
    tiles: list[str] = field(default_factory=list)  # further sources, lanes "tile0", "tile1", ...
    labels: dict[str, str] = field(default_factory=dict)  # source -> its caption (role, name)
    audio: dict[str, list[Placed]] = field(default_factory=dict)  # source -> placed segments
    cards: list[Card] = field(default_factory=list)
    excluded: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return self.t1_ns - self.t0_ns

    def segments(self) -> list[Seg]:
        out = [p.seg for lane in self.video.values() for p in lane]
        out += [p.seg for src in self.audio.values() for p in src]
        return out


def _place(segs: list[Seg], t0: int, t1: int) -> list[Placed]:
    segs = [
        s
        for s in sorted(segs, key=lambda s: (s.rec.wall_first_ns, s.rec.index))
        if s.rec.wall_last_ns > t0 and s.rec.wall_first_ns < t1
    ]
    out = []
    for i, s in enumerate(segs):
        nxt = segs[i + 1].rec.wall_first_ns if i + 1 < len(segs) else s.rec.wall_last_ns
        slot = max(nxt, s.rec.wall_first_ns + 1_000_000) - s.rec.wall_first_ns
        out.append(Placed(s, s.rec.wall_first_ns - t0, slot))
    return out


HEARING_ROLE_ORDER = ("judge", "prosecutor", "lawyer", "clerk", "interpreter", "defendant", "other")
ROLE_CAPTIONS = {"judge": "审判员", "prosecutor": "公诉人", "lawyer": "辩护律师", "clerk": "书记员",
                 "interpreter": "翻译", "defendant": "被告人", "other": "其他"}


def remote_roles(view: SessionView) -> dict[str, dict[str, str]]:
    """{source: {"role", "name"}} of the session's remote participants (first join kept)."""
    out: dict[str, dict[str, str]] = {}
    for a in view.participants:
        src = a.body.get("source")
        if isinstance(src, str) and a.body.get("event") == "joined" and src not in out:
            out[src] = {"role": str(a.body.get("role", "")), "name": str(a.body.get("name", ""))}
    return out


def layout(view: SessionView) -> tuple[str | None, str | None, list[str], dict[str, str]]:
    """(big picture, picture-in-picture, tiles, captions): see the module docstring."""
    main, pip = choose_cameras(view)
    tracks = view.tracks()
    remote = remote_roles(view)
    hearing = view.facts.get("kind") == "hearing"
    with_video = [src for src in view.sources() if f"{src}/video" in tracks]
    remote_video = sorted(
        (s for s in with_video if s in remote),
        key=lambda s: (HEARING_ROLE_ORDER.index(remote[s]["role"]) if remote[s]["role"] in HEARING_ROLE_ORDER
                       else 99, s),
    )
    if hearing:
        judges = [s for s in remote_video if remote[s]["role"] == "judge"]
        if judges:
            pip = main
            main = judges[0]
    tiles: list[str] = []
    for s in [*remote_video, *with_video]:
        if s not in (main, pip) and s not in tiles:
            tiles.append(s)
    captions = {}
    for src in [main, pip, *tiles]:
        if src is None:
            continue
        if src in remote:
            r = remote[src]
            captions[src] = f"{ROLE_CAPTIONS.get(r['role'], r['role'])} {r['name']}".strip()
        elif hearing:  # the room's cameras: the defendant's seat, close-up and panorama
            captions[src] = "被告人 全景" if src == "panorama" else "被告人"
    return main, pip, tiles, captions


def choose_cameras(view: SessionView) -> tuple[str | None, str | None]:
    tracks = view.tracks()
    with_video = [src for src in view.sources() if f"{src}/video" in tracks]
    expected = [s for s, m in view.expected_sources.items() if m.get("kind", "camera") == "camera"]
    candidates: list[str | None] = [*expected, *with_video] or [None]
    main = "main" if "main" in expected or "main" in with_video else candidates[0]
    others = [s for s in (*expected, *with_video) if s != main]
    pip = "panorama" if "panorama" in others else (others[0] if others else None)
    return main, pip


def plan(view: SessionView, excluded_keys: set[str] | None = None) -> Plan:
    """`excluded_keys`: segments that cannot be used (missing or altered): shown as gaps."""
    excluded_keys = excluded_keys or set()
    bounds = view.media_bounds()
    t0 = view.start_ns if view.start_ns is not None else (bounds[0] if bounds else 0)
    t1 = view.stop_ns if view.stop_ns is not None else (bounds[1] if bounds else t0)
    if bounds is not None and view.start_ns is None:
        t0 = min(t0, bounds[0])
    t1 = max(t1, t0 + NS)
    main, pip, tiles, captions = layout(view)
    p = Plan(view.session, t0, t1, main, pip, tiles=tiles, labels=captions)
    tracks = view.tracks()
    for seg in view.segments:
        if seg.rec.key in excluded_keys:
            p.excluded.append(
                {"key": seg.rec.key, "sha256": seg.rec.sha256, "start": iso_utc(seg.rec.wall_first_ns)}
            )
    lanes = [("main", main), ("pip", pip), *((f"tile{i}", src) for i, src in enumerate(tiles))]
    for lane, source in lanes:
        if source is None:
            continue
        segs = [s for s in tracks.get(f"{source}/video", []) if s.rec.key not in excluded_keys]
        p.video[lane] = _place(segs, t0, t1)
        covered = merge((s.rec.wall_first_ns, s.rec.wall_last_ns) for s in segs)
        for lo, hi in subtract((t0, t1), covered):
            if hi - lo >= MIN_CARD_NS:
                p.cards.append(Card(lane, lo - t0, hi - t0, max(1, round((hi - lo) / NS))))
    audio_sources = [main, pip, *tiles, *(src for src in view.sources() if src not in (main, pip, *tiles))]
    for source in audio_sources:
        if source is None:
            continue
        segs = [s for s in tracks.get(f"{source}/audio", []) if s.rec.key not in excluded_keys]
        if segs:
            p.audio[source] = _place(segs, t0, t1)
    return p
