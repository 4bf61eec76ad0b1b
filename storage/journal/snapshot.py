"""The data file: a TinyDB JSON document holding a whole state, read and written whole.

Format 2 (written by compaction, :mod:`storage.journal`)::

    {"_meta": {"1": {"format": 2, "generation": 7, "seq": 5120, "event_seq": 9003}},
     "users": {"1": {"id": "3f2a...", "userName": "ann", "meta": {...}}, ...},
     "groups": {"1": {"id": "9c1b...", "displayName": "Sales", "meta": {...}}},
     "memberships": {"1": {"group": "9c1b...", "members": ["3f2a...", ...]}},
     "joined": {"1": {"user": "3f2a...", "groups": ["9c1b...", "77d0..."]}}}

``generation`` is the first journal segment whose records come after this state, ``seq``
the last journal record it includes, ``event_seq`` the last activity event's ``seq``.
``joined`` gives, for each user in more than one group, its groups in the order it joined
them (what its ``groups`` show, :func:`storage.state.joined_order`); files without it (older
ones) are read in the order of ``memberships``, and older versions ignore it. Plain
``TinyDB(path)`` opens it; TinyDB's integer document ids are renumbered at every compaction
and mean nothing (each document keeps its opaque string ``id``).

Format 1 (:mod:`storage.tinydb_store`) has no memberships table: a group's members are the
private ``_members`` list of its document. It is read here so it can be migrated.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from storage.controlfile import write_atomically
from storage.errors import CorruptStore, PermissionDenied
from storage.journal import pacing
from storage.journal.format import encode_json
from storage.state import joined_order

FORMAT = 2
DATA_FILE = "proware.json"
META = "_meta"
TABLES = {"User": "users", "Group": "groups"}
MEMBERSHIPS = "memberships"
JOINED = "joined"
_FORMAT1_MEMBERS = "_members"

# A compaction holds the GIL between two pauses (storage.journal.pacing), and a request thread that
# wants it back waits for the step to end; these bound one step to ~0.1-0.2 ms. Measured at
# 50,000 users, member adds beside a compaction: steps of 16 documents and 2,000 member ids
# gave p99 2.2 ms and max 7.7 ms; halving them 1.6-1.8 ms and ~3 ms.
_CHUNK = 8  # documents encoded per step
_IDS_PER_PIECE = 1000  # member ids per encoding call; the pieces join to one call's bytes
_JOIN = 100  # encoded records joined per step (~70 KB)
_COPIES = 128  # records copied in as the journal encoded them, per step (~0.1 ms)
# Written bytes between flushes to disk during a compaction (see write_atomically).
_SYNC_EVERY = 1 << 20


@dataclass
class Snapshot:
    """The content of a data file, decoded and checked."""

    format: int
    generation: int = 1
    seq: int = 0
    event_seq: int = 0
    documents: dict[str, dict[str, dict]] = field(default_factory=dict)  # kind -> id -> doc
    members: dict[str, dict[str, None]] = field(default_factory=dict)  # group -> ordered ids
    # user -> group ids in the order joined, as far as known (storage.state.joined_order)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def meta(self) -> dict:
        """The ``_meta`` record of this snapshot in format 2."""
        return meta_record(self.generation, self.seq, self.event_seq)


def meta_record(generation: int, seq: int, event_seq: int) -> dict:
    """The ``_meta`` record of a format-2 file."""
    return {"format": FORMAT, "generation": generation, "seq": seq, "event_seq": event_seq}


def read_snapshot(path: Path) -> Snapshot | None:
    """The data file at ``path`` decoded (format 1 or 2), or None if there is none.

    :raises CorruptStore: naming the file and what is wrong; the file is never changed.
    :raises PermissionDenied: if this user may not read it (root wrote it: was a
        traceback).
    """
    try:
        # The bytes are a temporary: freed once parsed, before the state is built from them.
        data = _parse(path, path.read_bytes(), remedy=_REPAIR_DATA_FILE)
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise PermissionDenied(path, exc) from None
    return _Decoder(path).snapshot(data)


# What to do about a data file that cannot be parsed (edited by hand, damaged on disk).
_REPAIR_DATA_FILE = (
    "; nothing was changed: repair the file, or restore the last backup with "
    "'python app.py restore BACKUP' (changes made since that backup are lost)"
)


def decode_snapshot(path: Path, raw: bytes) -> Snapshot:
    """Decode and check the bytes of a data file read from ``path``.

    :raises CorruptStore: if they are not JSON, not a Proware data file, of a format newer
        than this code knows, or inconsistent (duplicate ids, members of no group).
    """
    return _Decoder(path).snapshot(_parse(path, raw))


def _parse(path: Path, raw: bytes, remedy: str = "") -> Any:
    """The JSON value in ``raw``; ``remedy`` ends the message of a :class:`CorruptStore`."""
    if not raw or raw.isspace():
        raise CorruptStore(
            f"{path} is empty; expected a JSON document{remedy or ' (restore it from backup)'}"
        )
    # Parsing builds millions of objects; collecting garbage meanwhile finds none and
    # doubles the start-up time at 50,000 users.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStore(
            f"{path} is not UTF-8: invalid byte at offset {exc.start}{remedy}"
        ) from None
    del raw  # at 50,000 users the bytes are 45 MB: not held while the objects are built
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptStore(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(offset {exc.pos}){remedy}"
        ) from None
    finally:
        if enabled:
            gc.enable()


class _Decoder:
    """Checks a decoded data file, naming ``path`` in every complaint."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, problem: str) -> CorruptStore:
        return CorruptStore(f"{self.path}: {problem}; the file was left unchanged")

    def snapshot(self, data: Any) -> Snapshot:
        if not isinstance(data, dict):
            raise self.fail(f"holds a JSON {type(data).__name__}, not a TinyDB document")
        meta = self._meta(data)
        version = meta.get("format")
        if version == 1:
            return self._format1(data)
        counters = [meta.get(name) for name in ("generation", "seq", "event_seq")]
        if not all(isinstance(value, int) and value >= 0 for value in counters):
            raise self.fail(f"_meta {meta!r} lacks the generation, seq and event_seq counters")
        snapshot = Snapshot(FORMAT, meta["generation"], meta["seq"], meta["event_seq"])
        snapshot.documents = {kind: self._documents(data, name) for kind, name in TABLES.items()}
        for number, record in self._table(data, MEMBERSHIPS).items():
            group, members = record.get("group"), record.get("members")
            if not isinstance(group, str) or not _strings(members):
                raise self.fail(f"memberships record {number} is not a group id and its members")
            snapshot.members[group] = dict.fromkeys(members or ())
        for number, record in self._table(data, JOINED).items():
            user, groups = record.get("user"), record.get("groups")
            if not isinstance(user, str) or not _strings(groups):
                raise self.fail(f"joined record {number} is not a user id and its groups")
            snapshot.groups[user] = list(groups or ())
        self._check_members(snapshot)
        return snapshot

    def _meta(self, data: dict) -> dict:
        records = list(self._table(data, META).values())
        version = records[0].get("format") if records else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise self.fail(f"not a Proware data file: no valid _meta format (found {version!r})")
        if version > FORMAT:
            raise CorruptStore(
                f"{self.path}: format {version} is newer than this version of Proware supports "
                f"({FORMAT}); run the newer Proware to open it, or, to come back to this "
                "version, restore a backup with it (python app.py restore FILE keeps this "
                "file aside); the file was left unchanged"
            )
        return records[0]

    def _format1(self, data: dict) -> Snapshot:
        snapshot = Snapshot(1)
        snapshot.documents = {kind: self._documents(data, name) for kind, name in TABLES.items()}
        for id, group in snapshot.documents["Group"].items():
            members = group.pop(_FORMAT1_MEMBERS, [])
            if not _strings(members):
                raise self.fail(f"group {id!r} has a _members value that is not a list of ids")
            if members:
                snapshot.members[id] = dict.fromkeys(members)
        self._check_members(snapshot)
        return snapshot

    def _table(self, data: dict, name: str) -> dict[str, dict]:
        table = data.get(name, {})
        if not isinstance(table, dict) or not all(
            isinstance(record, dict) and key.isdigit() for key, record in table.items()
        ):
            raise self.fail(f"table {name!r} is not a TinyDB table")
        return table

    def _documents(self, data: dict, name: str) -> dict[str, dict]:
        documents: dict[str, dict] = {}
        for number, document in self._table(data, name).items():
            id = document.get("id")
            if not isinstance(id, str):
                raise self.fail(f"{name} document {number} has no string id")
            if id in documents:
                raise self.fail(f"{name} document {number} repeats the id {id!r}")
            documents[id] = document
        return documents

    def _check_members(self, snapshot: Snapshot) -> None:
        problem = membership_problem(snapshot)
        if problem:
            raise self.fail(problem)


