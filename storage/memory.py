"""The in-memory repository: every rule of :mod:`storage.repository`, nothing on disk.

The service tests' fake, and the base :mod:`storage.tinydb_store` adds durability to, so the
rules (meta, unique indexes, versions, memberships) are written once.

State is published as an immutable snapshot. A transaction's first write copies its dicts
(stored documents are never changed in place) and commit publishes the copy in one
assignment; an exception just drops it. Readers take no lock and never see half a write.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage.errors import Conflict, NotFound, VersionMismatch
from storage.repository import Clock, CommitListener, IdFactory, Index

USER = "User"
GROUP = "Group"

Key = tuple[str, str]  # (kind, id) of a document, or (kind, field) of an index


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_hex_id() -> str:
    """An opaque, unguessable document id (32 hex digits)."""
    return uuid.uuid4().hex


def clone(value: Any) -> Any:
    """A deep copy of a JSON value; several times faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {key: clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clone(item) for item in value]
    return value


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and "Z", e.g. "2026-11-26T10:54:52.123Z"."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def version_tag(number: int) -> str:
    """The weak entity tag for version ``number`` (RFC 7644 §3.14)."""
    return f'W/"{number}"'


def version_number(tag: str) -> int:
    """The counter inside a tag made by :func:`version_tag`."""
    return int(tag[3:-1])


@dataclass
class State:
    """One consistent snapshot: documents, memberships and the lookups derived from them.

    A published snapshot is never changed; :meth:`copy` gives a transaction its own dicts.
    Values (documents, id tuples) are shared between copies and replaced, never mutated.
    """

    indexes: tuple[Index, ...]
    documents: dict[str, dict[str, dict]]  # kind -> id -> document, in insertion order
    members: dict[str, tuple[str, ...]]  # group id -> user ids, in the order added
    groups: dict[str, tuple[str, ...]]  # user id -> group ids (the inverse of members)
    keys: dict[Key, dict[str, tuple[str, ...]]]  # (kind, field) -> folded value -> ids

    @classmethod
    def build(
        cls,
        indexes: Iterable[Index],
        documents: dict[str, dict[str, dict]] | None = None,
        members: dict[str, tuple[str, ...]] | None = None,
    ) -> State:
        """A snapshot holding ``documents`` and ``members``, with every lookup computed."""
        indexes = tuple(indexes)
        state = cls(indexes, {}, {}, {}, {(index.kind, index.field): {} for index in indexes})
        for kind, table in (documents or {}).items():
            state.documents[kind] = dict(table)
            for id, document in table.items():
                state.index(kind, id, document)
        for group_id, user_ids in (members or {}).items():
            state.members[group_id] = tuple(user_ids)
            for user_id in user_ids:
                _append(state.groups, user_id, group_id)
        return state

    def copy(self) -> State:
        """A snapshot with its own dicts at every level a write changes."""
        return State(
            self.indexes,
            {kind: dict(table) for kind, table in self.documents.items()},
            dict(self.members),
            dict(self.groups),
            {key: dict(values) for key, values in self.keys.items()},
        )

    def index(self, kind: str, id: str, document: dict) -> None:
        """Add ``document``'s values to the lookups of ``kind``."""
        for index, folded in self._keys_of(kind, document):
            _append(self.keys[(kind, index.field)], folded, id)

    def unindex(self, kind: str, id: str, document: dict) -> None:
        """Remove ``document``'s values from the lookups of ``kind``."""
        for index, folded in self._keys_of(kind, document):
            _discard(self.keys[(kind, index.field)], folded, id)

    def _keys_of(self, kind: str, document: dict) -> Iterator[tuple[Index, str]]:
        # A document lacking the field (or holding a non-string) is simply not indexed.
        for index in self.indexes:
            value = document.get(index.field)
            if index.kind == kind and isinstance(value, str):
                yield index, index.key(value)


class _Reads:
    """The read methods, over whichever snapshot ``_state`` is."""

    _state: State
    _indexes: dict[Key, Index]

    def get(self, kind: str, id: str) -> dict:
        """A copy of the document; :class:`NotFound` if there is none."""
        return clone(self._stored(kind, id))

    def exists(self, kind: str, id: str) -> bool:
        """Whether a document of ``kind`` has ``id``."""
        return id in self._state.documents.get(kind, {})

    def find(self, kind: str, field: str, value: str) -> list[str]:
        """Ids of documents whose indexed ``field`` equals ``value`` (after the fold).

        :raises KeyError: if there is no index on ``kind``/``field``.
        """
        index = self._indexes.get((kind, field))
        if index is None:
            raise KeyError(f"no index on {kind}.{field}")
        return list(self._state.keys[(kind, field)].get(index.key(value), ()))

    def members(self, group_id: str) -> list[str]:
        """User ids in the group, in the order they were added."""
        return list(self._state.members.get(group_id, ()))

    def groups_of(self, user_id: str) -> list[str]:
        """Ids of the groups the user is a member of."""
        return list(self._state.groups.get(user_id, ()))

    def _stored(self, kind: str, id: str) -> dict:
        """The stored document itself (not a copy: never hand it out)."""
        try:
            return self._state.documents[kind][id]
        except KeyError:
            raise NotFound(kind, id) from None


