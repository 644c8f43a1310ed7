"""The site's Ed25519 signing key: generated on first start, public key exported as PEM."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from tonglu.evidence.errors import KeyFileError

PRIVATE_NAME = "site-ed25519.pem"
PUBLIC_NAME = "site-ed25519.pub.pem"


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyFileError(f"public key is not a PEM Ed25519 key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError("public key is not Ed25519")
    return key


def verify_signature(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class SiteKey:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id_of(self.public)

    @property
    def public_pem(self) -> bytes:
        return public_pem(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    @classmethod
    def load(cls, keys_dir: Path, *, private_name: str = PRIVATE_NAME) -> SiteKey:
        path = keys_dir / private_name
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise KeyFileError(f"site signing key {path} is missing") from exc
        except OSError as exc:
            raise KeyFileError(f"site signing key {path} cannot be read: {exc}") from exc
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"site signing key {path} is malformed: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"site signing key {path} is not Ed25519")
        return cls(key)

    @classmethod
    def load_or_create(
        cls, keys_dir: Path, *, private_name: str = PRIVATE_NAME, public_name: str = PUBLIC_NAME
    ) -> SiteKey:
        """Load the key; create it only when the directory has never held one. (A recorder host's
        own key uses other file names: `evidence.hostcert`.)"""
        path = keys_dir / private_name
        if path.exists():
            return cls.load(keys_dir, private_name=private_name)
        keys_dir.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        site = cls(key)
        (keys_dir / public_name).write_bytes(site.public_pem)
        return site