def membership_problem(snapshot: Snapshot) -> str | None:
    """What is wrong with the snapshot's memberships (a group or user that is gone), if any."""
    users, groups = snapshot.documents["User"], snapshot.documents["Group"]
    for group_id, members in snapshot.members.items():
        if group_id not in groups and members:
            return f"memberships name the group {group_id!r}, which does not exist"
        strangers = [user_id for user_id in members if user_id not in users]
        if strangers:
            return f"group {group_id!r} has members that do not exist: {strangers[:5]}"
    return None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


class Content(Protocol):
    """What a data file holds: a :class:`State` or a decoded :class:`Snapshot`."""

    @property
    def documents(self) -> Mapping[str, Any]: ...  # kind -> mapping of id -> document

    @property
    def members(self) -> Any: ...  # mapping of group id -> user ids (.items(), .get())

    @property
    def groups(self) -> Any: ...  # mapping of user id -> group ids in the order joined


def write_snapshot(path: Path, state: Content, meta: dict) -> None:
    """Replace the data file at ``path`` with ``state`` in format 2, atomically and durably.

    Only reads ``state``, which must not change meanwhile (a published :class:`State`
    never does): it may run in a background thread while commits go on.
    """
    SnapshotEncoder().write(path, state, meta)


def joined_in_full(content: Content) -> Content:
    """``content`` with every member's groups in joining order: a :class:`Snapshot`'s
    ``groups`` may name only what a journal replay added (a :class:`State`'s are whole)."""
    if not isinstance(content, Snapshot):
        return content
    return replace(content, groups=joined_order(content.members, content.groups))


