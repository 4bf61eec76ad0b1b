"""Who uses one PostgreSQL database: serving servers share it, a restore or migration owns it.

The embedded store's data directory has a lock file (:mod:`storage.journal.lock`); a database
served by many processes on many machines has an advisory lock of Proware's own instead:

- every serving process holds it *shared* (:class:`ServingLock`), on a connection of its own
  for the process's life, so any number of servers run side by side;
- ``restore`` into the database and ``storage migrate`` from or into it take it *exclusive*
  (:func:`sole_use`) without waiting: while any server holds it, they refuse and say which
  servers to stop; while they hold it, a server refuses to start.

Both are session-level locks: PostgreSQL drops them when the session ends, so a process that
dies (or a machine whose connection PostgreSQL sees close) never leaves the database locked.
A machine that vanishes without closing its connections holds its share until PostgreSQL's
TCP keepalives notice. Through a pooler in transaction mode (PgBouncer) a session lock means
nothing: connect servers and commands to PostgreSQL itself, as the pool already requires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from storage.errors import StorageError
from storage.postgres.connection import Database

log = logging.getLogger("proware.storage")

# "Proware" in ASCII: one bigint key, shown by pg_locks as classid 0x50726F, objid
# 0x77617265 (objsubid 1, the one-bigint form).
LOCK_KEY = 0x50726F77617265
APPLICATION_NAME = "proware server"
# Seconds between two looks at the lock's connection; a lost one is reopened and the lock
# taken again, so a server that outlives a database restart is counted again.
CHECK_INTERVAL = 5.0

_HOLDERS = """
    SELECT coalesce(host(activity.client_addr), 'local socket'), activity.pid
    FROM pg_locks AS locks JOIN pg_stat_activity AS activity USING (pid)
    WHERE locks.locktype = 'advisory' AND locks.granted AND locks.objsubid = 1
      AND locks.classid::bigint = %s AND locks.objid::bigint = %s
      AND locks.pid <> pg_backend_pid()
      AND locks.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ORDER BY 1, 2
"""


class DatabaseInUse(StorageError):
    """The database is served (for a restore or migration), or being replaced (for a server)."""


class ServingLock:
    """A serving process's shared hold on the database, until :meth:`release` or its death.

    :raises DatabaseInUse: a restore or migration holds the database.
    :raises Unavailable: the server cannot be reached.
    """

    def __init__(self, database: Database, *, check_interval: float = CHECK_INTERVAL) -> None:
        self._database = database
        self._connection: psycopg.Connection | None = self._take()
        self._stopped = threading.Event()
        self._watch = threading.Thread(
            target=self._keep, args=(check_interval,), name="proware-serving-lock", daemon=True
        )
        self._watch.start()

    def release(self) -> None:
        """Give the share back, then close its connection.

        Unlocked first: a closed connection's lock goes only when its backend process has
        finished exiting, after the close returns, so a ``storage migrate`` run right after
        a server stopped could still find it held.
        """
        self._stopped.set()
        self._watch.join()
        if self._connection is not None:
            try:
                self._connection.execute("SELECT pg_advisory_unlock_shared(%s)", (LOCK_KEY,))
            except psycopg.Error:
                pass  # the connection is gone already, and its lock with its session
            self._connection.close()
            self._connection = None

    def _take(self) -> psycopg.Connection:
        connection = self._database.connect(application_name=APPLICATION_NAME)
        try:
            with self._database.errors():
                row = connection.execute("SELECT pg_try_advisory_lock_shared(%s)", (LOCK_KEY,))
                taken = row.fetchone()[0]  # type: ignore[index]
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            raise DatabaseInUse(
                f"the PostgreSQL database {self._database.shown} is being restored or migrated "
                "(python app.py restore or storage migrate holds it); start the servers once "
                "that command has finished"
            )
        return connection

    def _keep(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            connection = self._connection
            try:
                if connection is not None and not connection.closed:
                    connection.execute("SELECT 1")
                    continue
            except psycopg.Error:
                pass
            if connection is not None:
                connection.close()
            self._connection = None
            try:
                self._connection = self._take()
                log.warning(
                    "the connection holding this server's share of %s was lost and "
                    "has been opened again",
                    self._database.shown,
                )
            except StorageError as exc:
                log.error("this server does not hold its share of the database: %s", exc)


@contextmanager
def sole_use(database: Database, command: str) -> Iterator[None]:
    """Hold the database exclusively for ``command`` (``restore``, ``storage migrate``).

    :raises DatabaseInUse: servers hold it, naming them; nothing was changed.
    """
    connection = database.connect(application_name=f"proware {command}")
    try:
        with database.errors():
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            if not row.fetchone()[0]:  # type: ignore[index]
                holders = connection.execute(
                    _HOLDERS, (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF)
                ).fetchall()
                raise DatabaseInUse(_in_use(database, command, holders))
        yield
    finally:
        connection.close()  # the lock goes with the session


def _in_use(database: Database, command: str, holders: list[tuple[str, int]]) -> str:
    if not holders:  # another restore or migration, or holders gone just now
        who = "another Proware command or server"
    else:
        where: dict[str, list[str]] = {}
        for address, pid in holders:
            where.setdefault(address, []).append(str(pid))
        who = (
            f"{len(holders)} Proware server process(es) ("
            + "; ".join(
                f"{address}: backend pid {', '.join(pids)}" for address, pids in where.items()
            )
            + ")"
        )
    return (
        f"the PostgreSQL database {database.shown} is in use by {who}; stop every Proware "
        f"server on it, on every machine, then run {command} again (nothing was changed)"
    )
