"""A PostgreSQL transaction: the writes of :class:`storage.repository.Transaction`.

One transaction is one database transaction on one connection, in READ COMMITTED. The rules
are the memory store's (:mod:`storage.memory`); what keeps them true between processes:

- Every document read for writing is locked first (``SELECT ... FOR NO KEY UPDATE``, which
  still lets other transactions add memberships that refer to it): two processes patching
  one document take turns, and the second reads the first one's result instead of failing
  its version check. A delete takes the stronger ``FOR UPDATE``.
- Unique values are refused by the database's unique index, so two processes can never
  both take one; the holder is looked up after the refusal. A refused write (caught by the
  caller) leaves the rest of the transaction: an insert skips a taken key (``ON CONFLICT DO
  NOTHING``) and takes its row out again; a replace that changes a key runs in a savepoint.
- The connection is in pipeline mode (:meth:`Database.transaction`): writes whose result
  is not needed at once go with the next statement, so a create or a PATCH costs about
  two round trips, ``BEGIN`` and ``COMMIT`` included. Each read ends with a Sync
  (:func:`~storage.postgres.connection.settle`, no round trip of its own): while the process
  works on what it read, the server sees the transaction idle, and should the process freeze
  there, ends it after ``idle_timeout`` and lets go of its locks.
- A membership change locks the group row and inserts or deletes membership rows only:
  adding one member costs the same in a group of 10 or of 10,000.
- Locks are taken group first, then user, by every writer: adding a member locks the group,
  then the user (``FOR KEY SHARE``, as the foreign key check would); deleting or renaming a
  user locks its groups, in id order, and only then the user (``FOR UPDATE``). So a member
  add racing the deletion or the rename of that member, or two of those sharing groups, take
  turns instead of deadlocking (which PostgreSQL found only after ``deadlock_timeout``, 1 s,
  and answered with a 503). Both already hold the user ``FOR NO KEY UPDATE`` (the request
  read it for writing), which a member add's ``FOR KEY SHARE`` does not wait for: a member
  add holding a group never waits for a rename or deletion waiting for that group.

Ids that are no user are never added to a group (ADD_MEMBERS checks; a user deleted
meanwhile by another process is skipped), so a membership never refers to nothing. Adding
a member waits for nothing on the user but its deletion or its rename. Those read the
user's groups before they hold the user, so a group the user joined in between is found
after it: they then let go of what they locked (a savepoint) and lock them all again, in
order (:meth:`PostgresTransaction._hold_with_groups`). A rename needs it as much as a
deletion: it gives each of the user's groups a new version, as their members show its name
(:meth:`PostgresTransaction.lock_groups_of`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from storage.errors import Conflict, Contention, NotFound, VersionMismatch
from storage.postgres.conditions import storable
from storage.postgres.connection import Database, jsonb
from storage.postgres.events import INSERT as INSERT_EVENT
from storage.postgres.events import encode_event
from storage.postgres.reads import (
    GROUP,
    GROUP_KIND,
    USER,
    USER_KIND,
    IndexKeys,
    Key,
    Reads,
    column,
    fetch,
    first_row,
    fold,
    index_keys,
    rows,
)
from storage.repository import Clock, IdFactory, Index
from storage.values import clone, timestamp, version_number, version_tag

SAVEPOINT = b"SAVEPOINT proware_write"
ROLLBACK_TO_SAVEPOINT = b"ROLLBACK TO SAVEPOINT proware_write"
RELEASE_SAVEPOINT = b"RELEASE SAVEPOINT proware_write"
LOCK = "SELECT doc FROM resources WHERE kind = %s AND id = %s FOR NO KEY UPDATE"
LOCK_FOR_DELETE = "SELECT doc FROM resources WHERE kind = %s AND id = %s FOR UPDATE"
# A new document and its index keys, in one statement. A key another document holds is
# skipped rather than refused (which would end the whole transaction): the statement says
# which fields it indexed, and on a conflict the caller takes the document out again.
INSERT = """
    WITH doc AS (
        INSERT INTO resources (kind, id, version, doc, folded)
        VALUES (%(kind)s, %(id)s, %(version)s, %(doc)s, %(folded)s)
        ON CONFLICT (kind, id) DO NOTHING
        RETURNING seq
    ), keys AS (
        INSERT INTO resource_keys (kind, id, field, key, is_unique)
        SELECT %(kind)s, %(id)s, new.field, new.key, new.is_unique
        FROM unnest(%(fields)s::text[], %(keys)s::text[], %(unique)s::boolean[])
            WITH ORDINALITY AS new(field, key, is_unique, position)
        WHERE EXISTS (SELECT FROM doc)
        ORDER BY new.position
        ON CONFLICT DO NOTHING
        RETURNING field
    )
    SELECT EXISTS (SELECT FROM doc), ARRAY(SELECT field FROM keys)
