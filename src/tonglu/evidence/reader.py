"""Read evidence by key wherever it is now: the local spool while pending, else the object store.

    reader = EvidenceReader(spool, store)
    data = reader.read("sessions/S1/segments/main/video/00000003.webm")
    reader.to_file(key, Path("/tmp/x.webm"))

Used by transcription and review, which must not wait for an upload (or an outage) to end. A
spooled copy is checked against its recorded SHA-256 before it is handed out.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from tonglu.evidence.errors import ObjectNotFound, SpoolCorrupt
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.spool import EVIDENCE, WORK, Spool, SpoolItem


class EvidenceReader:
    def __init__(self, spool: Spool | None, store: ObjectStore | None) -> None:
        self.spool = spool
        self.store = store

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
        return self.store.get(key, bucket=self._store_bucket(bucket))

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
        return self.store.get_to_file(key, path, bucket=self._store_bucket(bucket))

    def exists(self, key: str, *, bucket: str = EVIDENCE) -> bool:
        if self._spooled(key, bucket) is not None:
            return True
        return self.store is not None and self.store.exists(key, bucket=self._store_bucket(bucket))
