"""A repository's in-memory state: documents, memberships and lookups, published copy-on-write.

A committed :class:`State` is never changed; a transaction works on :meth:`State.copy` and
commit publishes the copy in one assignment, so readers take no lock and never see half a
write. Neither copying nor writing may cost O(N): a plain ``dict(table)`` of 50,000 users
takes 0.5-2.5 ms here, and the garbage collector then walks the new dict's 50,000 entries
once or twice more (1-6 ms each, measured in the server at 50,000 users), each time inside
some request. So every large map is a :class:`ChunkedMap`, whose copies share all but the
few small pieces a write changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any

from storage.repository import Index

Key = tuple[str, str]  # (kind, id) of a document, or (kind, field) of an index

_MISSING: Any = object()

# Entries per chunk: a write copies one chunk, so this bounds its cost and what the garbage
# collector walks anew (a young collection walks every chunk written since the last one:
# 256 made it 1.5 times as long at 20,000 users).
CHUNK = 64
# Chunks per page: a write copies one page of chunk references and the list of pages, not a
# list of every chunk (782 at 50,000 entries, whose copy cost creates about 4 % in-process).
PAGE_BITS = 6
PAGE = 1 << PAGE_BITS
# Shards of the key -> chunk lookup, by the key's hash: a new or removed key copies one
# shard, N / 256 entries (about 200 at 50,000).
SHARDS = 256
_EMPTY: dict = {}  # every shard of an empty map; never written (writes copy a shard first)


class ChunkedMap:
    """A mapping whose copies share everything but what each one has written since.

    Entries live in chunks of at most ``chunk`` entries, in insertion order (a dict's
    order: a replaced value keeps its place, a new or re-added key goes to the end); the
    chunks are numbered in order and grouped in pages of :data:`PAGE`; a lookup table,
    sharded by hash, gives each key's chunk number. A copy costs O(1). Its first write to a
    chunk copies that chunk (O(chunk)), the chunk's page (O(PAGE)) and, the first time, the
    list of pages (O(N / chunk / PAGE)); a new or removed key also copies one shard
    (O(N / 256)) and, the first time, the list of shards. Nothing costs O(N) but building,
    iterating, and renumbering the chunks once deletes have left twice as many as needed.

    Once copied, a map and its copy may both be written: each owns only what it copied.
    The lookup holds only keys (strings) and chunk numbers, which the garbage collector does
    not track, so only the chunks and pages a write copied are new work for it.
    """

    __slots__ = ("_pages", "_shards", "_size", "_chunk", "_owned", "_own_shards")
    _pages: list[list[dict]]  # chunk number n is _pages[n >> PAGE_BITS][n & (PAGE - 1)]
    _shards: list[dict]
    _size: int
    _chunk: int
    # The pages and chunks (by number) this map copied since it last shared its pieces with
    # a copy (None: it owns not even the list of pages); likewise the shards.
    _owned: tuple[set[int], set[int]] | None
    _own_shards: set[int] | None

    def __init__(self, entries: Mapping | None = None, *, chunk: int = CHUNK) -> None:
        self._chunk = chunk
        self._fill((entries or {}).items())

    def copy(self) -> ChunkedMap:
        """A map with the same content whose writes do not affect this one, nor this one's
        writes it."""
        copied = ChunkedMap.__new__(ChunkedMap)
        copied._pages, copied._shards = self._pages, self._shards
        copied._size, copied._chunk = self._size, self._chunk
        copied._owned = copied._own_shards = None
        self._owned = self._own_shards = None  # shared now: copy before writing again
        return copied

    def get(self, key: Any, default: Any = None) -> Any:
        """The value at ``key``, or ``default``."""
        where = self._shards[hash(key) % SHARDS].get(key)
        if where is None:
            return default
        return self._pages[where >> PAGE_BITS][where & (PAGE - 1)][key]

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __contains__(self, key: Any) -> bool:
        return key in self._shards[hash(key) % SHARDS]

    def __setitem__(self, key: Any, value: Any) -> None:
        shard = hash(key) % SHARDS
        where = self._shards[shard].get(key)
        if where is None:
            where = self._chunk_count() - 1
            if where < 0 or len(self._chunk_at(where)) >= self._chunk:
                where = self._new_chunk()
            self._owned_shard(shard)[key] = where
            self._size += 1
        self._owned_chunk(where)[key] = value

    def __delitem__(self, key: Any) -> None:
        shard = hash(key) % SHARDS
        where = self._shards[shard].get(key)
        if where is None:
            raise KeyError(key)
        del self._owned_shard(shard)[key]
        del self._owned_chunk(where)[key]
        self._size -= 1
        if self._chunk_count() > 2 * (self._size // self._chunk) + 8:
            self._fill(self.to_dict().items())  # mostly emptied chunks: renumber, now and then

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
        for page in self._pages:
            for chunk in page:
                yield from chunk.items()

    def keys(self) -> Iterator[Any]:
        """The keys, in the map's order."""
        for page in self._pages:
            for chunk in page:
                yield from chunk

    def values(self) -> Iterator[Any]:
        """The values, in the map's order."""
        for page in self._pages:
            for chunk in page:
                yield from chunk.values()

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def to_dict(self) -> dict:
        """A plain dict with the same content and order."""
        return dict(self.items())

    def _fill(self, entries: Iterable[tuple[Any, Any]]) -> None:
        """Hold exactly ``entries`` (distinct keys), in new pieces that this map owns."""
        remaining = iter(entries)
        chunks = []
        while chunk := dict(islice(remaining, self._chunk)):
            chunks.append(chunk)
        shards: list[dict] = [{} for _ in range(SHARDS)] if chunks else [_EMPTY] * SHARDS
        for where, chunk in enumerate(chunks):
            for key in chunk:
                shards[hash(key) % SHARDS][key] = where
        self._pages = [chunks[at : at + PAGE] for at in range(0, len(chunks), PAGE)]
        self._shards = shards
        self._size = sum(map(len, chunks))
        self._owned = (set(range(len(self._pages))), set(range(len(chunks))))
        self._own_shards = set(range(SHARDS)) if chunks else set()

    def _chunk_at(self, where: int) -> dict:
        return self._pages[where >> PAGE_BITS][where & (PAGE - 1)]

    def _chunk_count(self) -> int:
        pages = self._pages
        return ((len(pages) - 1) << PAGE_BITS) + len(pages[-1]) if pages else 0

    def _owned_pieces(self) -> tuple[set[int], set[int]]:
        """The pages and chunks this map owns, after copying the list of pages if shared."""
        owned = self._owned
        if owned is None:
            self._pages = list(self._pages)
            owned = self._owned = (set(), set())
        return owned

    def _owned_page(self, number: int) -> list[dict]:
        pages, _ = self._owned_pieces()
        if number not in pages:
            self._pages[number] = list(self._pages[number])
            pages.add(number)
        return self._pages[number]

    def _owned_chunk(self, where: int) -> dict:
        _, chunks = self._owned_pieces()
        page, slot = self._owned_page(where >> PAGE_BITS), where & (PAGE - 1)
        if where not in chunks:
            page[slot] = dict(page[slot])
            chunks.add(where)
        return page[slot]

    def _new_chunk(self) -> int:
        """Start an empty chunk after the last one; returns its number."""
        where = self._chunk_count()
        pages, chunks = self._owned_pieces()
        if where & (PAGE - 1) == 0:  # the last page is full (or there is none)
            self._pages.append([])
            pages.add(len(self._pages) - 1)
        self._owned_page(where >> PAGE_BITS).append({})
        chunks.add(where)
        return where

    def _owned_shard(self, shard: int) -> dict:
        owned = self._own_shards
        if owned is None:
            self._shards = list(self._shards)
            owned = self._own_shards = set()
        if shard not in owned:
            self._shards[shard] = dict(self._shards[shard])
            owned.add(shard)
        return self._shards[shard]


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
    documents: dict[str, ChunkedMap]  # kind -> id -> document, in insertion order
    members: ChunkedMap  # group id -> MemberList
    groups: ChunkedMap  # user id -> group ids (the inverse of members)
    keys: dict[Key, ChunkedMap]  # (kind, field) -> folded value -> ids

    @classmethod
    def build(
        cls,
        indexes: Iterable[Index],
        documents: Mapping[str, Mapping[str, dict]] | None = None,
        members: Mapping[str, Iterable[str]] | None = None,
        joined: Mapping[str, Iterable[str]] | None = None,
    ) -> State:
        """A snapshot holding ``documents`` and ``members``, with every lookup computed.

        :param joined: each user's groups in the order it joined them, as far as known
            (:func:`joined_order`); without it, in the order of ``members``.
        """
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
        member_lists = {id: MemberList(user_ids) for id, user_ids in (members or {}).items()}
        groups = joined_order(member_lists, joined)
        return cls(
            indexes,
            {kind: ChunkedMap(table) for kind, table in (documents or {}).items()},
            ChunkedMap({id: ids for id, ids in member_lists.items() if ids}),
            ChunkedMap({id: tuple(ids) for id, ids in groups.items()}),
            {key: ChunkedMap(lookup) for key, lookup in keys.items()},
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

    def table(self, kind: str) -> ChunkedMap:
        """The documents of ``kind`` (created empty on first use: writers only)."""
        table = self.documents.get(kind)
        if table is None:
            table = self.documents[kind] = ChunkedMap()
        return table

    def index(self, kind: str, id: str, document: dict) -> None:
        """Add ``document``'s values to the lookups of ``kind``."""
        for index, folded in self._keys_of(kind, document):
            append(self.keys[(kind, index.field)], folded, id)

    def unindex(self, kind: str, id: str, document: dict) -> None:
        """Remove ``document``'s values from the lookups of ``kind``."""
        for index, folded in self._keys_of(kind, document):
            discard(self.keys[(kind, index.field)], folded, id)

    def reindex(self, kind: str, id: str, previous: dict, document: dict) -> None:
        """Move ``id`` in the lookups of ``kind`` from ``previous``'s values to ``document``'s,
        touching only the fields whose value changed: a PATCH rarely changes an indexed one,
        and a member change never does, so most writes leave the lookups (and their chunks,
        copied on a change) alone."""
        for index in self.indexes:
            if index.kind != kind:
                continue
            old, new = previous.get(index.field), document.get(index.field)
            if old == new:
                continue
            lookups = self.keys[(kind, index.field)]
            if isinstance(old, str):
                discard(lookups, index.key(old), id)
            if isinstance(new, str):
                append(lookups, index.key(new), id)

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


def joined_order(
    members: Mapping[str, Iterable[str]], joined: Mapping[str, Iterable[str]] | None = None
) -> dict[str, list[str]]:
    """Each member's groups in the order it joined them: what a user's ``groups`` show, and
    what its version covers (scim.presentation), so every copy of a directory must keep it.

    The member lists alone do not tell it (a user joined Sales before Admins, but Admins
    comes first among the groups); ``joined`` does, per user. Groups it does not name come
    first, in the order of ``members`` (a user's older groups, from a file that did not
    record the order), then those it names, in its order; a group it names that the user is
    no longer in is ignored.
    """
    groups: dict[str, list[str]] = {}
    for group_id, user_ids in members.items():
        for user_id in user_ids:
            groups.setdefault(user_id, []).append(group_id)
    for user_id, order in (joined or {}).items():
        found = groups.get(user_id)
        if found is not None and len(found) > 1:
            position = {group_id: number for number, group_id in enumerate(order)}
            found.sort(key=lambda group_id: (group_id in position, position.get(group_id, 0)))
    return groups


def append(mapping: ChunkedMap, key: str, item: str) -> None:
    """Add ``item`` at the end of the tuple at ``key``."""
    mapping[key] = mapping.get(key, ()) + (item,)


def discard(mapping: ChunkedMap, key: str, item: str) -> None:
    """Remove ``item`` from the tuple at ``key``, and the key once its tuple is empty."""
    remaining = tuple(other for other in mapping.get(key, ()) if other != item)
    if remaining:
        mapping[key] = remaining
    else:
        mapping.pop(key, None)
