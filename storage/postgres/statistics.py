"""The planner's statistics, kept in step with tables that grow faster than autovacuum looks.

PostgreSQL plans a prepared statement (psycopg prepares one at its fifth run) once per
connection, and keeps that plan until the statistics of a table it reads change. Autovacuum
refreshes them (``ANALYZE``) once a table has changed by a tenth, looking once a minute. A
directory that fills faster, as on Entra's first cycle into a new database, is planned as if
its tables were empty, and the plans stay. Measured at 10,000 users, 400 groups, after
lookups planned on the empty database: the lookup that finds a user read every user and
every group, 1.25 ms and 453 buffers in the database instead of 0.08 ms and 10, and the
bench's matching lookups ran at 700 instead of 1,500 a second.

So each process counts the rows its commits add (:meth:`PlannerStatistics.grew`). Every
:data:`CHECK_EVERY` rows it looks (one short statement) for tables whose files have grown
to more than :data:`GROWTH` times the size their statistics were taken at, and analyzes
those in a thread of its own: every connection of every process then plans its statements
afresh. A cached plan was therefore made for at least half the rows it meets.
``SKIP_LOCKED`` leaves a table another process (or autovacuum) is analyzing to it. The
``ANALYZE`` runs on a connection outside the pool, so that no request waits for the pooled
one it would hold (nor does the pool grow behind a caller's back). A whole directory
written at once (:mod:`storage.postgres.transfer`) is analyzed after.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from psycopg import sql

from storage.errors import StorageError
from storage.postgres.connection import Database
from storage.postgres.reads import column

log = logging.getLogger(__name__)

CHECK_EVERY = 256  # rows this process adds between two looks at the tables' sizes
GROWTH = 2  # a table this many times the size it was analyzed at is analyzed again
# What the directory's statements read; each grows with the directory.
TABLES = ("resources", "resource_keys", "members", "activity")

# relpages is the size in pages when the statistics were taken (0: never), the file's size
# is now: no statistics collector in between, so no lag.
STALE = """
SELECT c.relname FROM pg_class AS c
WHERE c.oid = ANY(%s::regclass[])
  AND pg_relation_size(c.oid) > %s * c.relpages::bigint * current_setting('block_size')::bigint
ORDER BY c.relname
"""


class PlannerStatistics:
    """Analyzes the directory's tables as they grow (module docstring).

    :param database: the database whose tables these are.
    :param check_every: rows added by this process between two looks.
    :param growth: how many times its analyzed size a table grows before it is analyzed.
    """

    def __init__(
        self, database: Database, *, check_every: int = CHECK_EVERY, growth: float = GROWTH
    ) -> None:
        self.database = database
        self._check_every = check_every
        self._growth = growth
        self._lock = threading.Lock()
        self._added = 0  # rows added since the last look
        self._worker: threading.Thread | None = None

    def grew(self, rows: int) -> None:
        """Count ``rows`` a commit added. Every ``check_every`` rows, look for tables grown
        past ``growth`` times their analyzed size (one short statement, on this thread) and
        analyze those in a thread of their own; no look while an ANALYZE still runs."""
        with self._lock:
            self._added += rows
            if self._added < self._check_every or self._busy():
                return
            self._added = 0
        try:
            stale = self.stale()
        except (StorageError, psycopg.Error) as error:
            # The commit this follows stands: statistics only make plans better.
            log.warning("could not refresh the planner's statistics: %s", error)
            return
        with self._lock:
            if stale and not self._busy():
                self._worker = threading.Thread(
                    target=self._analyze_quietly, args=(stale,), name="proware-analyze"
                )
                self._worker.daemon = True  # never keeps a stopping process alive
                self._worker.start()

    def stale(self) -> list[str]:
        """The tables grown past ``growth`` times the size they were analyzed at."""
        with self.database.connection() as connection:
            return column(connection, STALE, (list(TABLES), self._growth))

    def refresh(self) -> list[str]:
        """Analyze the :meth:`stale` tables now; returns their names."""
        stale = self.stale()
        if stale:
            self.analyze(stale)
        return stale

    def analyze(self, tables: list[str] | None = None) -> None:
        """Analyze ``tables`` (all of them: after writing a whole directory at once) now,
        on a connection of its own: at 10,000 users this takes a tenth of a second."""
        names = sql.SQL(", ").join(sql.Identifier(table) for table in tables or TABLES)
        with self.database.own_connection() as connection:
            connection.execute(sql.SQL("ANALYZE (SKIP_LOCKED) {}").format(names))

    def close(self, timeout: float = 10.0) -> None:
        """Wait (at most ``timeout`` seconds) for an ANALYZE under way: nothing is left
        running when the process closes its store or forks."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)

    def _busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def _analyze_quietly(self, tables: list[str]) -> None:
        try:
            self.analyze(tables)
        except (StorageError, psycopg.Error) as error:
            log.warning("could not refresh the planner's statistics: %s", error)
        else:
            log.debug("analyzed %s: they had grown", ", ".join(tables))