def snapshot_chunks(state: Content, meta: dict) -> Iterator[bytes]:
    """The bytes of a format-2 file holding ``state``, in pieces (ASCII-only JSON)."""
    return SnapshotEncoder().chunks(state, meta)


class SnapshotEncoder:
    """Writes data files, writing anew only the records changed since its last file.

    A compaction rewrites the whole file, but between two compactions only the records
    written meanwhile change. The encoder keeps each record's bytes (``"N":{...}``, about
    the data file's size in memory). Given the keys the journal saw written since its last
    file, with each changed document's bytes as the journal encoded them, it copies those
    in, encodes only what came without bytes (member lists), and joins the rest as they
    are. At 50,000 users that took a compaction's work under the GIL, which request threads
    wait for, from about 0.8 s of encoding down to ~50 ms after 5,000 changes.

    Each record keeps the TinyDB id it was first written with, so its bytes never need
    renumbering: ids are unique and ascending in file order, with gaps where records were
    deleted (TinyDB gives a new document the highest id plus one). A fresh encoder numbers
    from 1, so its first file is byte-identical to :func:`encode_json` of the whole document.

    One encoder serves one writer at a time (the journal's compactions are serialised).
    """

    def __init__(self) -> None:
        # table -> key -> b'"N":<record>' in file order; None until a file was written
        # whole, and while a file is being written (so a failed one is started afresh).
        self._pieces: dict[str, dict[str, bytes]] | None = None
        self._last_number: dict[str, int] = {}  # table -> highest TinyDB id given
        self.encoded_records = 0  # records encoded by the last chunks() call
        self.rewritten_records = 0  # records it wrote anew (encoded, or as journaled)

    def write(
        self,
        path: Path,
        state: Content,
        meta: dict,
        changed: Mapping[tuple[str, str], bytes | None] | None = None,
    ) -> None:
        """Replace the data file at ``path`` with ``state`` (see :func:`write_snapshot`)."""
        chunks = self.chunks(state, meta, changed)
        write_atomically(path, chunks, sync_every=_SYNC_EVERY, large=True)

    def chunks(
        self,
        state: Content,
        meta: dict,
        changed: Mapping[tuple[str, str], bytes | None] | None = None,
    ) -> Iterator[bytes]:
        """The bytes of a format-2 file holding ``state``, in pieces (ASCII-only JSON).

        :param changed: ``(table, key)`` of every record written since this encoder's last
            file, in the order first written - ``("User", id)``, ``("Group", id)``,
            ``(MEMBERSHIPS, group id)`` or ``(JOINED, user id)`` - each with the
            document's bytes as the journal wrote them (:func:`encode_json`), or None to
            read the record from ``state``. None (or no last file) encodes every record.

        No single encoding call takes more than ``_CHUNK`` documents or ``_IDS_PER_PIECE``
        member ids, and the GIL is handed over between steps, so request threads are not
        kept waiting.
        """
        state = joined_in_full(state)
        pieces, self._pieces = self._pieces, None
        self.encoded_records = self.rewritten_records = 0
        if pieces is None or changed is None:
            pieces = self._encode_all(state)
        else:
            self._encode_changed(state, pieces, changed)
        yield b'{"%s":{"1":%s}' % (META.encode(), encode_json(meta))
        for table, name in _FILE_TABLES.items():
            yield b',"%s":{' % name.encode()
            records = list(pieces[table].values())
            for start in range(0, len(records), _JOIN):
                yield (b"," if start else b"") + b",".join(records[start : start + _JOIN])
                pacing.pause()
            yield b"}"
        yield b"}\n"
        self._pieces = pieces

    def _encode_all(self, state: Content) -> dict[str, dict[str, bytes]]:
        pieces: dict[str, dict[str, bytes]] = {table: {} for table in _FILE_TABLES}
        self._last_number = dict.fromkeys(_FILE_TABLES, 0)
        for table, records in _records(state):
            for key, value in records:
                self._encode(table, key, value, pieces[table])
        return pieces

    def _encode_changed(
        self,
        state: Content,
        pieces: dict[str, dict[str, bytes]],
        changed: Mapping[tuple[str, str], bytes | None],
    ) -> None:
        # Copying is ~0.5-0.9 us a record, but between two compactions at 50,000 users the
        # journal saw ~20,000 creates: unpaced, that held the GIL ~10-20 ms at the start of
        # each compaction, and a request beside it waited as long.
        for count, ((table, key), encoded) in enumerate(changed.items(), 1):
            if count % _COPIES == 0:
                pacing.pause()
            if encoded is not None:  # a document as the journal wrote it
                self._store(table, key, encoded, pieces[table])
                continue
            value = _record(state, table, key)
            if value is None:
                pieces[table].pop(key, None)  # deleted (or a group left without members)
            else:
                self._encode(table, key, value, pieces[table])

    def _encode(self, table: str, key: str, value: Any, pieces: dict[str, bytes]) -> None:
        """Encode one record into ``pieces``."""
        if table == MEMBERSHIPS:
            body = _encode_membership(key, value)
        elif table == JOINED:
            body = encode_json({"user": key, "groups": list(value)})
        else:
            body = encode_json(value)
        self._store(table, key, body, pieces)
        self.encoded_records += 1
        if self.encoded_records % _CHUNK == 0:
            pacing.pause()

    def _store(self, table: str, key: str, body: bytes, pieces: dict[str, bytes]) -> None:
        """Put a record's bytes into ``pieces``, keeping its TinyDB id if it has one."""
        known = pieces.get(key)
        if known is None:
            self._last_number[table] += 1
            prefix = b'"%d":' % self._last_number[table]
        else:
            prefix = known[: known.index(b":") + 1]
        pieces[key] = prefix + body
        self.rewritten_records += 1


