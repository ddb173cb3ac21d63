"""The machine's own PostgreSQL cluster (Debian's `postgresql` package), set up for the gateway.

No Docker here, so development, tests and CI use the Debian cluster, driven with Debian's
wrappers (`pg_lsclusters`, `pg_ctlcluster`, `pg_createcluster`). It is installed when missing,
which a fresh CI machine needs. SQL runs through `psql`, as the `postgres` OS user for admin
work (peer authentication on the Unix socket) so that no superuser password is needed.

Stdlib only: this must run before the application's dependencies (psycopg) are importable.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

ROLE = "akave"
PASSWORD = "akave"
DATABASE = "akave_gateway"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 60
LOCK_FILE = "/tmp/localinfra-postgres.lock"


class PostgresError(RuntimeError):
    """The local PostgreSQL could not be installed, started or prepared."""


@dataclass(frozen=True)
class Cluster:
    """One row of `pg_lsclusters`."""

    version: str
    name: str
    port: int
    status: str  # "online", "down", "online,recovery", ...

    @property
    def online(self) -> bool:
        return self.status.startswith("online")


def ensure_postgres(url: str | None = None) -> str:
    """Return a SQLAlchemy URL of a database the gateway can use, preparing it if needed.

    An explicit `url` (or `DATABASE_URL`) wins and is only normalised, so CI or a developer
    can point at any server. Otherwise the machine's cluster is installed, started and given
    the `akave` role and `akave_gateway` database; when all that is already so, this is three
    quick subprocesses (about 0.1 s).
    """
    url = url or os.environ.get("DATABASE_URL")
    if url:
        return sqlalchemy_url(url)
    with _lock():
        cluster = _start()
        found = _psql_admin(
            cluster,
            f"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = '{ROLE}'),"
            f" (SELECT count(*) FROM pg_database WHERE datname = '{DATABASE}')",
        ).split("|")
        if found[0] == "0":
            _psql_admin(cluster, f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'")
        if found[1] == "0":
            _psql_admin(cluster, f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    return f"postgresql+psycopg://{ROLE}:{PASSWORD}@{HOST}:{cluster.port}/{DATABASE}"


def create_database(admin_url: str, name: str, *, drop_existing: bool = True) -> str:
    """Create database `name` owned by `admin_url`'s role; return its SQLAlchemy URL.

    Tests use it for an isolated database each. It connects with `admin_url` itself (the role
    has CREATEDB), so it also works against a server given by `DATABASE_URL`. `WITH (FORCE)`
    drops a database that a crashed earlier run left connections to.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name must be a plain lower-case identifier: {name!r}")
    admin = sqlalchemy_url(admin_url)
    libpq = admin.replace("postgresql+psycopg://", "postgresql://", 1)
    if drop_existing:
        _psql_url(libpq, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    exists = _psql_url(libpq, f"SELECT count(*) FROM pg_database WHERE datname = '{name}'")
    if exists == "0":
        _psql_url(libpq, f"CREATE DATABASE {name}")
    parts = urlsplit(admin)
    return urlunsplit(parts._replace(path=f"/{name}"))


def drop_database(url: str) -> None:
    """Drop the database `url` names (connecting to its server's `postgres` database)."""
    admin = sqlalchemy_url(url)
    parts = urlsplit(admin)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
        raise ValueError(f"database name must be a plain lower-case identifier: {name!r}")
    libpq = urlunsplit(parts._replace(path="/postgres")).replace(
        "postgresql+psycopg://", "postgresql://", 1
    )
    _psql_url(libpq, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def sqlalchemy_url(url: str) -> str:
    """`postgres://` and `postgresql://` URLs in the form SQLAlchemy needs for psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def find_cluster() -> Cluster | None:
    """The cluster to use: an online one if any, else the newest version's first one."""
    if shutil.which("pg_lsclusters") is None:
        return None
    result = _run(["pg_lsclusters", "--no-header"])
    clusters = [
        Cluster(version=f[0], name=f[1], port=int(f[2]), status=f[3])
        for f in (line.split() for line in result.splitlines())
        if len(f) >= 4
    ]
    if not clusters:
        return None
    online = [c for c in clusters if c.online]
    return (online or sorted(clusters, key=lambda c: -float(c.version)))[0]


def start_postgres() -> Cluster:
    """Install, create and start the machine's cluster as far as needed; wait until it serves.

    Debian starts clusters with `pg_ctlcluster` run as root (it switches to the `postgres`
    user itself and creates /var/run/postgresql, which that user cannot). There is no systemd
    in our containers, so nothing starts the cluster at boot: CI must call this.
    """
    with _lock():
        return _start()


def stop_postgres() -> None:
    """Stop the machine's cluster (fast mode: open connections are cut), for outage tests."""
    with _lock():
        cluster = find_cluster()
        if cluster is not None and cluster.online:
            _run(_as_root(["pg_ctlcluster", cluster.version, cluster.name, "stop", "-m", "fast"]))


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Parallel test workers must not install, start or create the same things at once."""
    with open(LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _start() -> Cluster:
    if not _server_versions():
        _install_postgresql()
    cluster = find_cluster()
    if cluster is None:
        version = _server_versions()[-1]
        _run(_as_root(["pg_createcluster", version, "main"]))
        cluster = find_cluster()
        if cluster is None:
            raise PostgresError("pg_createcluster ran but pg_lsclusters lists no cluster")
    if not cluster.online:
        _run(_as_root(["pg_ctlcluster", cluster.version, cluster.name, "start"]))
    _wait_ready(cluster)
    return Cluster(cluster.version, cluster.name, cluster.port, "online")


def _server_versions() -> list[str]:
    paths = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    return sorted((p.split("/")[4] for p in paths), key=float)


def _install_postgresql() -> None:
    if os.geteuid() != 0:
        raise PostgresError(
            "PostgreSQL is not installed and this is not root: run "
            "`sudo apt-get update && sudo apt-get install -y postgresql`, or set DATABASE_URL"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update"], env=env, timeout=600)
    install = ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"]
    _run(install, env=env, timeout=900)
    if not _server_versions():
        raise PostgresError("apt-get installed postgresql but no server binary was found")


def _wait_ready(cluster: Cluster) -> None:
    """TCP first (cheap), then a query: a starting server accepts connections it then refuses."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        try:
            with socket.create_connection((HOST, cluster.port), timeout=1):
                pass
            _psql_admin(cluster, "SELECT 1")
            return
        except (OSError, PostgresError) as exc:
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"PostgreSQL {cluster.version}/{cluster.name} is not accepting connections "
                    f"on port {cluster.port}: {exc}"
                ) from exc
            time.sleep(0.1)


def _psql_admin(cluster: Cluster, sql: str) -> str:
    """Run SQL as the superuser through the Unix socket (peer auth, no password)."""
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-p", str(cluster.port),
           "-d", "postgres", "-c", sql]  # fmt: skip
    return _run(_as_postgres(cmd))