class MemoryTransaction(_Reads):
    """One transaction's reads and writes, on its own copy of the state.

    Membership calls raise :class:`NotFound` if the group does not exist.
    """

    def __init__(self, repository: MemoryRepository) -> None:
        self._repository = repository
        self._indexes = repository._indexes
        self._state = repository._state
        self._copied = False
        self._open = True
        # (kind, id) of every document written, in order: what a durable store must save.
        self.changed: dict[Key, None] = {}
        # Documents already given a new version here: one transaction, one version.
        self._stamped: set[Key] = set()
        # Activity events noted by the caller, committed with the writes.
        self.events: list[dict] = []

    @property
    def state(self) -> State:
        """The snapshot this transaction reads and writes."""
        return self._state

    def insert(self, kind: str, document: dict) -> dict:
        """Store a new document; returns it with ``id`` and ``meta`` stamped.

        :raises Conflict: if a unique index already holds one of its values.
        """
        id = self._repository._new_id()
        if self.exists(kind, id):
            raise RuntimeError(f"the id factory returned {id!r}, which {kind} already uses")
        now = timestamp(self._repository._clock())
        meta = {"resourceType": kind, "created": now, "lastModified": now}
        stored = _body(document) | {"id": id, "meta": meta | {"version": version_tag(1)}}
        self._check_unique(kind, id, stored)
        self._put(kind, id, stored)
        self._stamped.add((kind, id))
        return clone(stored)

    def replace(self, kind: str, id: str, document: dict, *, if_version: str | None = None) -> dict:
        """Replace the whole document (keeps ``id`` and ``meta.created``, new version).

        :raises NotFound, Conflict, VersionMismatch:
        """
        current = self._stored(kind, id)
        _check_version(kind, id, current, if_version)
        meta = current["meta"] if (kind, id) in self._stamped else self._next_meta(current)
        stored = _body(document) | {"id": id, "meta": meta}
        self._check_unique(kind, id, stored)
        self._put(kind, id, stored)
        self._stamped.add((kind, id))
        return clone(stored)

    def delete(self, kind: str, id: str, *, if_version: str | None = None) -> None:
        """Remove the document and every membership it is part of (as group or as user).

        :raises NotFound, VersionMismatch:
        """
        current = self._stored(kind, id)
        _check_version(kind, id, current, if_version)
        state = self._writable()
        state.unindex(kind, id, current)
        del state.documents[kind][id]
        self.changed[(kind, id)] = None
        if kind == GROUP:
            self._set_members(id, ())
            state.members.pop(id, None)
        elif kind == USER:
            for group_id in state.groups.get(id, ()):
                self.remove_members(group_id, [id])

    def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Add users to a group, skipping those already in it; returns the ids added."""
        self._stored(GROUP, group_id)
        current = self._state.members.get(group_id, ())
        present = set(current)
        added = [user_id for user_id in dict.fromkeys(user_ids) if user_id not in present]
        if added:
            self._set_members(group_id, current + tuple(added))
        return added

    def remove_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Remove users from a group, ignoring non-members; returns the ids removed."""
        self._stored(GROUP, group_id)
        current = self._state.members.get(group_id, ())
        leaving = set(user_ids)
        removed = [user_id for user_id in current if user_id in leaving]
        if removed:
            self._set_members(group_id, tuple(u for u in current if u not in leaving))
        return removed

    def clear_members(self, group_id: str) -> list[str]:
        """Remove every member of the group; returns the ids removed."""
        return self.remove_members(group_id, self.members(group_id))

    def note(self, event: dict) -> None:
        """Attach an activity event; delivered to commit listeners after the commit."""
        self.events.append(clone(event))

    def close(self) -> None:
        """Refuse further writes: the transaction block has ended."""
        self._open = False

    # -- internals ------------------------------------------------------------------------

    def _writable(self) -> State:
        if not self._open:
            raise RuntimeError("the transaction has ended; open a new one to write")
        if not self._copied:
            self._state = self._state.copy()
            self._copied = True
        return self._state

    def _put(self, kind: str, id: str, document: dict) -> None:
        state = self._writable()
        table = state.documents.setdefault(kind, {})
        previous = table.get(id)
        if previous is not None:
            state.unindex(kind, id, previous)
        table[id] = document
        state.index(kind, id, document)
        self.changed[(kind, id)] = None

    def _set_members(self, group_id: str, user_ids: tuple[str, ...]) -> None:
        """Make ``user_ids`` the group's members, keep the inverse in step, bump the group."""
        state = self._writable()
        before = state.members.get(group_id, ())
        for user_id in set(before).difference(user_ids):
            _discard(state.groups, user_id, group_id)
        for user_id in set(user_ids).difference(before):
            _append(state.groups, user_id, group_id)
        state.members[group_id] = user_ids
        group = state.documents.get(GROUP, {}).get(group_id)
        if group is not None and (GROUP, group_id) not in self._stamped:
            # The member list is part of the group, so it gets a new version (RFC 7644 §3.14).
            self._put(GROUP, group_id, group | {"meta": self._next_meta(group)})
            self._stamped.add((GROUP, group_id))

    def _next_meta(self, current: dict) -> dict:
        meta = current["meta"]
        return meta | {
            "lastModified": timestamp(self._repository._clock()),
            "version": version_tag(version_number(meta["version"]) + 1),
        }

    def _check_unique(self, kind: str, id: str, document: dict) -> None:
        """Refuse a value another document holds; its own value (in any case) is fine."""
        for index in self._indexes.values():
            value = document.get(index.field)
            if index.kind != kind or not index.unique or not isinstance(value, str):
                continue
            holders = self._state.keys[(kind, index.field)].get(index.key(value), ())
            others = [holder for holder in holders if holder != id]
            if others:
                raise Conflict(kind, index.field, value, others[0])


