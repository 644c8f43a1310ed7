"""Start-up recovery: seal segment files a killed recorder left in the spool's staging area.

Each open segment has a sidecar (`<file>.seg.json`) written when it was opened, holding the
manifest fields known then. The file itself was written with `flush_packets`, so everything up to
the kill is readable; we demux it to count frames and find its end, then seal it like any other
segment with `recovered: true`.
"""

from __future__ import annotations

import fractions
import json
import logging
from pathlib import Path
from typing import Any

import av

from recorder.context import RecorderContext
from recorder.track import SIDECAR, remove_empty, seal_file, staged_sidecars
from storage.logctx import context_logger
from storage.manifest import SegmentRecord

log = logging.getLogger(__name__)


def probe_end(path: Path, clock_rate: int) -> tuple[int, int]:
    """(frames, media duration in RTP ticks) of a possibly truncated segment file."""
    frames = 0
    end = 0
    try:
        with av.open(str(path)) as c:
            stream = c.streams[0]
            tb = stream.time_base or fractions.Fraction(1, 1000)
            first = None
            for pkt in c.demux(stream):
                if pkt.pts is None:
                    continue
                frames += 1
                if first is None:
                    first = pkt.pts
                e = pkt.pts - first + (pkt.duration or 0)
                end = max(end, int(e * tb * clock_rate))
    except (av.FFmpegError, OSError, IndexError) as exc:
        log.warning("recovered segment %s is unreadable after %d frames: %s", path, frames, exc)
    return frames, end


def recover_session(ctx: RecorderContext, session: str, room: str = "") -> list[SegmentRecord]:
    """Blocking. Seal every staged segment of `session`; returns their records."""
    out = []
    for sidecar in staged_sidecars(ctx.spool.staging, session):
        media = sidecar.with_name(sidecar.name.removesuffix(SIDECAR))
        try:
            meta: dict[str, Any] = json.loads(sidecar.read_bytes())["record"]
        except (OSError, ValueError, KeyError) as exc:
            log.error("unreadable segment sidecar %s: %s", sidecar, exc)
            continue
        if not media.exists():
            sidecar.unlink(missing_ok=True)  # it was sealed just before the crash
            continue
        frames, ticks = probe_end(media, int(meta["clock_rate"]))
        meta.update(
            frames=frames,
            rtp_last=meta["rtp_first"] + ticks,
            recovered=True,
            wall_last_ns=meta["wall_first_ns"] + ticks * 1_000_000_000 // int(meta["clock_rate"]),
        )
        ct = (
            "audio/webm"
            if meta["media"] == "audio"
            else ("video/mp2t" if meta["container"] == "mpegts" else "video/webm")
        )
        lg = context_logger(__name__, room=room, session=session, track=f"{meta['source']}/{meta['track']}")
        out.append(seal_file(ctx, session, meta, media, ct, lg.bind(segment=meta["index"])))
        remove_empty(media.parent)
    return out
