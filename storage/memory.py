"""The in-memory repository: every rule of :mod:`storage.repository`, nothing on disk.

The service tests' fake, and the base that :mod:`storage.tinydb_store` and
:mod:`storage.journal` add durability to, so the rules (meta, unique indexes, versions,
memberships) are written once.

State is published as an immutable snapshot (:class:`storage.state.State`). A transaction's
first write copies its maps (stored documents are never changed in place) and commit
publishes the copy in one assignment; an exception just drops it. Readers take no lock and
never see half a write.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice

from storage.errors import Conflict, NotFound, VersionMismatch
from storage.query import Found, Query, answer_in_python
from storage.repository import Clock, CommitListener, CompactionHook, IdFactory, Index
from storage.state import Key, MemberList, State, append, discard
from storage.values import clone, new_hex_id, timestamp, utcnow, version_number, version_tag

USER = "User"
GROUP = "Group"

# A membership change as a transaction records it: ("add" | "remove", group id, user ids).
MembershipChange = tuple[str, str, tuple[str, ...]]


class _Reads:
    """The read methods, over whichever snapshot ``_state`` is."""

    _state: State
    _indexes: dict[Key, Index]

    def get(self, kind: str, id: str) -> dict:
        """A copy of the document; :class:`NotFound` if there is none."""
        return clone(self._stored(kind, id))

    def get_many(self, kind: str, ids: list[str]) -> list[dict]:
        """Copies of the documents with these ids that exist, in the order of ``ids``."""
        table = self._state.documents.get(kind)
        if table is None:
            return []
        return [clone(table[id]) for id in dict.fromkeys(ids) if id in table]

    def get_many_of(self, kind: str, ids: list[str], attributes: list[str]) -> list[dict]:
        """As :meth:`get_many`, with only ``id`` and these top-level ``attributes``."""
        table = self._state.documents.get(kind)
        if table is None:
            return []
        wanted = ["id", *attributes]
        return [
            {key: clone(table[id][key]) for key in wanted if key in table[id]}
            for id in dict.fromkeys(ids)
            if id in table
        ]

    def exists(self, kind: str, id: str) -> bool:
        """Whether a document of ``kind`` has ``id``."""
        return id in self._state.documents.get(kind, {})

    def existing(self, kind: str, ids: list[str]) -> list[str]:
        """The ids, of those given, that a document of ``kind`` has (in order, each once)."""
        table = self._state.documents.get(kind)
        return [id for id in dict.fromkeys(ids) if id in table] if table is not None else []

    def find(self, kind: str, field: str, value: str) -> list[str]:
        """Ids of documents whose indexed ``field`` equals ``value`` (after the fold).

        :raises KeyError: if there is no index on ``kind``/``field``.
        """
        return list(self._found(kind, field, value))

    def find_documents(self, kind: str, field: str, value: str) -> list[dict]:
        """Copies of the documents :meth:`find` names, in its order."""
        return self.get_many(kind, list(self._found(kind, field, value)))

    def members(self, group_id: str) -> list[str]:
        """User ids in the group, in the order they were added."""
        return list(self._state.members.get(group_id, ()))

    def groups_of(self, user_id: str) -> list[str]:
        """Ids of the groups the user is a member of."""
        return list(self._state.groups.get(user_id, ()))

    def group_documents_of(self, user_ids: list[str]) -> dict[str, list[dict]]:
        """For each user given, copies of the groups it is a member of (in joining order)."""
        return {id: self.get_many(GROUP, self.groups_of(id)) for id in user_ids}

    def get_with_groups(self, kind: str, id: str) -> tuple[dict, list[dict]]:
        """A copy of the document and copies of the groups it is a member of."""
        return self.get(kind, id), self.group_documents_of([id])[id]

    def find_with_groups(
        self, kind: str, field: str, value: str
    ) -> tuple[list[dict], dict[str, list[dict]]]:
        """:meth:`find_documents` and the groups of the documents found."""
        found = self.find_documents(kind, field, value)
        return found, self.group_documents_of([document["id"] for document in found])

    def _found(self, kind: str, field: str, value: str) -> Iterable[str]:
        """The ids the index on ``kind``/``field`` holds for ``value`` (not a copy).

        :raises KeyError: if there is no index on ``kind``/``field``.
        """
        index = self._indexes.get((kind, field))
        if index is None:
            raise KeyError(f"no index on {kind}.{field}")
        return self._state.keys[(kind, field)].get(index.key(value), ())

    def _stored(self, kind: str, id: str) -> dict:
        """The stored document itself (not a copy: never hand it out)."""
        try:
            return self._state.documents[kind][id]
        except KeyError:
            raise NotFound(kind, id) from None


class MemoryTransaction(_Reads):
    """One transaction's reads and writes, on its own copy of ``state``.

    Membership calls raise :class:`NotFound` if the group does not exist.
    """

    def __init__(self, repository: MemoryRepository, state: State) -> None:
        self._repository = repository
        self._indexes = repository._indexes
        self._state = state
        self._copied = False
        self._open = True
        # (kind, id) of every document written, in order: what a durable store must save.
        self.changed: dict[Key, None] = {}
        # Membership changes in order, as deltas: a journal records these, not member lists.
        self.membership_changes: list[MembershipChange] = []
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
            # Deleting the group deletes its memberships: no delta to record.
            self._change_members(id, removed=tuple(state.members.get(id) or ()))
        elif kind == USER:
            for group_id in state.groups.get(id, ()):
                self.remove_members(group_id, [id])

    def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Add users to a group, skipping those already in it and ids that are no user;
        returns the ids added."""
        self._stored(GROUP, group_id)
        groups = self._state.groups
        users = self._state.documents.get(USER)
        if users is None:
            return []
        # The inverse lookup answers "already a member?" without reading the member list,
        # so adding one member costs the same in a group of 10 or of 10,000.
        added = [
            user_id
            for user_id in dict.fromkeys(user_ids)
            if user_id in users and group_id not in groups.get(user_id, ())
        ]
        if added:
            self._change_members(group_id, added=added)
            self.membership_changes.append(("add", group_id, tuple(added)))
        return added

    def remove_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Remove users from a group, ignoring non-members; returns the ids removed, in the
        order given."""
        self._stored(GROUP, group_id)
        groups = self._state.groups
        leaving = {user_id for user_id in user_ids if group_id in groups.get(user_id, ())}
        if not leaving:
            return []
        removed = [user_id for user_id in dict.fromkeys(user_ids) if user_id in leaving]
        self._change_members(group_id, removed=removed)
        self.membership_changes.append(("remove", group_id, tuple(removed)))
        return removed

    def clear_members(self, group_id: str) -> list[str]:
        """Remove every member of the group; returns the ids removed."""
        return self.remove_members(group_id, self.members(group_id))

    def lock_groups_of(self, user_id: str) -> list[str]:
        """Ids of the groups the user is a member of: nobody else writes until this
        transaction ends (one at a time), so they need no lock."""
        return self.groups_of(user_id)

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
        table = state.table(kind)
        previous = table.get(id)
        table[id] = document
        if previous is None:
            state.index(kind, id, document)
        else:
            state.reindex(kind, id, previous, document)
        self.changed[(kind, id)] = None

    def _change_members(
        self,
        group_id: str,
        added: Sequence[str] = (),
        removed: Sequence[str] = (),
    ) -> None:
        """Apply a membership delta, keep the inverse in step, bump the group's version.

        ``removed`` are members and ``added`` are not: each costs O(1), whatever the size.
        """
        state = self._writable()
        current = state.members.get(group_id) or MemberList()
        if removed:
            current = current.removed(removed)
            for user_id in removed:
                discard(state.groups, user_id, group_id)
        if added:
            current = current.added(added)
            for user_id in added:
                append(state.groups, user_id, group_id)
        if current:
            state.members[group_id] = current
        else:
            state.members.pop(group_id, None)
        group = state.document(GROUP, group_id)
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

    Activity events get a ``seq`` (1, 2, ...) in commit order before listeners see them.

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
        self._event_seq = 0  # the seq of the last event committed

    @contextmanager
    def transaction(self) -> Iterator[MemoryTransaction]:
        """Serialise a unit of work; publish it on normal exit, discard it on exception."""
        with self._lock:
            transaction = self._begin(self._state)
            try:
                yield transaction
                if transaction.changed or transaction.events:
                    stamp_events(transaction.events, self._event_seq + 1)
                    self._commit(transaction)
                    self._event_seq += len(transaction.events)
                    self._state = transaction.state
            finally:
                self._end(transaction)
            if transaction.events:
                # Still under the lock, so listeners see commits in order.
                self._notify(transaction.events)

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(events)`` after every commit that noted events, in commit order."""
        self._listeners.append(listener)

    def add_compaction_hook(self, hook: CompactionHook) -> None:
        """Accept a compaction hook; never called, as this store keeps no journal."""

    def all(self, kind: str) -> Iterator[dict]:
        """Every document of ``kind`` (copies), in insertion order."""
        # The snapshot's map is never changed, so iterating it while others commit is safe.
        table = self._state.documents.get(kind)
        if table is not None:
            for document in table.values():
                yield clone(document)

    def scan(self, kind: str) -> Iterator[dict]:
        """Every stored document of ``kind`` itself (never change one), in insertion order."""
        table = self._state.documents.get(kind)
        return iter(()) if table is None else table.values()

    def count(self, kind: str) -> int:
        """How many documents of ``kind`` there are."""
        table = self._state.documents.get(kind)
        return 0 if table is None else len(table)

    def query(self, kind: str, query: Query) -> Found:
        """Answered in Python with ``query.matches`` and ``query.sort_key``, over the stored
        documents in place (:mod:`storage.query`)."""
        table = self._state.documents.get(kind)
        if table is None:
            return Found([], 0)
        if query.matches is None and query.sort_key is None:
            # A plain listing (Entra's account discovery, A16) passes over only the page.
            if query.offset >= len(table):
                return Found([], len(table))  # islice refuses offsets past sys.maxsize
            end = None if query.limit is None else query.offset + query.limit
            return Found(list(islice(table.values(), query.offset, end)), len(table))
        # ``matches`` rather than ``where``, even where that is exact: the service's is the
        # SCIM filter compiled once (scim.filter.matcher), which tested 10,000 users 1.1-1.7x
        # faster than ``where`` compiled by storage.query.predicate.
        return answer_in_python(table.values(), query)

    def close(self) -> None:
        """Nothing to release: the data lives and dies with this object."""

    def _begin(self, state: State) -> MemoryTransaction:
        """Open a transaction on ``state``; the caller holds the lock."""
        if self._active is not None:
            raise RuntimeError("transactions do not nest; use the one already open")
        self._active = MemoryTransaction(self, state)
        return self._active

    def _end(self, transaction: MemoryTransaction) -> None:
        transaction.close()
        self._active = None

    def _notify(self, events: list[dict]) -> None:
        for listener in self._listeners:
            listener(events)

    def _commit(self, transaction: MemoryTransaction) -> None:
        """Hook: make the changes durable before they are published; raising discards them."""


def stamp_events(events: list[dict], first_seq: int) -> None:
    """Number events in place: ``seq`` = ``first_seq``, ``first_seq`` + 1, ..."""
    for seq, event in enumerate(events, first_seq):
        event["seq"] = seq


def _body(document: dict) -> dict:
    """A private copy of what the caller sent, without the fields the repository stamps."""
    return {key: clone(value) for key, value in document.items() if key not in ("id", "meta")}


def _check_version(kind: str, id: str, current: dict, expected: str | None) -> None:
    if expected is not None and expected != current["meta"]["version"]:
        raise VersionMismatch(kind, id, expected, current["meta"]["version"])
