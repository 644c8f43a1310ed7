"""A thin, synchronous S3 client for the evidence and work buckets (callers run it in threads).

    store = ObjectStore.from_settings(settings)              # recorder identity
    store.put_if_absent(key, path, sha256_hex, "video/webm", retain_until=until)
    store.list("sessions/S1/")  ->  ["sessions/S1/manifest/00000000.json", ...]
    store.get(key) -> bytes;  store.get_to_file(key, path);  store.stat(key) -> ObjectInfo

Reads default to the evidence bucket; pass `bucket=store.work_bucket` for the work bucket.

Evidence is read at its FIRST version. The evidence bucket is versioned (Object Lock), and any
identity that may write (the recorder's) can put a newer version over a sealed key with a plain
PUT, or a delete marker on top of it; neither removes the locked original. Readers of evidence
(verifier, evidence reader, reindex, export) therefore call `original(key)` / `get_original(key)` /
`originals(prefix)`, which pick the oldest data version and report every later version
("shadow version") and delete marker by key, instead of `get(key)` (the latest version), which
such a shadow would turn into a permanent "TAMPERED" for the whole session.

Writes (`put_if_absent`) send `If-None-Match: *`, `x-amz-checksum-sha256` (base64 of the digest)
and, when `retain_until` is given, Object Lock retention in COMPLIANCE mode. Over plain HTTP the
SigV4 payload hash (`x-amz-content-sha256`) covers the body as well.

What SeaweedFS 4.48 honours (measured with this code, see tests/storage_io):
- `If-None-Match: *` on PUT: yes, 412 PreconditionFailed when the key exists (also on a versioned,
  locked bucket), so no emulation is needed. A store that ignored it would create a second
  version (never overwrite: the bucket is versioned) -- still no data loss.
- `x-amz-checksum-sha256`: yes, a wrong value is refused with 400 BadDigest; the PUT response and a
  HEAD/GET with `x-amz-checksum-mode: ENABLED` return the stored checksum.
- Object Lock retention headers on PUT and bucket default retention: yes.
- The minio SDK's `put_object` turns unknown headers (such as If-None-Match) into `X-Amz-Meta-*`
  user metadata, so the PUT goes through its `_put_object` with explicit headers (minio pinned).
  Objects are sent in one PUT (read into memory): segments are a few MB.

Errors map to `evidence.errors`: connection errors, timeouts and 5xx -> StoreUnavailable;
InvalidAccessKeyId / SignatureDoesNotMatch / AccessDenied -> StoreAuthError; a missing key ->
ObjectNotFound; the same key with different content -> ObjectConflict.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE
from minio.error import InvalidResponseError, S3Error, ServerError
from minio.retention import Retention
from urllib3.exceptions import HTTPError as Urllib3Error

from tonglu.evidence.errors import (
    ConfigError,
    ObjectConflict,
    ObjectNotFound,
    StoreAuthError,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from tonglu.config import Settings

AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "InvalidToken",
        "ExpiredToken",
        "AccountProblem",
        "AllAccessDisabled",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "ResourceNotFound"})
UNAVAILABLE_CODES = frozenset(
    {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed"}
)
MAX_SINGLE_PUT = 5 * 1024**3


@dataclass(frozen=True)
class PutResult:
    key: str
    bucket: str
    version_id: str | None
    created: bool  # False: an identical object was already there (e.g. a retried upload)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    bucket: str
    size: int
    etag: str
    version_id: str | None
    sha256_b64: str | None
    content_type: str | None
    last_modified: datetime | None
    lock_mode: str | None
    retain_until: datetime | None
    legal_hold: bool

    @property
    def sha256(self) -> str | None:
        return base64.b64decode(self.sha256_b64).hex() if self.sha256_b64 else None


@dataclass(frozen=True)
class VersionInfo:
    key: str
    version_id: str | None
    is_latest: bool
    size: int
    delete_marker: bool
    last_modified: datetime | None = None


Keys = list[str]
KeySizes = list[tuple[str, int]]
Versions = list[VersionInfo]


@dataclass(frozen=True)
class KeyVersions:
    """One key's versions: the original (oldest data version) and what was put over it since."""

    key: str
    original: VersionInfo | None  # None: only delete markers (nothing was ever stored under the key)
    shadows: tuple[VersionInfo, ...] = ()  # later data versions, oldest first
    delete_markers: tuple[VersionInfo, ...] = ()

    @property
    def original_id(self) -> str:
        return (self.original.version_id or "null") if self.original is not None else "-"

    @property
    def clean(self) -> bool:
        return not self.shadows and not self.delete_markers

    def findings(self) -> list[str]:
        """One line per later version / delete marker, naming the key (for logs and reports)."""
        out = []
        if self.shadows:
            out.append(
                f"shadow version: {self.key} has {len(self.shadows)} newer version(s) over the original "
                f"(ignored; the original {self.original.version_id if self.original else '?'} is read)"
            )
        if self.delete_markers:
            out.append(f"delete marker: {self.key} has {len(self.delete_markers)} delete marker(s) (ignored)")
        return out


