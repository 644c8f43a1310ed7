"""Prometheus metrics for `/metrics`: one snapshot of the running system per scrape.

`collect()` reads the parts (index DB, recorder status of the sessions recording, spool, the
transcription queue) and returns a `Snapshot`; `render()` turns it into the text exposition format
with a registry of its own per scrape (no process-global state, so several apps in one process,
as in tests, never mix their figures).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select

from tonglu.evidence.index import gaps, sessions

if TYPE_CHECKING:
    from tonglu.web.services import Services


@dataclass
class Snapshot:
    sessions_recording: int = 0
    streams_connected: int = 0
    tracks: list[dict[str, Any]] = field(default_factory=list)  # {session, source, track, packets, lost}
    open_gaps: int = 0
    gaps_total: dict[str, int] = field(default_factory=dict)  # reason -> count (manifest gap entries)
    spool_pending_items: int = 0
    spool_pending_bytes: int = 0
    upload_lag_s: float = 0.0  # age of the oldest spooled file the store has not confirmed
    queue: dict[str, int] = field(default_factory=dict)  # transcription queue counters
    job_latency_s: list[float] = field(default_factory=list)  # end of speech -> live transcript line
    errors: list[str] = field(default_factory=list)  # parts that could not be read


def _index_figures(services: Services, snap: Snapshot) -> list[str]:
    """Recording session ids and gap counts from the index DB (blocking: call in a thread)."""
    with services.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(sessions.c.id).where(sessions.c.state == "recording"))]
        for reason, n in conn.execute(select(gaps.c.reason, func.count()).group_by(gaps.c.reason)):
            snap.gaps_total[str(reason)] = int(n)
    return ids


def _spool_figures(services: Services, snap: Snapshot, now_s: float) -> None:
    pending = services.spool.pending()
    snap.spool_pending_items = len(pending)
    snap.spool_pending_bytes = sum(item.size for item in pending)
    oldest_ns = min((item.created_ns for item in pending), default=None)
    snap.upload_lag_s = max(0.0, now_s - oldest_ns / 1e9) if oldest_ns is not None else 0.0


def _queue_figures(services: Services, snap: Snapshot) -> None:
    transcripts = services.transcripts
    if transcripts is None:
        return
    snap.queue = dict(transcripts.queue.stats())
    snap.job_latency_s = transcripts.queue.live_latencies_s()


async def collect(services: Services) -> Snapshot:
    snap = Snapshot()
    now_s = time.time()
    recording: list[str] = []
    try:
        if services.index is not None:
            recording = await asyncio.to_thread(_index_figures, services, snap)
        elif services.recorder is not None:  # no index cache in this process: ask the recorder
            recording = [s["id"] for s in await services.recorder.list_sessions() if s.get("state") == "recording"]
    except Exception as exc:  # the DB is down: say so, never 500
        snap.errors.append(f"sessions: {type(exc).__name__}")
    snap.sessions_recording = len(recording)
    if services.recorder is not None:
        for sid in recording:
            try:
                status = await services.recorder.status(sid)
            except Exception as exc:
                snap.errors.append(f"recorder {sid}: {type(exc).__name__}")
                continue
            snap.open_gaps += len(status.get("open_gaps") or [])
            for source, entry in (status.get("sources") or {}).items():
                snap.streams_connected += 1 if entry.get("connected") else 0
                for track, stats in ((entry.get("peer") or {}).get("tracks") or {}).items():
                    snap.tracks.append({"session": sid, "source": source, "track": track,
                                        "packets": int(stats.get("packets") or 0),
                                        "lost": int(stats.get("packets_lost") or 0)})
    for part, fn in (("spool", lambda: _spool_figures(services, snap, now_s)),
                     ("queue", lambda: _queue_figures(services, snap))):
        try:
            await asyncio.to_thread(fn)
        except Exception as exc:
            snap.errors.append(f"{part}: {type(exc).__name__}")
    return snap


def render(snap: Snapshot) -> bytes:
    reg = CollectorRegistry()

    def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> None:
        g = Gauge(name, doc, list(labels or {}), registry=reg)
        (g.labels(**labels) if labels else g).set(value)

    gauge("tonglu_sessions_recording", "Sessions recording now", snap.sessions_recording)
    gauge("tonglu_streams_connected", "Sources publishing now (connected WHIP peers)", snap.streams_connected)
    gauge("tonglu_open_gaps", "Gaps open now (media not arriving on a track)", snap.open_gaps)
    packets = Gauge("tonglu_track_packets", "RTP packets received by a live track", ["session", "source", "track"],
                    registry=reg)
    lost = Gauge("tonglu_track_packets_lost", "RTP packets lost (not repaired) on a live track",
                 ["session", "source", "track"], registry=reg)
    for t in snap.tracks:
        packets.labels(t["session"], t["source"], t["track"]).set(t["packets"])
        lost.labels(t["session"], t["source"], t["track"]).set(t["lost"])
    g = Gauge("tonglu_gaps", "Gap entries in the manifests, by reason", ["reason"], registry=reg)
    for reason, n in sorted(snap.gaps_total.items()):
        g.labels(reason).set(n)
    gauge("tonglu_spool_pending_items", "Spooled files the object store has not confirmed", snap.spool_pending_items)
    gauge("tonglu_spool_pending_bytes", "Bytes of spooled files not yet confirmed", snap.spool_pending_bytes)
    gauge("tonglu_upload_lag_seconds", "Age of the oldest unconfirmed spooled file", snap.upload_lag_s)
    q = Gauge("tonglu_transcribe_queue", "Transcription queue counters", ["what"], registry=reg)
    for what, n in sorted(snap.queue.items()):
        q.labels(what).set(n)
    lat = sorted(snap.job_latency_s)
    gauge("tonglu_transcribe_live_lines", "Live transcript lines the latency is taken over", len(lat))
    gauge("tonglu_transcribe_live_latency_p95_seconds", "p95 seconds from end of speech to its live line",
          lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else 0.0)
    gauge("tonglu_metrics_errors", "Parts that could not be read for this scrape", len(snap.errors))
    return generate_latest(reg)
