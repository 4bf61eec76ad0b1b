"""The benchmark's PostgreSQL: one throwaway server for the whole run, a fresh database per run.

It is the tests' server (:class:`tests.pgserver.PostgresServer`: ``initdb`` in a temporary
directory, 127.0.0.1 on a free port, ``fsync`` on, run as the ``postgres`` user when the bench
runs as root). The servers reach it over its unix socket, as the README recommends for a
database on the same machine, or over TCP (``--database-socket tcp``). Every (size, backend,
processes) run gets an empty database of its own, so a run never finds the previous one's
users. Its CPU time is read from the postmaster's process tree, apart from the server's, so
that CPU per request can be told as server plus database.
"""

from __future__ import annotations

import psycopg

from bench import proctree
from tests.pgserver import DatabaseFactory, PostgresServer, find_bindir


class DatabaseUnavailable(Exception):
    """PostgreSQL's server programs are not installed, or the server would not start."""


class BenchDatabase:
    """A PostgreSQL server started by :meth:`start`, stopped (and removed) by :meth:`stop`."""

    def __init__(self, *, unix: bool = True) -> None:
        self.unix = unix  # the servers connect over its unix socket, else over TCP
        bindir = find_bindir()
        if bindir is None:
            raise DatabaseUnavailable(
                "PostgreSQL's server programs (initdb, pg_ctl, postgres) are not installed: "
                "apt-get install postgresql"
            )
        self.server = PostgresServer(bindir)
        self._factory: DatabaseFactory | None = None
        self._postmaster = 0

    def start(self) -> None:
        try:
            self.server.start()
            self._factory = DatabaseFactory(self.server)
        except (RuntimeError, psycopg.Error) as exc:
            self.server.stop()
            raise DatabaseUnavailable(f"PostgreSQL would not start: {exc}") from exc
        self._postmaster = proctree.postmaster_pid(self.server.data_dir)

    def stop(self) -> None:
        self.server.stop()
        self._factory = None

    def create(self) -> str:
        """The DSN of a new, empty database."""
        assert self._factory is not None, "the server was never started"
        return self._factory.create(unix=self.unix)

    def cpu_seconds(self) -> float:
        """CPU time every PostgreSQL process (and each one that ended) has used so far."""
        return proctree.tree_cpu_seconds(self._postmaster) if self._postmaster else 0.0

    @staticmethod
    def size_bytes(dsn: str) -> int:
        """The size of the database at ``dsn`` on disk (tables, indexes, TOAST)."""
        with psycopg.connect(dsn, autocommit=True) as connection:
            row = connection.execute("SELECT pg_database_size(current_database())").fetchone()
        return int(row[0]) if row else 0

    def __enter__(self) -> BenchDatabase:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
