"""HTTPS: a self-signed development certificate (generated once, key 0600, names the hosts the
room computers use) or the operator's own; `tonglu up` serves it and plain HTTP does not answer."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tonglu.config import Settings, SettingsError
from tonglu.web.tls import certificate_paths, ensure_dev_certificate


def test_dev_certificate_is_made_once_and_names_the_hosts(tmp_path: Path) -> None:
    from cryptography import x509

    cert, key = ensure_dev_certificate(tmp_path / "tls", ("localhost", "127.0.0.1", "room-3.local"))
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "tls").st_mode & 0o777 == 0o700
    san = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "room-3.local" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    first = cert.read_bytes()
    ensure_dev_certificate(tmp_path / "tls", ("localhost", "127.0.0.1"))
    assert cert.read_bytes() == first  # still covers them: reused
    ensure_dev_certificate(tmp_path / "tls", ("localhost", "10.1.2.3"))
    assert cert.read_bytes() != first  # a new host: a new certificate


def test_settings_refuse_half_a_certificate(tmp_path: Path) -> None:
    cert, key = ensure_dev_certificate(tmp_path / "tls", ("localhost",))
    base = {"TONGLU_DATA_DIR": str(tmp_path / "d")}
    with pytest.raises(SettingsError, match="together"):
        Settings.from_env({**base, "TONGLU_TLS_CERT": str(cert)})
    with pytest.raises(SettingsError, match="not a readable file"):
        Settings.from_env({**base, "TONGLU_TLS_CERT": str(cert), "TONGLU_TLS_KEY": str(tmp_path / "nope.pem")})
    s = Settings.from_env({**base, "TONGLU_TLS_CERT": str(cert), "TONGLU_TLS_KEY": str(key)})
    assert s.base_url.startswith("https://") and certificate_paths(s) == (cert, key)
    plain = Settings.from_env(base)
    assert plain.base_url.startswith("http://") and certificate_paths(plain) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_tonglu_up_serves_https_with_the_dev_certificate(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGLU_")}
    env.update(TONGLU_DATA_DIR=str(tmp_path / "data"), TONGLU_HTTP_PORT=str(port), TONGLU_RECORDER_WORKERS="0",
               TONGLU_TRANSCRIBE_WORKERS="0")
    proc = subprocess.Popen([sys.executable, "-m", "tonglu.cli", "up", "--tls-self-signed"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        cert = tmp_path / "data" / "tls" / "dev-cert.pem"
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "tonglu up did not answer over HTTPS"
            try:
                trust = ssl.create_default_context(cafile=str(cert))
                r = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=trust, timeout=2)
                if r.status_code == 200:
                    break
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(0.3)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/livez", timeout=3).raise_for_status()
        with pytest.raises(httpx.ConnectError):  # not trusted without the certificate
            httpx.get(f"https://127.0.0.1:{port}/livez", timeout=3)
    finally:
        proc.terminate()
        proc.wait(30)
