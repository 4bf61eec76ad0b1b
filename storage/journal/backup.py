"""Backup and restore: one consistent TinyDB-format file (format 2) out, and back in.

:func:`backup` works while a server runs, from any process: the data directory's files are
only ever appended to or atomically replaced, so it reads the data file, then the journal
segments after it up to their last complete record, and starts again if a compaction
removed a segment in between. A running server's repository can also copy its own state.

:func:`restore` needs the server stopped (it takes the directory's lock), checks the file
whole before touching anything, keeps the previous files in a ``.bak`` directory, and
switches to the restored data with one atomic rename.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from storage.controlfile import fsync_directory, remove_stray_temp_files
from storage.errors import CorruptStore, StorageError, WriteFailed, write_failure
from storage.journal import JournalRepository
from storage.journal.format import list_segments
from storage.journal.lock import DataDirLock
from storage.journal.recovery import SwappedUnderfoot, read_store
from storage.journal.snapshot import (
    DATA_FILE,
    Snapshot,
    decode_snapshot,
    meta_record,
    write_snapshot,
)
from storage.repository import Index
from storage.state import State

_ATTEMPTS = 20  # compactions in a row that may swap files under one backup


@dataclass(frozen=True)
class Summary:
    """What a backup wrote or a restore installed."""

    path: Path
    users: int
    groups: int
    seq: int  # the last journal record included
    previous: Path | None = None  # restore: where the replaced files were kept


def backup(source: Path | JournalRepository, target: Path) -> Summary:
    """Write a consistent snapshot of ``source`` to ``target`` (one format-2 TinyDB file).

    :param source: a data directory (its server may be running) or an open repository.
    :raises CorruptStore: if the directory's files are damaged.
    :raises StorageError: if it holds no data, or compactions kept swapping files.
    """
    target = Path(target)
    if isinstance(source, JournalRepository):
        state, meta = source.snapshot_to(target)
        users, groups = (len(state.documents.get(kind, ())) for kind in ("User", "Group"))
        return Summary(target, users, groups, meta["seq"])
    snapshot = read_live(Path(source))
    write_snapshot(target, snapshot, meta_record(1, snapshot.seq, snapshot.event_seq))
    return _summary(target, snapshot)


def read_live(data_dir: Path) -> Snapshot:
    """The directory in ``data_dir`` with its journal replayed, while its server may run:
    a compaction that replaces files meanwhile makes it read them again.

    :raises CorruptStore: if the directory's files are damaged.
    :raises StorageError: if it holds no data, or compactions kept swapping files.
    """
    for attempt in range(_ATTEMPTS):
        try:
            found = read_store(data_dir, live=True)
            break
        except SwappedUnderfoot:
            time.sleep(0.01 * attempt)
    else:
        raise StorageError(f"{data_dir}: compactions kept replacing files; try again")
    if found.snapshot is None:
        raise StorageError(f"{data_dir} holds no Proware data file ({DATA_FILE})")
    return found.snapshot


def restore(source: Path, data_dir: Path, indexes: list[Index]) -> Summary:
    """Install the backup file ``source`` as the data of the stopped instance in ``data_dir``.

    The previous data file and journal are kept (hard links) in
    ``proware.before-restore-<time>.bak/`` inside ``data_dir``; ``source`` may be such a
    directory (any data directory), which puts the kept data back.

    :param indexes: the indexes the service uses: the backup must not break their
        uniqueness.
    :raises StoreLocked: if a server (or another restore) holds ``data_dir``.
    :raises CorruptStore: if ``source`` is not a valid Proware data file (format 1 or 2),
        or a data directory whose files are damaged; nothing is changed then.
    :raises WriteFailed: if the disk is full (:class:`DiskFull`) or refuses the writes;
        nothing is changed then either.
    """
    source, data_dir = Path(source), Path(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = DataDirLock(data_dir, purpose="restore")
    try:
        snapshot = _read_source(source)
        state = State.build(indexes, snapshot.documents, snapshot.members, snapshot.groups)
        for index, folded, ids in state.duplicates():
            raise CorruptStore(
                f"{source}: {len(ids)} {index.kind} documents share the unique {index.field} "
                f"{folded!r}; not restored"
            )
        data_path = data_dir / DATA_FILE
        remove_stray_temp_files(data_path)
        segments = list_segments(data_dir)
        previous = _keep_previous(data_dir, [data_path, *segments.values()])
        # Above every segment present, so start-up treats them all as replaced even if
        # the deletions below never happen.
        generation = max([*segments, _generation(data_path)]) + 1
        try:
            write_snapshot(
                data_path, state, meta_record(generation, snapshot.seq, snapshot.event_seq)
            )
        except WriteFailed:
            # The data file is as it was (a disk full, say): nothing to keep a copy of.
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
            raise
        for path in segments.values():
            path.unlink(missing_ok=True)
        fsync_directory(data_dir)
        return _summary(data_path, snapshot, previous)
    finally:
        lock.release()


def _read_source(source: Path) -> Snapshot:
    """What ``source`` holds: a backup file, or a data directory with its journal replayed
    (the ``proware.before-restore-*.bak/`` a restore kept, so that it is put back the same
    way as any backup).

    :raises StorageError: if it cannot be read, or holds no Proware data.
    """
    if source.is_dir():
        return read_live(source)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read the backup {source}: {exc.strerror}") from None
    return decode_snapshot(source, raw)


def kept_name(suffix: str) -> str:
    """The name of what a restore keeps of the data it replaces, made now:
    ``proware.before-restore-<UTC time><suffix>`` (a ``.bak`` directory of the embedded
    store's files, or a ``.json`` backup of a database's directory)."""
    return f"proware.before-restore-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}{suffix}"


def _keep_previous(data_dir: Path, paths: list[Path]) -> Path | None:
    """Link the current files into a fresh ``.bak`` directory; None if there are none."""
    existing = [path for path in paths if path.exists()]
    if not existing:
        return None
    kept = data_dir / kept_name(".bak")
    try:
        kept.mkdir(mode=0o700)
        for path in existing:
            try:
                os.link(path, kept / path.name)
            except OSError:  # a file system without hard links
                shutil.copy2(path, kept / path.name)
        fsync_directory(kept)
        fsync_directory(data_dir)
    except OSError as exc:  # a full disk: nothing was changed yet but this copy
        shutil.rmtree(kept, ignore_errors=True)
        raise write_failure(kept, exc) from exc
    return kept


def _generation(data_path: Path) -> int:
    """The generation recorded in the current data file (0 if unknown or unreadable)."""
    try:
        return decode_snapshot(data_path, data_path.read_bytes()).generation
    except (OSError, StorageError):
        return 0


def _summary(path: Path, snapshot: Snapshot, previous: Path | None = None) -> Summary:
    documents = snapshot.documents
    return Summary(path, len(documents["User"]), len(documents["Group"]), snapshot.seq, previous)