def _psql_url(url: str, sql: str) -> str:
    if shutil.which("psql") is None:
        raise PostgresError("psql is not installed: apt-get install -y postgresql-client")
    return _run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-d", url, "-c", sql])


def _as_root(cmd: list[str]) -> list[str]:
    return cmd if os.geteuid() == 0 else ["sudo", "-n", *cmd]


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    if pwd.getpwuid(os.geteuid()).pw_name == "postgres":
        return cmd
    return ["sudo", "-n", "-u", "postgres", *cmd]


def _run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run from / so that tools running as `postgres` don't complain about our cwd."""
    try:
        result = subprocess.run(
            cmd, cwd="/", env=env, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresError(f"{' '.join(cmd)}: {exc}") from exc
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise PostgresError(f"{' '.join(cmd)} failed ({result.returncode}): {output}")
    return result.stdout.strip()


class PrivatePostgres:
    """A throwaway PostgreSQL cluster of its own (own data dir, port and socket dir).

    For the fault suite, which stops and starts its database: the machine's cluster is shared
    and must never be stopped. `initdb` into a temporary directory, then `pg_ctl` start/stop
    any number of times on the same data; `destroy()` stops it and removes the files. Run as
    the `postgres` OS user when we are root (the server refuses to run as root), else as us.
    Local socket connections use peer authentication, TCP ones the `akave` role's password.
    """

    def __init__(self, port: int, *, base_dir: str | None = None) -> None:
        self.port = port
        self.dir = base_dir or tempfile.mkdtemp(prefix="akave-private-pg-")
        self.data_dir = os.path.join(self.dir, "data")
        self.socket_dir = os.path.join(self.dir, "sockets")
        self.log_file = os.path.join(self.dir, "postgres.log")

    @property
    def admin_url(self) -> str:
        """The `akave` role (CREATEDB) on this cluster's `postgres` database."""
        return f"postgresql+psycopg://{ROLE}:{PASSWORD}@{HOST}:{self.port}/postgres"

    def start(self) -> None:
        """Create the cluster on first use, start it and wait until it answers."""
        with _lock():
            if not _server_versions():
                _install_postgresql()
        fresh = not os.path.exists(os.path.join(self.data_dir, "PG_VERSION"))
        if fresh:
            self._init()
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses={HOST}"
        self._pg_ctl("start", "-w", "-t", str(READY_TIMEOUT_S), "-l", self.log_file, "-o", options)
        if fresh:
            sql = f"CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{PASSWORD}'"
            self._run_bin("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.socket_dir,
                          "-p", str(self.port), "-d", "postgres", "-c", sql)  # fmt: skip

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as in an outage."""
        self._pg_ctl("stop", "-w", "-m", "fast")

    def destroy(self) -> None:
        with contextlib.suppress(PostgresError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _init(self) -> None:
        os.makedirs(self.socket_dir, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            for path in (self.dir, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run_bin("initdb", "-D", self.data_dir, "-U", "postgres", "-E", "UTF8",
                      "--auth-local=peer", "--auth-host=scram-sha-256")  # fmt: skip

    def _pg_ctl(self, *args: str) -> str:
        return self._run_bin("pg_ctl", "-D", self.data_dir, *args)

    def _run_bin(self, name: str, *args: str) -> str:
        binary = os.path.join("/usr/lib/postgresql", _server_versions()[-1], "bin", name)
        cmd = [binary, *args]
        return _run(["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd)
