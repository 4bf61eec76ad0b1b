"""A repository's in-memory state: documents, memberships and lookups, published copy-on-write.

A committed :class:`State` is never changed; a transaction works on :meth:`State.copy` and
commit publishes the copy in one assignment, so readers take no lock and never see half a
write. Copying must not cost O(N) per transaction (a plain ``dict(table)`` of 50,000 users
takes about 2.5 ms here, more than the rest of a request), so every large map is a
:class:`LayeredMap`: a shared, frozen base plus a small private delta that is folded into a
new base once it grows past a fraction of the base.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from storage.repository import Index

Key = tuple[str, str]  # (kind, id) of a document, or (kind, field) of an index

_MISSING: Any = object()  # "not in the delta": look in the base
_DELETED: Any = object()  # a tombstone in the delta for a key of the base


def _merge_threshold(base_size: int) -> int:
    """Delta size past which a copy folds the delta into a new base.

    Copying the delta costs O(delta) per transaction and folding costs O(base) once per
    threshold writes; N/64 keeps both near 10 us at 50,000 entries.
    """
    return 32 + base_size // 64


class LayeredMap:
    """A mapping whose copies share one frozen base dict and own only their recent changes.

    Iteration order is the base's order (replaced values keep their place), then keys added
    since, in the order added - what ``dict`` gives for the same history when no key is
    deleted and re-added (document ids never are).
    """

    __slots__ = ("_base", "_delta", "_size")

    def __init__(self, base: dict | None = None) -> None:
        self._base: dict = {} if base is None else base
        self._delta: dict = {}
        self._size = len(self._base)

    def copy(self) -> LayeredMap:
        """A map with the same content whose writes do not affect this one."""
        copied = LayeredMap.__new__(LayeredMap)
        if len(self._delta) > _merge_threshold(len(self._base)):
            copied._base, copied._delta = self._merged(), {}
        else:
            copied._base, copied._delta = self._base, dict(self._delta)
        copied._size = self._size
        return copied

    def get(self, key: Any, default: Any = None) -> Any:
        """The value at ``key``, or ``default``."""
        value = self._delta.get(key, _MISSING)
        if value is _MISSING:
            return self._base.get(key, default)
        return default if value is _DELETED else value

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: Any) -> bool:
        value = self._delta.get(key, _MISSING)
        if value is _MISSING:
            return key in self._base
        return value is not _DELETED

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self:
            self._size += 1
        self._delta[key] = value

    def __delitem__(self, key: Any) -> None:
        if key not in self:
            raise KeyError(key)
        self._size -= 1
        if key in self._base:
            self._delta[key] = _DELETED
        else:
            del self._delta[key]

    def pop(self, key: Any, default: Any = None) -> Any:
        """Remove ``key`` and return its value, or ``default`` if it is absent."""
        value = self.get(key, _MISSING)
        if value is _MISSING:
            return default
        del self[key]
        return value

    def __len__(self) -> int:
        return self._size

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Key and value pairs, in the map's order."""
        delta, base = self._delta, self._base
        if not delta:
            yield from base.items()
            return
        for key, value in base.items():
            changed = delta.get(key, _MISSING)
            if changed is _MISSING:
                yield key, value
            elif changed is not _DELETED:
                yield key, changed
        for key, value in delta.items():
            if value is not _DELETED and key not in base:
                yield key, value

    def keys(self) -> Iterator[Any]:
        """The keys, in the map's order."""
        for key, _ in self.items():
            yield key

    def values(self) -> Iterator[Any]:
        """The values, in the map's order."""
        for _, value in self.items():
            yield value

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def to_dict(self) -> dict:
        """A plain dict with the same content and order."""
        return dict(self.items()) if self._delta else dict(self._base)

    def _merged(self) -> dict:
        merged = dict(self._base)
        for key, value in self._delta.items():
            if value is _DELETED:
                del merged[key]
            else:
                merged[key] = value
        return merged


class MemberList:
    """A group's user ids in the order added; a change returns a new list, sharing this one.

    Adding or removing one member costs O(1), whatever the group's size: a change is a node
    in a chain of changes over a shared base tuple. The chain is folded into a new base once
    it is a quarter as long as the base, so folding costs O(1) per change on average, and
    reading the ids (O(members) anyway) replays at most that many changes. Whether a user is
    a member is answered by the inverse map (user -> groups), never by this list.
    """

    __slots__ = ("_base", "_change", "_changes", "_length", "_ids")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._base: tuple[str, ...] = tuple(ids)
        self._change: tuple[str, str, tuple | None] | None = None  # (op, id, previous change)
        self._changes = 0
        self._length = len(self._base)
        self._ids: tuple[str, ...] | None = self._base

    def added(self, user_ids: Iterable[str]) -> MemberList:
        """This list with ``user_ids`` (none of them members) at the end."""
        return self._with("add", user_ids)

    def removed(self, user_ids: Iterable[str]) -> MemberList:
        """This list without ``user_ids`` (each of them a member)."""
        return self._with("remove", user_ids)

    def ids(self) -> tuple[str, ...]:
        """The user ids, in the order added."""
        ids = self._ids
        if ids is None:
            # Racing readers compute the same tuple; keeping either one is fine.
            ids = self._ids = self._replay()
        return ids

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return f"MemberList({list(self.ids())!r})"

    def _with(self, op: str, user_ids: Iterable[str]) -> MemberList:
        new = MemberList.__new__(MemberList)
        new._base, change, changes = self._base, self._change, self._changes
        for user_id in user_ids:
            change = (op, user_id, change)
            changes += 1
        new._change, new._changes, new._ids = change, changes, None
        new._length = self._length + (changes - self._changes) * (1 if op == "add" else -1)
        if changes > 16 + len(self._base) // 4:
            new._base, new._change, new._changes = new._replay(), None, 0
            new._ids = new._base
        return new

    def _replay(self) -> tuple[str, ...]:
        changes = []
        change = self._change
        while change is not None:
            changes.append(change)
            change = change[2]
        ids = dict.fromkeys(self._base)
        for op, user_id, _ in reversed(changes):
            if op == "add":
                ids[user_id] = None
            else:
                ids.pop(user_id, None)
        return tuple(ids)


