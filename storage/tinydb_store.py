"""The first durable store (format 1): the in-memory repository, saved to one TinyDB file.

The file is a TinyDB JSON document that plain TinyDB can open::

    {"_meta": {"1": {"format": 1}},
     "users": {"1": {"id": "3f2a...", "userName": "ann", "meta": {...}}},
     "groups": {"2": {"id": "9c1b...", "displayName": "Sales", "meta": {...},
                      "_members": ["3f2a..."]}}}

Each document keeps its opaque string ``id`` as a field; TinyDB's integer ``doc_id`` stays
internal, because TinyDB reuses it after a restart (max + 1). In format 1 a group's members
are the private ``_members`` list of its document, which :meth:`get` never returns.

The whole database lives in memory (:class:`storage.memory.MemoryRepository` answers every
read without disk I/O). A transaction's changes are applied through TinyDB's table API to
:class:`AtomicJSONStorage`, which writes the whole file once per transaction, atomically and
durably, before the change becomes visible to readers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage
from tinydb.table import Table

from storage.controlfile import read_json, remove_stray_temp_files, write_atomically
from storage.errors import CorruptStore
from storage.memory import GROUP, MemoryRepository, MemoryTransaction
from storage.repository import Clock, IdFactory, Index
from storage.state import State
from storage.values import new_hex_id, utcnow

FORMAT = 1

_META = "_meta"
_MEMBERS = "_members"
_TABLES = {"User": "users", GROUP: "groups"}


class AtomicJSONStorage(Storage):
    """A TinyDB storage that keeps the data in memory and replaces its JSON file atomically.

    TinyDB's own ``JSONStorage`` truncates and rewrites the live file, so a crash mid-write
    destroys it; ``CachingMiddleware`` acknowledges writes it has not saved. Here every
    :meth:`write` (or every :meth:`batch` of them) is saved with
    :func:`storage.controlfile.write_atomically` before it returns, and reads cost no I/O.
    Temporary files left by an interrupted write are deleted when the storage opens.
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        remove_stray_temp_files(self.path)
        self._data = self._load()
        self._batching = False
        self._dirty = False

    def read(self) -> dict[str, dict[str, Any]] | None:
        """The database as TinyDB lays it out (None before anything was written)."""
        return self._data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        """Take TinyDB's new data; save it now, or at the end of the current batch."""
        self._data = data
        if self._batching:
            self._dirty = True
            return
        self._save_or_reload()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Save every write made inside the block with one file write at its end.

        If the block or the save fails, the data is reloaded from the (unchanged) file.
        """
        if self._batching:
            raise RuntimeError("batches do not nest")
        self._batching, self._dirty = True, False
        try:
            yield
        except BaseException:
            self._data = self._load()
            raise
        finally:
            self._batching = False
        if self._dirty:
            self._save_or_reload()

    def _save_or_reload(self) -> None:
        try:
            # ASCII-only JSON, so plain TinyDB reads it whatever the locale's encoding.
            write_atomically(self.path, json.dumps(self._data).encode("ascii"))
        except BaseException:
            self._data = self._load()
            raise

    def _load(self) -> dict[str, dict[str, Any]] | None:
        data = read_json(self.path)
        if data is not None and not isinstance(data, dict):
            raise CorruptStore(f"{self.path} holds a JSON {type(data).__name__}, not an object")
        return data


class TinyDBRepository(MemoryRepository):
    """A repository kept in memory and saved to a TinyDB file (format 1) on every commit.

    Only one process may open the file at a time. Superseded by :mod:`storage.journal`
    (which migrates these files); format 1 keeps no events, so event ``seq`` numbers start
    again at 1 when the file is reopened.

    :raises CorruptStore: if the file is not valid JSON, is not a Proware data file, or has
        a newer format; the file is left untouched.
    """

    def __init__(
        self,
        path: Path,
        indexes: list[Index],
        clock: Clock = utcnow,
        new_id: IdFactory = new_hex_id,
    ) -> None:
        super().__init__(indexes, clock, new_id)
        self.path = Path(path)
        self._storage = AtomicJSONStorage(self.path)
        self._db = TinyDB(storage=lambda: self._storage)
        self._check_format()
        self._doc_ids: dict[str, dict[str, int]] = {kind: {} for kind in _TABLES}
        self._state = self._load(indexes)

    def close(self) -> None:
        """Release the file (every commit is already on disk)."""
        self._db.close()

    def _check_format(self) -> None:
        data = self._storage.read()
        if data is None:
            self._db.table(_META).insert({"format": FORMAT})  # a new store
            return
        for name, table in data.items():
            if not isinstance(table, dict) or not all(
                key.isdigit() and isinstance(record, dict) for key, record in table.items()
            ):
                raise CorruptStore(f"{self.path}: table {name!r} is not a TinyDB table")
        records = self._db.table(_META).all()
        version = records[0].get("format") if records else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CorruptStore(
                f"{self.path} is not a Proware data file: no valid _meta format (found {version!r})"
            )
        if version > FORMAT:
            raise CorruptStore(
                f"{self.path}: format {version} is newer than this version of Proware supports "
                f"({FORMAT}); upgrade Proware to open it"
            )

    def _load(self, indexes: list[Index]) -> State:
        documents: dict[str, dict[str, dict]] = {}
        members: dict[str, tuple[str, ...]] = {}
        for kind, name in _TABLES.items():
            table = documents.setdefault(kind, {})
            for record in self._db.table(name).all():
                document = dict(record)
                id = document.get("id")
                if not isinstance(id, str):
                    raise CorruptStore(
                        f"{self.path}: {name} document {record.doc_id} has no string id"
                    )
                if kind == GROUP:
                    members[id] = tuple(document.pop(_MEMBERS, ()))
                table[id] = document
                self._doc_ids[kind][id] = record.doc_id
        return State.build(indexes, documents, members)

    def _commit(self, transaction: MemoryTransaction) -> None:
        """Write the transaction's changed documents to the file, in one atomic write."""
        state = transaction.state
        changes: dict[str, _TableChanges] = {}
        for kind, id in transaction.changed:
            table_changes = changes.setdefault(kind, _TableChanges())
            document = state.document(kind, id)
            doc_id = self._doc_ids[kind].get(id) if kind in self._doc_ids else None
            if document is None:
                if doc_id is not None:
                    table_changes.removed[id] = doc_id
            else:
                if kind == GROUP:
                    document = document | {_MEMBERS: list(state.members.get(id, ()))}
                if doc_id is None:
                    table_changes.inserted[id] = document
                else:
                    table_changes.updated[doc_id] = document
        inserted: dict[str, dict[str, int]] = {}
        with self._storage.batch():
            # One TinyDB call per table and kind of change: each call rewrites the table.
            for kind, table_changes in changes.items():
                table = self._table(kind)
                if table_changes.removed:
                    table.remove(doc_ids=list(table_changes.removed.values()))
                if table_changes.updated:
                    table.update(
                        _overwrite_from(table_changes.updated), doc_ids=list(table_changes.updated)
                    )
                if table_changes.inserted:
                    doc_ids = table.insert_multiple(table_changes.inserted.values())
                    inserted[kind] = dict(zip(table_changes.inserted, doc_ids, strict=True))
        # Only now that the file holds the change do the doc_id maps follow it.
        for kind, table_changes in changes.items():
            for id in table_changes.removed:
                del self._doc_ids[kind][id]
            self._doc_ids[kind].update(inserted.get(kind, {}))

    def _table(self, kind: str) -> Table:
        try:
            return self._db.table(_TABLES[kind])
        except KeyError:
            raise ValueError(f"this store keeps only {', '.join(_TABLES)} documents") from None


@dataclass
class _TableChanges:
    """What one commit does to one table."""

    inserted: dict[str, dict] = field(default_factory=dict)  # id -> record
    updated: dict[int, dict] = field(default_factory=dict)  # doc_id -> record
    removed: dict[str, int] = field(default_factory=dict)  # id -> doc_id


def _overwrite_from(records: dict[int, dict]) -> Callable[[MutableMapping], None]:
    """A TinyDB update making each document equal its new record (removed fields too)."""
    by_id = {record["id"]: record for record in records.values()}

    def overwrite(document: MutableMapping) -> None:
        record = by_id[document["id"]]
        document.clear()
        document.update(record)

    return overwrite
