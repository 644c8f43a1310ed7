"""Read evidence by key wherever it is now: the local spool while pending, else the object store.

    reader = EvidenceReader(spool, store)
    data = reader.read("sessions/S1/segments/main/video/00000003.webm")
    reader.to_file(key, Path("/tmp/x.webm"))

Used by transcription and review, which must not wait for an upload (or an outage) to end. A
spooled copy is checked against its recorded SHA-256 before it is handed out.

From the store it reads the key's FIRST version (`ObjectStore.original`): a newer version written
over a sealed key, or a delete marker on top of it, is ignored, logged as a warning naming the key
and kept in `findings` (the locked original is the evidence).
"""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections import deque
from pathlib import Path

from tonglu.evidence.errors import ObjectNotFound, SpoolCorrupt
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.spool import EVIDENCE, WORK, Spool, SpoolItem

log = context_logger(__name__)
_CACHE_MAX = 100_000  # original version ids remembered (they never change: the original is locked)


class EvidenceReader:
    def __init__(self, spool: Spool | None, store: ObjectStore | None) -> None:
        self.spool = spool
        self.store = store
        self.findings: deque[str] = deque(maxlen=1000)  # "shadow version: <key> ..." / "delete marker: <key> ..."
        self._originals: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()

    def _original_version(self, key: str, bucket: str | None) -> str | None:
        """Version id of the key's first version in the store (ObjectNotFound when there is none)."""
        assert self.store is not None
        b = bucket or self.store.evidence_bucket
        with self._lock:
            if (b, key) in self._originals:
                return self._originals[(b, key)]
        kv = self.store.original(key, bucket=b)
        for finding in kv.findings():
            log.warning("evidence reader: %s", finding)
            self.findings.append(finding)
        assert kv.original is not None
        with self._lock:
            if len(self._originals) >= _CACHE_MAX:
                self._originals.clear()
            if kv.clean:  # a key with shadows is looked at again next time (and reported again)
                self._originals[(b, key)] = kv.original.version_id
        return kv.original.version_id

    def _spooled(self, key: str, bucket: str) -> SpoolItem | None:
        if self.spool is None:
            return None
        return self.spool.find(key, bucket)

    def _store_bucket(self, bucket: str) -> str | None:
        if self.store is None:
            return None
        return self.store.work_bucket if bucket == WORK else self.store.evidence_bucket

    def read(self, key: str, *, bucket: str = EVIDENCE) -> bytes:
        item = self._spooled(key, bucket)
        if item is not None:
            try:
                data = item.data_path.read_bytes()
            except FileNotFoundError:
                data = None  # uploaded and confirmed meanwhile
            if data is not None:
                if hashlib.sha256(data).hexdigest() != item.sha256:
                    raise SpoolCorrupt(f"spooled copy of {key} ({item.data_path}) does not match its SHA-256")
                return data
        if self.store is None:
            raise ObjectNotFound(f"{key} is not in the spool and no object store is configured")
        b = self._store_bucket(bucket)
        if bucket == WORK:  # working copies are not evidence: that bucket is mutable by design
            return self.store.get(key, bucket=b)
        return self.store.get(key, bucket=b, version_id=self._original_version(key, b))

    def to_file(self, key: str, path: Path, *, bucket: str = EVIDENCE) -> int:
        item = self._spooled(key, bucket)
        if item is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            try:
                h = hashlib.sha256()
                size = 0
                with open(item.data_path, "rb") as src, open(tmp, "wb") as dst:
                    while block := src.read(1 << 20):
                        h.update(block)
                        dst.write(block)
                        size += len(block)
                if h.hexdigest() != item.sha256:
                    raise SpoolCorrupt(f"spooled copy of {key} ({item.data_path}) does not match its SHA-256")
                shutil.move(tmp, path)
                return size
            except FileNotFoundError:
                pass  # confirmed meanwhile: read from the store
            finally:
                tmp.unlink(missing_ok=True)
        if self.store is None:
            raise ObjectNotFound(f"{key} is not in the spool and no object store is configured")
        b = self._store_bucket(bucket)
        if bucket == WORK:
            return self.store.get_to_file(key, path, bucket=b)
        return self.store.get_to_file(key, path, bucket=b, version_id=self._original_version(key, b))

    def exists(self, key: str, *, bucket: str = EVIDENCE) -> bool:
        if self._spooled(key, bucket) is not None:
            return True
        if self.store is None:
            return False
        if bucket == WORK:
            return self.store.exists(key, bucket=self._store_bucket(bucket))
        try:
            self._original_version(key, self._store_bucket(bucket))
        except ObjectNotFound:
            return False
        return True