"""
UPDATE = "UPDATE resources SET version = %s, doc = %s, folded = %s WHERE kind = %s AND id = %s"
DELETE = "DELETE FROM resources WHERE kind = %s AND id = %s"
DELETE_KEYS = "DELETE FROM resource_keys WHERE kind = %s AND id = %s AND field = ANY(%s)"
INSERT_KEYS = """
    INSERT INTO resource_keys (kind, id, field, key, is_unique)
    SELECT %s, %s, new.field, new.key, new.is_unique
    FROM unnest(%s::text[], %s::text[], %s::boolean[]) WITH ORDINALITY
        AS new(field, key, is_unique, position)
    ORDER BY new.position
"""
HOLDER = """
    SELECT id FROM resource_keys
    WHERE kind = %s AND field = %s AND key = %s AND is_unique AND id <> %s
"""
# The user rows are locked as the foreign key check would lock them (FOR KEY SHARE): a user
# being deleted by another transaction is waited for, then skipped if it is gone, so the
# foreign key check can never fail and no savepoint is needed.
ADD_MEMBERS = f"""
    INSERT INTO members (group_id, user_id)
    SELECT %s, wanted.id FROM unnest(%s::text[]) WITH ORDINALITY AS wanted(id, position)
    WHERE EXISTS (
        SELECT FROM resources WHERE kind = {USER_KIND} AND id = wanted.id FOR KEY SHARE
    )
    ORDER BY wanted.position
    ON CONFLICT DO NOTHING
    RETURNING user_id
"""
REMOVE_MEMBERS = "DELETE FROM members WHERE group_id = %s AND user_id = ANY(%s) RETURNING user_id"
CLEAR_MEMBERS = "DELETE FROM members WHERE group_id = %s RETURNING user_id, seq"
GROUPS_TO_LEAVE = "SELECT group_id FROM members WHERE user_id = %s ORDER BY group_id"
# The groups of a user, locked in id order (the row lock is taken as the sorted rows pass);
# a group deleted meanwhile is simply not returned.
LOCK_GROUPS_TO_LEAVE = f"""
    SELECT id, doc FROM resources
    WHERE kind = {GROUP_KIND} AND id IN (SELECT group_id FROM members WHERE user_id = %s)
    ORDER BY id
    FOR NO KEY UPDATE
