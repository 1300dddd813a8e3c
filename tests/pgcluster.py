"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl on a free loopback port.

Debian's `postgresql` package provides the binaries (no container image can be pulled here). The
cluster runs as the `postgres` user when the tests run as root (PostgreSQL refuses to run as root),
lives in a temporary directory, and only this cluster is ever stopped.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def postgres_bindir() -> Path | None:
    """The newest installed server's bin directory (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    bindir: Path
    datadir: Path
    port: int
    password: str
    user: str | None  # the OS user the server runs as (None: ourselves)

    def url(self, database: str = "sandboxctl") -> str:
        return f"postgresql+psycopg://sandboxctl:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.datadir} -c max_connections=200 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-o", options, "-l", str(self.datadir / "server.log"), "-w", "start"
        )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "stop", check=False)

    def restart(self) -> None:
        # -l again: without it the new server inherits our pipes and pg_ctl's caller never sees EOF.
        log = str(self.datadir / "server.log")
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-l", log, "-w", "restart")

    def sql(self, statement: str, database: str = "postgres") -> str:
        return self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database, "-Atc", statement
        ).stdout

    def create_database(self, name: str) -> str:
        self.sql(f'CREATE DATABASE "{name}" OWNER sandboxctl')
        return self.url(name)


def start_cluster() -> Cluster:
    """initdb a fresh cluster in a temp dir, start it, and create the `sandboxctl` role with a password."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="sandboxctl-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
        os.chown(datadir, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(bindir, datadir, _free_port(), secrets.token_hex(8), user)
    cluster._run("initdb", "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    cluster.start()
    cluster.sql(f"CREATE ROLE sandboxctl LOGIN PASSWORD '{cluster.password}'")
    cluster.create_database("sandboxctl")
    return cluster


def remove_cluster(cluster: Cluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.datadir.parent, ignore_errors=True)