class MemoryRepository(_Reads):
    """A repository held in memory only: the fake for service tests, the base of durable ones.

    :param clock: gives ``meta.created``/``lastModified``; inject a fixed one in tests.
    :param new_id: gives new document ids; inject a counter in tests.
    """

    def __init__(
        self, indexes: list[Index], clock: Clock = utcnow, new_id: IdFactory = new_hex_id
    ) -> None:
        self._indexes = {(index.kind, index.field): index for index in indexes}
        self._clock = clock
        self._new_id = new_id
        # One lock for a whole transaction, from its first check to its commit: locking
        # each step separately lets two requests both pass a uniqueness check.
        self._lock = threading.RLock()
        self._active: MemoryTransaction | None = None
        self._state = State.build(indexes)
        self._listeners: list[CommitListener] = []

    @contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        """Serialise a unit of work; publish it on normal exit, discard it on exception."""
        with self._lock:
            if self._active is not None:
                raise RuntimeError("transactions do not nest; use the one already open")
            transaction = MemoryTransaction(self)
            self._active = transaction
            try:
                yield transaction
                if transaction.changed or transaction.events:
                    self._commit(transaction)
                    self._state = transaction.state
            finally:
                transaction.close()
                self._active = None
            if transaction.events:
                # Still under the lock, so listeners see commits in order.
                for listener in self._listeners:
                    listener(transaction.events)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(events)`` after every commit that noted events, in commit order."""
        self._listeners.append(listener)

    def all(self, kind: str) -> Iterator[dict]:
        """Every document of ``kind`` (copies), in insertion order."""
        # The snapshot's dict is never changed, so iterating it while others commit is safe.
        for document in self._state.documents.get(kind, {}).values():
            yield clone(document)

    def count(self, kind: str) -> int:
        """How many documents of ``kind`` there are."""
        return len(self._state.documents.get(kind, {}))

    def close(self) -> None:
        """Nothing to release: the data lives and dies with this object."""

    def _commit(self, transaction: MemoryTransaction) -> None:
        """Hook: make the changes durable before they are published; raising discards them."""


def _body(document: dict) -> dict:
    """A private copy of what the caller sent, without the fields the repository stamps."""
    return {key: clone(value) for key, value in document.items() if key not in ("id", "meta")}


def _check_version(kind: str, id: str, current: dict, expected: str | None) -> None:
    if expected is not None and expected != current["meta"]["version"]:
        raise VersionMismatch(kind, id, expected, current["meta"]["version"])


def _append(mapping: dict[str, tuple[str, ...]], key: str, item: str) -> None:
    mapping[key] = mapping.get(key, ()) + (item,)


def _discard(mapping: dict[str, tuple[str, ...]], key: str, item: str) -> None:
    """Remove ``item`` from the tuple at ``key``, and the key once its tuple is empty."""
    remaining = tuple(other for other in mapping.get(key, ()) if other != item)
    if remaining:
        mapping[key] = remaining
    else:
        mapping.pop(key, None)
