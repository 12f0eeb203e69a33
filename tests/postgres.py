"""A real PostgreSQL 15 for the test session (Debian's ``postgresql``), started on first use.

The session's Airflow deployment (``tests/deployment.py``) keeps its metadata here: on
SQLite the api-server's writes (a REST ``PATCH`` of a DAG run) collided with the
scheduler's ("database is locked", HTTP 500). One server per session, on a free port of
127.0.0.1, with its own data folder and unix socket folder in a temporary directory;
as root it runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
Each user of it asks for a database of its own (``PostgresServer.database(name)``).
Durability is off (``fsync``, ``synchronous_commit``, ``full_page_writes``): the data
lives as long as the session.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
#: The system user the server runs as when the tests run as root.
SYSTEM_USER = "postgres"
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: where it listens and how to reach a database of one's own."""

    root: Path
    port: int
    user: str | None  #: the system user it runs as (None: the current user)
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    databases: set[str] = field(default_factory=set)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A PostgreSQL client or server program, as the server's system user."""
        args = list(cmd)
        if self.user:
            args = ["runuser", "-u", self.user, "--", *args]
        result = subprocess.run(args, capture_output=True, text=True, timeout=120,
                                check=False)
        if check and result.returncode:
            pytest.fail(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}"
                        f"{result.stderr}\n{self.log_tail()}")
        return result

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "--- postgres ---\n" + "\n".join(text.splitlines()[-lines:])

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the unix socket; its unaligned output."""
        return self.run(str(PG_BIN / "psql"), "-h", str(self.socket_dir), "-p", str(self.port),
                        "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-tAc",
                        sql).stdout.strip()

    def database(self, name: str) -> str:
        """A database ``name`` owned by the role ``name`` (made once); its SQLAlchemy URL
        (``postgresql+psycopg2://``, TCP on 127.0.0.1)."""
        if name not in self.databases:
            if self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{name}'") != "1":
                self.psql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{self.password}'")
            if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
                self.psql(f"CREATE DATABASE \"{name}\" OWNER \"{name}\"")
            self.databases.add(name)
        return f"postgresql+psycopg2://{name}:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                     "stop", check=False)


def start_server() -> PostgresServer:
    """initdb a fresh cluster in a temporary folder and start it (``pg_ctl -w``)."""
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 missing (/usr/lib/postgresql/15/bin): scripts/setup.sh "
                    "installs it (apt-get install postgresql)")
    user = SYSTEM_USER if os.geteuid() == 0 else None
    # Not under pytest's basetemp: that folder is private to root, the server's user
    # must reach its data folder.
    root = Path(tempfile.mkdtemp(prefix="aoj-postgres-"))
    server = PostgresServer(root=root, port=_free_port(), user=user)
    server.socket_dir.mkdir()
    server.log.touch()
    if user:
        record = pwd.getpwnam(user)
        for path in (root, server.socket_dir, server.log):
            os.chown(path, record.pw_uid, record.pw_gid)
    server.run(str(PG_BIN / "initdb"), "-D", str(server.data), "-U", "postgres", "-E", "UTF8",
               "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256")
    settings = {**SETTINGS, "port": str(server.port),
                "unix_socket_directories": f"'{server.socket_dir}'"}
    with open(server.data / "postgresql.conf", "a") as conf:
        conf.write("".join(f"\n{key} = {value}" for key, value in settings.items()) + "\n")
    server.run(str(PG_BIN / "pg_ctl"), "-D", str(server.data), "-l", str(server.log), "-w",
               "-t", "60", "start")
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """PostgreSQL 15 on 127.0.0.1 for the session; ``.database(name)`` gives a URL."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(server.root)
