"""The working copy: an MP4 (H.264/AAC, yuv420p, faststart) picture-in-picture of the main and
panorama cameras, built from the master segments with ffmpeg (driven through ffmpeg-python).

- Every segment sits at its own wall-clock position (concat demuxer `duration` directives plus an
  input offset), the `fps` filter gives a constant 25 fps timeline from the session start, and every
  stretch a camera has no media is covered by a card 「录像中断 N 秒 (gap)」 for its real duration:
  gaps are shown, never closed up. So the MP4 lasts exactly session start → stop.
- Date and 24-hour time (Asia/Shanghai) are burned in by `drawtext` from the timeline position:
  ``%{pts:gmtime:<session start in s + 8 h>}``, i.e. the recording's own wall clock.
- Sound: the cameras' microphones mixed (silence where there is none).
- A sidecar JSON lists every master segment used, with its SHA-256 (each re-hashed here; a segment
  that is missing or does not match the manifest is left out and shown as a gap, and named).
- The MP4 and sidecar go to `data_dir/workcopies/<sid>/` (for download) and, through the spool,
  to the work bucket (`bucket=WORK`, no Object Lock: a derivative, not evidence).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from tonglu.evidence import keys
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.spool import WORK
from tonglu.integrity.errors import ToolError
from tonglu.integrity.service import Review
from tonglu.integrity.timefmt import NS, SHANGHAI_OFFSET_S, iso_utc
from tonglu.integrity.workcopy_plan import Card, Placed, Plan, plan

FPS = 25
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
)


def ffmpeg_binary() -> str:
    if os.path.exists("/usr/bin/ffmpeg"):
        return "/usr/bin/ffmpeg"
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception as exc:
        raise ToolError(f"ffmpeg 不可用 (no ffmpeg binary found: {exc})") from exc


def cjk_font() -> str:
    for path in FONT_CANDIDATES:
        if os.path.exists(path):
            return path
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{file}", "Noto Sans CJK SC"], capture_output=True, text=True, timeout=10
        )
        if out.returncode == 0 and out.stdout and os.path.exists(out.stdout):
            return out.stdout
    except (OSError, subprocess.TimeoutExpired):
        pass
    raise ToolError("找不到中文字体 no CJK font (install Debian package fonts-noto-cjk)")


def clock_expansion(t0_ns: int) -> str:
    """drawtext expansion showing the Beijing wall clock of each frame (timeline starts at t0)."""
    whole, frac = divmod(t0_ns, NS)
    offset = f"{whole + SHANGHAI_OFFSET_S}.{frac:09d}"
    return "%{pts:gmtime:" + offset + ":%Y-%m-%d %H\\:%M\\:%S}"


@dataclass(frozen=True)
class Geometry:
    width: int
    height: int

    @property
    def pip_w(self) -> int:
        return max(2, int(self.width * 0.3) // 2 * 2)

    @property
    def pip_h(self) -> int:
        return max(2, int(self.height * 0.3) // 2 * 2)

    @property
    def margin(self) -> int:
        return max(2, self.height // 40 * 2 // 2)

    @property
    def pip_x(self) -> int:
        return self.width - self.pip_w - self.margin

    @property
    def pip_y(self) -> int:
        return self.margin

    @property
    def clock_size(self) -> int:
        return max(10, self.height // 18)

    @property
    def clock_x(self) -> int:
        return self.margin * 2

    @property
    def clock_y(self) -> int:
        return self.height - self.clock_size - self.margin * 3


def geometry_for(height: int) -> Geometry:
    height = max(90, height // 2 * 2)
    return Geometry(width=(height * 16 // 9) // 2 * 2, height=height)


def clock_filter_kwargs(geo: Geometry, font: str, textfile: str) -> dict[str, Any]:
    """The one drawtext the burned-in clock uses (tests render reference text with the same)."""
    return {
        "fontfile": font,
        "textfile": textfile,
        "fontsize": geo.clock_size,
        "fontcolor": "white",
        "box": 1,
        "boxcolor": "black",
        "boxborderw": max(2, geo.clock_size // 5),
        "x": geo.clock_x,
        "y": geo.clock_y,
    }


def _concat_list(placed: list[Placed], paths: dict[str, Path], target: Path) -> float:
    lines = ["ffconcat version 1.0"]
    for p in placed:
        rec = p.seg.rec
        span = rec.wall_last_ns - rec.wall_first_ns
        path = str(paths[rec.key]).replace("'", "'\\''")
        lines.append(f"file '{path}'")
        lines.append(f"duration {p.slot_ns / NS:.9f}")
        if p.slot_ns < span:  # overlaps the next segment: cut so timestamps never run backwards
            lines.append(f"outpoint {p.slot_ns / NS:.9f}")
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return placed[0].offset_ns / NS


def _video_lane(
    placed: list[Placed], paths: dict[str, Path], tmp: Path, name: str, w: int, h: int, dur: float
) -> Any:
    if not placed:
        return ffmpeg.input(f"color=c=black:s={w}x{h}:r={FPS}:d={dur:.6f}", f="lavfi").video
    lst = tmp / f"{name}.ffconcat"
    offset = _concat_list(placed, paths, lst)
    v = ffmpeg.input(str(lst), f="concat", safe=0, itsoffset=f"{offset:.9f}").video
    v = v.filter("fps", fps=FPS, start_time=0)
    v = v.filter("scale", w, h, force_original_aspect_ratio="decrease")
    v = v.filter("pad", w, h, "(ow-iw)/2", "(oh-ih)/2", color="black").filter("setsar", 1)
    v = v.filter("tpad", stop_mode="clone", stop_duration=f"{dur:.6f}")
    return v.filter("trim", end=f"{dur:.6f}").filter("setpts", "PTS-STARTPTS")


def _audio_lane(placed: list[Placed], paths: dict[str, Path], tmp: Path, name: str, dur: float) -> Any:
    lst = tmp / f"{name}.ffconcat"
    offset = _concat_list(placed, paths, lst)
    a = ffmpeg.input(str(lst), f="concat", safe=0, itsoffset=f"{offset:.9f}").audio
    a = a.filter("aresample", 48000, **{"async": 1, "first_pts": 0})
    a = a.filter("aformat", sample_fmts="fltp", channel_layouts="mono")
    return a.filter("apad").filter("atrim", end=f"{dur:.6f}")


def _cards(stream: Any, cards: list[Card], tmp: Path, lane: str, w: int, h: int, font: str) -> Any:
    """A dark card with 「录像中断 N 秒 (gap)」 over the lane for exactly each gap's duration."""
    for i, card in enumerate(cards):
        enable = f"between(t,{card.start_ns / NS:.6f},{card.end_ns / NS:.6f})"
        text_file = tmp / f"card-{lane}-{i}.txt"
        text_file.write_text(card.text, encoding="utf-8")
        stream = stream.filter("drawbox", x=0, y=0, w=w, h=h, color="0x202020", t="fill", enable=enable)
        stream = stream.filter(
            "drawtext",
            fontfile=font,
            textfile=str(text_file),
            fontsize=max(8, h // 10),
            fontcolor="0xff5050",
            x="(w-text_w)/2",
            y="(h-text_h)/2",
            enable=enable,
        )
    return stream


def _caption(stream: Any, text: str | None, tmp: Path, lane: str, h: int, font: str, right: bool = False) -> Any:
    """The lane's source by role and name (「审判员 周某」) on a dark band at its bottom (left, or
    right for the big picture, whose bottom left holds the clock)."""
    if not text:
        return stream
    text_file = tmp / f"caption-{lane}.txt"
    text_file.write_text(text, encoding="utf-8")
    return stream.filter("drawtext", **caption_filter_kwargs(h, font, str(text_file), right=right))


def caption_filter_kwargs(h: int, font: str, textfile: str, *, right: bool = False) -> dict[str, Any]:
    """The drawtext of a lane's caption, for a lane `h` pixels high (tests render references with it)."""
    pad = max(2, h // 60)
    return {"fontfile": font, "textfile": textfile, "fontsize": max(8, h // 14), "fontcolor": "white", "box": 1,
            "boxcolor": "black@0.6", "boxborderw": max(2, h // 80), "x": f"w-text_w-{pad * 2}" if right else pad,
            "y": f"h-text_h-{max(2, h // 40)}"}


def build_graph(p: Plan, paths: dict[str, Path], tmp: Path, output: Path, geo: Geometry, font: str) -> Any:
    dur = p.duration_ns / NS
    base = _video_lane(p.video.get("main", []), paths, tmp, "main", geo.width, geo.height, dur)
    base = _cards(base, [c for c in p.cards if c.lane == "main"], tmp, "main", geo.width, geo.height, font)
    base = _caption(base, p.labels.get(p.main or ""), tmp, "main", geo.height, font, right=True)
    if p.pip is not None:
        pip = _video_lane(p.video.get("pip", []), paths, tmp, "pip", geo.pip_w, geo.pip_h, dur)
        pip = _cards(pip, [c for c in p.cards if c.lane == "pip"], tmp, "pip", geo.pip_w, geo.pip_h, font)
        pip = _caption(pip, p.labels.get(p.pip), tmp, "pip", geo.pip_h, font)
        pip = pip.filter("drawbox", x=0, y=0, w="iw", h="ih", color="white@0.8", t=2)
        base = ffmpeg.overlay(base, pip, x=geo.pip_x, y=geo.pip_y, eof_action="pass")
    for i, src in enumerate(p.tiles):  # further parties (hearing: prosecutor, lawyer, ...) down the left
        lane = f"tile{i}"
        tw, th = geo.pip_w // 2 // 2 * 2, geo.pip_h // 2 // 2 * 2
        tile = _video_lane(p.video.get(lane, []), paths, tmp, lane, tw, th, dur)
        tile = _cards(tile, [c for c in p.cards if c.lane == lane], tmp, lane, tw, th, font)
        tile = _caption(tile, p.labels.get(src), tmp, lane, th, font)
        tile = tile.filter("drawbox", x=0, y=0, w="iw", h="ih", color="white@0.8", t=2)
        base = ffmpeg.overlay(base, tile, x=geo.margin, y=geo.margin + i * (th + geo.margin), eof_action="pass")
    clock_file = tmp / "clock.txt"
    clock_file.write_text(clock_expansion(p.t0_ns), encoding="utf-8")
    base = base.filter("drawtext", **clock_filter_kwargs(geo, font, str(clock_file)))
    audios = [
        _audio_lane(placed, paths, tmp, f"audio{i}", dur)
        for i, placed in enumerate(p.audio.values())
        if placed
    ]
    if not audios:
        audio = ffmpeg.input(f"anullsrc=r=48000:cl=mono:d={dur:.6f}", f="lavfi").audio
    elif len(audios) == 1:
        audio = audios[0]
    else:
        audio = ffmpeg.filter(audios, "amix", inputs=len(audios), duration="longest", normalize=0)
        audio = audio.filter("atrim", end=f"{dur:.6f}")
    return ffmpeg.output(
        base,
        audio,
        str(output),
        vcodec="libx264",
        preset="veryfast",
        crf=23,
        pix_fmt="yuv420p",
        r=FPS,
        acodec="aac",
        audio_bitrate="96k",
        ar=48000,
        movflags="+faststart",
        t=f"{dur:.6f}",
        metadata=f"comment=tonglu workcopy session={p.session} t0_ns={p.t0_ns} clock=Asia/Shanghai",
        **{"metadata:g:1": f"creation_time={iso_utc(p.t0_ns)}"},
    ).global_args("-nostdin", "-hide_banner", "-loglevel", "error", "-y")


@dataclass(frozen=True)
class WorkcopyResult:
    session: str
    mp4: Path
    sidecar: Path
    key: str
    sha256: str
    bytes: int
    duration_ms: int
    segments: int
    cards: int
    excluded: int

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "mp4": str(self.mp4),
            "sidecar": str(self.sidecar),
            "key": self.key,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "duration_ms": self.duration_ms,
            "segments": self.segments,
            "cards": self.cards,
            "excluded": self.excluded,
        }


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _materialise(
    review: Review, segs: list[Any], dest: Path, progress: Callable[[float], None] | None = None
) -> tuple[dict[str, Path], set[str]]:
    """Copy each master segment locally, re-hashing it; mismatched or unreadable ones are excluded."""
    paths: dict[str, Path] = {}
    bad: set[str] = set()
    for i, seg in enumerate(segs):
        if progress is not None and i % 50 == 0:
            progress(i / max(1, len(segs)))
        rec = seg.rec
        target = dest / f"{len(paths) + len(bad):06d}.{rec.key.rsplit('.', 1)[-1]}"
        h = hashlib.sha256()
        try:
            with review.files.open(rec.key) as src, open(target, "wb") as out:
                while block := src.read(1 << 20):
                    h.update(block)
                    out.write(block)
        except (OSError, KeyError):
            bad.add(rec.key)
            continue
        if h.hexdigest() != rec.sha256:
            bad.add(rec.key)
            target.unlink(missing_ok=True)
            continue
        paths[rec.key] = target
    return paths, bad


def _run_ffmpeg(args: list[str], duration_s: float, progress: Callable[[float], None] | None) -> tuple[int, bytes]:
    """Run ffmpeg; with `progress`, report the fraction of the timeline encoded (from `-progress`)."""
    if progress is None:
        proc = subprocess.run(args, capture_output=True)
        return proc.returncode, proc.stderr
    args = [args[0], "-progress", "pipe:1", "-nostats", *args[1:]]
    with tempfile.TemporaryFile() as err, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err) as p:
        assert p.stdout is not None
        for raw in p.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith("out_time_us=") and duration_s > 0:
                try:
                    progress(min(1.0, int(line.split("=", 1)[1]) / 1e6 / duration_s))
                except ValueError:
                    pass
        rc = p.wait()
        err.seek(0)
        return rc, err.read()


def build_for_session(
    review: Review,
    session: str,
    *,
    height: int = 720,
    out_dir: Path | None = None,
    spool: bool = True,
    progress: Callable[[float], None] | None = None,
) -> WorkcopyResult:
    """`progress(frac)`, when given, is called as the work goes (0..1: copying and re-hashing the
    masters is the first 10 %, the ffmpeg encode the rest); it may raise to abort the build."""
    loaded = review.load(session)
    log = context_logger(__name__, session=session)
    out_dir = out_dir or review.settings.data_dir / "workcopies" / keys.safe_id(session, "session id")
    out_dir.mkdir(parents=True, exist_ok=True)
    geo = geometry_for(height)
    font = cjk_font()
    with tempfile.TemporaryDirectory(prefix="workcopy-", dir=out_dir) as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "seg").mkdir()
        first = plan(loaded.view)
        paths, bad = _materialise(
            review, first.segments(), tmp / "seg", None if progress is None else (lambda f: progress(f * 0.1))
        )
        p = plan(loaded.view, excluded_keys=bad) if bad else first
        out_tmp = tmp / "workcopy.mp4"
        graph = build_graph(p, paths, tmp, out_tmp, geo, font)
        args = graph.compile(cmd=ffmpeg_binary())
        log.info(
            "building working copy: %d segments, %d cards, %.1f s",
            len(paths),
            len(p.cards),
            p.duration_ns / NS,
        )
        rc, stderr = _run_ffmpeg(
            args, p.duration_ns / NS, None if progress is None else (lambda f: progress(0.1 + f * 0.89))
        )
        if rc != 0 or not out_tmp.exists():
            raise ToolError(
                f"ffmpeg 生成工作副本失败 (ffmpeg failed, exit {rc}): "
                f"{stderr.decode(errors='replace')[-800:]}"
            )
        digest = _sha256_file(out_tmp)
        size = out_tmp.stat().st_size
        made_from = [
            {
                "key": s.rec.key,
                "sha256": s.rec.sha256,
                "bytes": s.rec.bytes,
                "source": s.rec.source,
                "track": s.rec.track,
                "index": s.rec.index,
                "wall_first": iso_utc(s.rec.wall_first_ns),
                "wall_last": iso_utc(s.rec.wall_last_ns),
            }
            for s in p.segments()
        ]
        sidecar = {
            "kind": "tonglu-workcopy",
            "version": 1,
            "session": session,
            "mp4_sha256": digest,
            "mp4_bytes": size,
            "start": iso_utc(p.t0_ns),
            "end": iso_utc(p.t1_ns),
            "t0_ns": p.t0_ns,
            "t1_ns": p.t1_ns,
            "duration_ms": p.duration_ns // 1_000_000,
            "fps": FPS,
            "width": geo.width,
            "height": geo.height,
            "main_source": p.main,
            "pip_source": p.pip,
            "clock": "Asia/Shanghai (UTC+8), burned in from segment wall clock",
            "manifest_entries": len(loaded.entries),
            "cards": [
                {
                    "lane": c.lane,
                    "start_ms": c.start_ns // 1_000_000,
                    "end_ms": c.end_ns // 1_000_000,
                    "text": c.text,
                }
                for c in p.cards
            ],
            "made_from": made_from,
            "excluded": p.excluded,
        }
        name = f"workcopy-{digest[:16]}"
        mp4 = out_dir / f"{name}.mp4"
        side = out_dir / f"{name}.json"
        os.replace(out_tmp, mp4)
        side.write_bytes(json.dumps(sidecar, ensure_ascii=False, indent=1).encode())
    key = f"sessions/{session}/workcopy/{name}.mp4"
    if spool:
        staged = review.ledger.spool.staging_path(f"{name}.mp4")
        try:
            os.link(mp4, staged)
        except OSError:
            shutil.copyfile(mp4, staged)
        review.ledger.spool.put_file(
            key, staged, sha256=digest, size=size, content_type="video/mp4", bucket=WORK
        )
        review.ledger.spool.put_bytes(
            key.removesuffix(".mp4") + ".json",
            side.read_bytes(),
            content_type="application/json",
            bucket=WORK,
        )
    (out_dir / "latest.json").write_text(
        json.dumps({"mp4": mp4.name, "sidecar": side.name}), encoding="utf-8"
    )
    return WorkcopyResult(
        session,
        mp4,
        side,
        key,
        digest,
        size,
        p.duration_ns // 1_000_000,
        len(made_from),
        len(p.cards),
        len(p.excluded),
    )


def latest(review: Review, session: str) -> tuple[Path, Path] | None:
    d = review.settings.data_dir / "workcopies" / keys.safe_id(session, "session id")
    pointer = d / "latest.json"
    if not pointer.exists():
        return None
    doc = json.loads(pointer.read_text(encoding="utf-8"))
    mp4, side = d / doc["mp4"], d / doc["sidecar"]
    return (mp4, side) if mp4.exists() and side.exists() else None
