"""Idempotent bucket set-up: the locked evidence bucket, the work bucket, the site public key.

- Evidence bucket: created with Object Lock (which turns versioning on) and a default COMPLIANCE
  retention of `settings.retention_days` (at least one day: S3 default retention counts whole
  days). The uploader also sets a per-object retain-until date
  (`settings.object_lock_retention_seconds`, short in tests).
- Work bucket: plain, no lock (working copies, derivatives).
- The site's public key is uploaded to `site/keys/{key_id}.pem` in the evidence bucket (locked).
- Evidence bucket policy: Deny s3:DeleteObject and s3:DeleteObjectVersion to everyone. Nothing in
  Tonglu deletes evidence; without it the recorder identity (which must be able to write) can put
  delete markers over sealed objects. Measured on SeaweedFS 4.48: enforced for every identity,
  admin included (admin may still remove the policy). The statement is merged into an existing
  policy; a store that refuses bucket policies is reported (`delete_policy`), not fatal.

Run with an identity that may create buckets (the embedded store's admin identity). An existing
evidence bucket without Object Lock is an error: Object Lock cannot be added afterwards.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from minio.commonconfig import COMPLIANCE
from minio.error import S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig

from tonglu.evidence import keys
from tonglu.evidence.errors import ConfigError, StoreError
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.objectstore import ObjectStore
from tonglu.evidence.signing import SiteKey

if TYPE_CHECKING:
    from tonglu.config import Settings


log = context_logger(__name__)
NO_DELETES_SID = "TongluEvidenceNoDeletes"


@dataclass
class BootstrapReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    default_retention_days: int = 0
    public_key: str | None = None
    delete_policy: str = ""  # "set" | "present" | "not set: <why>"


def no_deletes_statement(bucket: str) -> dict[str, object]:
    return {
        "Sid": NO_DELETES_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
        "Resource": [f"arn:aws:s3:::{bucket}/*"],
    }


def ensure_no_deletes_policy(admin: ObjectStore, bucket: str) -> str:
    """Merge the deny-deletes statement into the bucket's policy. Returns "set", "present" or why not."""
    try:
        try:
            with admin.errors(f"GET policy {bucket}"):
                current = json.loads(admin.client.get_bucket_policy(bucket) or "{}")
        except StoreError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, S3Error) and cause.code in ("NoSuchBucketPolicy", "NoSuchPolicy")):
                raise
            current = {}
        statements = list(current.get("Statement") or [])
        if any(isinstance(st, dict) and st.get("Sid") == NO_DELETES_SID for st in statements):
            return "present"
        policy = {"Version": current.get("Version", "2012-10-17"),
                  "Statement": [*statements, no_deletes_statement(bucket)]}
        with admin.errors(f"PUT policy {bucket}"):
            admin.client.set_bucket_policy(bucket, json.dumps(policy))
    except (StoreError, ValueError) as exc:
        log.warning("evidence bucket %s: delete-denying bucket policy not set: %s", bucket, exc)
        return f"not set: {exc}"
    return "set"


def _lock_config(store: ObjectStore, bucket: str) -> ObjectLockConfig | None:
    try:
        with store.errors(f"GET object-lock {bucket}"):
            return store.client.get_object_lock_config(bucket)
    except StoreError as exc:
        cause = exc.__cause__
        if isinstance(cause, S3Error) and cause.code in (
            "ObjectLockConfigurationNotFoundError",
            "ObjectLockConfigurationNotFound",
            "NoSuchObjectLockConfiguration",
        ):
            return None
        raise


def bootstrap(admin: ObjectStore, settings: Settings, site_key: SiteKey | None = None) -> BootstrapReport:
    report = BootstrapReport()
    ev, work = admin.evidence_bucket, admin.work_bucket
    with admin.errors(f"HEAD bucket {ev}"):
        exists = admin.client.bucket_exists(ev)
    if not exists:
        with admin.errors(f"create bucket {ev}"):
            admin.client.make_bucket(ev, object_lock=True)
        report.created.append(ev)
    else:
        report.existing.append(ev)
    cfg = _lock_config(admin, ev)
    if cfg is None and exists:
        raise ConfigError(
            f"evidence bucket {ev} exists without Object Lock; it cannot be used for evidence "
            f"(Object Lock can only be enabled when a bucket is created)"
        )
    days = max(
        1,
        settings.retention_days
        if not settings.retention_seconds
        else -(-settings.retention_seconds // 86400),
    )
    if cfg is None or cfg.mode != COMPLIANCE or cfg.duration != days or cfg.duration_unit != DAYS:
        with admin.errors(f"PUT object-lock {ev}"):
            admin.client.set_object_lock_config(ev, ObjectLockConfig(COMPLIANCE, days, DAYS))
    report.default_retention_days = days

    with admin.errors(f"HEAD bucket {work}"):
        work_exists = admin.client.bucket_exists(work)
    if not work_exists:
        with admin.errors(f"create bucket {work}"):
            admin.client.make_bucket(work)
        report.created.append(work)
    else:
        report.existing.append(work)

    report.delete_policy = ensure_no_deletes_policy(admin, ev)

    if site_key is not None:
        pem = site_key.public_pem
        key = keys.public_key_key(site_key.key_id)
        until = datetime.now(UTC) + timedelta(seconds=settings.object_lock_retention_seconds)
        admin.put_if_absent(key, pem, hashlib.sha256(pem).hexdigest(), "application/x-pem-file", until)
        report.public_key = key
    return report
