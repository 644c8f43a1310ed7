"""Start-up recovery: finish what a killed recorder left in the spool's staging area.

Each segment has a sidecar (`<file>.seg.json`) from the moment it is opened until its manifest
entry is in the ledger (`recorder.track.seal_file`):
- *open* (written when the segment was opened, with the fields known then): the file was written
  with `flush_packets`, so everything up to the kill is readable; we demux it to count frames and
  find its end, then seal it like any other segment with `recovered: true`;
- *sealing* (the final record, written before the file is moved into the spool): if the file is
  still in staging it is sealed from that record; if it was already moved into the spool but its
  entry is not in the ledger, the entry is appended from the sidecar (`recovered: true`), so the
  spooled object is never an orphan; if the entry is there, only the sidecar is removed.
"""

from __future__ import annotations

import fractions
import json
import logging
import os
from pathlib import Path
from typing import Any

import av

from tonglu.evidence.fsutil import fsync_dir
from tonglu.evidence.logctx import ContextLogger, context_logger
from tonglu.evidence.manifest import SegmentRecord
from tonglu.evidence.spool import Spool
from tonglu.recorder.context import RecorderContext
from tonglu.recorder.track import SIDECAR, remove_empty, seal_file, staged_sidecars

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


def _content_type(meta: dict[str, Any]) -> str:
    if meta["media"] == "audio":
        return "audio/webm"
    return "video/mp2t" if meta["container"] == "mpegts" else "video/webm"


def spooled_metadata(spool: Spool) -> dict[str, dict[str, Any]]:
    """{key: spool metadata} of the items in `ready/`, completing any interrupted between the data
    rename and the metadata rename (a crash inside `Spool.put_file`)."""
    out: dict[str, dict[str, Any]] = {}
    for meta_path in sorted(spool.ready.iterdir()):
        name = meta_path.name
        base, sep, rest = name.partition(".meta.json")
        if not sep or rest not in ("", ".pending"):
            continue
        try:
            meta = json.loads(meta_path.read_bytes())
        except (OSError, ValueError):
            continue
        data = spool.ready / f"{base}.data"
        if not data.exists():
            continue
        if rest == ".pending":
            os.replace(meta_path, spool.ready / f"{base}.meta.json")
            fsync_dir(spool.ready)
        if isinstance(meta, dict) and isinstance(meta.get("key"), str):
            out[meta["key"]] = meta
    return out


def _finish_seal(
    ctx: RecorderContext,
    session: str,
    meta: dict[str, Any],
    media: Path,
    sidecar: Path,
    in_ledger: set[str],
    spooled: dict[str, dict[str, Any]],
    lg: ContextLogger,
) -> SegmentRecord | None:
    """A sidecar holding a final record: the crash came somewhere inside `seal_file`."""
    key = meta["key"]
    if key in in_ledger:
        sidecar.unlink(missing_ok=True)  # killed after the entry was appended
        return None
    meta = {**meta, "recovered": True}
    if media.exists():  # killed before the move into the spool: seal it now
        return seal_file(ctx, session, meta, media, _content_type(meta), lg)
    item = spooled.get(key)
    if item is None:
        lg.warning("segment %s is neither staged nor spooled (uploaded already?); entry appended from its sidecar", key)
    elif (item.get("sha256"), item.get("size")) != (meta["sha256"], meta["bytes"]):
        lg.error("spooled segment %s differs from its sealed record; entry appended, the verifier will name it", key)
    rec = SegmentRecord(**meta)
    ctx.append(session, "segment", rec.to_body())
    sidecar.unlink(missing_ok=True)
    lg.warning("segment entry appended from its sidecar after a crash between spooling and the ledger")
    return rec


def recover_session(ctx: RecorderContext, session: str, room: str = "") -> list[SegmentRecord]:
    """Blocking. Finish every staged segment of `session`; returns the records appended."""
    out: list[SegmentRecord] = []
    sidecars = staged_sidecars(ctx.spool.staging, session)
    if not sidecars:
        return out
    in_ledger = {e.body["key"] for e in ctx.ledger.entries(session) if e.kind == "segment"}
    spooled: dict[str, dict[str, Any]] | None = None
    for sidecar in sidecars:
        media = sidecar.with_name(sidecar.name.removesuffix(SIDECAR))
        try:
            doc = json.loads(sidecar.read_bytes())
            meta: dict[str, Any] = doc["record"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("unreadable segment sidecar %s: %s", sidecar, exc)
            continue
        lg = context_logger(__name__, room=room, session=session, track=f"{meta['source']}/{meta['track']}")
        lg = lg.bind(segment=meta["index"])
        if doc.get("sealing"):
            if spooled is None:
                spooled = spooled_metadata(ctx.spool)
            rec = _finish_seal(ctx, session, meta, media, sidecar, in_ledger, spooled, lg)
            if rec is not None:
                out.append(rec)
            remove_empty(media.parent)
            continue
        if not media.exists():
            sidecar.unlink(missing_ok=True)  # killed before the writer created the file
            continue
        frames, ticks = probe_end(media, int(meta["clock_rate"]))
        meta.update(
            frames=frames,
            rtp_last=meta["rtp_first"] + ticks,
            recovered=True,
            wall_last_ns=meta["wall_first_ns"] + ticks * 1_000_000_000 // int(meta["clock_rate"]),
        )
        out.append(seal_file(ctx, session, meta, media, _content_type(meta), lg))
        remove_empty(media.parent)
    return out
