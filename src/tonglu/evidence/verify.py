"""The verifier over the object store, and the entry points the CLI and other areas call.

    result = verify_path(Path("export.zip"))                       # offline: a directory or zip
    result = verify_store_session(store, "S1", trusted_keys=[pem])  # the evidence bucket
    result.ok, result.problems, result.sessions[0].final_digest, result.to_json()

All checks live in `verify_core` (standard library only, shipped in export packages); this module
adds `StoreSource`, which reads `sessions/{sid}/...` and `site/keys/...` from the evidence bucket,
streams every object through SHA-256 itself (the store's ETags and checksums are never trusted)
and lists object versions: under WORM a key with more than one version was overwritten and one
whose latest version is a delete marker was deleted, which is reported by name.

A store that cannot be reached or refuses the credentials raises `StoreError` (nothing verified),
never a verdict.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

from tonglu.evidence import keys
from tonglu.evidence.errors import ObjectNotFound
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.verify_core import (
    CHUNK,
    Digest,
    Problem,
    Result,
    Source,
    UsageError,
    VerifyError,
    format_human,
    make_problem,
    verify_source,
)
from tonglu.evidence.verify_core import verify_path as _verify_path

__all__ = [
    "Problem",
    "Result",
    "StoreSource",
    "UsageError",
    "VerifyError",
    "format_human",
    "verify_path",
    "verify_store_session",
]

KEYS_PREFIX = "site/keys/"


class StoreSource(Source):
    """One session of the evidence bucket (plus the site keys) as a verifier source."""

    kind = "store"
    parallel_reads = True

    def __init__(
        self, store: ObjectStore, session: str, *, bucket: str | None = None, workers: int = 4
    ) -> None:
        self.store = store
        self.session = session
        self.prefix = keys.session_prefix(session)
        self.bucket = bucket or store.evidence_bucket
        self.label = f"{store.url}/{self.bucket}/{self.prefix}"
        self.hash_workers = max(1, workers)

    def names(self) -> list[str]:
        return self.store.list(self.prefix, bucket=self.bucket) + self.store.list(
            KEYS_PREFIX, bucket=self.bucket
        )

    def read(self, name: str) -> bytes:
        try:
            return self.store.get(name, bucket=self.bucket)
        except ObjectNotFound as exc:
            raise KeyError(name) from exc

    def open(self, name: str) -> IO[bytes]:
        return io.BytesIO(self.read(name))

    def digest(self, name: str) -> Digest:
        """Stream the object through SHA-256 (1 MiB chunks). Store outages raise (no verdict)."""
        h = hashlib.sha256()
        size = 0
        try:
            with self.store.errors(f"GET {self.bucket}/{name}"):
                resp = self.store.client.get_object(self.bucket, name)
                try:
                    for chunk in resp.stream(CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                finally:
                    resp.close()
                    resp.release_conn()
        except ObjectNotFound as exc:
            return Digest(h.hexdigest(), size, f"vanished while verifying: {exc}")
        return Digest(h.hexdigest(), size)

    def problems(self, names: list[str]) -> list[Problem]:
        """Overwritten (several versions) and deleted (delete marker on top) objects."""
        out: list[Problem] = []
        versions = self.store.versions(self.prefix, bucket=self.bucket)
        versions += self.store.versions(KEYS_PREFIX, bucket=self.bucket)
        by_key: dict[str, list[bool]] = {}  # key -> [is delete marker, ...]
        latest_marker: set[str] = set()
        for v in versions:
            by_key.setdefault(v.key, []).append(v.delete_marker)
            if v.is_latest and v.delete_marker:
                latest_marker.add(v.key)
        for key, markers in sorted(by_key.items()):
            data_versions = markers.count(False)
            sid = self.session if key.startswith(self.prefix) else None
            if data_versions > 1:
                out.append(
                    make_problem(
                        "object_overwritten",
                        key,
                        f"{data_versions} versions exist: the object was written again after it was sealed "
                        "(the verifier read the latest)",
                        f"存在 {data_versions} 个版本：封存后被再次写入",
                        session=sid,
                    )
                )
            if key in latest_marker or (markers and data_versions == 0):
                out.append(
                    make_problem(
                        "object_deleted",
                        key,
                        "the latest version is a delete marker",
                        "最新版本是删除标记",
                        session=sid,
                    )
                )
        return out


def verify_path(
    path: Path | str,
    *,
    trusted_keys: Sequence[bytes] = (),
    expected_digests: Sequence[str] = (),
    sessions: Iterable[str] | None = None,
) -> Result:
    """Verify a directory or export zip offline (see `verify_core`)."""
    return _verify_path(
        str(path), trusted_keys=trusted_keys, expected_digests=expected_digests, sessions=sessions
    )


def verify_store_session(
    store: ObjectStore,
    session: str,
    *,
    trusted_keys: Sequence[bytes] = (),
    expected_digests: Sequence[str] = (),
    workers: int = 4,
) -> Result:
    """Verify one session in the evidence bucket. Raises StoreError when the store cannot be read."""
    source = StoreSource(store, session, workers=workers)
    return verify_source(
        source,
        sessions=[session],
        trusted_keys=trusted_keys,
        expected_digests=expected_digests,
        package=False,
    )


def local_trusted_keys(keys_dir: Path) -> list[bytes]:
    """This site's own public key, when this machine holds it: the anchor for store verification."""
    from tonglu.evidence.signing import PUBLIC_NAME

    path = keys_dir / PUBLIC_NAME
    return [path.read_bytes()] if path.is_file() else []
