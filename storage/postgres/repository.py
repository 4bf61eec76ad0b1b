"""The PostgreSQL repository: :class:`storage.repository.Repository` over one database.

Several processes may serve from one database at once: every rule that the memory store
keeps with its lock (unique values, versions, memberships) is kept here by PostgreSQL's
row locks and unique indexes (:mod:`storage.postgres.transaction`).

Reads outside a transaction take a pooled connection for one statement (autocommit).
:meth:`PostgresRepository.scan` and :meth:`~PostgresRepository.all` read in batches, in
insertion order, each batch on a connection held only while it is read, so a caller that
stops early holds nothing. :meth:`~PostgresRepository.query` answers in one round trip when
the query is expressible in SQL (:mod:`storage.postgres.conditions`); otherwise it reads
what ``where`` selects and finishes in Python.

Activity events noted in a transaction are rows of ``activity``, committed with it. Their
``seq`` is the row's identity: unique and increasing in the order rows were written, with
gaps where a transaction rolled back; of two transactions committing at the same moment the
later ``seq`` may commit first. This process's commit listeners are called one commit at a
time, in the order the commits returned.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import sql

from storage.postgres.conditions import SqlBuilder
from storage.postgres.connection import Database
from storage.postgres.reads import Reads, column, fetch, rows
from storage.postgres.statistics import PlannerStatistics
from storage.postgres.transaction import PostgresTransaction
from storage.query import Found, Query, answer_in_python
from storage.repository import Clock, CommitListener, CompactionHook, IdFactory, Index
from storage.values import new_hex_id, utcnow

# Scans read this many documents first, then four times more per batch up to the maximum:
# a first page costs little, a full pass few round trips.
FIRST_BATCH = 100
MAX_BATCH = 2_000

COUNT = "SELECT count(*) FROM resources WHERE kind = %s"

# One round trip for a page and the number of matches. The window functions run over the
# narrow (seq, sort key) rows only; documents are read for the page alone.
PAGE = """
WITH page AS MATERIALIZED (
    SELECT r.seq, count(*) OVER () AS total, row_number() OVER (ORDER BY {order}) AS position
    FROM resources AS r
    WHERE r.kind = %(kind)s AND {where}
    ORDER BY {order}
    LIMIT %(limit)s OFFSET %(offset)s
)
SELECT page.total, {document}
FROM page JOIN resources AS r ON r.kind = %(kind)s AND r.seq = page.seq
ORDER BY page.position
"""
# A listing (no filter, no order: Entra's account discovery) stops after the page; the
# count is an index-only scan. One statement, so the page and the total agree.
LISTING = """
SELECT (SELECT count(*) FROM resources WHERE kind = %(kind)s), {document}
FROM resources AS r
WHERE r.kind = %(kind)s
ORDER BY r.seq
LIMIT %(limit)s OFFSET %(offset)s
"""
COUNT_MATCHES = "SELECT count(*) FROM resources AS r WHERE r.kind = %(kind)s AND {where}"
# Only the top-level keys the caller reads (id and meta are always among them).
TRIMMED = (
    "(SELECT jsonb_object_agg(member.key, member.value) FROM jsonb_each(r.doc) AS member "
    "WHERE member.key = ANY(%(keys)s))"
)
BATCH = """
SELECT r.seq, r.doc FROM resources AS r
WHERE r.kind = %(kind)s AND r.seq > %(after)s AND {where}
ORDER BY r.seq
LIMIT %(batch)s
"""


class PostgresRepository(Reads):
    """A repository in a PostgreSQL database, safe to share between processes.

    :param database: a DSN (the repository opens the database, applying migrations, and
        closes it), or a :class:`Database` opened by the caller (who closes it).
    :param clock: gives ``meta.created``/``lastModified``; inject a fixed one in tests.
    :param new_id: gives new document ids; inject a counter in tests.
    :param pool_size: connections at most, when opening from a DSN.
    :raises Unavailable: if the server cannot be reached.
    :raises CorruptStore: if the database's schema is newer than this code.
    """

    def __init__(
        self,
        database: str | Database,
        indexes: list[Index],
        clock: Clock = utcnow,
        new_id: IdFactory = new_hex_id,
        *,
        pool_size: int = 4,
    ) -> None:
        self._owns_database = isinstance(database, str)
        self.database = (
            Database(database, pool_size=pool_size) if isinstance(database, str) else database
        )
        self._indexes = {(index.kind, index.field): index for index in indexes}
        self._clock = clock
        self._new_id = new_id
        self._local = threading.local()  # the transaction open in this thread, if any
        self._listeners: list[CommitListener] = []
        self._notifying = threading.Lock()
        self.statistics = PlannerStatistics(self.database)

    # -- writes ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[PostgresTransaction]:
        """One database transaction: commit on normal exit, roll back on exception.

        :raises Unavailable: if no connection is free within the pool's timeout, or the
            database is lost (during the commit: the outcome is then unknown).
        """
        if getattr(self._local, "transaction", None) is not None:
            raise RuntimeError("transactions do not nest; use the one already open")
        with self.database.transaction() as connection:
            transaction = PostgresTransaction(
                self.database, connection, self._indexes, self._clock, self._new_id
            )
            self._local.transaction = transaction
            try:
                yield transaction
            finally:
                transaction.close()
                self._local.transaction = None
        if transaction.noted:
            events = transaction.noted_events()
            with self._notifying:
                for listener in self._listeners:
                    listener(events)
        self.statistics.grew(transaction.rows_added)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(events)`` after every commit that noted events."""
        self._listeners.append(listener)

    def add_compaction_hook(self, hook: CompactionHook) -> None:
        """Accept a compaction hook; never called, as this store keeps no journal."""

    # -- reads ----------------------------------------------------------------------------

    def all(self, kind: str) -> Iterator[dict]:
        """Every document of ``kind``, in insertion order (each parsed afresh)."""
        return self._matching(kind, SqlBuilder())

    def scan(self, kind: str) -> Iterator[dict]:
        """Every document of ``kind``, in insertion order.

        The same as :meth:`all`: documents come parsed from the database, so there is no
        stored copy to share; changing one changes nothing.
        """
        return self._matching(kind, SqlBuilder())

    def count(self, kind: str) -> int:
        """How many documents of ``kind`` there are."""
        return self._fetch(COUNT, kind)

    def query(self, kind: str, query: Query) -> Found:
        """The documents ``query`` selects, sorted and paged (:mod:`storage.query`).

        In SQL when ``where`` and ``order`` say everything; otherwise the documents
        ``where`` selects (all, without one) are read in insertion order and answered in
        Python with ``matches`` and ``sort_key``.
        """
        builder = SqlBuilder()
        where = builder.where(query.where)
        if not query.answerable_in_store:
            return answer_in_python(self._matching(kind, builder, where), query)
        if query.limit == 0:
            return Found([], self._count_matches(where, {"kind": kind, **builder.params}))
        order = builder.order_by(query.order)
        document = sql.SQL("r.doc")
        if query.keys is not None:
            document = sql.SQL(TRIMMED)
        if query.where is None and query.order is None:
            statement = sql.SQL(LISTING).format(document=document)
        else:
            statement = sql.SQL(PAGE).format(order=order, where=where, document=document)
        params: dict[str, Any] = {
            "kind": kind,
            "limit": query.limit,
            "offset": query.offset,
            "keys": sorted((query.keys or frozenset()) | {"id", "meta"}),
            **builder.params,
        }
        with self.database.connection() as connection:
            rows = connection.execute(statement, params).fetchall()
        if not rows:
            # Past the last match there is no row to carry the total.
            return Found([], self._count_matches(where, params) if query.offset else 0)
        return Found([row[1] for row in rows], rows[0][0])

    def close(self) -> None:
        """Finish refreshing the statistics; close the database's connections, if this
        repository opened it."""
        self.statistics.close()
        if self._owns_database:
            self.database.close()

    # -- internals ------------------------------------------------------------------------

    def _fetch(self, query: str, *params: object) -> Any:
        with self.database.connection() as connection:
            return fetch(connection, query, params)

    def _column(self, query: str, *params: object) -> list:
        with self.database.connection() as connection:
            return column(connection, query, params)

    def _rows(self, query: str, *params: object) -> list[tuple]:
        with self.database.connection() as connection:
            return rows(connection, query, params)

    def _count_matches(self, where: sql.Composable, params: dict[str, Any]) -> int:
        with self.database.connection() as connection:
            return fetch(connection, sql.SQL(COUNT_MATCHES).format(where=where), params)

    def _matching(
        self, kind: str, builder: SqlBuilder, where: sql.Composable | None = None
    ) -> Iterator[dict]:
        """The documents of ``kind`` for which ``where`` holds, in insertion order, read in
        growing batches on a connection held only while a batch is read."""
        statement = sql.SQL(BATCH).format(where=where if where is not None else sql.SQL("TRUE"))
        params: dict[str, Any] = {"kind": kind, "after": 0, **builder.params}
        size = FIRST_BATCH
        while True:
            params["batch"] = size
            with self.database.connection() as connection:
                rows = connection.execute(statement, params).fetchall()
            for _, document in rows:
                yield document
            if len(rows) < size:
                return
            params["after"] = rows[-1][0]
            size = min(size * 4, MAX_BATCH)
