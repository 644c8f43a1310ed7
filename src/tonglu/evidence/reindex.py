"""Rebuild the index DB from the object store alone (`tonglu reindex`).

Lists `sessions/*/manifest/*.json` and `sessions/*/checkpoints/*.json` in the evidence bucket,
applies every session's entries in sequence order, then its checkpoints; a segment counts as
uploaded when its key is in the listing. Objects that do not parse, or whose session/seq do not
match their key, are skipped and reported (the verifier explains what is wrong with them).

Every key is read at its FIRST version (`ObjectStore.originals`): a newer version put over a sealed
key or a delete marker on top is ignored and reported in `ReindexReport.findings` by key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.errors import ManifestError, StorageError
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
    transcripts: int = 0  # sessions whose newest transcript version was indexed for search
    skipped: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)  # shadow versions and delete markers, by key


def reindex(store: ObjectStore, index: Index, *, reset: bool = True, workers: int = 8) -> ReindexReport:
    report = ReindexReport()
    found = store.originals("sessions/")
    listing = sorted(k for k, kv in found.items() if kv.original is not None)
    present = set(listing)
    for key in sorted(found):
        for finding in found[key].findings():
            report.findings.append(finding)
            log.warning("reindex: %s", finding)

    def get(item: tuple[int, str]) -> bytes:
        original = found[item[1]].original
        return store.get(item[1], version_id=original.version_id if original else None)
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
            newest: ManifestEntry | None = None  # the newest transcript version, for session search
            items = sorted(manifests.get(sid, []))
            for (seq, key), data in zip(items, pool.map(get, items), strict=True):
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
                if entry.kind == "transcript" and isinstance(entry.body.get("version"), int) and (
                    newest is None or entry.body["version"] > newest.body["version"]
                ):
                    newest = entry
            if newest is not None:
                report.transcripts += _index_transcript(newest, found, get, index, report)
            citems = sorted(cps.get(sid, []))
            for (n, key), data in zip(citems, pool.map(get, citems), strict=True):
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


def _index_transcript(entry: ManifestEntry, found: Mapping[str, Any], get: Callable[[tuple[int, str]], bytes],
                      index: Index, report: ReindexReport) -> int:
    """Index the lines of the transcript version `entry` names (read at its first version, checked
    against the entry's SHA-256) for session search; 1 if it was indexed."""
    key = entry.body.get("key")
    if not isinstance(key, str) or key not in found or found[key].original is None:
        report.skipped.append(f"{key}: transcript version named by {entry.session}#{entry.seq} is not in the store")
        return 0
    try:
        data = get((0, key))
        if hashlib.sha256(data).hexdigest() != entry.body.get("sha256"):
            raise ValueError("content does not match the manifest SHA-256")
        doc = json.loads(data)
    except (ValueError, StorageError) as exc:
        report.skipped.append(f"{key}: transcript not indexed for search: {exc}")
        log.bind(session=entry.session).warning("reindex: transcript %s not indexed: %s", key, exc)
        return 0
    return int(index.index_transcript(entry.session, int(entry.body["version"]), doc))