"""

# Characters an index key may have and still surely fit PostgreSQL's limit, at 4 bytes each.
SAFE_KEY_LENGTH = 500

# How often a write refused because of another transaction is tried again: a unique value
# whose holder is gone by the time it is looked up.
_CONFLICT_ATTEMPTS = 3
# How often a user's deletion or rename locks its groups again because the user joined
# another one meanwhile; past that it locks the latest ones after the user (which may then
# deadlock with another rename or deletion sharing groups, for a 1 s wait and a rerun). A
# rename waits for the member adds of its user in flight, so under load it needs more than
# a deletion: two processes, 10 threads renaming, adding and removing 6 users in 4 groups
# for 30 s had 1, 4 and 9 such deadlocks with 3 attempts; 0 and 1 with 5; 0 with 10.
_LEAVING_ATTEMPTS = 5


class PostgresTransaction(Reads):
    """One transaction's reads and writes, on the connection it holds until it ends."""

    def __init__(
        self,
        database: Database,
        connection: psycopg.Connection,
        indexes: dict[Key, Index],
        clock: Clock,
        new_id: IdFactory,
    ) -> None:
        self._database = database
        self._connection = connection
        self._indexes = indexes
        self._clock = clock
        self._new_id = new_id
        self._open = True
        # Documents this transaction has locked or written, as stored: while it holds the
        # row lock nobody else can change them, so they need no second read.
        self._locked: dict[Key, dict] = {}
        # Documents already given a new version here: one transaction, one version.
        self._stamped: set[Key] = set()
        # (its INSERT, event) noted here, in order; stamped and delivered after the commit.
        self.noted: list[tuple[psycopg.Cursor, dict]] = []
        # Rows added (documents, memberships, events), for the planner's statistics.
        self.rows_added = 0

    def _fetch(self, query: str, *params: object) -> Any:
        self._check_open()
        with self._database.errors():
            return fetch(self._connection, query, params)

    def _column(self, query: str, *params: object) -> list:
        self._check_open()
        with self._database.errors():
            return column(self._connection, query, params)

    def _rows(self, query: str, *params: object) -> list[tuple]:
        self._check_open()
        with self._database.errors():
            return rows(self._connection, query, params)

    def get(self, kind: str, id: str) -> dict:
        """A copy of the document, now locked until this transaction ends.

        :raises NotFound:
        """
        self._check_open()
        return clone(self._lock(kind, id))

    def get_with_groups(self, kind: str, id: str) -> tuple[dict, list[dict]]:
        """:meth:`get` (so the document is locked) and its groups."""
        return self.get(kind, id), self.group_documents_of([id])[id]

    # -- documents ------------------------------------------------------------------------

    def insert(self, kind: str, document: dict) -> dict:
        """Store a new document; returns it with ``id`` and ``meta`` stamped.

        :raises Conflict: if a unique index already holds one of its values.
        """
        self._check_open()
        id = self._new_id()
        now = timestamp(self._clock())
        meta = {"resourceType": kind, "created": now, "lastModified": now}
        stored = _body(document) | {"id": id, "meta": meta | {"version": version_tag(1)}}
        self._put(kind, id, stored, None)
        self.rows_added += 1
        return clone(stored)

    def replace(self, kind: str, id: str, document: dict, *, if_version: str | None = None) -> dict:
        """Replace the whole document (keeps ``id`` and ``meta.created``, new version).

        :raises NotFound, Conflict, VersionMismatch:
        """
        self._check_open()
        current = self._lock(kind, id)
        _check_version(kind, id, current, if_version)
        meta = current["meta"] if (kind, id) in self._stamped else self._next_meta(current)
        stored = _body(document) | {"id": id, "meta": meta}
        self._put(kind, id, stored, current)
        return clone(stored)

    def delete(self, kind: str, id: str, *, if_version: str | None = None) -> None:
        """Remove the document and every membership it is part of (as group or as user).

        :raises NotFound, VersionMismatch:
        """
        self._check_open()
        if kind == USER:
            current, leaving = self._hold_with_groups(id)
        else:
            current, leaving = self._lock(kind, id, LOCK_FOR_DELETE), []
        _check_version(kind, id, current, if_version)
        # Each group it leaves gets a new version; its rows go with the user (cascade).
        for group_id in leaving:
            try:
                self.remove_members(group_id, [id])
            except NotFound:
                # Joined after the groups were locked (_hold_with_groups's last attempt),
                # then deleted by another transaction before its lock was granted: its
                # memberships went with it.
                continue
        with self._database.errors():
            # A group's memberships and every document's index keys go by cascade.
            self._connection.execute(DELETE, (kind, id))
        self._locked.pop((kind, id), None)

    # -- memberships ----------------------------------------------------------------------

    def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Add users to a group, skipping those already in it; returns the ids added."""
        self._check_open()
        group = self._lock(GROUP, group_id)
        wanted = [user_id for user_id in dict.fromkeys(user_ids) if storable(user_id)]
        if not wanted:
            return []
        inserted = set(self._insert_members(group_id, wanted))
        added = [user_id for user_id in wanted if user_id in inserted]
        if added:
            self._bump(group_id, group)
            self.rows_added += len(added)
        return added

    def remove_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Remove users from a group, ignoring non-members; returns the ids removed, in
        the order given."""
        self._check_open()
        group = self._lock(GROUP, group_id)
        leaving = [user_id for user_id in dict.fromkeys(user_ids) if storable(user_id)]
        if not leaving:
            return []
        gone = set(self._column(REMOVE_MEMBERS, group_id, leaving))
        removed = [user_id for user_id in leaving if user_id in gone]
        if removed:
            self._bump(group_id, group)
        return removed

    def clear_members(self, group_id: str) -> list[str]:
        """Remove every member of the group; returns the ids removed, in member order."""
        self._check_open()
        group = self._lock(GROUP, group_id)
        rows = self._rows(CLEAR_MEMBERS, group_id)
        if rows:
            self._bump(group_id, group)
        return [user_id for user_id, _ in sorted(rows, key=lambda row: row[1])]

    def lock_groups_of(self, user_id: str) -> list[str]:
        """Ids of the user's groups (id order), each locked, and the user held so that it
        joins no other group until this transaction ends (:meth:`_hold_with_groups`; one
        joined during its last attempt is not locked yet: :meth:`get` locks it).

        A rename needs this, not :meth:`groups_of`: it renews the version of each group that
        shows the user's name, and a member add waits for nothing on a user its rename holds
        (``FOR KEY SHARE``), so a group joined and committed after the rename listed the
        groups kept its version while the name it shows changed at the rename's commit.
        A user that is not there is in no group.
        """
        self._check_open()
        try:
            return self._hold_with_groups(user_id)[1]
        except NotFound:
            return []

    # -- events ---------------------------------------------------------------------------

    def note(self, event: dict) -> None:
        """Write an activity event in this transaction; delivered to commit listeners after
        the commit, stamped with its row's ``seq``."""
        self._check_open()
        with self._database.errors():
            written = self._connection.execute(INSERT_EVENT, (encode_event(event),))
        self.noted.append((written, clone(event)))
        self.rows_added += 1

    def noted_events(self) -> list[dict]:
        """The events noted, each with its row's ``seq``: once the transaction committed
        (their rows are read only then, so they cost no round trip of their own)."""
        return [event | {"seq": fetch_first(row)} for row, event in self.noted]

    def close(self) -> None:
        """Refuse further reads and writes: the transaction block has ended, and its
        connection is back in the pool, perhaps serving another thread."""
        self._open = False

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("the transaction has ended; open a new one to read or write")

    def _lock(self, kind: str, id: str, query: str = LOCK) -> dict:
        """The stored document (not a copy), locked until the transaction ends."""
        key = (kind, id)
        if query == LOCK and key in self._locked:
            return self._locked[key]
        document = self._fetch(query, kind, id) if storable(id) else None
        if document is None:
            raise NotFound(kind, id)
        self._locked[key] = document
        return document

    def _hold_with_groups(self, user_id: str) -> tuple[dict, list[str]]:
        """Lock the user's groups (id order), then the user (``FOR UPDATE``: no member add
        of it can take its ``FOR KEY SHARE`` until this transaction ends); returns the user
        and the ids of the groups it is in, all locked.

        A member add locks the group, then the user: locking the user first and its groups
        after deadlocked with it. The groups are read before the user is held, so one it
        joins in between (that transaction held our user, so it has committed by the time
        we hold it) shows in the second read: then the locks taken here are released (back
        to the savepoint; locks taken earlier in the transaction stay) and taken again with
        that group among them. Once the user is held nobody can add it anywhere.

        :raises NotFound:
        """
        for attempt in range(1, _LEAVING_ATTEMPTS + 1):
            with self._database.errors():
                self._connection.execute(SAVEPOINT)
                groups = dict(
                    self._rows(LOCK_GROUPS_TO_LEAVE, user_id) if storable(user_id) else []
                )
            try:
                current = self._lock(USER, user_id, LOCK_FOR_DELETE)
            except NotFound:
                with self._database.errors():
                    self._connection.execute(RELEASE_SAVEPOINT)
                raise
            leaving = self._column(GROUPS_TO_LEAVE, user_id)
            joined = set(leaving) - groups.keys()
            if not joined or attempt == _LEAVING_ATTEMPTS:
                with self._database.errors():
                    self._connection.execute(RELEASE_SAVEPOINT)
                for group_id, group in groups.items():
                    self._locked.setdefault((GROUP, group_id), group)
                return current, leaving
            with self._database.errors():
                self._connection.execute(ROLLBACK_TO_SAVEPOINT)
        raise AssertionError("unreachable")  # the last attempt returns

    def _put(self, kind: str, id: str, stored: dict, previous: dict | None) -> None:
        """Write ``stored`` (new if ``previous`` is None) and its index keys.

        :raises Conflict: if a unique index holds one of its values for another document.
        """
        old = index_keys(self._indexes, kind, previous)
        new = index_keys(self._indexes, kind, stored)
        for _ in range(_CONFLICT_ATTEMPTS):
            if previous is None:
                written = self._insert(kind, id, stored, new)
            elif old == new:
                # No index key changes, so no unique value can be refused: the UPDATE is
                # sent with the next statement read, or with COMMIT.
                with self._database.errors():
                    self._connection.execute(UPDATE, _row(stored) + (kind, id))
                written = True
            else:
                written = self._update_keyed(kind, id, stored, old, new)
            if written:
                self._locked[(kind, id)] = stored
                self._stamped.add((kind, id))
                return
            conflict = self._conflict(kind, id, stored)
            if conflict is not None:
                raise conflict
        raise Contention(f"{kind} {id!r}: its unique values kept changing hands; try again")

    def _insert(self, kind: str, id: str, stored: dict, keys: IndexKeys) -> bool:
        """Insert a new document with its index keys; False (and nothing written) if another
        document holds one of its unique values."""
        version, doc, folded = _row(stored)
        values = [key for key, _ in keys.values()]
        params = {
            "kind": kind,
            "id": id,
            "version": version,
            "doc": doc,
            "folded": folded,
            "fields": list(keys),
            "keys": values,
            "unique": [unique for _, unique in keys.values()],
        }
        # PostgreSQL refuses an index key past a third of a page (2,704 bytes): a key that
        # could be that long is written in a savepoint, so a refusal ends only the write.
        risky = any(len(key) > SAFE_KEY_LENGTH for key in values)
        with self._database.errors(), self._savepoint() if risky else nullcontext():
            inserted, indexed = first_row(self._connection, INSERT, params) or (0, [])
            if not inserted:
                raise RuntimeError(f"the id factory returned {id!r}, which {kind} already uses")
            if len(indexed) == len(keys):
                return True
            # A unique value is taken: take the document (and, by cascade, its keys) out.
            self._connection.execute(DELETE, (kind, id))
        return False

    def _update_keyed(
        self, kind: str, id: str, stored: dict, old: IndexKeys, new: IndexKeys
    ) -> bool:
        """Replace a document whose index keys change, in a savepoint; False (and nothing
        written) if another document holds one of its new unique values."""
        try:
            with self._database.errors(), self._savepoint():
                self._connection.execute(UPDATE, _row(stored) + (kind, id))
                self._write_keys(kind, id, old, new)
        except pg_errors.UniqueViolation:
            return False
        return True

    @contextmanager
    def _savepoint(self) -> Iterator[None]:
        """A savepoint: if a statement in the block fails, what the block wrote is undone
        and the transaction goes on.

        Not psycopg's nested ``transaction()``: in pipeline mode the connection reports
        itself idle until the first sync, so psycopg would take it for a new transaction
        and commit the open one.
        """
        connection = self._connection
        # A nested pipeline: leaving it syncs, so the block's errors surface here.
        with connection.pipeline():
            connection.execute(SAVEPOINT)
            try:
                with connection.pipeline():
                    yield
            except psycopg.Error:
                connection.execute(ROLLBACK_TO_SAVEPOINT)
                raise
            connection.execute(RELEASE_SAVEPOINT)

    def _insert_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Insert the memberships of the users that exist; returns the user ids inserted."""
        try:
            with self._database.errors():
                return column(self._connection, ADD_MEMBERS, (group_id, user_ids))
        except pg_errors.ForeignKeyViolation:
            # Not expected (ADD_MEMBERS locks the users it adds); the transaction is lost.
            raise Contention(
                f"Group {group_id!r}: a new member was deleted meanwhile; try again"
            ) from None

    def _write_keys(self, kind: str, id: str, old: IndexKeys, new: IndexKeys) -> None:
        """Change the rows of ``resource_keys`` whose value changed, and only those."""
        gone = [field for field, key in old.items() if new.get(field) != key]
        if gone:
            self._connection.execute(DELETE_KEYS, (kind, id, gone))
        fresh = [(field, key) for field, key in new.items() if old.get(field) != key]
        if fresh:
            fields = [field for field, _ in fresh]
            keys = [key for _, (key, _) in fresh]
            unique = [is_unique for _, (_, is_unique) in fresh]
            self._connection.execute(INSERT_KEYS, (kind, id, fields, keys, unique))

    def _conflict(self, kind: str, id: str, stored: dict) -> Conflict | None:
        """The Conflict for ``stored``'s first unique value another document holds."""
        for field, (key, unique) in index_keys(self._indexes, kind, stored).items():
            holder = self._fetch(HOLDER, kind, field, key, id) if unique else None
            if holder is not None:
                return Conflict(kind, field, stored[field], holder)
        return None

    def _bump(self, group_id: str, group: dict) -> None:
        """Give the group a new version for its changed member list (RFC 7644 §3.14)."""
        if (GROUP, group_id) in self._stamped:
            return
        stored = group | {"meta": self._next_meta(group)}
        with self._database.errors():
            self._connection.execute(UPDATE, _row(stored) + (GROUP, group_id))
        self._locked[(GROUP, group_id)] = stored
        self._stamped.add((GROUP, group_id))

    def _next_meta(self, current: dict) -> dict:
        meta = current["meta"]
        return meta | {
            "lastModified": timestamp(self._clock()),
            "version": version_tag(version_number(meta["version"]) + 1),
        }


def fetch_first(cursor: psycopg.Cursor) -> Any:
    """The first column of the cursor's first row (a statement that returns one)."""
    row = cursor.fetchone()
    assert row is not None, "the statement returned no row"
    return row[0]


def _row(stored: dict) -> tuple[int, Jsonb, Jsonb]:
    """The ``version``, ``doc`` and ``folded`` columns of a document's row."""
    return version_number(stored["meta"]["version"]), jsonb(stored), jsonb(fold(stored))


def _body(document: dict) -> dict:
    """A private copy of what the caller sent, without the fields the repository stamps."""
    return {key: clone(value) for key, value in document.items() if key not in ("id", "meta")}


def _check_version(kind: str, id: str, current: dict, expected: str | None) -> None:
    if expected is not None and expected != current["meta"]["version"]:
        raise VersionMismatch(kind, id, expected, current["meta"]["version"])
