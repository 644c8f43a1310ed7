"""Settings read once from the environment into a typed, frozen object.

Every variable is documented in README.md. Nothing here touches the network or the disk.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable holds a value Tonglu cannot use."""


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an integer") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of IP addresses or CIDR networks, each checked."""
    out = []
    for part in (env.get(name) or "").split(","):
        item = part.strip()
        if not item:
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise SettingsError(f"{name}: {item!r} is not an IP address or CIDR network") from exc
        out.append(item)
    return tuple(out)


def _opt(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw if raw else None


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    public_url: str | None = None
    s3_endpoint: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_region: str = "us-east-1"
    evidence_bucket: str = "tonglu-evidence"
    work_bucket: str = "tonglu-work"
    retention_days: int = 3650
    retention_seconds: int | None = None
    # Case category -> retention, JSON: {"minor": "3650d", "homicide": "permanent", "test": "30s"}
    # merged over the built-in categories of `evidence.retention` (see there).
    retention_categories: str | None = None
    database_url: str | None = None
    admin_token: str | None = None
    segment_seconds: float = 4.0
    video_gap_frames: float = 2.0
    audio_gap_ms: int = 60
    checkpoint_interval_s: float = 300.0
    recorder_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    transcribe_workers: int = 1
    whisper_model: str | None = None
    whisper_compute_type: str = "int8"
    whisper_language: str | None = "zh"
    log_level: str = "INFO"
    risk_rules: Path | None = None  # a site's risk rule file (YAML); None: the shipped default
    # Security: proxies whose X-Forwarded-For/-Proto are believed (none by default: a header
    # anyone can send must not choose the address that login throttling and the audit trail see).
    trusted_proxies: tuple[str, ...] = ()
    http_keepalive_s: float = 5.0  # idle keep-alive connection closed after this
    http_read_timeout_s: float = 20.0  # a request's headers, then its body, must arrive within this
    api_token_ttl_days: int = 90  # API tokens issued without an explicit ttl expire after this
    export_ttl_s: int = 3600  # export packages built for a download are deleted after this at most
    tls_cert: Path | None = None  # PEM certificate chain for HTTPS
    tls_key: Path | None = None  # its private key
    tls_self_signed: bool = False  # generate (once) and serve a self-signed development certificate
    # -- several hosts (docs/deploy/): recorder hosts register with the web tier using this secret
    registration_secret: str | None = None
    heartbeat_s: float = 2.0  # a recorder host's heartbeat; dead after 3 missed
    # -- reachable from real rooms: ICE host candidates on this address and UDP port range; TURN
    ice_host: str | None = None
    ice_port_min: int | None = None
    ice_port_max: int | None = None
    turn_url: str | None = None  # turn:turn.example:3478 (coturn use-auth-secret)
    turn_secret: str | None = None
    turn_ttl_s: int = 3600
    max_participants: int = 20  # remote participants one session admits (TONGLU_MAX_PARTICIPANTS)
    # what the recorder keeps of the consulting parties during a lawyer consultation (CPL art. 39):
    # "not_recorded" (default: their media is not written, one explained gap per track) | "recorded"
    consultation_recording: str = "not_recorded"

    @property
    def tls(self) -> bool:
        return self.tls_self_signed or self.tls_cert is not None

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def embedded_store(self) -> bool:
        return self.s3_endpoint is None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'index.db'}"

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls else "http"
        return self.public_url or f"{scheme}://{self.http_host}:{self.http_port}"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def ledger_dir(self) -> Path:
        return self.data_dir / "ledger"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"

    @property
    def object_lock_retention_seconds(self) -> int:
        return self.retention_seconds if self.retention_seconds else self.retention_days * 86400

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("TONGLU_DATA_DIR") or ".data").expanduser().resolve()
        settings = cls(
            data_dir=data_dir,
            http_host=env.get("TONGLU_HTTP_HOST") or "127.0.0.1",
            http_port=_int(env, "TONGLU_HTTP_PORT", 8000),
            public_url=_opt(env, "TONGLU_PUBLIC_URL"),
            s3_endpoint=_opt(env, "TONGLU_S3_ENDPOINT"),
            s3_access_key=_opt(env, "TONGLU_S3_ACCESS_KEY"),
            s3_secret_key=_opt(env, "TONGLU_S3_SECRET_KEY"),
            s3_region=env.get("TONGLU_S3_REGION") or "us-east-1",
            evidence_bucket=env.get("TONGLU_EVIDENCE_BUCKET") or "tonglu-evidence",
            work_bucket=env.get("TONGLU_WORK_BUCKET") or "tonglu-work",
            retention_days=_int(env, "TONGLU_RETENTION_DAYS", 3650),
            retention_seconds=_int(env, "TONGLU_RETENTION_SECONDS", 0) or None,
            retention_categories=_opt(env, "TONGLU_RETENTION_CATEGORIES"),
            database_url=_opt(env, "TONGLU_DATABASE_URL"),
            admin_token=_opt(env, "TONGLU_ADMIN_TOKEN"),
            segment_seconds=_float(env, "TONGLU_SEGMENT_SECONDS", 4.0),
            video_gap_frames=_float(env, "TONGLU_VIDEO_GAP_FRAMES", 2.0),
            audio_gap_ms=_int(env, "TONGLU_AUDIO_GAP_MS", 60),
            checkpoint_interval_s=_float(env, "TONGLU_CHECKPOINT_INTERVAL_S", 300.0),
            recorder_workers=_int(env, "TONGLU_RECORDER_WORKERS", os.cpu_count() or 1),
            transcribe_workers=_int(env, "TONGLU_TRANSCRIBE_WORKERS", 1),
            whisper_model=_opt(env, "TONGLU_WHISPER_MODEL"),
            whisper_compute_type=env.get("TONGLU_WHISPER_COMPUTE_TYPE") or "int8",
            whisper_language=(env.get("TONGLU_WHISPER_LANGUAGE", "zh") or None),
            log_level=env.get("TONGLU_LOG_LEVEL") or "INFO",
            tls_cert=Path(cert).expanduser() if (cert := _opt(env, "TONGLU_TLS_CERT")) else None,
            tls_key=Path(key).expanduser() if (key := _opt(env, "TONGLU_TLS_KEY")) else None,
            tls_self_signed=(env.get("TONGLU_TLS_SELF_SIGNED") or "").lower() in ("1", "true", "yes"),
            trusted_proxies=_networks(env, "TONGLU_TRUSTED_PROXIES"),
            http_keepalive_s=_float(env, "TONGLU_HTTP_KEEPALIVE_S", 5.0),
            http_read_timeout_s=_float(env, "TONGLU_HTTP_READ_TIMEOUT_S", 20.0),
            api_token_ttl_days=_int(env, "TONGLU_API_TOKEN_TTL_DAYS", 90),
            export_ttl_s=_int(env, "TONGLU_EXPORT_TTL_S", 3600),
            risk_rules=Path(rules).expanduser() if (rules := _opt(env, "TONGLU_RISK_RULES")) else None,
            registration_secret=_opt(env, "TONGLU_REGISTRATION_SECRET"),
            heartbeat_s=_float(env, "TONGLU_HEARTBEAT_S", 2.0),
            ice_host=_opt(env, "TONGLU_ICE_HOST"),
            ice_port_min=_int(env, "TONGLU_ICE_PORT_MIN", 0) or None,
            ice_port_max=_int(env, "TONGLU_ICE_PORT_MAX", 0) or None,
            turn_url=_opt(env, "TONGLU_TURN_URL"),
            turn_secret=_opt(env, "TONGLU_TURN_SECRET"),
            turn_ttl_s=_int(env, "TONGLU_TURN_TTL_S", 3600),
            max_participants=_int(env, "TONGLU_MAX_PARTICIPANTS", 20),
            consultation_recording=env.get("TONGLU_CONSULTATION_RECORDING") or "not_recorded",
        )
        if (settings.ice_port_min is None) != (settings.ice_port_max is None):
            raise SettingsError("TONGLU_ICE_PORT_MIN and TONGLU_ICE_PORT_MAX must be set together")
        if settings.ice_port_min is not None and not (
            1024 <= settings.ice_port_min <= (settings.ice_port_max or 0) < 65536
        ):
            raise SettingsError("TONGLU_ICE_PORT_MIN..MAX must be a range within 1024..65535")
        if (settings.turn_url is None) != (settings.turn_secret is None):
            raise SettingsError("TONGLU_TURN_URL and TONGLU_TURN_SECRET must be set together")
        if settings.turn_url is not None:
            bad = [u for u in settings.turn_url.split(",") if not u.strip().startswith(("turn:", "turns:"))]
            if bad:
                raise SettingsError(f"TONGLU_TURN_URL entries must start with turn: or turns: (got {bad[0]!r})")
        if not 60 <= settings.turn_ttl_s <= 86_400:
            raise SettingsError(f"TONGLU_TURN_TTL_S must be between 60 and 86400 (got {settings.turn_ttl_s})")
        if settings.registration_secret is not None and len(settings.registration_secret) < 16:
            raise SettingsError("TONGLU_REGISTRATION_SECRET must be at least 16 characters")
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise SettingsError("TONGLU_TLS_CERT and TONGLU_TLS_KEY must be set together")
        if settings.tls_cert is not None and settings.tls_self_signed:
            raise SettingsError("TONGLU_TLS_SELF_SIGNED and TONGLU_TLS_CERT exclude each other")
        for name, path in (("TONGLU_TLS_CERT", settings.tls_cert), ("TONGLU_TLS_KEY", settings.tls_key)):
            if path is not None and not path.is_file():
                raise SettingsError(f"{name}={path} is not a readable file")
        if settings.s3_endpoint and not (settings.s3_access_key and settings.s3_secret_key):
            raise SettingsError("TONGLU_S3_ENDPOINT is set but TONGLU_S3_ACCESS_KEY/TONGLU_S3_SECRET_KEY are not")
        if not 0 < settings.http_port < 65536:
            raise SettingsError(f"TONGLU_HTTP_PORT={settings.http_port} is not a valid port")
        if settings.segment_seconds <= 0:
            raise SettingsError("TONGLU_SEGMENT_SECONDS must be positive")
        if settings.http_keepalive_s <= 0 or settings.http_read_timeout_s <= 0:
            raise SettingsError("TONGLU_HTTP_KEEPALIVE_S and TONGLU_HTTP_READ_TIMEOUT_S must be positive")
        if not 1 <= settings.api_token_ttl_days <= 366:
            raise SettingsError("TONGLU_API_TOKEN_TTL_DAYS must be between 1 and 366")
        if not 1 <= settings.max_participants <= 200:
            raise SettingsError("TONGLU_MAX_PARTICIPANTS must be between 1 and 200")
        if settings.consultation_recording not in ("not_recorded", "recorded"):
            raise SettingsError("TONGLU_CONSULTATION_RECORDING must be not_recorded or recorded")
        if settings.export_ttl_s < 60:
            raise SettingsError("TONGLU_EXPORT_TTL_S must be at least 60")
        return settings
