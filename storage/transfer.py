"""Moving an install between backends, and backups and restores of either.

The exchange format is the embedded store's data file (format 2, :mod:`storage.journal.snapshot`):
a :class:`~storage.journal.snapshot.Snapshot` of every user and group with its ``id`` and
``meta`` as stored, and every group's members in order. A backup is one such file, whichever
backend wrote it, so a backup of either restores into either.

:func:`migrate` copies a whole install into an empty target: the directory, the shared
documents (tokens and the User Provisioning switch, admin accounts, single sign-on
settings) and the activity log, then reads the target back and compares. Control-panel
sessions do not move: each backend signs cookies with its own secret, so admins sign in
again. The source must not be served meanwhile: an embedded source is locked for the copy;
for a PostgreSQL source, stop its servers first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from storage.backend import SharedState, open_state
from storage.errors import CorruptStore, StorageError
from storage.journal.backup import read_live
from storage.journal.lock import DataDirLock
from storage.journal.snapshot import (
    DATA_FILE,
    Snapshot,
    decode_snapshot,
    meta_record,
    write_snapshot,
)
from storage.repository import Index
from storage.settings import POSTGRESQL, StorageSettings
from storage.state import State

KINDS = ("User", "Group")


class EventLog(Protocol):
    """The activity log's methods a migration uses (admin.audit.AuditLog has them)."""

    def newest_first(self) -> Iterator[dict]: ...

    def append(self, event: dict) -> None: ...

    def sync(self) -> None: ...


@dataclass
class Moved:
    """What :func:`migrate` copied and checked."""

    users: int
    groups: int
    memberships: int  # (group, user) pairs
    documents: list[str] = field(default_factory=list)  # the shared documents copied
    events: int = 0


# -- the directory as one snapshot -----------------------------------------------------------


def read_directory(settings: StorageSettings, indexes: list[Index]) -> Snapshot:
    """The whole directory of the install ``settings`` name, consistent.

    An embedded data directory is read from its files (its server may run: compactions are
    retried); PostgreSQL in one repeatable-read transaction.
    """
    if settings.backend == POSTGRESQL:
        from storage.postgres import transfer as postgres

        database = _database(settings)
        try:
            return postgres.snapshot(database)
        finally:
            database.close()
    return read_live(Path(settings.path))


def write_directory(
    snapshot: Snapshot, settings: StorageSettings, indexes: list[Index], *, replace: bool
) -> None:
    """Install ``snapshot`` as the directory of ``settings``' install, whole or not at all.

    :param replace: whether a directory already there may be replaced (a restore) or the
        target must be empty (a migration).
    :raises CorruptStore: the snapshot breaks a unique index (two users share a userName).
    :raises StorageError: the target is not empty and ``replace`` is false.
    """
    state = State.build(indexes, snapshot.documents, snapshot.members)
    for index, folded, ids in state.duplicates():
        raise CorruptStore(
            f"{len(ids)} {index.kind} documents share the unique {index.field} {folded!r}"
        )
    if settings.backend == POSTGRESQL:
        from storage.postgres import transfer as postgres

        database = _database(settings)
        try:
            postgres.load(database, indexes, snapshot, replace=replace)
        finally:
            database.close()
        return
    data_dir = Path(settings.path)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = DataDirLock(data_dir, purpose="migrate")
    try:
        if not replace and (data_dir / DATA_FILE).exists():
            raise StorageError(f"{data_dir} already holds a Proware directory; not overwritten")
        write_snapshot(data_dir / DATA_FILE, state, meta_record(1, 0, snapshot.event_seq))
    finally:
        lock.release()


