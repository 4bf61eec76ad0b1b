"""The read methods of :class:`storage.repository.Reader`, over one PostgreSQL connection.

Shared by the repository (a pooled connection per call, autocommit) and a transaction (its
own connection, so it sees its own writes). Every document returned is parsed afresh from
the row, so callers may change it freely.

An id or value PostgreSQL cannot hold (U+0000, a lone surrogate) cannot be stored, so a read
for one answers "not there" without asking the database.
"""

from __future__ import annotations

from typing import Any, NoReturn
from weakref import WeakKeyDictionary

import psycopg
from psycopg import sql
from psycopg.abc import Params

from storage.errors import NotFound, Unstorable
from storage.postgres.conditions import storable
from storage.postgres.connection import settle
from storage.repository import Index

USER = "User"
GROUP = "Group"

Key = tuple[str, str]  # (kind, id) of a document, or (kind, field) of an index
# field -> (indexed value, whether the index is unique): what resource_keys holds for a doc.
IndexKeys = dict[str, tuple[str, bool]]
Statement = str | sql.Composed  # a statement with placeholders, its values bound apart

GET = "SELECT doc FROM resources WHERE kind = %s AND id = %s"
GET_MANY = "SELECT jsonb_build_array(id, doc) FROM resources WHERE kind = %s AND id = ANY(%s)"
# The documents' ids with some of their top-level attributes: a group of 10,000 read whole
# for its members' names took 0.3 s, these two 0.13-0.18 s.
GET_MANY_OF = """
    SELECT jsonb_build_array(id, (
        SELECT jsonb_object_agg(key, value) FROM jsonb_each(doc) WHERE key = ANY(%s)
    ))
    FROM resources WHERE kind = %s AND id = ANY(%s)
"""
EXISTS = "SELECT EXISTS (SELECT FROM resources WHERE kind = %s AND id = %s)"
EXISTING = "SELECT id FROM resources WHERE kind = %s AND id = ANY(%s)"
FIND = "SELECT id FROM resource_keys WHERE kind = %s AND field = %s AND key = %s ORDER BY seq"
FIND_DOCUMENTS = """
    SELECT r.doc FROM resource_keys AS k JOIN resources AS r ON r.kind = k.kind AND r.id = k.id
    WHERE k.kind = %s AND k.field = %s AND k.key = %s
    ORDER BY k.seq
"""
MEMBERS = "SELECT user_id FROM members WHERE group_id = %s ORDER BY seq"
GROUPS_OF = "SELECT group_id FROM members WHERE user_id = %s ORDER BY seq"
# The kinds of the documents a statement reads, hidden from the planner's statistics.
# Entra creates the users first and the groups after, so the statistics last taken say
# there are no groups (autovacuum, and storage.postgres.statistics, analyze again only once
# a table has grown by a tenth or doubled): the planner then expected one group, and read
# every group through the index on insertion order, each one's memberships with it: 3.5 ms
# and 6,500 buffers at 20,000 users and 800 groups, against 0.12 ms by primary key (the
# bench's lookups at 50,000 ran at 474 req/s). A value the planner cannot see is taken as
# common as any kind, so it probes the primary key for each membership, whatever the
# statistics say. The same holds for users, should a client create groups first.
GROUP_KIND = "(SELECT 'Group')"
USER_KIND = "(SELECT 'User')"
# A user's groups as one array, in joining order, for the user r of the enclosing query.
# The user's membership rows are read first, on their index, whatever the statistics say
# (OFFSET 0 keeps the planner from flattening the subquery): in the bench's incremental
# cycle at 50,000 users the plain join cost 2.27 ms and 2,700 buffer hits per call, rows
# read first 1.0 ms and 750 (pg_stat_statements, 2 processes).
GROUPS_OF_R = f"""(
    SELECT coalesce(jsonb_agg(g.doc ORDER BY m.seq), '[]')
    FROM (SELECT group_id, seq FROM members WHERE user_id = r.id OFFSET 0) AS m
    JOIN resources AS g ON g.kind = {GROUP_KIND} AND g.id = m.group_id
)"""
# One user's groups alone (a PATCH's answer, a read in a transaction). The form for many
# below may join the other way round: 1.6 ms against 0.2 ms (generic plans, 10,000 users,
# before the first ANALYZE).
GROUP_DOCUMENTS_OF_ONE = f"SELECT {GROUPS_OF_R} FROM (SELECT %s::text AS id) AS r"
GET_WITH_GROUPS = f"""
    SELECT r.doc, {GROUPS_OF_R} FROM resources AS r WHERE r.kind = {USER_KIND} AND r.id = %s
"""
FIND_WITH_GROUPS = f"""
    SELECT r.doc, {GROUPS_OF_R}
    FROM resource_keys AS k JOIN resources AS r ON r.kind = k.kind AND r.id = k.id
    WHERE k.kind = {USER_KIND} AND k.field = %s AND k.key = %s
    ORDER BY k.seq
"""
GROUP_DOCUMENTS_OF = f"""
    SELECT jsonb_build_array(m.user_id, r.doc)
    FROM members AS m JOIN resources AS r ON r.kind = {GROUP_KIND} AND r.id = m.group_id
    WHERE m.user_id = ANY(%s)
    ORDER BY m.seq
"""


