"""The verifier over the object store, and the entry points the CLI and other areas call.

    result = verify_path(Path("export.zip"))                       # offline: a directory or zip
    result = verify_store_session(store, "S1", trusted_keys=[pem])  # the evidence bucket
    result.ok, result.problems, result.sessions[0].final_digest, result.to_json()

All checks live in `verify_core` (standard library only, shipped in export packages); this module
adds `StoreSource`, which reads `sessions/{sid}/...`, `site/keys/...` and `site/hosts/...` from the evidence bucket,
streams every object through SHA-256 itself (the store's ETags and checksums are never trusted)
and reads every key at its FIRST (oldest) version. Under WORM the original of a sealed key stays;
anyone holding a write credential (the recorder's) can still put a newer version over it or a
delete marker on top. Those are reported by key as warnings ("shadow_version", "delete_marker"),
and the original is what is verified -- so a shadow can neither hide the evidence nor turn a
genuine session into "TAMPERED" forever.

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
from tonglu.evidence.objectstore import KeyVersions, ObjectStore
from tonglu.evidence.verify_core import (
    CHUNK,
    WARNING,
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
HOSTS_PREFIX = "site/hosts/"  # recorder host key certificates (evidence.hostcert)


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
        self._versions: dict[str, KeyVersions] | None = None

    def _listing(self) -> dict[str, KeyVersions]:
        if self._versions is None:
            found = self.store.originals(self.prefix, bucket=self.bucket)
            found.update(self.store.originals(KEYS_PREFIX, bucket=self.bucket))
            found.update(self.store.originals(HOSTS_PREFIX, bucket=self.bucket))
            self._versions = found
        return self._versions

    def _version_id(self, name: str) -> str | None:
        kv = self._listing().get(name)
        if kv is None or kv.original is None:
            raise KeyError(name)
        return kv.original.version_id

    def names(self) -> list[str]:
        """Every key that holds a data version (a delete marker on top does not hide it)."""
        return sorted(k for k, kv in self._listing().items() if kv.original is not None)

    def read(self, name: str) -> bytes:
        try:
            return self.store.get(name, bucket=self.bucket, version_id=self._version_id(name))
        except ObjectNotFound as exc:
            raise KeyError(name) from exc

    def open(self, name: str) -> IO[bytes]:
        return io.BytesIO(self.read(name))

    def digest(self, name: str) -> Digest:
        """Stream the object through SHA-256 (1 MiB chunks). Store outages raise (no verdict)."""
        h = hashlib.sha256()
        size = 0
        try:
            version_id = self._version_id(name)
        except KeyError:
            return Digest(h.hexdigest(), size, "no stored version")
        try:
            with self.store.errors(f"GET {self.bucket}/{name}"):
                resp = self.store.client.get_object(self.bucket, name, version_id=version_id)
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
        """Versions written over a sealed key and delete markers: warnings naming the key (the
        original, read instead, is what the other checks judged)."""
        out: list[Problem] = []
        for key, kv in sorted(self._listing().items()):
            sid = self.session if key.startswith(self.prefix) else None
            if kv.shadows:
                out.append(
                    make_problem(
                        "shadow_version",
                        key,
                        f"{len(kv.shadows)} newer version(s) were written over this sealed object "
                        f"(ignored: the verifier read and checked the original, version {kv.original_id})",
                        f"封存后有 {len(kv.shadows)} 个新版本写在此对象之上（已忽略：校验的是原始版本 "
                        f"{kv.original_id}）",
                        session=sid,
                        severity=WARNING,
                    )
                )
            if kv.delete_markers:
                original = (
                    f"the original, version {kv.original_id}, was read and checked"
                    if kv.original is not None
                    else "no data version exists under this key"
                )
                out.append(
                    make_problem(
                        "delete_marker",
                        key,
                        f"{len(kv.delete_markers)} delete marker(s) were put on this object ({original})",
                        f"此对象上有 {len(kv.delete_markers)} 个删除标记（"
                        f"{'已校验原始版本' if kv.original is not None else '此键下没有数据版本'}）",
                        session=sid,
                        severity=WARNING,
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
