"""The PostgreSQL backend: one database holding everything an install keeps.

:class:`PostgresBackend` is the :class:`storage.backend.Backend` that ``[storage] backend =
"postgresql"`` opens: the directory (:class:`~storage.postgres.repository.PostgresRepository`),
the shared documents, the secrets and the activity log, all on one pool of connections, so
any number of server processes, on any number of machines, serve one install.
"""

from __future__ import annotations

import threading
from pathlib import Path

from storage.postgres.connection import Database
from storage.postgres.documents import PostgresDocument, shared_secret
from storage.postgres.events import PostgresEventLog
from storage.postgres.failures import PostgresFailureLog
from storage.postgres.repository import PostgresRepository
from storage.postgres.serving import ServingLock
from storage.repository import Clock, IdFactory, Index, Repository
from storage.values import new_hex_id, utcnow


class PostgresBackend:
    """Everything of one install in the PostgreSQL database at ``dsn``.

    :param pool_size: connections this process keeps open at most.
    :param timeout: seconds the database may stay silent before a request gives it up and a
        connection counts as lost (:func:`~storage.postgres.connection.silence_options`);
        also how long a request waits for a pooled connection.
    :param serving: this process serves the install (not a command): it holds the database
        shared, so that ``restore`` and ``storage migrate`` refuse while it runs.
    :raises DatabaseInUse: serving, while a restore or migration holds the database.
    :raises Unavailable: if the server cannot be reached or refuses the login.
    :raises CorruptStore: if the database's schema is newer than this version of Proware.
    """

    name = "postgresql"
    data_dir: Path | None = None  # nothing lives in local files

    def __init__(
        self,
        dsn: str,
        indexes: list[Index],
        *,
        pool_size: int = 4,
        timeout: int = 5,
        clock: Clock = utcnow,
        new_id: IdFactory = new_hex_id,
        serving: bool = False,
    ) -> None:
        self.database = Database(
            dsn, pool_size=pool_size, timeout=timeout, checkout_timeout=timeout
        )
        # A server holds its share of the database while it runs, so that a restore or a
        # migration cannot replace the data under it (storage.postgres.serving).
        try:
            self._serving = ServingLock(self.database) if serving else None
        except BaseException:
            self.database.close()
            raise
        # Typed as the interface: the Backend protocol's attribute is settable, so invariant.
        self.repository: Repository = PostgresRepository(self.database, indexes, clock, new_id)
        self._events = PostgresEventLog(self.database)
        self._failures = PostgresFailureLog(self.database)
        self._documents: dict[str, PostgresDocument] = {}
        self._lock = threading.Lock()

    def check_serving(self) -> None:
        """Return while this process holds its share of the database (or is no server).

        :raises NotServing: it lost it; a restore or migration may be replacing the data.
        """
        if self._serving is not None:
            self._serving.check()

    def describe(self) -> str:
        """Where the data lives, for people: the DSN without its password."""
        return f"PostgreSQL database {self.database.shown}"

    def document(self, name: str) -> PostgresDocument:
        """The shared document ``name``; one object per name, so its users share its cache."""
        with self._lock:
            if name not in self._documents:
                self._documents[name] = PostgresDocument(self.database, name)
            return self._documents[name]

    def secret(self, name: str) -> bytes:
        """A random secret created on first use and the same for every process after."""
        return shared_secret(self.database, name)

    def failure_log(self) -> PostgresFailureLog:
        """The ``failures`` table: every server process counts the same failed sign-ins."""
        return self._failures

    def event_log(self) -> PostgresEventLog:
        """The ``activity`` table, read and appended to like the audit log file."""
        return self._events

    def close(self) -> None:
        """Close every connection of this process."""
        self.repository.close()  # it does not close the database, which is ours
        if self._serving is not None:
            self._serving.release()
        self.database.close()
