"""Rebuild the index DB from the object store alone (`tonglu reindex`).

Lists `sessions/*/manifest/*.json` and `sessions/*/checkpoints/*.json` in the evidence bucket,
applies every session's entries in sequence order, then its checkpoints; a segment counts as
uploaded when its key is in the listing. Objects that do not parse, or whose session/seq do not
match their key, are skipped and reported (the verifier explains what is wrong with them).
"""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.errors import ManifestError
from tonglu.evidence.index import Index
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.objectstore import ObjectStore

log = context_logger(__name__)

_MANIFEST = re.compile(r"^sessions/([^/]+)/manifest/(\d+)\.json$")
_CHECKPOINT = re.compile(r"^sessions/([^/]+)/checkpoints/(\d+)\.json$")


@dataclass
class ReindexReport:
    sessions: int = 0
    entries: int = 0
    checkpoints: int = 0
    skipped: list[str] = field(default_factory=list)


def reindex(store: ObjectStore, index: Index, *, reset: bool = True, workers: int = 8) -> ReindexReport:
    report = ReindexReport()
    listing = store.list("sessions/")
    present = set(listing)
    manifests: dict[str, list[tuple[int, str]]] = defaultdict(list)
    cps: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for key in listing:
        if m := _MANIFEST.match(key):
            manifests[m.group(1)].append((int(m.group(2)), key))
        elif m := _CHECKPOINT.match(key):
            cps[m.group(1)].append((int(m.group(2)), key))
    if reset:
        index.reset()
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="tonglu-reindex") as pool:
        for sid in sorted(set(manifests) | set(cps)):
            slog = log.bind(session=sid)
            applied = 0
            items = sorted(manifests.get(sid, []))
            for (seq, key), data in zip(items, pool.map(lambda it: store.get(it[1]), items), strict=True):
                try:
                    entry = ManifestEntry.from_bytes(data)
                except ManifestError as exc:
                    report.skipped.append(f"{key}: {exc}")
                    slog.warning("reindex skips %s: %s", key, exc)
                    continue
                if entry.session != sid or entry.seq != seq:
                    report.skipped.append(f"{key}: holds {entry.session}#{entry.seq}")
                    slog.warning("reindex skips %s: holds %s#%d", key, entry.session, entry.seq)
                    continue
                try:
                    fresh = index.apply(entry)
                except ManifestError as exc:  # e.g. a segment body that does not parse
                    report.skipped.append(f"{key}: {exc}")
                    slog.warning("reindex skips %s: %s", key, exc)
                    continue
                if fresh:
                    report.entries += 1
                    applied += 1
            citems = sorted(cps.get(sid, []))
            for (n, key), data in zip(citems, pool.map(lambda it: store.get(it[1]), citems), strict=True):
                try:
                    cp = Checkpoint.from_bytes(data)
                except ManifestError as exc:
                    report.skipped.append(f"{key}: {exc}")
                    continue
                if cp.session != sid:
                    report.skipped.append(f"{key}: belongs to {cp.session}")
                    continue
                if index.apply_checkpoint(cp, ordinal=n):
                    report.checkpoints += 1
                    applied += 1
            for seg in index.segments(sid):
                if seg.key in present and not seg.uploaded:
                    index.mark_uploaded(seg.key, 0)
            if applied:
                report.sessions += 1
    return report
