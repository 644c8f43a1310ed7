"""A private PostgreSQL server on loopback, from the Debian `postgresql-15` binaries.

    pg = LocalPostgres(base_dir)
    pg.start()             # initdb once, then pg_ctl start on a free port; ~1-2 s
    url = pg.url("tonglu") # postgresql+psycopg://tonglu@127.0.0.1:PORT/tonglu (database created)
    ...
    pg.stop()              # pg_ctl stop -m fast

For development and tests (`tonglu db up`, the test fixtures, `tonglu bench scale`); production
points `TONGLU_DATABASE_URL` at its own server. The server listens on 127.0.0.1 only, trusts local
connections (loopback, this OS user) and keeps everything under `base_dir` (mode 0700).

PostgreSQL refuses to run as root. When this process is root (CI, containers) the data directory
is handed to the `postgres` OS user that the Debian package creates, and `initdb`/`pg_ctl` run as
that user through `runuser`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tonglu.evidence.errors import ConfigError, StoreUnavailable

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
SUPERUSER = "tonglu"
START_TIMEOUT_S = 30.0


def find_bin_dir() -> Path:
    """The directory with initdb/pg_ctl/postgres, or ConfigError saying how to install them."""
    env = os.environ.get("TONGLU_PG_BIN")
    candidates = [env] if env else []
    candidates += list(PG_BIN_DIRS)
    for cand in candidates:
        if cand and (Path(cand) / "pg_ctl").exists() and (Path(cand) / "initdb").exists():
            return Path(cand)
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    raise ConfigError(
        "PostgreSQL server binaries not found (initdb, pg_ctl): install the Debian package "
        "`postgresql-15` (scripts/setup --test does) or set TONGLU_PG_BIN"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalPostgres:
    base_dir: Path
    port: int = 0
    password: str | None = None  # None: trust loopback; else the superuser logs in with it (SCRAM)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", "postgres", "--", *argv]

    def _traversable(self) -> None:
        """As root: let the postgres user reach base_dir (search bit only on each ancestor)."""
        if os.geteuid() != 0:
            return
        for parent in self.base_dir.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, (mode & 0o7777) | 0o001)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def start(self) -> None:
        bindir = find_bin_dir()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o700 if os.geteuid() != 0 else 0o711)
        self._chown(self.base_dir)
        self._traversable()
        port_file = self.base_dir / "port"
        if not self.port:
            self.port = int(port_file.read_text()) if port_file.exists() else _free_port()
        port_file.write_text(str(self.port))
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            self._chown(self.data_dir)
            auth = ["--auth=trust"]
            if self.password is not None:
                pwfile = self.base_dir / "pwfile"
                pwfile.write_text(self.password + "\n")
                os.chmod(pwfile, 0o600)
                self._chown(pwfile)
                auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
            init = subprocess.run(
                self._as_owner([str(bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                                *auth, "-E", "UTF8", "--locale=C.UTF-8"]),
                capture_output=True, text=True, cwd="/",
            )
            if init.returncode != 0:
                raise StoreUnavailable(f"PostgreSQL initdb failed: {init.stderr.strip()[-2000:]}")
        self.log_path.touch()
        self._chown(self.log_path)
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='' " \
               "-c fsync=on -c max_connections=200"
        proc = subprocess.run(
            self._as_owner([str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                            "-o", opts, "-w", "-t", str(int(START_TIMEOUT_S)), "start"]),
            capture_output=True, text=True, cwd="/",
        )
        if proc.returncode != 0:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise StoreUnavailable(f"PostgreSQL did not start: {proc.stderr.strip()} {tail}")

    def stop(self) -> None:
        bindir = find_bin_dir()
        if (self.data_dir / "postmaster.pid").exists():
            subprocess.run(self._as_owner([str(bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                                           "-w", "stop"]), capture_output=True, cwd="/")

    def url(self, database: str = "tonglu", driver: str = "psycopg") -> str:
        """A SQLAlchemy URL for `database`, created on first use."""
        self.create_database(database)
        login = SUPERUSER if self.password is None else f"{SUPERUSER}:{self.password}"
        return f"postgresql+{driver}://{login}@127.0.0.1:{self.port}/{database}"

    def drop_database(self, database: str) -> None:
        """Drop `database`, ending any connection still open to it (tests: one database each)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def create_database(self, database: str) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                conn = psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
                                       dbname="postgres", autocommit=True)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{database}"')
