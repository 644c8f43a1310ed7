"""Per-host signing keys certified by the site key.

A recorder host (``tonglu up --role recorder``) signs its sessions' checkpoints with its own
Ed25519 key, so the site key's private half stays on the web host. The site key certifies each
host key once:

    tonglu host certify --host rec-1 --public-key host-ed25519.pub.pem -o host-cert.json   (web host)
    copy host-cert.json into the recorder host's keys dir (next to host-ed25519.pem)

The certificate (canonical JSON, parsed and checked by the stdlib verifier in ``verify_core``):

    {"body": {"v": 1, "host": "rec-1", "key_id": "<16 hex>", "public_key": "<base64 raw key>",
              "not_before_ns": ..., "not_after_ns": ..., "issuer": "<site key id>"},
     "signature": "<base64 Ed25519 of the canonical body by the site key>"}

It is stored in the evidence bucket at ``site/hosts/{key_id}.json`` (and copied into export
packages), where the verifier finds it for every checkpoint whose ``key_id`` is a host key.
A recorder host that registers with the web tier presents its certificate and a registration
proof signed by its key (``registration_proof``); the web tier refuses an uncertified key.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tonglu.evidence import canonical
from tonglu.evidence.errors import KeyFileError
from tonglu.evidence.signing import SiteKey, verify_signature
from tonglu.evidence.verify_core import (
    HOST_CERT_VERSION,
    canonical_encode,
    ed25519_verify,
    host_cert_name,
    key_id_of_raw,
    parse_host_cert,
    raw_public_key_from_pem,
)

HOST_PRIVATE_NAME = "host-ed25519.pem"
HOST_PUBLIC_NAME = "host-ed25519.pub.pem"
HOST_CERT_FILE = "host-cert.json"
DEFAULT_VALIDITY_S = 2 * 365 * 86400
PROOF_MAX_AGE_S = 300.0


class HostCertError(KeyFileError):
    """A host certificate that is malformed, not issued by the site key, expired, or not for this key."""


@dataclass(frozen=True)
class HostCertificate:
    host: str
    key_id: str
    public_key: bytes  # raw 32 bytes
    not_before_ns: int
    not_after_ns: int
    issuer: str
    signature: bytes = b""

    def body(self) -> dict[str, Any]:
        return {
            "v": HOST_CERT_VERSION,
            "host": self.host,
            "key_id": self.key_id,
            "public_key": base64.b64encode(self.public_key).decode(),
            "not_before_ns": self.not_before_ns,
            "not_after_ns": self.not_after_ns,
            "issuer": self.issuer,
        }

    def body_bytes(self) -> bytes:
        return canonical_encode(self.body())

    def to_bytes(self) -> bytes:
        return canonical.encode({"body": self.body(), "signature": base64.b64encode(self.signature).decode()})

    @property
    def object_key(self) -> str:
        """Where it lives in the evidence bucket and in export packages."""
        return host_cert_name(self.key_id)

    @classmethod
    def from_bytes(cls, data: bytes) -> HostCertificate:
        try:
            body, public, signature = parse_host_cert(data)
        except ValueError as exc:
            raise HostCertError(f"主机证书格式错误 (host certificate malformed: {exc})") from exc
        return cls(
            body["host"], body["key_id"], public, body["not_before_ns"], body["not_after_ns"], body["issuer"], signature
        )

    def check(self, site_public_pem: bytes, now_ns: int) -> None:
        """Raise HostCertError unless the site key (its public PEM) issued this certificate and it
        is valid at `now_ns`."""
        site_raw = raw_public_key_from_pem(site_public_pem)
        if self.issuer != key_id_of_raw(site_raw):
            raise HostCertError(
                f"主机 {self.host} 的密钥 {self.key_id} 由密钥 {self.issuer} 签发，不是站点密钥 "
                f"(host key {self.key_id} of {self.host} is certified by {self.issuer}, not by the site key "
                f"{key_id_of_raw(site_raw)})"
            )
        if not ed25519_verify(site_raw, self.signature, self.body_bytes()):
            raise HostCertError(
                f"主机 {self.host} 的证书签名无效 (certificate of host key {self.key_id} has an invalid signature)"
            )
        if not (self.not_before_ns <= now_ns <= self.not_after_ns):
            raise HostCertError(
                f"主机 {self.host} 的证书不在有效期内 (certificate of host key {self.key_id} is not valid now)"
            )


def issue(
    site: SiteKey,
    host: str,
    public_pem: bytes,
    *,
    now_ns: int | None = None,
    validity_s: int = DEFAULT_VALIDITY_S,
) -> HostCertificate:
    """The site key certifies `public_pem` as host `host`'s checkpoint key."""
    from tonglu.evidence.keys import safe_id

    safe_id(host, "host id")
    try:
        raw = raw_public_key_from_pem(public_pem)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HostCertError(f"主机公钥不是 Ed25519 PEM (host public key is not an Ed25519 PEM: {exc})") from exc
    start = time.time_ns() if now_ns is None else now_ns
    unsigned = HostCertificate(host, key_id_of_raw(raw), raw, start, start + validity_s * 1_000_000_000, site.key_id)
    return HostCertificate(**{**unsigned.__dict__, "signature": site.sign(unsigned.body_bytes())})


