"""A real PostgreSQL 15 (Debian's) holding Orchest's two databases, for the session.

Started on first use (fixture ``orchest_db``) in a temporary data folder, as the
``postgres`` system user when the tests run as root, listening on 127.0.0.1 only with
password authentication, as Orchest's ``orchest-database`` did. The schemas are
``tests/fixtures/orchest_db/*.sql`` (written from Orchest's models and migrations);
``OrchestDb.load`` replaces every row with an installation's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deployment import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCHEMAS = Path(__file__).resolve().parent / "fixtures" / "orchest_db"
DATABASES = ("orchest_api", "orchest_webserver")


@dataclass
class OrchestDb:
    host: str
    port: int
    password: str

    @property
    def url(self) -> str:
        """What a user passes to ``import --db``: the server, no database."""
        return f"postgresql://postgres:{self.password}@{self.host}:{self.port}/"

    def connect(self, dbname: str) -> Any:
        import psycopg2

        return psycopg2.connect(self.url, dbname=dbname)

    def load(self, rows: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]]) -> None:
        """Replace every row: ``{database: {table: [row, ...]}}``, tables in FK order."""
        import psycopg2.extras

        for dbname, tables in rows.items():
            conn = self.connect(dbname)
            try:
                with conn, conn.cursor() as cur:
                    cur.execute("SELECT tablename FROM pg_tables WHERE schemaname='public' "
                                "AND tablename <> 'event_types'")
                    names = [r[0] for r in cur.fetchall()]
                    cur.execute(f"TRUNCATE {', '.join(names)} CASCADE")
                    for table, table_rows in tables.items():
                        for row in table_rows:
                            cols = list(row)
                            values = [psycopg2.extras.Json(v) if isinstance(v, (dict, list))
                                      else v for v in row.values()]
                            cur.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                                        f"({', '.join(['%s'] * len(cols))})", values)
            finally:
                conn.close()


def _run(*cmd: str, user: str | None) -> None:
    if user:
        cmd = ("runuser", "-u", user, "--", *cmd)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-2000:]}{result.stderr[-2000:]}"


@pytest.fixture(scope="session")
def orchest_db() -> Iterator[OrchestDb]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is missing: apt-get install postgresql-15 "
                    "(scripts/setup.sh installs it)")
    user = "postgres" if os.geteuid() == 0 else None
    # Not under pytest's 0700 temp root: the postgres user must reach its folder.
    root = Path(tempfile.mkdtemp(prefix="orchest-pg-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    if user:
        shutil.chown(root, user, user)
        shutil.chown(sockets, user, user)
    password = secrets.token_hex(12)
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if user:
        shutil.chown(pwfile, user, user)
    _run(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
         "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", user=user)
    pwfile.unlink()
    port = free_port()
    options = f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
    _run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w",
         "-t", "60", "-o", options, "start", user=user)
    db = OrchestDb("127.0.0.1", port, password)
    try:
        import psycopg2

        admin = psycopg2.connect(db.url, dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cur:
            for name in DATABASES:
                cur.execute(f"CREATE DATABASE {name}")
        admin.close()
        for name in DATABASES:
            conn = db.connect(name)
            with conn, conn.cursor() as cur:
                cur.execute((SCHEMAS / f"{name}.sql").read_text())
            conn.close()
        yield db
    finally:
        with contextlib.suppress(AssertionError):
            _run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop",
                 user=user)
        shutil.rmtree(root, ignore_errors=True)
