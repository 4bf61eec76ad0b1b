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
A server whose lock connection is lost while it runs has lost its share with it, and a
restore may take the database meanwhile: until it holds its share again, it refuses every
request (:meth:`ServingLock.check`, a 503), reads included, as the directory may be
being replaced under it. A lock connection that goes silent instead (a network cut, a
paused VM) is ended by its keepalives within the database's timeout
(:func:`~storage.postgres.connection.silence_options`), and found lost the same way.
A machine that vanishes without closing its connections holds its share until PostgreSQL
notices the silence, within about the same timeout: every session of Proware's asks the
database for keepalives of its own (:mod:`storage.postgres.sessions`).

Through a pooler in transaction mode (PgBouncer) a session lock means nothing: connect
servers and commands to PostgreSQL itself, as the pool already requires.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg

from storage.errors import NotServing, StorageError, Unavailable
from storage.postgres.connection import Database, stirred

log = logging.getLogger("proware.storage")

# "Proware" in ASCII: one bigint key, shown by pg_locks as classid 0x50726F, objid
# 0x77617265 (objsubid 1, the one-bigint form).
LOCK_KEY = 0x50726F77617265
# What pg_stat_activity's application_name starts with for a serving lock's session (the
# process id and machine follow: storage.postgres.sessions.session_name).
APPLICATION_NAME = "proware server"
# Seconds between two looks at the lock's connection; a lost one is reopened and the lock
# taken again, so a server that outlives a database restart is counted again.
CHECK_INTERVAL = 5.0
# Seconds between two tries to take a lost share again (a restore may hold the database).
RETRY_INTERVAL = 1.0

_HOLDERS = """
    SELECT coalesce(host(activity.client_addr), 'local socket'), activity.client_port,
      activity.pid,
      to_char(activity.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'),
      activity.application_name
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

    While it does not hold its share (its connection was lost, and a restore or migration
    took the database meanwhile), the process must not serve: :meth:`check` raises
    :class:`NotServing`. A thread takes the share again as soon as it can: every
    ``retry_interval`` seconds while it is lost, and checks the connection every
    ``check_interval`` seconds while it is held. A request finds a connection the server
    closed at once (:meth:`check` looks at its socket), not at the next check.

    :raises DatabaseInUse: a restore or migration holds the database.
    :raises Unavailable: the server cannot be reached.
    """

    def __init__(
        self,
        database: Database,
        *,
        check_interval: float = CHECK_INTERVAL,
        retry_interval: float = RETRY_INTERVAL,
    ) -> None:
        self._database = database
        self._check_interval = check_interval
        self._retry_interval = retry_interval
        # Guards the connection: the watch thread and requests use it.
        self._using = threading.Lock()
        self._connection: psycopg.Connection | None = self._take()
        self._held = threading.Event()
        self._held.set()
        # What a request is refused with while the share is lost, from the last try to take
        # it again: a restore holds the database (NotServing), or it cannot be reached.
        self._refusal: tuple[type[Unavailable], str] = (NotServing, "its connection was lost")
        self._stopped = False
        self._wake = threading.Event()
        self._watch = threading.Thread(target=self._keep, name="proware-serving-lock", daemon=True)
        self._watch.start()

    def check(self) -> None:
        """Return if this process holds its share of the database; otherwise refuse.

        Costs one ``poll`` of the lock's socket while it is quiet: a connection the server
        ended (``pg_terminate_backend``, a server shutting down) has something to read.

        :raises NotServing: the share is lost; the watch thread is taking it again.
        """
        if self._held.is_set() and (not self._stirred() or self._still_held()):
            return
        refusal, why = self._refusal
        raise refusal(
            f"this server does not hold its share of the PostgreSQL database "
            f"{self._database.shown}, and refuses requests until it holds it again: {why}"
        )

    def release(self) -> None:
        """Give the share back, then close its connection.

        Unlocked first: a closed connection's lock goes only when its backend process has
        finished exiting, after the close returns, so a ``storage migrate`` run right after
        a server stopped could still find it held.
        """
        self._stopped = True
        self._wake.set()
        self._watch.join()
        with self._using:
            if self._connection is not None:
                try:
                    self._connection.execute("SELECT pg_advisory_unlock_shared(%s)", (LOCK_KEY,))
                except psycopg.Error:
                    pass  # the connection is gone already, and its lock with its session
                self._connection.close()
                self._connection = None
            self._held.clear()

    def _take(self) -> psycopg.Connection:
        connection = self._database.connect(APPLICATION_NAME)
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

    def _stirred(self) -> bool:
        """Whether the lock's connection has something to read (or is gone)."""
        return self._connection is None or stirred(self._connection)

    def _still_held(self) -> bool:
        """Ask the lock's connection whether it still works; if not, the share is lost, and
        taken again at once if nothing else holds the database (else by the watch thread)."""
        with self._using:
            return self._recheck()

    def _recheck(self) -> bool:
        """Whether the share is held and its connection works; if not, lose it and try to
        take it again (hold ``_using``)."""
        if self._held.is_set() and self._alive():
            return True
        self._lose()
        return self._retake()

    def _retake(self) -> bool:
        """Try to take the share again; note why not (hold ``_using``)."""
        try:
            self._connection = self._take()
        except DatabaseInUse:
            self._refusal = (NotServing, "a restore or migration holds the database")
            return False
        except StorageError as exc:
            self._refusal = (Unavailable, str(exc))
            return False
        self._held.set()
        log.warning(
            "this server holds its share of %s again and serves requests", self._database.shown
        )
        return True

    def _alive(self) -> bool:
        """Whether the lock's connection answers (hold ``_using``)."""
        connection = self._connection
        if connection is None or connection.closed:
            return False
        try:
            connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _lose(self) -> None:
        """Forget the lost connection and stop serving (hold ``_using``)."""
        if self._held.is_set():
            log.error(
                "the connection holding this server's share of %s was lost: taking it again, "
                "and refusing requests until it is held",
                self._database.shown,
            )
        self._held.clear()
        if self._connection is not None:
            self._connection.close()
        self._connection = None

    def _keep(self) -> None:
        while True:
            held = self._held.is_set()
            self._wake.wait(self._check_interval if held else self._retry_interval)
            self._wake.clear()
            if self._stopped:
                return
            with self._using:
                if self._stopped:
                    return
                self._recheck()