class Reads:
    """The reads, over the statements :meth:`_fetch` and :meth:`_column` run."""

    _indexes: dict[Key, Index]

    def get(self, kind: str, id: str) -> dict:
        """A copy of the document; :class:`NotFound` if there is none."""
        document = self._fetch(GET, kind, id) if storable(id) else None
        if document is None:
            raise NotFound(kind, id)
        return document

    def get_many(self, kind: str, ids: list[str]) -> list[dict]:
        """Copies of the documents with these ids that exist, in the order of ``ids``: one
        statement, where a group's members one ``get`` each cost a second at 10,000."""
        wanted = [id for id in ids if storable(id)]
        if not wanted:
            return []
        found = dict(self._column(GET_MANY, kind, wanted))
        return [found[id] for id in dict.fromkeys(wanted) if id in found]

    def get_many_of(self, kind: str, ids: list[str], attributes: list[str]) -> list[dict]:
        """As :meth:`get_many`, with only ``id`` and these top-level ``attributes``: one
        statement, the rest of each document left in the database."""
        wanted = [id for id in ids if storable(id)]
        if not wanted:
            return []
        found = {
            id: {"id": id, **(picked or {})}
            for id, picked in self._column(GET_MANY_OF, list(attributes), kind, wanted)
        }
        return [found[id] for id in dict.fromkeys(wanted) if id in found]

    def exists(self, kind: str, id: str) -> bool:
        """Whether a document of ``kind`` has ``id``."""
        return storable(id) and self._fetch(EXISTS, kind, id)

    def existing(self, kind: str, ids: list[str]) -> list[str]:
        """The ids, of those given, that a document of ``kind`` has (in order, each once)."""
        wanted = [id for id in dict.fromkeys(ids) if storable(id)]
        found = set(self._column(EXISTING, kind, wanted)) if wanted else set()
        return [id for id in wanted if id in found]

    def find(self, kind: str, field: str, value: str) -> list[str]:
        """Ids of documents whose indexed ``field`` equals ``value`` (after the fold), in the
        order they took that value.

        :raises KeyError: if there is no index on ``kind``/``field``.
        """
        key = self._index_key(kind, field, value)
        return self._column(FIND, kind, field, key) if storable(key) else []

    def find_documents(self, kind: str, field: str, value: str) -> list[dict]:
        """Copies of the documents :meth:`find` names, in its order: one statement."""
        key = self._index_key(kind, field, value)
        return self._column(FIND_DOCUMENTS, kind, field, key) if storable(key) else []

    def members(self, group_id: str) -> list[str]:
        """User ids in the group, in the order they were added."""
        return self._column(MEMBERS, group_id) if storable(group_id) else []

    def groups_of(self, user_id: str) -> list[str]:
        """Ids of the groups the user is a member of, in the order it joined them."""
        return self._column(GROUPS_OF, user_id) if storable(user_id) else []

    def group_documents_of(self, user_ids: list[str]) -> dict[str, list[dict]]:
        """For each user given, copies of the groups it is a member of (in joining order):
        one statement for them all."""
        found: dict[str, list[dict]] = {id: [] for id in user_ids}
        wanted = [id for id in found if storable(id)]
        if len(wanted) == 1:
            found[wanted[0]] = self._fetch(GROUP_DOCUMENTS_OF_ONE, wanted[0])
        elif wanted:
            for user_id, group in self._column(GROUP_DOCUMENTS_OF, wanted):
                found[user_id].append(group)
        return found

    def get_with_groups(self, kind: str, id: str) -> tuple[dict, list[dict]]:
        """A copy of the document and copies of its groups (a user's): one statement."""
        if kind != USER:
            return self.get(kind, id), []
        found = self._rows(GET_WITH_GROUPS, id) if storable(id) else []
        if not found:
            raise NotFound(kind, id)
        document, groups = found[0]
        return document, groups

    def find_with_groups(
        self, kind: str, field: str, value: str
    ) -> tuple[list[dict], dict[str, list[dict]]]:
        """:meth:`find_documents` and the groups of the documents found: one statement."""
        if kind != USER:
            found = self.find_documents(kind, field, value)
            return found, {document["id"]: [] for document in found}
        key = self._index_key(kind, field, value)
        matches = self._rows(FIND_WITH_GROUPS, field, key) if storable(key) else []
        return [document for document, _ in matches], {
            document["id"]: groups for document, groups in matches
        }

    def _index_key(self, kind: str, field: str, value: str) -> str:
        """``value`` as the index on ``kind``/``field`` keeps it.

        :raises KeyError: if there is no index on ``kind``/``field``.
        """
        index = self._indexes.get((kind, field))
        if index is None:
            raise KeyError(f"no index on {kind}.{field}")
        return index.key(value)

    def _fetch(self, query: str, *params: object) -> Any:
        """The first column of the first row of ``query`` (None if there is no row)."""
        raise NotImplementedError

    def _column(self, query: str, *params: object) -> list:
        """The first column of every row of ``query``."""
        raise NotImplementedError

    def _rows(self, query: str, *params: object) -> list[tuple]:
        """Every row of ``query``."""
        raise NotImplementedError


