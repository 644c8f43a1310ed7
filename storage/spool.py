"""The local spool: every object is on disk (fsynced) before anything else happens to it.

An item is a data file plus a metadata sidecar. The sidecar is written to `<name>.meta.tmp`
first, then the data file takes its final name, then the sidecar: so a crash at any instant leaves
either nothing, a complete item, or an item `recover()` can complete. The uploader deletes an item
only after the object store confirmed it (`confirm`). A file that no longer matches its recorded
size or hash is moved to `quarantine/`, never deleted.

    spool/
      ready/<order>.data  ready/<order>.meta.json     waiting for upload, in order
      staging/                                        files still being written (open segments)
      quarantine/                                     corrupt items, kept for a person to look at
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from storage.errors import SpoolCorrupt, SpoolError
from storage.fsutil import fsync_dir, write_durable

EVIDENCE = "evidence"
WORK = "work"
_counter = itertools.count()


@dataclass(frozen=True)
class SpoolItem:
    name: str  # spool order name, unique
    key: str  # object key
    bucket: str  # EVIDENCE (locked) or WORK
    size: int
    sha256: str
    content_type: str
    created_ns: int
    data_path: Path
    meta_path: Path

    def meta_json(self) -> bytes:
        d = asdict(self)
        d.pop("data_path")
        d.pop("meta_path")
        return json.dumps(d, sort_keys=True).encode()


def sha256_file(path: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ready = root / "ready"
        self.staging = root / "staging"
        self.quarantine_dir = root / "quarantine"
        self._known: dict[str, SpoolItem] = {}  # name -> item, for `find`
        self._known_lock = threading.Lock()
        try:
            for d in (self.ready, self.staging, self.quarantine_dir):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"spool directory {root} cannot be created: {exc}") from exc

    def _new_name(self) -> str:
        return f"{time.time_ns():020d}-{os.getpid():07d}-{next(_counter):06d}"

    def staging_path(self, name: str) -> Path:
        """A path on the spool's filesystem for a file still being written (e.g. an open segment)."""
        path = self.staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _commit(self, name: str, key: str, bucket: str, size: int, digest: str, content_type: str) -> SpoolItem:
        item = SpoolItem(
            name=name,
            key=key,
            bucket=bucket,
            size=size,
            sha256=digest,
            content_type=content_type,
            created_ns=time.time_ns(),
            data_path=self.ready / f"{name}.data",
            meta_path=self.ready / f"{name}.meta.json",
        )
        write_durable(item.meta_path.with_name(item.meta_path.name + ".pending"), item.meta_json())
        return item

    def _publish(self, item: SpoolItem) -> SpoolItem:
        os.replace(item.meta_path.with_name(item.meta_path.name + ".pending"), item.meta_path)
        fsync_dir(self.ready)
        return item

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream",
                  bucket: str = EVIDENCE) -> SpoolItem:
        name = self._new_name()
        item = self._commit(name, key, bucket, len(data), hashlib.sha256(data).hexdigest(), content_type)
        try:
            write_durable(item.data_path, data)
        except OSError as exc:
            raise SpoolError(f"cannot spool {key}: {exc}") from exc
        return self._publish(item)

    def put_file(self, key: str, path: Path, *, sha256: str | None = None, size: int | None = None,
                 content_type: str = "application/octet-stream", bucket: str = EVIDENCE) -> SpoolItem:
        """Move a finished file (on the spool's filesystem) into the spool. It is fsynced here."""
        if sha256 is None or size is None:
            sha256, size = sha256_file(path)
        name = self._new_name()
        item = self._commit(name, key, bucket, size, sha256, content_type)
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(path, item.data_path)
            fsync_dir(self.ready)
        except OSError as exc:
            raise SpoolError(f"cannot spool {key} from {path}: {exc}") from exc
        return self._publish(item)

    def recover(self) -> int:
        """Finish items interrupted between their data and sidecar renames; return how many."""
        done = 0
        for pending in sorted(self.ready.glob("*.meta.json.pending")):
            name = pending.name.removesuffix(".meta.json.pending")
            data = self.ready / f"{name}.data"
            if data.exists():
                os.replace(pending, self.ready / f"{name}.meta.json")
                done += 1
            else:
                pending.unlink()  # the data never arrived: nothing was spooled
        if done:
            fsync_dir(self.ready)
        return done

    def _load(self, meta_path: Path) -> SpoolItem:
        name = meta_path.name.removesuffix(".meta.json")
        try:
            meta = json.loads(meta_path.read_bytes())
            return SpoolItem(
                name=name,
                key=meta["key"],
                bucket=meta["bucket"],
                size=int(meta["size"]),
                sha256=meta["sha256"],
                content_type=meta["content_type"],
                created_ns=int(meta["created_ns"]),
                data_path=self.ready / f"{name}.data",
                meta_path=meta_path,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SpoolCorrupt(f"spool metadata {meta_path} is unreadable: {exc}") from exc

    def pending(self) -> list[SpoolItem]:
        """Items waiting for upload, oldest first. Corrupt sidecars are quarantined, not returned."""
        items = []
        for meta_path in sorted(self.ready.glob("*.meta.json")):
            try:
                items.append(self._load(meta_path))
            except SpoolCorrupt as exc:
                if not meta_path.exists():
                    continue  # confirmed (removed) by an uploader while we listed: not corruption
                data_path = meta_path.with_name(meta_path.name.removesuffix(".meta.json") + ".data")
                self._quarantine_paths([meta_path, data_path], str(exc))
        return items

    def find(self, key: str, bucket: str = EVIDENCE) -> SpoolItem | None:
        """The pending item holding `key`, if any. Sidecars are parsed once per item, not per call."""
        with self._known_lock:
            names = {n.removesuffix(".meta.json") for n in os.listdir(self.ready) if n.endswith(".meta.json")}
            for gone in self._known.keys() - names:
                del self._known[gone]
            for name in sorted(names - self._known.keys()):
                try:
                    self._known[name] = self._load(self.ready / f"{name}.meta.json")
                except SpoolCorrupt:
                    continue  # `pending()` quarantines it
            for item in self._known.values():
                if item.key == key and item.bucket == bucket:
                    return item
        return None

    def check(self, item: SpoolItem) -> None:
        """Raise SpoolCorrupt if the data file is missing or differs from what was spooled."""
        try:
            digest, size = sha256_file(item.data_path)
        except FileNotFoundError as exc:
            raise SpoolCorrupt(f"spooled data for {item.key} is missing ({item.data_path})") from exc
        if size != item.size or digest != item.sha256:
            raise SpoolCorrupt(
                f"spooled data for {item.key} changed on disk: size {size} (spooled {item.size}), "
                f"sha256 {digest[:16]}… (spooled {item.sha256[:16]}…)"
            )

    def confirm(self, item: SpoolItem) -> None:
        """The store has the object: forget it locally."""
        item.data_path.unlink(missing_ok=True)
        item.meta_path.unlink(missing_ok=True)

    def quarantine(self, item: SpoolItem, reason: str) -> Path:
        return self._quarantine_paths([item.meta_path, item.data_path], reason)

    def _quarantine_paths(self, paths: list[Path], reason: str) -> Path:
        target = self.quarantine_dir / f"{time.time_ns():020d}"
        target.mkdir(parents=True, exist_ok=True)
        for p in paths:
            if p.exists():
                os.replace(p, target / p.name)
        (target / "REASON.txt").write_text(reason + "\n", encoding="utf-8")
        fsync_dir(target)
        return target

    def quarantined(self) -> list[Path]:
        return sorted(p for p in self.quarantine_dir.iterdir() if p.is_dir())