@contextmanager
def sole_use(database: Database, command: str) -> Iterator[None]:
    """Hold the database exclusively for ``command`` (``restore``, ``storage migrate``).

    :raises DatabaseInUse: servers hold it, naming them; nothing was changed.
    """
    connection = database.connect(f"proware {command}")
    try:
        with database.errors():
            _take_sole_use(connection, database, command)
        try:
            yield
        finally:
            _let_go(connection)
    finally:
        connection.close()  # the lock goes with the session, if it is still held


def _let_go(connection: psycopg.Connection) -> None:
    """Release the exclusive lock before the command returns.

    Closing the connection alone frees it only once PostgreSQL's backend has exited, a
    moment after ``close()`` returns: another session's try of the lock right after a
    ``restore`` was refused 164 times in 200 (a server started at once, or a test). If the
    unlock fails, the connection is being lost anyway, and the lock with it.
    """
    with suppress(psycopg.Error):
        connection.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


# Tries of the lock when its holders are gone by the time they are listed.
SOLE_USE_TRIES = 3


def _take_sole_use(connection: psycopg.Connection, database: Database, command: str) -> None:
    """Take the lock on ``connection``, or raise :class:`DatabaseInUse` naming its holders.

    A holder gone by the time the holders are listed (PostgreSQL just dropped a vanished
    server's session, a server just stopped) has freed the lock: it is tried again. Refused
    instead, the command said "in use by another Proware command or server" when nothing
    held the database any more (seen in the tests: a restore run as PostgreSQL dropped the
    last server's session).
    """
    holders: list = []
    for _ in range(SOLE_USE_TRIES):
        row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        if row.fetchone()[0]:  # type: ignore[index]
            return
        holders = connection.execute(_HOLDERS, (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF)).fetchall()
        if holders:
            break
    raise DatabaseInUse(_in_use(database, command, holders))


def _in_use(database: Database, command: str, holders: list[tuple[str, int, int, str, str]]) -> str:
    """Who holds the database, and how each hold ends: its server stopped, or, for a server
    whose machine is gone, PostgreSQL dropping the silent session (or an operator, sooner)."""
    if holders:
        who = f"{len(holders)} Proware server process(es)"
    else:  # another restore or migration, or holders gone just now
        who = "another Proware command or server"
    lines = [
        f"the PostgreSQL database {database.shown} is in use by {who}; stop every Proware "
        f"server on it, on every machine, then run {command} again (nothing was changed)."
    ]
    if holders:
        lines.append("The sessions holding it:")
    for address, port, pid, started, name in holders:
        where = address if port is None or port < 0 else f"{address} port {port}"
        lines.append(f"  - backend pid {pid}: {name or 'unnamed'}, from {where}, since {started}")
    lines.append(
        f"PostgreSQL ends the session of a server whose machine is gone or cut off within "
        f"about {database.timeout} s of its last packet ([storage] timeout_seconds), and "
        f"{command} may run then; to end one sooner, once its machine is surely gone, run "
        "SELECT pg_terminate_backend(<backend pid>) on the database."
    )
    return "\n".join(lines)
