"""Reading a data directory: the data file, then the journal records written after it.

:func:`read_store` only reads: :mod:`storage.journal.backup` uses it on the directory of a running
server, retrying when a compaction swaps files under it. :func:`prepare_directory` is the
start-up of the store that owns the directory: it reads and checks everything first, and
only then repairs what a crash may leave behind (a torn final record, segments a finished
compaction had not yet deleted) or migrates a format-1 file.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from storage.controlfile import fsync_directory
from storage.errors import CorruptStore, write_failure
from storage.journal.format import (
    Segment,
    cut_file_name,
    list_cut_files,
    list_segments,
    read_segment,
)
from storage.journal.migrate import migrate_format1
from storage.journal.snapshot import (
    DATA_FILE,
    TABLES,
    Snapshot,
    membership_problem,
    meta_record,
    read_snapshot,
    write_snapshot,
)
from storage.repository import Index
from storage.state import State
from storage.wording import counted

log = logging.getLogger("proware.storage")

# How many files keeping what start-up cut from the journal's end stay in the data
# directory: each start that cuts writes one, and the oldest beyond this are deleted.
CUT_FILES_KEPT = 10


class SwappedUnderfoot(Exception):
    """A compaction replaced files while they were being read (only without the lock)."""


@dataclass
class Recovered:
    """A data directory's content: the data file with every journal record applied."""

    snapshot: Snapshot | None  # None: a new directory
    raw_format: int  # the data file's format as found (1 needs migrating; 0: no file)
    file_seq: int = 0  # the last record the data file itself includes
    segments: list[Segment] = field(default_factory=list)  # generation order, replayed
    stale: list[Path] = field(default_factory=list)  # segments older than the data file
    events: list[tuple[int, dict]] = field(default_factory=list)  # (record seq, event)

    @property
    def seq(self) -> int:
        """The last journal record applied."""
        return self.snapshot.seq if self.snapshot else 0


def read_store(data_dir: Path, *, live: bool = False) -> Recovered:
    """Read ``data_dir`` and replay its journal in memory; change nothing on disk.

    :param live: another process may be compacting meanwhile; a segment that vanishes or a
        gap before the first one raises :class:`SwappedUnderfoot` (retry) instead of
        :class:`CorruptStore`.
    :raises CorruptStore: naming the file and position of anything unreadable.
    """
    data_path = data_dir / DATA_FILE
    snapshot = read_snapshot(data_path)
    segments = list_segments(data_dir)
    if snapshot is None:
        if segments and not live:
            raise CorruptStore(
                f"{data_dir} has journal segments but no {DATA_FILE}; the data file is "
                "missing, so the journal cannot be replayed (restore from a backup)"
            )
        if segments:
            raise SwappedUnderfoot
        return Recovered(None, 0)
    found = Recovered(snapshot, snapshot.format, snapshot.seq)
    if snapshot.format == 1:
        if segments:
            raise CorruptStore(
                f"{data_path} is a format-1 file but journal segments lie beside it "
                f"({', '.join(path.name for path in segments.values())}); move them away"
            )
        return found
    found.stale = [
        path for generation, path in segments.items() if generation < snapshot.generation
    ]
    current = {g: path for g, path in segments.items() if g >= snapshot.generation}
    expected = list(range(snapshot.generation, snapshot.generation + len(current)))
    if list(current) != expected:
        if live:
            raise SwappedUnderfoot
        missing = sorted(set(range(snapshot.generation, max(current) + 1)) - set(current))
        raise CorruptStore(
            f"{data_dir}: journal segment {missing[0]} is missing (the data file needs "
            f"{snapshot.generation} onwards, found {list(current)}); restore from a backup"
        )
    enabled = gc.isenabled()
    gc.disable()  # replay builds many objects and frees none
    try:
        for generation, path in current.items():
            try:
                segment = read_segment(path, final=generation == expected[-1])
            except FileNotFoundError:
                if live:
                    raise SwappedUnderfoot from None
                raise
            for offset, record in enumerate(segment.records):
                _apply(found, segment, offset, record)
            found.segments.append(segment)
    finally:
        if enabled:
            gc.enable()
    if found.segments:
        problem = membership_problem(snapshot)
        if problem:
            raise CorruptStore(f"{data_dir}: after replaying the journal, {problem}")
    return found


def _apply(found: Recovered, segment: Segment, number: int, record: dict) -> None:
    """Apply one journal record to the snapshot's documents and memberships."""
    snapshot = found.snapshot
    assert snapshot is not None
    where = f"{segment.path}: record {number + 1} (seq {record.get('seq')})"
    if record["seq"] != snapshot.seq + 1:
        raise CorruptStore(
            f"{where} does not follow seq {snapshot.seq}; the journal does not belong to "
            "this data file or lost records (restore from a backup)"
        )
    try:
        for kind, id, document in record.get("docs", ()):
            table = snapshot.documents[kind]
            if document is None:
                table.pop(id, None)
                snapshot.members.pop(id, None)  # a deleted group's memberships go with it
            else:
                table[id] = document
        for operation, group_id, user_ids in record.get("members", ()):
            members = snapshot.members.setdefault(group_id, {})
            if operation == "add":
                for user_id in user_ids:
                    if user_id not in members:  # joined now: its last group so far
                        members[user_id] = None
                        joined = snapshot.groups.setdefault(user_id, [])
                        if group_id in joined:
                            joined.remove(group_id)
                        joined.append(group_id)
            elif operation == "remove":
                for user_id in user_ids:
                    members.pop(user_id, None)
                    if group_id in snapshot.groups.get(user_id, ()):
                        snapshot.groups[user_id].remove(group_id)
            else:
                raise ValueError(f"unknown membership operation {operation!r}")
        events = record.get("events", ())
        for event in events:
            found.events.append((record["seq"], event))
            snapshot.event_seq = max(snapshot.event_seq, event["seq"])
    except (KeyError, TypeError, ValueError) as exc:
        known = ", ".join(TABLES)
        raise CorruptStore(f"{where} cannot be applied ({exc!r}; kinds: {known})") from None
    snapshot.seq = record["seq"]


