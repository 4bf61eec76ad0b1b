"""The activity log kept in PostgreSQL: the ``activity`` table, with the audit log's API.

A change's event is written by the transaction that makes the change
(``Transaction.note``), so it is committed with it and carries that row's ``seq``.
:class:`PostgresEventLog` offers what the control panel uses of ``admin.audit.AuditLog``:
:meth:`~PostgresEventLog.append` writes only the events no transaction wrote (refused and
failed requests, console actions), reading is newest first, and the log prunes itself to
about :data:`KEEP` events. With every process writing to the same table there is nothing
to fsync or catch up, so ``sync``, ``close`` and ``catch_up`` do nothing.

No event written here carries a key that could hold a secret, whoever built it: the same
rule as the file audit log (defence in depth; the SCIM layer already leaves them out).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Protocol, runtime_checkable

from psycopg.types.json import Jsonb

from storage.errors import StorageError
from storage.postgres.connection import Database, HasDatabase, database_of

log = logging.getLogger("proware.audit")

KEEP = 100_000  # events kept; older ones are deleted
PRUNE_EVERY = 1_000  # appends between two prunes (per process)
BATCH = 500  # events read per round trip by newest_first

# The same set as admin/audit.py (storage may not import admin).
SECRET_KEYS = frozenset({"authorization", "password", "secret", "bearer"})

_dumps = partial(json.dumps, separators=(",", ":"), default=str)


def encode_event(event: dict) -> Jsonb:
    """``event`` as the jsonb row value: without secret keys; what JSON lacks as strings."""
    clean = {key: value for key, value in event.items() if key.lower() not in SECRET_KEYS}
    return Jsonb(clean, dumps=_dumps)


INSERT = "INSERT INTO activity (event) VALUES (%s) RETURNING seq"
NEWEST = "SELECT seq, event FROM activity WHERE seq < %s ORDER BY seq DESC LIMIT %s OFFSET %s"
# An event that may not be a success (admin.activity.outcome): with a reason, an operation
# "failed", a status written as a string, or one of 400 and more (in jsonb's order, numbers
# below booleans, arrays and objects, which may pass: the caller tests every event).
NOT_SUCCEEDING = (
    "(event ? 'reason' OR event->>'operation' = 'failed'"
    " OR jsonb_typeof(event->'status') = 'string' OR event->'status' >= '400'::jsonb)"
)
SIGN_IN_REFUSED = "event->>'operation' = 'sign-in refused'"
# The event's text holds the (lowercase ASCII) needle in any case, or a character that case
# folds to ASCII (the Kelvin sign to "k", "ß" to "ss"): a regular expression (mentioning())
# tested against the text with its ASCII letters lowered. lower() in the "C" collation
# lowers only those, whatever the database's locale (in a Turkish one "I" is no "i");
# translate() took 65 µs a row.
MENTIONING = 'lower(event::text COLLATE "C") ~ %s'
# Every character above ASCII whose str.casefold() holds ASCII (tests/test_postgres_events.py
# checks the list against Python's).
FOLDING_TO_ASCII = (
    "\u00df\u0130\u0149\u017f\u01f0\u1e96\u1e97\u1e98\u1e99\u1e9a\u1e9e\u212a"
    "\ufb00\ufb01\ufb02\ufb03\ufb04\ufb05\ufb06"
)
# On the index activity_about (migration 4).
ABOUT = "event->>'id' = %s"
LAST_SEQ = "SELECT max(seq) FROM activity"
# Everything below the KEEP-th newest seq: one index probe, then a range delete.
PRUNE = """
    DELETE FROM activity
    WHERE seq <= (SELECT seq FROM activity ORDER BY seq DESC OFFSET %s LIMIT 1)
