"""Moving an install between backends, and backups and restores of either.

The exchange format is the embedded store's data file (format 2, :mod:`storage.journal.snapshot`):
a :class:`~storage.journal.snapshot.Snapshot` of every user and group with its ``id`` and
``meta`` as stored, and every group's members in order. A backup is one such file, whichever
backend wrote it, so a backup of either restores into either.

:func:`migrate` copies a whole install into an empty target: the directory, the shared
documents (tokens and the User Provisioning switch, admin accounts, single sign-on
settings) and the activity log, then reads the target back and compares. Control-panel
sessions do not move: each backend signs cookies with its own secret, so admins sign in
again. Neither end may be served meanwhile: :func:`in_sole_use` refuses while a server
uses either (stop it first), and keeps servers from starting until the copy is done.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from storage.backend import SharedState, open_state
from storage.errors import CorruptStore, StorageError
from storage.journal.backup import kept_name, read_live
from storage.journal.lock import DataDirLock
from storage.journal.recovery import read_store
from storage.journal.snapshot import (
    DATA_FILE,
    Snapshot,
    decode_snapshot,
    meta_record,
    write_snapshot,
)
from storage.repository import Index
from storage.settings import POSTGRESQL, StorageSettings
from storage.state import State, joined_order
from storage.wording import counted

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
    state = State.build(indexes, snapshot.documents, snapshot.members, snapshot.groups)
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
        if not replace:
            _check_empty_directory(data_dir)
        write_snapshot(data_dir / DATA_FILE, state, meta_record(1, 0, snapshot.event_seq))
    finally:
        lock.release()


def _check_empty_directory(data_dir: Path) -> None:
    """Refuse a data directory that holds users, groups or journal records (a server's
    first start leaves an empty data file and journal: that is still empty)."""
    found = read_store(data_dir).snapshot
    if found is None:
        return
    users, groups = len(found.documents.get("User", {})), len(found.documents.get("Group", {}))
    if users or groups or found.seq:
        raise StorageError(
            f"{data_dir} already holds a Proware directory ({counted(users, 'user')}, "
            f"{counted(groups, 'group')}, {counted(found.seq, 'journal record')}); migrate "
            "only into an empty store (nothing was changed)"
        )


def keep_replaced(settings: StorageSettings, indexes: list[Index], directory: Path) -> Path | None:
    """Write the directory a restore is about to replace to a backup file in ``directory``
    (``proware.before-restore-<UTC time>.json``), as the embedded store keeps its replaced
    files; None when there is nothing to keep (no users, groups or journal records).

    For PostgreSQL, whose restore replaces the rows in one transaction: nothing of them was
    kept, so a restore of the wrong file lost the directory that was there.

    :raises WriteFailed: the file cannot be written (the restore must not go on then).
    """
    snapshot = read_directory(settings, indexes)
    if not (snapshot.documents.get("User") or snapshot.documents.get("Group") or snapshot.seq):
        return None
    kept = Path(directory) / kept_name(".json")
    write_backup(snapshot, kept)
    return kept


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
    start_up_keys: Mapping[str, Collection[str]] | None = None,
) -> Moved:
    """Copy the install at ``source`` into the empty ``target``, then check the copy.

    :param documents: the names of the shared documents to copy (tokens, accounts, ...).
    :param start_up_keys: document name -> the keys a server's start writes in it without
        being used; a target document holding no other key counts as empty (and is replaced).
    :param event_log: the activity log of a state (the backend's own, or the control
        panel's file beside an embedded store).
    :param on_step: told what is being done, a line at a time.
    :raises StorageError: a server uses the source or a PostgreSQL target, the target is
        not empty, the target is the source itself, or the copy differs from the source
        (the message says where); the source is never changed.
    """
    if same_store(source, target):
        # Else refused as "in use by 1 Proware server process(es)", naming this very command
        # (its lock on the source), or as a target that "already holds" the install.
        raise StorageError(
            f"--to names the {_where(target)}, which is the store this config already uses: "
            "storage migrate copies from the store the config names. Run it with the config "
            "of the install to move (its [storage] still naming that store), then point "
            "[storage] at the target (nothing was changed)"
        )
    with ExitStack() as held:
        # Nothing may change the source while it is read, nor the target while it is
        # checked for emptiness and written (an embedded target: write_directory locks it).
        held.enter_context(in_sole_use(source, "storage migrate"))
        if target.backend == POSTGRESQL:
            held.enter_context(in_sole_use(target, "storage migrate"))
        on_step(f"reading the directory from {_where(source)}")
        snapshot = read_directory(source, indexes)
        moved = Moved(
            users=len(snapshot.documents.get("User", {})),
            groups=len(snapshot.documents.get("Group", {})),
            memberships=sum(len(ids) for ids in snapshot.members.values()),
        )
        source_state = held.enter_context(closing(open_state(source, indexes)))
        target_state = held.enter_context(closing(open_state(target, indexes)))
        _check_unused(target, target_state, documents, event_log(target_state), start_up_keys or {})
        on_step(
            f"writing {counted(moved.users, 'user')}, {counted(moved.groups, 'group')} and "
            f"{counted(moved.memberships, 'membership')} to {_where(target)}"
        )
        write_directory(snapshot, target, indexes, replace=False)
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
        _check_directory(snapshot, read_directory(target, indexes))
    return moved


def same_store(first: StorageSettings, second: StorageSettings) -> bool:
    """Whether both settings name one install: one data directory, or one database of one
    server (however the connection strings spell it, user and options aside)."""
    if first.backend != second.backend:
        return False
    if first.backend == POSTGRESQL:
        from storage.postgres.connection import same_database

        return same_database(first.dsn, second.dsn)
    return Path(first.path).resolve() == Path(second.path).resolve()


@contextmanager
def in_sole_use(settings: StorageSettings, command: str) -> Iterator[None]:
    """Hold the install of ``settings`` so that no server uses it while ``command`` runs.

    A data directory by its lock file; a PostgreSQL database by the advisory lock every
    server holds shared (:mod:`storage.postgres.serving`), on every machine.

    :raises StorageError: a server (or another command) uses it, saying which to stop.
    """
    if settings.backend != POSTGRESQL:
        lock = DataDirLock(Path(settings.path), purpose=command.split()[-1])
        try:
            yield
        finally:
            lock.release()
        return
    from storage.postgres.serving import sole_use

    database = _database(settings)
    try:
        with sole_use(database, command):
            yield
    finally:
        database.close()


def _check_unused(
    target: StorageSettings,
    state: SharedState,
    documents: list[str],
    events: EventLog,
    start_up_keys: Mapping[str, Collection[str]],
) -> None:
    """Refuse a target that holds anything a migration would overwrite or mix in.

    What a server writes on its first start without being used (the session key, an empty
    data file, ``start_up_keys``) does not count: a fresh install is a fine target.
    """
    held = [
        f"shared document {name!r}"
        for name in documents
        if set(state.document(name).read()) - set(start_up_keys.get(name, ()))
    ]
    if next(iter(events.newest_first()), None) is not None:
        held.append("activity events")
    if held:
        raise StorageError(
            f"the {_where(target)} already holds {', '.join(held)}; migrate only into an "
            "empty store (nothing was changed)"
        )


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
                f"the copy holds {counted(len(theirs), kind + ' document')} where the source "
                f"holds {len(mine)}"
            )
        for id, document in mine.items():
            if theirs[id] != document:
                raise StorageError(f"the copy of {kind} {id!r} differs from its source")
    mine_members = {group: list(ids) for group, ids in expected.members.items() if ids}
    their_members = {group: list(ids) for group, ids in found.members.items() if ids}
    if mine_members != their_members:
        raise StorageError("the copy's group memberships differ from the source's")
    # A user's groups, in order, are part of what a client sees of it (and of its version).
    mine_joined = joined_order(expected.members, expected.groups)
    their_joined = joined_order(found.members, found.groups)
    for user_id, groups in mine_joined.items():
        if their_joined.get(user_id) != groups:
            raise StorageError(
                f"the copy lists the groups of User {user_id!r} in another order than the source"
            )


def _database(settings: StorageSettings):  # type: ignore[no-untyped-def]
    from storage.postgres.connection import Database

    return Database(settings.dsn, pool_size=1, timeout=settings.timeout_seconds)


def _where(settings: StorageSettings) -> str:
    if settings.backend == POSTGRESQL:
        from storage.postgres.connection import redact_dsn

        return f"PostgreSQL {redact_dsn(settings.dsn)}"
    return f"data directory {Path(settings.path).resolve()}"