# The tables of a data file after _meta, in file order: the encoder's table -> file name.
_FILE_TABLES = {**TABLES, MEMBERSHIPS: MEMBERSHIPS, JOINED: JOINED}


def _records(state: Content) -> Iterator[tuple[str, Iterable[tuple[str, Any]]]]:
    """Every record of ``state`` by table, in file order (groups without members left out)."""
    for kind in TABLES:
        table = state.documents.get(kind)
        yield kind, (table.items() if table is not None else ())
    yield MEMBERSHIPS, ((group_id, ids) for group_id, ids in state.members.items() if ids)
    # One group has no order to keep: only users in several are recorded.
    yield JOINED, ((user_id, ids) for user_id, ids in state.groups.items() if len(ids) > 1)


def _record(state: Content, table: str, key: str) -> Any:
    """The record ``key`` of ``table`` in ``state``, or None if there is none."""
    if table == MEMBERSHIPS:
        return state.members.get(key) or None
    if table == JOINED:
        groups = state.groups.get(key)
        return groups if groups is not None and len(groups) > 1 else None
    documents = state.documents.get(table)
    return None if documents is None else documents.get(key)


def _encode_membership(group_id: str, user_ids: Iterable[str]) -> bytes:
    """``{"group":...,"members":[...]}`` as :func:`encode_json` writes it, in pieces.

    ``encode_json(ids)`` is ``"[" + ",".join(encode_json(id) for id in ids) + "]"``, so the
    pieces' inner bytes joined by ``","`` are the bytes of one call over the whole list.
    """
    ids = list(user_ids)
    parts = []
    for start in range(0, len(ids), _IDS_PER_PIECE):
        if start:
            pacing.pause()  # hand the GIL over between pieces of a big group
        parts.append(encode_json(ids[start : start + _IDS_PER_PIECE])[1:-1])
    return b'{"group":%s,"members":[%s]}' % (encode_json(group_id), b",".join(parts))