"""


@runtime_checkable
class Preselection(Protocol):
    """What a line finder of the file log (``newest_first``'s ``preselect``) stands for,
    when it says: ``admin.activity``'s finders do, and are then answered here in SQL.

    Finding the refusals of the last 24 hours for the activity page's summary strip read
    and decoded every event of those hours (29,000 rows, 0.4 s at 100,000 events), a text
    or outcome filter all 100,000 (2-2.5 s).
    """

    not_succeeding: bool  # only events that may not be a success (see NOT_SUCCEEDING)
    sign_in_refused: bool  # ... or that are a refused sign-in (with not_succeeding)
    mentioning: str  # only events whose text may hold this lowercase ASCII text, any case


def mentioning(needle: str) -> str:
    """The regular expression (PostgreSQL's) of :data:`MENTIONING` for ``needle``: the
    needle as it is (every character not a letter or digit escaped), or a character of
    :data:`FOLDING_TO_ASCII`."""
    escaped = "".join(char if char.isalnum() else "\\" + char for char in needle)
    return f"{escaped}|[{FOLDING_TO_ASCII}]"


class PostgresEventLog:
    """The ``activity`` table, appended to and read like ``admin.audit.AuditLog``.

    :param database: a :class:`~storage.postgres.connection.Database`, or the repository
        whose database to share.
    :param keep: how many events to keep at least; older ones are pruned now and then.
    """

    def __init__(self, database: Database | HasDatabase, *, keep: int = KEEP) -> None:
        self.database = database_of(database)
        self.path = "PostgreSQL table 'activity'"  # named in messages, like a log file
        self.keep = keep
        self.failures = 0  # appends that failed; shown on the activity page
        self._lock = threading.Lock()
        self._appended = 0

    def append(self, event: dict) -> None:
        """Write one event (unless its transaction did); never raises.

        The change an event describes is already committed when this runs, so failing here
        would turn an acknowledged change into an error response: a failure is logged and
        counted instead. Every event passes here (the repository's commit listener), so
        this is also where the table is pruned, once every :data:`PRUNE_EVERY` events.
        """
        seq = event.get("seq")
        written = isinstance(seq, int) and not isinstance(seq, bool)
        prune = self._due_for_pruning()
        if written and not prune:
            return
        if self.database.unavailable_just_now():
            # Most likely the request being answered failed for this reason: answer its 503
            # now rather than after another wait for a connection.
            with self._lock:
                self.failures += 1
            log.error(
                "could not append to the activity log in %s: it was unavailable just now",
                self.database.shown,
            )
            return
        try:
            with self.database.connection() as connection:
                if not written:
                    connection.execute(INSERT, (encode_event(event),))
                if prune:
                    connection.execute(PRUNE, (self.keep,))
        except (StorageError, ValueError):
            with self._lock:
                self.failures += 1
            log.exception("could not append to the activity log in %s", self.database.shown)

    def newest_first(
        self,
        containing: Sequence[str] = (),
        preselect: Callable[[bytes], set[int]] | None = None,
        *,
        about: str | None = None,
        skip: int = 0,
    ) -> Iterator[dict]:
        """Every event still kept, newest first, each with its ``seq``, read in batches.

        :param containing: only events whose JSON text holds each of these strings as it is
            (as ``admin.audit.AuditLog.newest_first``), selected by the database.
        :param preselect: the file log's line finder: the rows are not lines, so only what
            a :class:`Preselection` says it stands for is selected, by the database; the
            caller tests every event anyway.
        :param about: only events whose ``id`` is this (found on an index: a detail page's
            events, looked for in the text of every event, took 0.15-0.25 s).
        :param skip: leave out this many of the newest events selected, unread (an
            unfiltered page past the end decoded all 100,000 events: 0.9 s).
        """
        below = 1 << 62
        skip = min(skip, below)  # OFFSET is a bigint; a page number is any size
        conditions = ["strpos(event::text, %s) > 0" for _ in containing]
        values: list[object] = list(containing)
        if about is not None:
            conditions.append(ABOUT)
            values.append(about)
        if isinstance(preselect, Preselection):
            if preselect.not_succeeding:
                conditions.append(
                    f"({NOT_SUCCEEDING} OR {SIGN_IN_REFUSED})"
                    if preselect.sign_in_refused
                    else NOT_SUCCEEDING
                )
            if preselect.mentioning:
                conditions.append(MENTIONING)
                values.append(mentioning(preselect.mentioning))
        statement = NEWEST
        if conditions:
            found = " AND ".join(conditions)
            statement = NEWEST.replace("WHERE seq < %s", f"WHERE seq < %s AND {found}")
        while True:
            with self.database.connection() as connection:
                rows = connection.execute(statement, (below, *values, BATCH, skip)).fetchall()
            for seq, event in rows:
                yield event | {"seq": seq}
            if len(rows) < BATCH:
                return
            below, skip = rows[-1][0], 0

    def last_seq(self) -> int:
        """The ``seq`` of the newest event (0 if there is none)."""
        with self.database.connection() as connection:
            row = connection.execute(LAST_SEQ).fetchone()
        return 0 if row is None or row[0] is None else row[0]

    def sync(self) -> None:
        """Nothing to do: every event is committed by PostgreSQL when written."""

    def close(self) -> None:
        """Nothing to release: the database belongs to whoever opened it."""

    def catch_up(self, committed_after: Callable[[int], list[dict]]) -> int:
        """Nothing to catch up: the events are the table. Returns 0 (events appended)."""
        return 0

    def _due_for_pruning(self) -> bool:
        with self._lock:
            self._appended += 1
            return self._appended % PRUNE_EVERY == 1