@dataclass(frozen=True)
class HostIdentity:
    """A recorder host's signing key and the certificate the site key gave it."""

    key: SiteKey
    cert: HostCertificate

    @property
    def host(self) -> str:
        return self.cert.host


def load_host_key(keys_dir: Path) -> SiteKey:
    """This host's key (created on first use; its public half is written for `tonglu host certify`)."""
    return SiteKey.load_or_create(keys_dir, private_name=HOST_PRIVATE_NAME, public_name=HOST_PUBLIC_NAME)


def load_identity(keys_dir: Path) -> HostIdentity | None:
    """The host key with its certificate, or None when the keys dir holds no certificate (a
    single-host install signs with the site key). A certificate for another key is an error."""
    path = keys_dir / HOST_CERT_FILE
    if not path.exists():
        return None
    cert = HostCertificate.from_bytes(path.read_bytes())
    key = load_host_key(keys_dir)
    if key.key_id != cert.key_id:
        raise HostCertError(
            f"{path} 证书的密钥 {cert.key_id} 不是本机密钥 {key.key_id} "
            f"(the certificate is for key {cert.key_id}, this host's key is {key.key_id})"
        )
    return HostIdentity(key, cert)


# -- registration proof: the recorder shows it holds the certified key ---------------------------
def registration_proof(key: SiteKey, claims: dict[str, Any]) -> str:
    """Base64 signature by the host key over the canonical registration claims (which carry
    `time_ns`, so an old proof cannot be replayed after PROOF_MAX_AGE_S)."""
    return base64.b64encode(key.sign(canonical.encode(claims))).decode()


def check_registration(
    cert_bytes: bytes, claims: dict[str, Any], proof: str, site_public_pem: bytes, now_ns: int
) -> HostCertificate:
    """The certificate chains to the site key, is valid now, and the claims were signed by its key
    within PROOF_MAX_AGE_S. Raises HostCertError naming what is wrong."""
    cert = HostCertificate.from_bytes(cert_bytes)
    cert.check(site_public_pem, now_ns)
    if claims.get("host") != cert.host:
        raise HostCertError(
            f"注册的主机 {claims.get('host')!r} 与证书 {cert.host!r} 不符 "
            "(registration host does not match the certificate)"
        )
    t = claims.get("time_ns")
    if not isinstance(t, int) or abs(now_ns - t) > PROOF_MAX_AGE_S * 1e9:
        raise HostCertError("注册证明已过期 (registration proof is stale or has no time_ns)")
    try:
        signature = base64.b64decode(proof, validate=True)
    except (ValueError, TypeError) as exc:
        raise HostCertError("注册证明不是 base64 (proof is not base64)") from exc
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not verify_signature(Ed25519PublicKey.from_public_bytes(cert.public_key), signature, canonical.encode(claims)):
        raise HostCertError(
            f"注册证明不是由主机密钥 {cert.key_id} 签名 (registration proof not signed by the certified host key)"
        )
    return cert


def checkpoint_signer(keys_dir: Path) -> SiteKey:
    """The key this host signs checkpoints with: its certified host key on a recorder host (a
    keys dir holding `host-cert.json`), else the site key."""
    identity = load_identity(keys_dir)
    return identity.key if identity is not None else SiteKey.load_or_create(keys_dir)