def read_backup(path: Path) -> Snapshot:
    """A backup file, decoded and checked.

    :raises StorageError: it cannot be read; :raises CorruptStore: it is not a Proware file.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read the backup {path}: {exc.strerror}") from None
    return decode_snapshot(Path(path), raw)


def write_backup(snapshot: Snapshot, path: Path) -> None:
    """Write ``snapshot`` to ``path`` as one data file, atomically."""
    write_snapshot(Path(path), snapshot, meta_record(1, snapshot.seq, snapshot.event_seq))


# -- a whole install --------------------------------------------------------------------------


def migrate(
    source: StorageSettings,
    target: StorageSettings,
    indexes: list[Index],
    documents: list[str],
    event_log: Callable[[SharedState], EventLog],
    *,
    on_step: Callable[[str], None] = lambda line: None,
) -> Moved:
    """Copy the install at ``source`` into the empty ``target``, then check the copy.

    :param documents: the names of the shared documents to copy (tokens, accounts, ...).
    :param event_log: the activity log of a state (the backend's own, or the control
        panel's file beside an embedded store).
    :param on_step: told what is being done, a line at a time.
    :raises StorageError: the target is not empty, or the copy differs from the source
        (the message says where); the source is never changed.
    """
    on_step(f"reading the directory from {_where(source)}")
    lock = (
        DataDirLock(Path(source.path), purpose="migrate") if source.backend != POSTGRESQL else None
    )
    try:
        snapshot = read_directory(source, indexes)
        moved = Moved(
            users=len(snapshot.documents.get("User", {})),
            groups=len(snapshot.documents.get("Group", {})),
            memberships=sum(len(ids) for ids in snapshot.members.values()),
        )
        on_step(
            f"writing {moved.users} users, {moved.groups} groups and {moved.memberships} "
            f"memberships to {_where(target)}"
        )
        write_directory(snapshot, target, indexes, replace=False)
        source_state, target_state = open_state(source, indexes), open_state(target, indexes)
        try:
            for name in documents:
                content = source_state.document(name).read()
                if content:
                    target_state.document(name).update(_replaced_by(content))
                    moved.documents.append(name)
            on_step(f"copied {', '.join(moved.documents) or 'no shared documents'}")
            moved.events = _copy_events(event_log(source_state), event_log(target_state))
            on_step(f"copied {moved.events} activity events")
            on_step("checking the copy")
            _check_documents(source_state, target_state, moved.documents)
        finally:
            source_state.close()
            target_state.close()
        _check_directory(snapshot, read_directory(target, indexes))
    finally:
        if lock is not None:
            lock.release()
    return moved


def _replaced_by(content: dict) -> Callable[[dict], None]:
    def replace(document: dict) -> None:
        document.clear()
        document.update(content)

    return replace


def _copy_events(source: EventLog, target: EventLog) -> int:
    """Copy the activity log, oldest event first; the target numbers them anew."""
    events = list(source.newest_first())
    for event in reversed(events):
        target.append({key: value for key, value in event.items() if key != "seq"})
    target.sync()
    return len(events)


def _check_documents(source: SharedState, target: SharedState, names: list[str]) -> None:
    for name in names:
        if source.document(name).read() != target.document(name).read():
            raise StorageError(f"the copy of the shared document {name!r} differs from its source")


def _check_directory(expected: Snapshot, found: Snapshot) -> None:
    for kind in KINDS:
        mine, theirs = expected.documents.get(kind, {}), found.documents.get(kind, {})
        if mine.keys() != theirs.keys():
            raise StorageError(
                f"the copy holds {len(theirs)} {kind} documents where the source holds {len(mine)}"
            )
        for id, document in mine.items():
            if theirs[id] != document:
                raise StorageError(f"the copy of {kind} {id!r} differs from its source")
    mine_members = {group: list(ids) for group, ids in expected.members.items() if ids}
    their_members = {group: list(ids) for group, ids in found.members.items() if ids}
    if mine_members != their_members:
        raise StorageError("the copy's group memberships differ from the source's")


def _database(settings: StorageSettings):  # type: ignore[no-untyped-def]
    from storage.postgres.connection import Database

    return Database(settings.dsn, pool_size=1)


def _where(settings: StorageSettings) -> str:
    if settings.backend == POSTGRESQL:
        from storage.postgres.connection import redact_dsn

        return f"PostgreSQL {redact_dsn(settings.dsn)}"
    return f"data directory {Path(settings.path).resolve()}"
