"""The local spool: every object is on disk (fsynced) before anything else happens to it.

An item is a data file plus a metadata sidecar. The sidecar is written as `<name>.meta.json.pending`
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

from tonglu.evidence.errors import SpoolCorrupt, SpoolError
from tonglu.evidence.fsutil import fsync_dir, write_all

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


def _write_synced(*files: tuple[Path, bytes]) -> None:
    """Write each (path, data), then fsync them all: one journal commit for all of them on ext4
    (their names are made durable by the caller's directory fsync)."""
    fds = []
    try:
        for path, data in files:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            fds.append(fd)
            write_all(fd, data)
        for fd in fds:
            os.fsync(fd)
    finally:
        for fd in fds:
            os.close(fd)


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

    def _item(self, name: str, key: str, bucket: str, size: int, digest: str, content_type: str) -> SpoolItem:
        return SpoolItem(
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

    # Each put costs three journal commits (was five): contents are fsynced together, then each
    # ordering point is one directory fsync. 1) the data and the `.pending` sidecar's contents are
    # on disk; 2) the `.pending` name is durable *before* the data takes its name in `ready/`, so
    # spooled data never lacks a sidecar; 3) the data's name and `.meta.json` are durable together.
    # A crash before 3) leaves `.pending` (+ the data, or not), which `recover()` completes or drops;
    # on a filesystem that persists 3)'s second rename without its first, `recover()` renames the
    # complete, fsynced `.data.tmp`.
    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream",
                  bucket: str = EVIDENCE) -> SpoolItem:
        name = self._new_name()
        item = self._item(name, key, bucket, len(data), hashlib.sha256(data).hexdigest(), content_type)
        data_tmp = item.data_path.with_name(item.data_path.name + ".tmp")
        pending = item.meta_path.with_name(item.meta_path.name + ".pending")
        try:
            _write_synced((data_tmp, data), (pending, item.meta_json()))
            fsync_dir(self.ready)
            os.replace(data_tmp, item.data_path)
        except OSError as exc:
            raise SpoolError(f"cannot spool {key}: {exc}") from exc
        return self._publish(item)

    def put_file(self, key: str, path: Path, *, sha256: str | None = None, size: int | None = None,
                 content_type: str = "application/octet-stream", bucket: str = EVIDENCE) -> SpoolItem:
        """Move a finished file (on the spool's filesystem) into the spool. It is fsynced here."""
        if sha256 is None or size is None:
            sha256, size = sha256_file(path)
        name = self._new_name()
        item = self._item(name, key, bucket, size, sha256, content_type)
        pending = item.meta_path.with_name(item.meta_path.name + ".pending")
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                _write_synced((pending, item.meta_json()))
                os.fsync(fd)  # already written back by the commit above on ext4 (ordered data)
            finally:
                os.close(fd)
            fsync_dir(self.ready)
            os.replace(path, item.data_path)
        except OSError as exc:
            raise SpoolError(f"cannot spool {key} from {path}: {exc}") from exc
        return self._publish(item)

    def _publish(self, item: SpoolItem) -> SpoolItem:
        os.replace(item.meta_path.with_name(item.meta_path.name + ".pending"), item.meta_path)
        fsync_dir(self.ready)
        return item

    def recover(self) -> int:
        """Finish items interrupted between their renames (see `put_bytes`); return how many.
        Temporary data of a put that never reached its `.pending` sidecar was never spooled (the
        caller got no item): it is removed."""
        done = 0
        for pending in sorted(self.ready.glob("*.meta.json.pending")):
            name = pending.name.removesuffix(".meta.json.pending")
            data = self.ready / f"{name}.data"
            tmp = self.ready / f"{name}.data.tmp"
            if not data.exists() and tmp.exists():
                os.replace(tmp, data)  # fsynced before the sidecar's name was made durable
            if data.exists():
                os.replace(pending, self.ready / f"{name}.meta.json")
                done += 1
            else:
                pending.unlink()  # the data never arrived: nothing was spooled
        for meta in sorted(self.ready.glob("*.meta.json")):
            name = meta.name.removesuffix(".meta.json")
            data, tmp = self.ready / f"{name}.data", self.ready / f"{name}.data.tmp"
            if not data.exists() and tmp.exists():
                os.replace(tmp, data)
                done += 1
        for tmp in sorted(self.ready.glob("*.data.tmp")):
            name = tmp.name.removesuffix(".data.tmp")
            if not (self.ready / f"{name}.meta.json").exists():
                tmp.unlink()
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
