"""Where the integrity review reads evidence objects from: a small reader interface.

`EvidenceFiles` is all the review needs: open an object by key, and say where it is (confirmed in
the store, still in the local spool, or missing). Implementations:

- `DirEvidence`: an evidence directory (object keys as relative paths), e.g. a test fixture or an
  unpacked package;
- `SpoolStoreEvidence`: the live system: spool first (upload pending), then the object store
  (any object with ``get_to_file``/``stat``, i.e. ``evidence.objectstore.ObjectStore``).

`LedgerSource` presents one session to the verifier (`evidence.verify_core.Source`): manifest
entries and checkpoints from the local ledger, public key from the site key, every other object
through an `EvidenceFiles`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any, Protocol

from tonglu.evidence import keys
from tonglu.evidence.checkpoint import Checkpoint
from tonglu.evidence.errors import ObjectNotFound, StorageError
from tonglu.evidence.manifest import ManifestEntry
from tonglu.evidence.objectstore import group_versions
from tonglu.evidence.spool import Spool
from tonglu.evidence.verify_core import Source

STORE = "store"
SPOOL = "spool"
MISSING = "missing"
UNKNOWN = "unknown"  # the store could not be asked


class EvidenceFiles(Protocol):
    def open(self, key: str) -> IO[bytes]:
        """A binary file object; raises FileNotFoundError when the object does not exist."""
        ...

    def where(self, key: str) -> str:
        """STORE, SPOOL or MISSING."""
        ...

    def prime(self, keys: list[str]) -> None:
        """These keys (a clip's) will be opened with `open_exact`: find their versions at once."""
        ...

    def open_exact(self, key: str) -> IO[bytes]:
        """As `open`, for a few keys of a long session (a clip): nothing else of the session is listed."""
        ...


class DirEvidence:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root.joinpath(*key.split("/"))

    def open(self, key: str) -> IO[bytes]:
        return open(self.path(key), "rb")

    def prime(self, keys: list[str]) -> None:
        pass

    def open_exact(self, key: str) -> IO[bytes]:
        return self.open(key)

    def where(self, key: str) -> str:
        return STORE if self.path(key).is_file() else MISSING


class SpoolStoreEvidence:
    """The spool holds objects until the store confirms them; after that only the store has them.

    The store is listed once per session prefix (cached); when it cannot be reached, objects not in
    the spool are UNKNOWN, never reported as missing on that ground alone. Objects are read at
    their first (original) version; newer versions put over a sealed key and delete markers are
    ignored and named in `findings` (see `ObjectStore.originals`).
    """

    def __init__(self, spool: Spool, store: Any = None) -> None:
        self.spool = spool
        self.store = store
        self._pending: dict[str, Path] | None = None
        self._listed: dict[str, set[str] | None] = {}
        self._version_ids: dict[str, str | None] = {}
        self.findings: list[str] = []
        self.store_error: str | None = None if store is not None else "no object store configured"

    def _spooled(self) -> dict[str, Path]:
        if self._pending is None:
            self._pending = {item.key: item.data_path for item in self.spool.pending()}
        return self._pending

    def _store_keys(self, key: str) -> set[str] | None:
        parts = key.split("/")
        prefix = "/".join(parts[:2]) + "/" if parts[0] == "sessions" and len(parts) > 2 else parts[0] + "/"
        if prefix not in self._listed:
            listed: set[str] | None = None
            if self.store is not None:
                try:
                    found = self.store.originals(prefix)
                except StorageError as exc:
                    self.store_error = str(exc)
                else:
                    listed = set()
                    for k, kv in found.items():
                        self.findings.extend(kv.findings())
                        if kv.original is not None:
                            listed.add(k)
                            self._version_ids[k] = kv.original.version_id
            self._listed[prefix] = listed
        return self._listed[prefix]

    def where(self, key: str) -> str:
        if key in self._spooled():
            return SPOOL
        listed = self._store_keys(key)
        if listed is None:
            return UNKNOWN
        return STORE if key in listed else MISSING

    def _open_spooled(self, key: str) -> IO[bytes] | None:
        """The spooled copy, or None: the store has it (confirmed and removed meanwhile, or never here)."""
        path = self._spooled().get(key)
        if path is not None:
            try:
                return open(path, "rb")
            except FileNotFoundError:
                pass  # confirmed and removed meanwhile: read it from the store
        if self.store is None:
            raise FileNotFoundError(key)
        return None

    def open(self, key: str) -> IO[bytes]:
        spooled = self._open_spooled(key)
        if spooled is not None:
            return spooled
        try:
            listed = self._store_keys(key)
            if listed is not None and key not in listed:
                raise FileNotFoundError(f"{key}: not in the object store")
            data = self.store.get(key, version_id=self._version_ids.get(key))
        except StorageError as exc:
            raise FileNotFoundError(f"{key}: {exc}") from exc
        return io.BytesIO(data)

    def prime(self, keys: list[str]) -> None:
        """The first versions of `keys`, listed folder by folder over their key range only (a clip of
        ten minutes of a 24 h session reads 1,200 of its 350,000 objects: listing them all would take
        minutes). A key not found here is looked up alone when opened."""
        if self.store is None:
            return
        spooled = self._spooled()
        folders: dict[str, list[str]] = {}
        for key in keys:
            if key not in spooled and key not in self._version_ids:
                folders.setdefault(key.rsplit("/", 1)[0] + "/", []).append(key)
        for folder, names in folders.items():
            wanted = set(names)
            try:
                found = group_versions(self.store.versions_range(folder, min(names), max(names)))
            except StorageError:
                continue  # each key is asked for alone when opened, and fails there with the cause
            for k, kv in found.items():
                if k in wanted and kv.original is not None:
                    self.findings.extend(kv.findings())
                    self._version_ids[k] = kv.original.version_id

    def open_exact(self, key: str) -> IO[bytes]:
        """Its first version, from `prime` or by listing this key's versions only (never the session)."""
        spooled = self._open_spooled(key)
        if spooled is not None:
            return spooled
        try:
            version = self._version_ids.get(key)
            if version is None:
                kv = self.store.original(key)
                self.findings.extend(kv.findings())
                version = kv.original.version_id
            data = self.store.get(key, version_id=version)
        except ObjectNotFound as exc:
            raise FileNotFoundError(f"{key}: not in the object store") from exc
        except StorageError as exc:
            raise FileNotFoundError(f"{key}: {exc}") from exc
        return io.BytesIO(data)


class LedgerSource(Source):
    """One session for the verifier: manifest and checkpoints as the ledger holds them."""

    kind = "ledger"

    def __init__(
        self,
        session: str,
        entries: list[ManifestEntry],
        checkpoints: list[Checkpoint],
        public_pems: dict[str, bytes],
        files: EvidenceFiles,
        label: str = "",
        host_certs: dict[str, bytes] | None = None,
    ) -> None:
        self.label = label or f"ledger:{session}"
        self._blobs: dict[str, bytes] = dict(host_certs or {})  # site/hosts/{key_id}.json
        for e in entries:
            self._blobs[keys.manifest_key(session, e.seq)] = e.to_bytes()
        for i, cp in enumerate(checkpoints):
            self._blobs[keys.checkpoint_key(session, i)] = cp.to_bytes()
        for key_id, pem in public_pems.items():
            self._blobs[keys.public_key_key(key_id)] = pem
        self._objects: list[str] = []
        for e in entries:
            key = e.body.get("key")
            if (
                e.kind in ("segment", "transcript", "record_document")
                and isinstance(key, str)
                and files.where(key) in (STORE, SPOOL)
            ):
                self._objects.append(key)
        self.files = files

    def names(self) -> list[str]:
        return sorted({*self._blobs, *self._objects})

    def open(self, name: str) -> IO[bytes]:
        blob = self._blobs.get(name)
        if blob is not None:
            return io.BytesIO(blob)
        return self.files.open(name)