def group_versions(versions: Versions) -> dict[str, KeyVersions]:
    """Group a version listing by key and pick each key's original (sans-I/O).

    The original is the oldest data version: earliest `last_modified`, and among equal times (S3
    reports whole seconds) the one listed last, since S3 lists a key's versions newest first."""
    by_key: dict[str, list[tuple[int, VersionInfo]]] = {}
    for i, v in enumerate(versions):
        by_key.setdefault(v.key, []).append((i, v))
    epoch = datetime.min.replace(tzinfo=UTC)
    out: dict[str, KeyVersions] = {}
    for key, items in by_key.items():
        data = [(i, v) for i, v in items if not v.delete_marker]
        markers = tuple(v for _, v in items if v.delete_marker)
        # oldest first: by time, then (same second) by listing position reversed
        data.sort(key=lambda iv: (iv[1].last_modified or epoch, -iv[0]))
        original = data[0][1] if data else None
        out[key] = KeyVersions(key, original, tuple(v for _, v in data[1:]), markers)
    return out


def b64_of_hex(sha256_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def _parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
    return None


def _version_info(o: Any) -> VersionInfo:
    return VersionInfo(
        o.object_name or "",
        o.version_id,
        str(o.is_latest or "").lower() == "true",
        int(o.size or 0),
        bool(o.is_delete_marker),
        o.last_modified,
    )


class ObjectStore:
    """One S3 endpoint, one identity, the evidence and work buckets."""

    def __init__(
        self,
        endpoint: str,
        access_key: str | None,
        secret_key: str | None,
        *,
        evidence_bucket: str = "tonglu-evidence",
        work_bucket: str = "tonglu-work",
        region: str = "us-east-1",
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 60.0,
        pool_size: int = 16,
    ) -> None:
        parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"object store endpoint {endpoint!r} is not an http(s)://host:port URL")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self.evidence_bucket = evidence_bucket
        self.work_bucket = work_bucket
        self.region = region
        # No retries below us for writes (the uploader retries with backoff); two quick ones for reads.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
            maxsize=pool_size,
            retries=urllib3.Retry(
                total=2,
                connect=2,
                read=0,
                backoff_factor=0.2,
                status_forcelist=(502, 503, 504),
                allowed_methods={"GET", "HEAD"},
                raise_on_status=False,
            ),
        )
        self.client = Minio(
            parts.netloc,
            access_key=access_key,
            secret_key=secret_key,
            secure=parts.scheme == "https",
            region=region,
            http_client=http,
        )

    @classmethod
    def from_settings(cls, settings: Settings, role: str = "recorder", **kwargs: Any) -> ObjectStore:
        """The configured store: TONGLU_S3_ENDPOINT + keys, else the embedded SeaweedFS in store_dir."""
        if settings.s3_endpoint:
            endpoint, access, secret = settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key
        else:
            from tonglu.evidence.seaweed import load_endpoint, load_identities

            ep = load_endpoint(settings.store_dir)
            identities = load_identities(settings.store_dir)
            if role not in identities:
                raise ConfigError(f"no {role!r} identity in {settings.store_dir / 'identities.json'}")
            endpoint, access, secret = ep.s3_url, identities[role].access_key, identities[role].secret_key
        return cls(
            endpoint,
            access,
            secret,
            evidence_bucket=settings.evidence_bucket,
            work_bucket=settings.work_bucket,
            region=settings.s3_region,
            **kwargs,
        )

    # -- errors --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """Translate SDK and transport errors into evidence.errors, naming the operation."""
        try:
            yield
        except S3Error as exc:
            code = exc.code or ""
            status = exc.response.status if exc.response is not None else 0
            msg = f"{what}: {code} ({status}) {exc.message or ''}".rstrip()
            if code in AUTH_CODES:
                why = "refused" if code == "AccessDenied" else "rejected the credentials"
                raise StoreAuthError(f"object store at {self.url} {why} — {msg}") from exc
            if code in NOT_FOUND_CODES:
                raise ObjectNotFound(msg) from exc
            if code == "NoSuchBucket":
                raise ConfigError(f"{msg}: bucket missing (run `tonglu store bootstrap`)") from exc
            if code in UNAVAILABLE_CODES or status >= 500:
                raise StoreUnavailable(f"object store at {self.url} failed — {msg}") from exc
            raise StoreError(msg) from exc
        except ServerError as exc:
            raise StoreUnavailable(f"object store at {self.url} failed — {what}: {exc}") from exc
        except InvalidResponseError as exc:
            text = str(exc)[:300]
            if int(getattr(exc, "_code", 0) or 0) >= 500:
                raise StoreUnavailable(f"object store at {self.url} failed — {what}: {text}") from exc
            raise StoreError(f"{what}: unexpected answer from {self.url}: {text}") from exc
        except (Urllib3Error, ConnectionError, TimeoutError) as exc:
            raise StoreUnavailable(f"object store at {self.url} is unreachable — {what}: {exc}") from exc

    def _bucket(self, bucket: str | None) -> str:
        return bucket or self.evidence_bucket

    # -- writes --------------------------------------------------------------------------------
    def put_if_absent(
        self,
        key: str,
        data: bytes | Path,
        sha256: str,
        content_type: str = "application/octet-stream",
        retain_until: datetime | None = None,
        *,
        bucket: str | None = None,
        legal_hold: bool = False,
    ) -> PutResult:
        """Create `key` unless it exists. An identical existing object counts as success.
        `legal_hold` creates the version with an Object Lock legal hold ON (a session under hold)."""
        bucket = self._bucket(bucket)
        if isinstance(data, Path):
            size = data.stat().st_size
            if size > MAX_SINGLE_PUT:
                raise StoreError(f"{key}: {size} bytes exceed the single-PUT limit")
            body = data.read_bytes()
        else:
            body = data
        headers: dict[str, Any] = {
            "Content-Type": content_type,
            "If-None-Match": "*",
            "x-amz-checksum-sha256": b64_of_hex(sha256),
        }
        if retain_until is not None:
            until = retain_until.astimezone(UTC)
            headers["x-amz-object-lock-mode"] = COMPLIANCE
            headers["x-amz-object-lock-retain-until-date"] = until.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if legal_hold:
            headers["x-amz-object-lock-legal-hold"] = "ON"
        try:
            with self.errors(f"PUT {bucket}/{key}"):
                result = self.client._put_object(bucket, key, body, headers)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, S3Error) and cause.code in (
                "PreconditionFailed",
                "ConditionalRequestConflict",
            ):
                self._check_identical(bucket, key, sha256, len(body))
                return PutResult(key, bucket, None, created=False)
            raise
        echoed = result.http_headers.get("x-amz-checksum-sha256") if result.http_headers else None
        if echoed and echoed != headers["x-amz-checksum-sha256"]:
            raise StoreError(
                f"PUT {bucket}/{key}: store reports checksum {echoed}, "
                f"sent {headers['x-amz-checksum-sha256']}"
            )
        return PutResult(key, bucket, result.version_id, created=True)

    def _check_identical(self, bucket: str, key: str, sha256: str, size: int) -> None:
        # Compared with the key's first version: a shadow version put over it later is not what we stored.
        try:
            found = self.original(key, bucket=bucket).original
            version_id = found.version_id if found is not None else None
        except StoreError:
            version_id = None  # no version listing here: the latest is all there is
        info = self.stat(key, bucket=bucket, version_id=version_id)
        if info.sha256 is not None:
            same = info.sha256 == sha256
        elif info.size != size:
            same = False
        else:
            same = hashlib.sha256(self.get(key, bucket=bucket, version_id=version_id)).hexdigest() == sha256
        if not same:
            raise ObjectConflict(
                f"{bucket}/{key} already exists with different content (stored sha256 "
                f"{(info.sha256 or '?')[:16]}…, size {info.size}; ours {sha256[:16]}…, size {size})"
            )

    def set_legal_hold(
        self, key: str, on: bool, *, version_id: str | None = None, bucket: str | None = None
    ) -> None:
        bucket = self._bucket(bucket)
        with self.errors(f"legal hold {'ON' if on else 'OFF'} {bucket}/{key}"):
            if on:
                self.client.enable_object_legal_hold(bucket, key, version_id=version_id)
            else:
                self.client.disable_object_legal_hold(bucket, key, version_id=version_id)

    def set_retention(
        self, key: str, until: datetime, *, version_id: str | None = None, bucket: str | None = None
    ) -> None:
        bucket = self._bucket(bucket)
        with self.errors(f"retention {bucket}/{key}"):
            self.client.set_object_retention(bucket, key, Retention(COMPLIANCE, until), version_id=version_id)

    def delete_version(self, key: str, version_id: str | None, *, bucket: str | None = None) -> None:
        """Delete one version (refused under Object Lock) or, with None, add a delete marker."""
        bucket = self._bucket(bucket)
        with self.errors(f"DELETE {bucket}/{key}?versionId={version_id}"):
            self.client.remove_object(bucket, key, version_id=version_id)

    # -- reads ---------------------------------------------------------------------------------
    def get(self, key: str, *, bucket: str | None = None, version_id: str | None = None) -> bytes:
        bucket = self._bucket(bucket)
        with self.errors(f"GET {bucket}/{key}"):
            resp = self.client.get_object(bucket, key, version_id=version_id)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

    def get_to_file(
        self, key: str, path: Path, *, bucket: str | None = None, version_id: str | None = None
    ) -> int:
        """Stream an object into `path` (written to a temp name, then renamed). Returns its size."""
        bucket = self._bucket(bucket)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        size = 0
        try:
            with self.errors(f"GET {bucket}/{key}"):
                resp = self.client.get_object(bucket, key, version_id=version_id)
                try:
                    with open(tmp, "wb") as fh:
                        for chunk in resp.stream(1 << 20):
                            fh.write(chunk)
                            size += len(chunk)
                finally:
                    resp.close()
                    resp.release_conn()
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    def stat(self, key: str, *, bucket: str | None = None, version_id: str | None = None) -> ObjectInfo:
        bucket = self._bucket(bucket)
        with self.errors(f"HEAD {bucket}/{key}"):
            st = self.client.stat_object(
                bucket, key, version_id=version_id, extra_headers={"x-amz-checksum-mode": "ENABLED"}
            )
        meta = st.metadata or {}
        return ObjectInfo(
            key=key,
            bucket=bucket,
            size=int(st.size or 0),
            etag=(st.etag or "").strip('"'),
            version_id=st.version_id,
            sha256_b64=meta.get("x-amz-checksum-sha256"),
            content_type=st.content_type,
            last_modified=st.last_modified,
            lock_mode=meta.get("x-amz-object-lock-mode"),
            retain_until=_parse_http_date(meta.get("x-amz-object-lock-retain-until-date")),
            legal_hold=(meta.get("x-amz-object-lock-legal-hold") or "").upper() == "ON",
        )

    def exists(self, key: str, *, bucket: str | None = None) -> bool:
        try:
            self.stat(key, bucket=bucket)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str, *, bucket: str | None = None) -> Keys:
        """Keys under `prefix` (recursive), sorted."""
        return [name for name, _ in self.list_sizes(prefix, bucket=bucket)]

    def list_sizes(self, prefix: str, *, bucket: str | None = None) -> KeySizes:
        bucket = self._bucket(bucket)
        with self.errors(f"LIST {bucket}/{prefix}"):
            objs = self.client.list_objects(bucket, prefix=prefix, recursive=True)
            out = [(o.object_name, int(o.size or 0)) for o in objs if o.object_name and not o.is_dir]
        return sorted(out)

    def versions(self, prefix: str, *, bucket: str | None = None) -> Versions:
        """Every version and delete marker under `prefix`, in the store's order (newest first per key)."""
        bucket = self._bucket(bucket)
        with self.errors(f"LIST VERSIONS {bucket}/{prefix}"):
            return [
                _version_info(o)
                for o in self.client.list_objects(bucket, prefix=prefix, recursive=True, include_version=True)
                if o.object_name and not o.is_dir
            ]

    def versions_range(self, prefix: str, first: str, last: str, *, bucket: str | None = None) -> Versions:
        """As `versions`, for the keys from `first` to `last` (inclusive, in key order) only: the
        listing starts just before `first` and stops after `last` (a few minutes of a long session
        without listing the rest of it)."""
        bucket = self._bucket(bucket)
        marker = first[:-1] + chr(ord(first[-1]) - 1) if first else None  # S3's key-marker is exclusive
        out: Versions = []
        with self.errors(f"LIST VERSIONS {bucket}/{prefix} {first}..{last}"):
            for o in self.client.list_objects(bucket, prefix=prefix, recursive=True, include_version=True,
                                              start_after=marker):
                name = o.object_name or ""
                if name > last:
                    break
                if name >= first and not o.is_dir:
                    out.append(_version_info(o))
        return out

    def originals(self, prefix: str, *, bucket: str | None = None) -> dict[str, KeyVersions]:
        """Every key under `prefix` that was ever stored, with its original and later versions/markers.

        Unlike `list`, a key hidden by a delete marker is still here (its locked original is)."""
        return group_versions(self.versions(prefix, bucket=bucket))

    def original(self, key: str, *, bucket: str | None = None) -> KeyVersions:
        """The versions of exactly `key`; ObjectNotFound when no data version exists."""
        found = group_versions([v for v in self.versions(key, bucket=bucket) if v.key == key]).get(key)
        if found is None or found.original is None:
            raise ObjectNotFound(f"{self._bucket(bucket)}/{key}: no stored version")
        return found

    def get_original(self, key: str, *, bucket: str | None = None) -> bytes:
        """The bytes of the key's first version (see the module notes)."""
        kv = self.original(key, bucket=bucket)
        assert kv.original is not None
        return self.get(key, bucket=bucket, version_id=kv.original.version_id)

    def retention(
        self, key: str, *, version_id: str | None = None, bucket: str | None = None
    ) -> tuple[str | None, datetime | None]:
        bucket = self._bucket(bucket)
        with self.errors(f"GET retention {bucket}/{key}"):
            r = self.client.get_object_retention(bucket, key, version_id=version_id)
        return (r.mode, r.retain_until_date) if r else (None, None)

    def ping(self) -> None:
        """Raise unless the evidence bucket answers with these credentials."""
        with self.errors(f"HEAD bucket {self.evidence_bucket}"):
            if not self.client.bucket_exists(self.evidence_bucket):
                raise ConfigError(
                    f"evidence bucket {self.evidence_bucket} does not exist at {self.url} "
                    f"(run `tonglu store bootstrap`)"
                )