@dataclass
class State:
    """One consistent snapshot: documents, memberships and the lookups derived from them.

    A published snapshot is never changed; :meth:`copy` gives a transaction its own maps.
    Values (documents, id tuples) are shared between copies and replaced, never mutated.
    """

    indexes: tuple[Index, ...]
    documents: dict[str, LayeredMap]  # kind -> id -> document, in insertion order
    members: LayeredMap  # group id -> MemberList
    groups: LayeredMap  # user id -> group ids (the inverse of members)
    keys: dict[Key, LayeredMap]  # (kind, field) -> folded value -> ids

    @classmethod
    def build(
        cls,
        indexes: Iterable[Index],
        documents: Mapping[str, Mapping[str, dict]] | None = None,
        members: Mapping[str, Iterable[str]] | None = None,
    ) -> State:
        """A snapshot holding ``documents`` and ``members``, with every lookup computed."""
        indexes = tuple(indexes)
        keys: dict[Key, dict[str, tuple[str, ...]]] = {
            (index.kind, index.field): {} for index in indexes
        }
        for kind, table in (documents or {}).items():
            kind_indexes = [index for index in indexes if index.kind == kind]
            for index in kind_indexes:
                lookup = keys[(kind, index.field)]
                for id, document in table.items():
                    value = document.get(index.field)
                    if isinstance(value, str):
                        folded = index.key(value)
                        lookup[folded] = lookup.get(folded, ()) + (id,)
        member_lists: dict[str, MemberList] = {}
        groups: dict[str, list[str]] = {}
        for group_id, user_ids in (members or {}).items():
            member_lists[group_id] = MemberList(user_ids)
            for user_id in member_lists[group_id]:
                groups.setdefault(user_id, []).append(group_id)
        return cls(
            indexes,
            {kind: LayeredMap(dict(table)) for kind, table in (documents or {}).items()},
            LayeredMap({id: ids for id, ids in member_lists.items() if ids}),
            LayeredMap({id: tuple(ids) for id, ids in groups.items()}),
            {key: LayeredMap(lookup) for key, lookup in keys.items()},
        )

    def copy(self) -> State:
        """A snapshot with its own maps at every level a write changes."""
        return State(
            self.indexes,
            {kind: table.copy() for kind, table in self.documents.items()},
            self.members.copy(),
            self.groups.copy(),
            {key: values.copy() for key, values in self.keys.items()},
        )

    def document(self, kind: str, id: str) -> dict | None:
        """The stored document (never hand it out), or None."""
        table = self.documents.get(kind)
        return None if table is None else table.get(id)

    def table(self, kind: str) -> LayeredMap:
        """The documents of ``kind`` (created empty on first use: writers only)."""
        table = self.documents.get(kind)
        if table is None:
            table = self.documents[kind] = LayeredMap()
        return table

    def index(self, kind: str, id: str, document: dict) -> None:
        """Add ``document``'s values to the lookups of ``kind``."""
        for index, folded in self._keys_of(kind, document):
            append(self.keys[(kind, index.field)], folded, id)

    def unindex(self, kind: str, id: str, document: dict) -> None:
        """Remove ``document``'s values from the lookups of ``kind``."""
        for index, folded in self._keys_of(kind, document):
            discard(self.keys[(kind, index.field)], folded, id)

    def duplicates(self) -> list[tuple[Index, str, tuple[str, ...]]]:
        """Values that a unique index holds for more than one document (damaged data)."""
        found = []
        for index in self.indexes:
            if index.unique:
                for folded, ids in self.keys[(index.kind, index.field)].items():
                    if len(ids) > 1:
                        found.append((index, folded, ids))
        return found

    def _keys_of(self, kind: str, document: dict) -> Iterator[tuple[Index, str]]:
        # A document lacking the field (or holding a non-string) is simply not indexed.
        for index in self.indexes:
            value = document.get(index.field)
            if index.kind == kind and isinstance(value, str):
                yield index, index.key(value)


def append(mapping: LayeredMap, key: str, item: str) -> None:
    """Add ``item`` at the end of the tuple at ``key``."""
    mapping[key] = mapping.get(key, ()) + (item,)


def discard(mapping: LayeredMap, key: str, item: str) -> None:
    """Remove ``item`` from the tuple at ``key``, and the key once its tuple is empty."""
    remaining = tuple(other for other in mapping.get(key, ()) if other != item)
    if remaining:
        mapping[key] = remaining
    else:
        mapping.pop(key, None)
