"""A real PostgreSQL server for the tests (and the benchmark), started from the local binaries.

:class:`PostgresServer` runs one throwaway cluster: ``initdb`` into a temp directory, the
server on a free port of 127.0.0.1 with its unix socket in that directory (so it never meets
a system server), trust authentication, ``fsync`` left on (durability is what the store
promises). PostgreSQL refuses to run as root, so as root every server program runs as the
``postgres`` user, which owns the temp directory.

The tests share one server per session (:func:`session_server`, stopped at exit). A test
gets an emptied database with the schema from :func:`clean_database`, or a new one without
it from :func:`empty_database` (see :class:`DatabaseFactory` for what each costs). Without
the binaries a test skips locally and fails in CI (tests/external.py).
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from storage.postgres.connection import Database
from tests.external import missing
from tests.serverproc import free_port

SUPERUSER = "postgres"
MAX_CONNECTIONS = 100
# The database most tests share, emptied before each (DatabaseFactory.clean).
REUSABLE = "proware_test"


def find_bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres are: ``pg_config --bindir``, else Debian's layout."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            output = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            )
            candidates.append(output.stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            pass
    # Debian's pg_config (postgresql-common) may name the client-only directory; the server
    # binaries live under /usr/lib/postgresql/<major>/bin, newest first.
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(path.split("/")[-2])
    )[::-1]
    for candidate in candidates:
        bindir = Path(candidate)
        if all((bindir / program).exists() for program in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


class PostgresServer:
    """One throwaway PostgreSQL cluster: :meth:`start`, :meth:`dsn`, :meth:`stop`.

    :param bindir: the server binaries (default: :func:`find_bindir`).
    :param listen_addresses: where it accepts TCP connections (one port for all).
    :param trusted_hosts: addresses other than 127.0.0.1 whose connections it lets in
        without a password (a client across a test's network link).
    """

    def __init__(
        self,
        bindir: Path,
        *,
        listen_addresses: tuple[str, ...] = ("127.0.0.1",),
        trusted_hosts: tuple[str, ...] = (),
    ) -> None:
        self.bindir = bindir
        self.port = 0
        self.directory: Path | None = None
        self.listen_addresses = listen_addresses
        self.trusted_hosts = trusted_hosts
        self._as_root = os.geteuid() == 0

    @property
    def data_dir(self) -> Path:
        assert self.directory is not None, "the server was never started"
        return self.directory / "data"

    def start(self) -> None:
        """initdb (on first start) and start the server; returns once it accepts connections."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="proware-pg-"))
            if self._as_root:
                shutil.chown(self.directory, SUPERUSER, SUPERUSER)
            # --no-sync: the cluster is thrown away; fsync stays on for the server itself.
            self._run(
                "initdb",
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            )
            with (self.data_dir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
                for host in self.trusted_hosts:
                    hba.write(f"host all all {host}/32 trust\n")
            self.port = free_port()
        options = " ".join(
            [
                f"-c listen_addresses={','.join(self.listen_addresses)}",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.directory}",
                f"-c max_connections={MAX_CONNECTIONS}",
                "-c fsync=on",
            ]
        )
        self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.directory / "server.log"),
            "--options",
            options,
            "--wait",
            "--timeout",
            "60",
        )

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast shutdown); with ``remove``, delete its files too."""
        if self.directory is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait")
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def dsn(self, dbname: str = "postgres", *, unix: bool = False) -> str:
        """A libpq connection string for ``dbname`` on this server, over TCP, or with
        ``unix`` over its unix socket (a directory as ``host``)."""
        host = self.directory if unix else "127.0.0.1"
        return f"host={host} port={self.port} user={SUPERUSER} dbname={dbname}"

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for a failure message."""
        if self.directory is None:
            return ""
        try:
            text = (self.directory / "server.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def execute(self, *statements: str) -> None:
        """Run maintenance statements (CREATE DATABASE ...) on the ``postgres`` database."""
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement.encode())

    def _run(self, program: str, *arguments: str) -> None:
        command = [str(self.bindir / program), *arguments]
        if self._as_root:
            command = ["runuser", "-u", SUPERUSER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd="/")
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
                f"\n{self.log_tail()}"
            )


class DatabaseFactory:
    """Databases for tests on one server: empty ones, and one reusable one emptied per use.

    Measured here (fsync on): CREATE DATABASE costs ~35 ms, applying the migrations ~25 ms
    more, and DROP DATABASE ~110 ms, while emptying a migrated database costs ~13 ms. So
    most tests share :meth:`clean`, and only those that need a database without even the
    schema (migrations) pay for :meth:`create`; created databases die with the server.
    """

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._reusable: str | None = None

    def create(self, *, unix: bool = False) -> str:
        """The DSN of a new database with nothing in it, not even Proware's schema (over
        TCP, or with ``unix`` over the server's unix socket)."""
        with self._lock:
            name = f"empty_{next(self._numbers)}"
        self.server.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.server.dsn(name, unix=unix)

    def clean(self) -> str:
        """The DSN of the reusable database, migrated and with every table emptied.

        Sessions a previous test left open on it are ended first, so that none holds a lock
        the emptying waits for.
        """
        with self._lock:
            if self._reusable is None:
                # A language's collation by default, as production databases have: SQL
                # that forgets COLLATE "C" then orders "a" before "B" and tests notice.
                self.server.execute(
                    f"CREATE DATABASE {REUSABLE} TEMPLATE template0 "
                    "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
                )
                self._reusable = self.server.dsn(REUSABLE)
                Database(self._reusable).close()  # applies the migrations
        self.server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{REUSABLE}' AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self._reusable, autocommit=True) as connection:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT quote_ident(tablename) FROM pg_tables "
                    "WHERE schemaname = 'public' AND tablename <> 'proware_schema_migrations'"
                )
            ]
            statement = f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"
            connection.execute(statement.encode())
        return self._reusable


_session: DatabaseFactory | None = None
_session_lock = threading.Lock()


def session_server() -> DatabaseFactory:
    """The test session's server (started on first use, stopped at exit) and its databases.

    Skips the calling test locally, and fails it in CI, when PostgreSQL is not installed.
    """
    global _session
    with _session_lock:
        if _session is None:
            bindir = find_bindir()
            if bindir is None:
                missing("PostgreSQL's server is not installed (apt-get install postgresql)")
                raise AssertionError("unreachable")  # missing() always raises
            server = PostgresServer(bindir)
            atexit.register(server.stop)
            server.start()
            _session = DatabaseFactory(server)
        return _session


def clean_database() -> str:
    """The DSN of an emptied database with Proware's schema, on the session's server."""
    return session_server().clean()


def fresh_database() -> str:
    """The DSN of a new database with Proware's schema and nothing else, on the session's
    server: for tests of what must see no other session on it (a restore or migration
    refuses while any server holds the database, and an app a previous test left open
    takes its share of the reusable one again within seconds)."""
    dsn = empty_database()
    Database(dsn).close()  # applies the migrations
    return dsn


def empty_database() -> str:
    """The DSN of a new database without even Proware's schema, on the session's server."""
    return session_server().create()


def wait_until_blocked_by(monitor: psycopg.Connection, pid: int) -> None:
    """Return once some session waits for a lock that ``pid`` holds (a bounded wait)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = monitor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (pid,),
        ).fetchone()
        if row is not None and row[0]:
            return
        time.sleep(0.01)
    raise AssertionError(f"no session ever waited for backend {pid}")
