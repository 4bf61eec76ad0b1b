"""The repository interface every store implements, and the index description it takes.

A repository holds documents of a few *kinds* ("User", "Group"), each a plain JSON-able dict
with an opaque string ``id``. It stamps ``id`` and ``meta`` (``resourceType``, ``created``,
``lastModified``, ``version``); it never builds a URL. Group membership is kept as its own
relation (group id -> user ids), so adding one member never rewrites a whole member list.

Every write happens inside :meth:`Repository.transaction`: one lock serialises transactions,
reads inside a transaction see its own writes, and leaving the block without an exception
makes all of its writes durable (on disk, fsync'd) and atomic before it returns. An exception
leaves nothing written. Other readers see a change once it is durable, never half of it.

Activity events noted in a transaction are committed with it and handed to the commit
listeners afterwards, in commit order, each stamped with a ``seq`` that increases by one per
event. A durable store may keep them in its journal; before it discards them (compaction)
it calls the compaction hooks, so an audit log can make itself durable first.

Documents returned are copies: mutating them never changes the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from storage.query import Found, Query


@dataclass(frozen=True)
class Index:
    """A lookup on one top-level string field of one kind, optionally unique.

    ``fold`` normalises values before they are indexed and looked up (``str.casefold`` for
    userName and group displayName, so "Ann" and "ANN" collide).
    """

    kind: str
    field: str
    unique: bool = False
    fold: Callable[[str], str] | None = None

    def key(self, value: str) -> str:
        """The indexed form of ``value``."""
        return self.fold(value) if self.fold else value


Clock = Callable[[], datetime]
IdFactory = Callable[[], str]
CommitListener = Callable[[list[dict]], None]
CompactionHook = Callable[[], None]


class Reader(Protocol):
    """Reads, available on the repository and inside a transaction.

    On a database each read is one statement, one round trip: so the reads a request makes
    together (a lookup's ids and their documents, a user's groups) are also offered as one.
    """

    def get(self, kind: str, id: str) -> dict:
        """A copy of the document; :class:`storage.errors.NotFound` if there is none."""
        ...

    def get_many(self, kind: str, ids: list[str]) -> list[dict]:
        """Copies of the documents with these ids that exist, in the order of ``ids`` (each
        once); one call however many there are (a group's members)."""
        ...

    def get_many_of(self, kind: str, ids: list[str], attributes: list[str]) -> list[dict]:
        """As :meth:`get_many`, each document with only its ``id`` and those of these
        top-level ``attributes`` it has (a group's members' names, without reading 10,000
        whole users)."""
        ...

    def exists(self, kind: str, id: str) -> bool:
        """Whether a document of ``kind`` has ``id``."""
        ...

    def existing(self, kind: str, ids: list[str]) -> list[str]:
        """The ids, of those given, that a document of ``kind`` has: in the order given,
        each once."""
        ...

    def find(self, kind: str, field: str, value: str) -> list[str]:
        """Ids of documents whose indexed ``field`` equals ``value`` (after the index's fold).

        :raises KeyError: if there is no index on ``kind``/``field``.
        """
        ...

    def find_documents(self, kind: str, field: str, value: str) -> list[dict]:
        """Copies of the documents :meth:`find` names, in its order.

        :raises KeyError: if there is no index on ``kind``/``field``.
        """
        ...

    def members(self, group_id: str) -> list[str]:
        """User ids in the group, in the order they were added."""
        ...

    def groups_of(self, user_id: str) -> list[str]:
        """Ids of the groups the user is a member of."""
        ...

    def group_documents_of(self, user_ids: list[str]) -> dict[str, list[dict]]:
        """For each user given, copies of the groups it is a member of, in the order of
        :meth:`groups_of` (an empty list for a user in none, or no user at all); one call
        for a whole page of users."""
        ...

    def get_with_groups(self, kind: str, id: str) -> tuple[dict, list[dict]]:
        """:meth:`get` and the document's entry of :meth:`group_documents_of` (a group is in
        none), in one read: a GET of a user costs one statement on a database, not two.

        :raises storage.errors.NotFound: if there is no such document.
        """
        ...

    def find_with_groups(
        self, kind: str, field: str, value: str
    ) -> tuple[list[dict], dict[str, list[dict]]]:
        """:meth:`find_documents` and :meth:`group_documents_of` of the documents found, in
        one read: Entra's matching lookup of a user costs one statement, not two.

        :raises KeyError: if there is no index on ``kind``/``field``.
        """
        ...


class Transaction(Reader, Protocol):
    """Writes; all of them become durable together when the transaction block exits."""

    def insert(self, kind: str, document: dict) -> dict:
        """Store a new document; returns it with ``id`` and ``meta`` stamped.

        Any ``id``/``meta`` in ``document`` is ignored.
        :raises Conflict: if a unique index already holds one of its values.
        """
        ...

    def replace(self, kind: str, id: str, document: dict, *, if_version: str | None = None) -> dict:
        """Replace the whole document (keeps ``id`` and ``meta.created``, new version).

        :raises NotFound, Conflict, VersionMismatch:
        """
        ...

    def delete(self, kind: str, id: str, *, if_version: str | None = None) -> None:
        """Remove the document and every membership it is part of (as group or as user).

        :raises NotFound, VersionMismatch:
        """
        ...

    def add_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Add users to a group, skipping those already in it and ids that are no user (none
        such, or a group: the caller tells the client which); returns the ids added.

        A change bumps the group's ``lastModified`` and ``version``.
        :raises NotFound: if the group does not exist.
        """
        ...

    def remove_members(self, group_id: str, user_ids: list[str]) -> list[str]:
        """Remove users from a group, ignoring non-members; returns the ids removed, in
        the order given (finding them in the member list would cost O(members))."""
        ...

    def clear_members(self, group_id: str) -> list[str]:
        """Remove every member of the group; returns the ids removed."""
        ...

    def lock_groups_of(self, user_id: str) -> list[str]:
        """Ids of the groups the user is a member of, each locked until the transaction
        ends, and the user kept from joining any other meanwhile: for a write that every
        group of the user must follow (a rename gives each a new version, as their members
        show its name). A group another process joins it to first is among them.
        """
        ...

    def note(self, event: dict) -> None:
        """Attach an activity event to this transaction.

        The event is committed with the writes (a durable store makes it durable in the same
        write) and handed to the commit listeners after the commit; a transaction that
        raises drops it.
        """
        ...


class Repository(Reader, Protocol):
    """A store of documents: reads directly, writes through :meth:`transaction`."""

    def transaction(self) -> AbstractContextManager[Transaction]:
        """Serialise a unit of work; commit durably on normal exit, discard on exception."""
        ...

    def all(self, kind: str) -> Iterator[dict]:
        """Every document of ``kind`` (copies), in insertion order."""
        ...

    def scan(self, kind: str) -> Iterator[dict]:
        """Every stored document of ``kind`` itself, in insertion order: never change one.

        For passing over documents (matching a filter, sorting, skipping to a page) without
        copying each: at 50,000 users the copies cost half a second a query. Copy the ones
        kept (:func:`storage.values.clone`). A database store has no stored documents in the
        process: it parses each afresh.
        """
        ...

    def count(self, kind: str) -> int:
        """How many documents of ``kind`` there are."""
        ...

    def query(self, kind: str, query: Query) -> Found:
        """The documents of ``kind`` that ``query`` selects, sorted and paged, and how many
        matched in all (:mod:`storage.query`)."""
        ...

    def add_commit_listener(self, listener: CommitListener) -> None:
        """Call ``listener(events)`` after every commit that noted events, in commit order.

        Each event carries ``seq``. A listener must not write to the repository.
        """
        ...

    def add_compaction_hook(self, hook: CompactionHook) -> None:
        """Call ``hook()`` before the store discards journal records that carry events.

        By then every such event has been delivered to the commit listeners; an audit log
        fsyncs itself here. A store without a journal never calls it.
        """
        ...

    def close(self) -> None:
        """Flush what needs flushing and release files and locks."""
        ...