def fetch(connection: psycopg.Connection, query: Statement, params: Params) -> Any:
    """The first column of the first row of ``query`` (None if there is no row)."""
    row = _run(connection, query, params).fetchone()
    return None if row is None else row[0]


def first_row(connection: psycopg.Connection, query: Statement, params: Params) -> tuple | None:
    """The first row of ``query`` (None if there is no row)."""
    return _run(connection, query, params).fetchone()


def column(connection: psycopg.Connection, query: Statement, params: Params) -> list:
    """The first column of every row of ``query``."""
    return [row[0] for row in _run(connection, query, params).fetchall()]


def rows(connection: psycopg.Connection, query: Statement, params: Params) -> list[tuple]:
    """Every row of ``query``."""
    return _run(connection, query, params).fetchall()


def _run(connection: psycopg.Connection, query: Statement, params: Params) -> psycopg.Cursor:
    """``query`` run, its rows ready; in a transaction, settled (what this process does
    with them next is bounded by the idle timeout, :func:`settle`)."""
    cursor = reading_cursor(connection).execute(query, params)
    settle(connection)
    return cursor


_cursors: WeakKeyDictionary[psycopg.Connection, psycopg.Cursor] = WeakKeyDictionary()


def reading_cursor(connection: psycopg.Connection) -> psycopg.Cursor:
    """The connection's cursor for statements whose rows are read at once (:func:`fetch`,
    :func:`column`), kept with the connection: making one per statement was a fifth of a
    short read's CPU (psycopg builds a cursor's adapters anew each time).

    Safe to share because its rows are read before it runs another statement, and a pooled
    connection serves one thread at a time. In a pipeline, a statement whose result is read
    later (an activity row) has a cursor of its own.
    """
    cursor = _cursors.get(connection)
    if cursor is None or cursor.closed:
        cursor = _cursors[connection] = connection.cursor()
    return cursor


def fold(value: Any) -> Any:
    """``value`` with every string in it casefolded (keys kept): the ``folded`` column.

    It visits every string of a document about to be written, so it also refuses one the
    database would: before the write, which PostgreSQL's refusal would make the end of the
    whole transaction.

    :raises Unstorable: if a string in ``value`` (a key or a value) holds U+0000 or a lone
        surrogate.
    """
    if isinstance(value, str):
        return value.casefold() if storable(value) else _refuse(value)
    if isinstance(value, dict):
        return {key if storable(key) else _refuse(key): fold(item) for key, item in value.items()}
    if isinstance(value, list):
        return [fold(item) for item in value]
    return value


def _refuse(text: str) -> NoReturn:
    raise Unstorable(
        f"PostgreSQL cannot store this value: {text[:40]!r} holds U+0000 or a lone surrogate"
    )


def index_keys(indexes: dict[Key, Index], kind: str, document: dict | None) -> IndexKeys:
    """What ``resource_keys`` holds for ``document``: its indexed string fields, folded.

    A document lacking the field (or holding a non-string there) is simply not indexed.
    """
    if document is None:
        return {}
    keys: IndexKeys = {}
    for (index_kind, field), index in indexes.items():
        value = document.get(field)
        if index_kind == kind and isinstance(value, str):
            keys[field] = (index.key(value), index.unique)
    return keys
