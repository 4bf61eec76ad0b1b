"""The data file: a TinyDB JSON document holding a whole state, read and written whole.

Format 2 (written by compaction, :mod:`storage.journal`)::

    {"_meta": {"1": {"format": 2, "generation": 7, "seq": 5120, "event_seq": 9003}},
     "users": {"1": {"id": "3f2a...", "userName": "ann", "meta": {...}}, ...},
     "groups": {"1": {"id": "9c1b...", "displayName": "Sales", "meta": {...}}},
     "memberships": {"1": {"group": "9c1b...", "members": ["3f2a...", ...]}}}

``generation`` is the first journal segment whose records come after this state, ``seq``
the last journal record it includes, ``event_seq`` the last activity event's ``seq``. Plain
``TinyDB(path)`` opens it; TinyDB's integer document ids are renumbered at every compaction
and mean nothing (each document keeps its opaque string ``id``).

Format 1 (:mod:`storage.tinydb_store`) has no memberships table: a group's members are the
private ``_members`` list of its document. It is read here so it can be migrated.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from storage import pacing
from storage.controlfile import write_atomically
from storage.errors import CorruptStore

FORMAT = 2
DATA_FILE = "proware.json"
META = "_meta"
TABLES = {"User": "users", "Group": "groups"}
MEMBERSHIPS = "memberships"
_FORMAT1_MEMBERS = "_members"

# A compaction holds the GIL between two pauses (storage.pacing), and a request thread that
# wants it back waits for the step to end; each of these bounds one step to ~0.1-0.2 ms.
# Measured at 50,000 users, member adds beside a compaction: steps of 16 documents, 2,000
# member ids and 256 KB gave p99 2.2 ms, max 7.7 ms; these halves and quarters 1.6-1.8 ms,
# max 3 ms (the compaction takes ~1 s of wall time instead of ~0.7 s). Smaller still
# lengthened the compaction more than it helped.
_CHUNK = 8  # documents encoded per step
_IDS_PER_PIECE = 1000  # member ids per encoding call; the pieces join to one call's bytes
_PIECE_BYTES = 1 << 16  # bytes of reused records joined per step
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

    def meta(self) -> dict:
        """The ``_meta`` record of this snapshot in format 2."""
        return meta_record(self.generation, self.seq, self.event_seq)


def meta_record(generation: int, seq: int, event_seq: int) -> dict:
    """The ``_meta`` record of a format-2 file."""
    return {"format": FORMAT, "generation": generation, "seq": seq, "event_seq": event_seq}


def read_snapshot(path: Path) -> Snapshot | None:
    """The data file at ``path`` decoded (format 1 or 2), or None if there is none.

    :raises CorruptStore: naming the file and what is wrong; the file is never changed.
    """
    try:
        # The bytes are a temporary: freed once parsed, before the state is built from them.
        return _Decoder(path).snapshot(_parse(path, path.read_bytes()))
    except FileNotFoundError:
        return None


def decode_snapshot(path: Path, raw: bytes) -> Snapshot:
    """Decode and check the bytes of a data file read from ``path``.

    :raises CorruptStore: if they are not JSON, not a Proware data file, of a format newer
        than this code knows, or inconsistent (duplicate ids, members of no group).
    """
    return _Decoder(path).snapshot(_parse(path, raw))


def _parse(path: Path, raw: bytes) -> Any:
    if not raw or raw.isspace():
        raise CorruptStore(f"{path} is empty; expected a JSON document (restore it from backup)")
    # Parsing builds millions of objects; collecting garbage meanwhile finds none and
    # doubles the start-up time at 50,000 users.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStore(f"{path} is not UTF-8: invalid byte at offset {exc.start}") from None
    del raw  # at 50,000 users the bytes are 45 MB: not held while the objects are built
    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptStore(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(offset {exc.pos})"
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
                f"({FORMAT}); upgrade Proware to open it (the file was left unchanged)"
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
    def members(self) -> Any: ...  # mapping of group id -> user ids, with .items()


def write_snapshot(path: Path, state: Content, meta: dict) -> None:
    """Replace the data file at ``path`` with ``state`` in format 2, atomically and durably.

    Only reads ``state``, which must not change meanwhile (a published :class:`State`
    never does): it may run in a background thread while commits go on.
    """
    SnapshotEncoder().write(path, state, meta)


def snapshot_chunks(state: Content, meta: dict) -> Iterator[bytes]:
    """The bytes of a format-2 file holding ``state``, in pieces (ASCII-only JSON)."""
    return SnapshotEncoder().chunks(state, meta)


class SnapshotEncoder:
    """Writes data files, reusing the bytes of every record unchanged since its last file.

    A compaction rewrites the whole file, but between two compactions only the records
    written meanwhile change, and stored documents and member lists are replaced by every
    write, never changed in place (:mod:`storage.state`). So a record whose object *is*
    the one this encoder encoded last time has the same bytes, and only the others are
    encoded again: at 50,000 users a compaction's encoding went from about 0.8 s of CPU,
    taken from request threads through the GIL, to the records that changed. The cache
    costs about the data file's size in memory; it keeps a reference to each source object,
    so an identity it compares with cannot be reused by another object.

    One encoder serves one writer at a time (the journal's compactions are serialised).
    """

    def __init__(self) -> None:
        # table -> key -> the record's object and its bytes, in two maps: a (record, bytes)
        # tuple per record would be 50,000 new GC-tracked objects a compaction, enough to
        # set off a full collection (measured: a 15-22 ms pause for every thread).
        self._sources: dict[str, dict[str, object]] = {}
        self._bytes: dict[str, dict[str, bytes]] = {}
        self.encoded_records = 0  # records encoded (not reused) by the last chunks() call

    def write(self, path: Path, state: Content, meta: dict) -> None:
        """Replace the data file at ``path`` with ``state`` (see :func:`write_snapshot`)."""
        write_atomically(path, self.chunks(state, meta), sync_every=_SYNC_EVERY, large=True)

    def chunks(self, state: Content, meta: dict) -> Iterator[bytes]:
        """The bytes of a format-2 file holding ``state``, in pieces (ASCII-only JSON).

        The bytes equal ``json.dumps`` of the whole file (default options). No single
        encoding call takes more than ``_CHUNK`` documents or ``_IDS_PER_PIECE`` member ids,
        and the GIL is handed over between steps, so request threads are not kept waiting.
        """
        sources: dict[str, dict[str, object]] = {}
        encoded: dict[str, dict[str, bytes]] = {}
        self.encoded_records = 0
        # ASCII-only, so plain TinyDB reads it whatever the locale's encoding.
        yield b'{"%s": {"1": %s}' % (META.encode(), json.dumps(meta).encode())
        for kind, name in TABLES.items():
            table = state.documents.get(kind)
            yield b', "%s": ' % name.encode()
            records = table.items() if table is not None else ()
            yield from self._table(kind, records, _encode_document, sources, encoded)
        yield b', "%s": ' % MEMBERSHIPS.encode()
        memberships = ((group_id, ids) for group_id, ids in state.members.items() if ids)
        yield from self._table(MEMBERSHIPS, memberships, _encode_membership, sources, encoded)
        yield b"}\n"
        # Records gone since the last file are forgotten; the old maps hold the only
        # references left to the documents replaced since, so they are let go in steps.
        old = (self._sources, self._bytes)
        self._sources, self._bytes = sources, encoded
        for maps in old:
            for mapping in maps.values():
                pacing.drop_gradually(mapping)

    def _table(
        self,
        table: str,
        records: Iterable[tuple[str, Any]],
        encode: Callable[[str, Any], bytes],
        sources: dict[str, dict[str, object]],
        encoded: dict[str, dict[str, bytes]],
    ) -> Iterator[bytes]:
        """A TinyDB table of ``records`` (document ids 1, 2, ...), in pieces."""
        known_sources = self._sources.get(table, {})
        known_bytes = self._bytes.get(table, {})
        table_sources = sources[table] = {}
        table_bytes = encoded[table] = {}
        pieces = [b"{"]
        size = fresh = 0
        for number, (key, value) in enumerate(records, 1):
            if known_sources.get(key) is value:
                body = known_bytes[key]
            else:
                body = encode(key, value)
                fresh += 1
                self.encoded_records += 1
            table_sources[key] = value
            table_bytes[key] = body
            pieces.append(b'%s"%d": ' % (b", " if number > 1 else b"", number))
            pieces.append(body)
            size += len(body)
            if fresh >= _CHUNK or size >= _PIECE_BYTES:
                yield b"".join(pieces)
                pieces, size, fresh = [], 0, 0
                pacing.pause()
        pieces.append(b"}")
        yield b"".join(pieces)


def _encode_document(id: str, document: dict) -> bytes:
    return _dumps(document)


def _encode_membership(group_id: str, user_ids: Iterable[str]) -> bytes:
    """``{"group": ..., "members": [...]}`` as ``json.dumps`` writes it, in pieces.

    ``json.dumps(ids)`` is ``"[" + ", ".join(json.dumps(id) for id in ids) + "]"``, so the
    pieces' inner bytes joined by ``", "`` are the bytes of one call over the whole list.
    """
    ids = list(user_ids)
    parts = []
    for start in range(0, len(ids), _IDS_PER_PIECE):
        if start:
            pacing.pause()  # hand the GIL over between pieces of a big group
        parts.append(_dumps(ids[start : start + _IDS_PER_PIECE])[1:-1])
    return b'{"group": %s, "members": [%s]}' % (_dumps(group_id), b", ".join(parts))


def _dumps(value: Any) -> bytes:
    """One encoding call (ASCII-only JSON, default separators)."""
    return json.dumps(value).encode()