@dataclass
class Prepared:
    """A directory ready for a store to append to, and the state it holds."""

    state: State
    seq: int  # the last journal record applied
    file_seq: int  # the last record the data file itself includes
    event_seq: int  # the last event's seq
    events: list[tuple[int, dict]]  # (record seq, event) still in the journal
    generation: int  # the segment to append to
    segment_size: int  # bytes already in it


def prepare_directory(data_dir: Path, indexes: list[Index]) -> Prepared:
    """Read, check and repair ``data_dir`` for the store that holds its lock.

    A new directory gets an empty data file; a format-1 file is migrated (the original
    kept); a torn final record is cut away (kept in a ``.cut-`` file beside it); segments a
    finished compaction left are deleted.

    :raises CorruptStore: if anything cannot be read or does not add up; nothing on disk
        has been changed then.
    :raises WriteFailed: a torn final record could not be kept before it is cut away.
    """
    found = read_store(data_dir)
    snapshot = found.snapshot or Snapshot(format=0)
    enabled = gc.isenabled()
    gc.disable()  # building the indexes frees nothing either
    try:
        state = State.build(indexes, snapshot.documents, snapshot.members, snapshot.groups)
    finally:
        if enabled:
            gc.enable()
    for index, folded, ids in state.duplicates():
        raise CorruptStore(
            f"{data_dir}: {len(ids)} {index.kind} documents share the unique {index.field} "
            f"{folded!r} ({', '.join(ids[:3])}); fix or restore the data"
        )
    # Only now that everything has been read and checked may files change.
    if found.snapshot is None:
        write_snapshot(data_dir / DATA_FILE, state, meta_record(1, 0, 0))
    elif found.raw_format == 1:
        copy = migrate_format1(data_dir, state)
        log.warning("migrated %s to format 2; the original is kept as %s", DATA_FILE, copy)
    _tidy(data_dir, found)
    last = found.segments[-1] if found.segments else None
    return Prepared(
        state,
        found.seq,
        found.file_seq,
        snapshot.event_seq,
        found.events,
        snapshot.generation + max(len(found.segments) - 1, 0),
        last.valid_end if last else 0,
    )


def _tidy(data_dir: Path, found: Recovered) -> None:
    """Delete segments a compaction covered; cut a torn final record away."""
    for path in found.stale:
        path.unlink(missing_ok=True)
    if found.stale:
        fsync_directory(data_dir)
    last = found.segments[-1] if found.segments else None
    if last is not None and last.torn:
        _cut_tail(data_dir, last)


def _cut_tail(data_dir: Path, last: Segment) -> None:
    """Cut away the bytes after the segment's last complete record, kept in a file first.

    A torn append cannot be told from a last line edited or cut short by hand, and the
    store cannot append after either; what is cut is kept, unless it holds nothing but
    zero bytes (what a crash leaves where the file system had no data yet).

    :raises WriteFailed: the bytes could not be kept (:class:`DiskFull`: no space); the
        segment is left as it was.
    """
    with open(last.path, "r+b") as file:
        file.seek(last.valid_end)
        cut = file.read()
        where = (
            f"{counted(len(cut), 'byte')} after its last complete record (offset {last.valid_end})"
        )
        if cut.strip(b"\0"):
            kept = _keep_cut(data_dir, last.path, cut, where)
            log.warning(
                "%s: cut away %s, which is not a whole record: a write torn by a crash, or a "
                "last line edited by hand. The bytes are kept in %s; if a crash tore the "
                "write, the change in them was never acknowledged to a client",
                last.path,
                where,
                kept,
            )
        else:
            log.warning(
                "%s: cut away %s, all zero bytes: a write torn by a crash (never acknowledged "
                "to a client); nothing to keep",
                last.path,
                where,
            )
        file.truncate(last.valid_end)
        file.flush()
        os.fsync(file.fileno())


def _keep_cut(data_dir: Path, segment: Path, cut: bytes, where: str) -> Path:
    """Write ``cut`` to a new file beside ``segment``, durably; keep at most
    :data:`CUT_FILES_KEPT` such files, deleting the oldest."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = data_dir / cut_file_name(segment, stamp)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(cut)
                file.flush()
                os.fsync(file.fileno())
            fsync_directory(data_dir)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    except OSError as exc:
        failure = write_failure(path, exc)
        raise type(failure)(
            f"{segment}: the {where} must be cut away, but could not be kept first "
            f"({failure}); nothing was changed: start again once the disk takes writes"
        ) from exc
    for old in list_cut_files(data_dir)[:-CUT_FILES_KEPT]:
        old.unlink(missing_ok=True)
        log.info("deleted %s: only the newest %d cut journal tails are kept", old, CUT_FILES_KEPT)
    return path
