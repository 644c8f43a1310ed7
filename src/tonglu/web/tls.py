"""HTTPS for the web app: the operator's certificate (TONGLU_TLS_CERT/KEY), or a self-signed
development certificate generated once into `$TONGLU_DATA_DIR/tls/` (TONGLU_TLS_SELF_SIGNED=1 or
`tonglu up --tls-self-signed`) so that room computers on the LAN get a secure context for their
cameras. Browsers warn about a self-signed certificate: import `dev-cert.pem` on the room
computers, or use a certificate of the site's own CA in production.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from tonglu.config import Settings

DEV_CERT = "dev-cert.pem"
DEV_KEY = "dev-key.pem"
DEV_VALID_DAYS = 825  # the longest validity browsers accept for a leaf certificate


def certificate_paths(settings: Settings, extra_hosts: tuple[str, ...] = ()) -> tuple[Path, Path] | None:
    """(cert, key) to serve with, generating the development certificate when asked; None: plain HTTP."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        return settings.tls_cert, settings.tls_key
    if not settings.tls_self_signed:
        return None
    from urllib.parse import urlsplit

    public = urlsplit(settings.public_url).hostname if settings.public_url else None
    hosts = ("localhost", "127.0.0.1", settings.http_host, *(p for p in (public,) if p), *extra_hosts)
    wildcard = ("0.0.0.0", "::")  # listening everywhere: name the host in TONGLU_PUBLIC_URL
    return ensure_dev_certificate(settings.tls_dir, tuple(h for h in dict.fromkeys(hosts) if h not in wildcard))


def _names(cert_path: Path) -> set[str]:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc < now + datetime.timedelta(days=30):
        return set()  # about to expire: make a new one
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    }


def ensure_dev_certificate(directory: Path, hosts: tuple[str, ...]) -> tuple[Path, Path]:
    """A self-signed certificate for `hosts` (names and IP addresses); reused while it covers them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_path, key_path = directory / DEV_CERT, directory / DEV_KEY
    if cert_path.exists() and key_path.exists() and set(hosts) <= _names(cert_path):
        return cert_path, key_path
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for h in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "同录 Tonglu development certificate"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tonglu dev")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=DEV_VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
