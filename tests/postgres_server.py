"""A real PostgreSQL server for the tests: initdb in a temporary folder, listening on 127.0.0.1 on a free port,
password authentication (so [database] password_env is exercised for real), stopped and deleted at the end.

The binaries are looked for on PATH, in /usr/local/bin and in /usr/lib/postgresql/<version>/bin (where Debian's
postgresql package puts them; .ci/run installs it). initdb and postgres refuse to run as root, so as root they run
as the `postgres` user (Debian's package makes it), through runuser.

Each test gets a database of its own, copied from a template the store's migrations already ran on (CREATE
DATABASE ... TEMPLATE: a few milliseconds), and dropped afterwards.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
TEMPLATE = "digest_template"
PASSWORD_ENV = "DIGEST_TEST_DB_PASSWORD"
# .ci/run sets this: there, a missing server or driver fails the postgres variants instead of skipping them.
REQUIRE_ENV = "DIGEST_REQUIRE_POSTGRES"


def find_binaries() -> Path | None:
    """The folder holding initdb, pg_ctl and postgres: PATH first, then /usr/local/bin, then the newest
    /usr/lib/postgresql/<version>/bin."""
    folders = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    folders.append(Path("/usr/local/bin"))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0), reverse=True)
    folders += [Path(p) for p in versions]
    for folder in folders:
        if all((folder / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def why_unavailable() -> str | None:
    """Why the postgres variants cannot run here (None: they can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]' installs it)"
    if find_binaries() is None:
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) on PATH, in /usr/local/bin or in "
            "/usr/lib/postgresql/*/bin; install Debian's postgresql package (.ci/run does)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return f"running as root and there is no '{SUPERUSER}' user to run the server as (initdb refuses root)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    def __init__(self, *, durable: bool = False) -> None:
        """durable=False (the tests): fsync, synchronous_commit and full_page_writes off. durable=True (the scale
        benchmark's --postgres-temp): PostgreSQL's defaults, every commit flushed to disk as in production."""
        binaries = find_binaries()
        self.durable = durable
        assert binaries is not None
        self.bin = binaries
        self.password = secrets.token_urlsafe(16)
        self.root = Path(tempfile.mkdtemp(prefix="digest-pg-"))
        self.data = self.root / "data"
        self.port = 0
        self._names = itertools.count(1)
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", SUPERUSER, "--"]

    def _run(self, *args: str) -> None:
        ran = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=120, cwd=self.root)
        if ran.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {ran.stdout[-2000:]}{ran.stderr[-2000:]}")

    def start(self) -> None:
        secret = self.root / "password"
        secret.write_text(self.password + "\n", encoding="utf-8")
        if self._as:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(secret, user.pw_uid, user.pw_gid)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={secret}",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        )
        secret.unlink()
        for attempt in range(3):
            self.port = _free_port()
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200"
            )
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            try:
                self._run(
                    str(self.bin / "pg_ctl"),
                    "start",
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                )
                break
            except RuntimeError:
                if attempt == 2:
                    log = (self.root / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"the test PostgreSQL server did not start:\n{log}") from None
        from digest.store import PostgresEngine, Store

        self.admin(f"CREATE DATABASE {TEMPLATE}")
        with Store(self.root / "unused.db", engine=PostgresEngine(self.url(TEMPLATE), self.password)):
            pass  # the migrations run once, in the template every test's database is copied from

    def stop(self) -> None:
        if self.port:
            try:
                self._run(str(self.bin / "pg_ctl"), "stop", "-D", str(self.data), "-m", "immediate", "-w")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self, *statements: str) -> list[Any]:
        """Run statements on the server's own database (outside any transaction); the last one's rows."""
        import psycopg

        rows: list[Any] = []
        with psycopg.connect(self.url("postgres"), password=self.password, autocommit=True) as db:
            for statement in statements:
                cursor = db.execute(statement)  # type: ignore[call-overload]
                rows = cursor.fetchall() if cursor.description else []
        return rows

    def new_database(self, *, migrated: bool = True) -> str:
        """A database of its own: the store's schema already in it, or (migrated=False) empty."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE if migrated else 'template1'}")
        return name

    def drop(self, name: str) -> None:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
