"""The storage commands: ``backup``, ``restore`` and ``storage migrate``, for either backend.

    python app.py backup PATH                    # one consistent data file, while serving
    python app.py restore PATH                   # into a stopped install (refused while served)
    python app.py storage migrate --to TARGET    # a whole install into an empty target

A backup is the embedded store's data file whichever backend wrote it, so a backup of
either restores into either (:mod:`storage.transfer`). ``TARGET`` is a PostgreSQL
connection string or URL, or a data directory: ``storage migrate`` moves an install from
the embedded store to PostgreSQL and back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from admin.accounts import FILE_NAME as ACCOUNTS_FILE
from admin.audit import activity_log
from admin.connection import FILE_NAME as CONNECTION_FILE
from admin.sso_access import FILE_NAME as SSO_FILE
from admin.sso_access import START_UP_KEYS as SSO_START_UP_KEYS
from scim.service import INDEXES
from scim.tokens import FILE_NAME as TOKENS_FILE
from server.config import Settings
from storage import transfer
from storage.errors import StorageError, WriteFailed
from storage.journal import backup as embedded_backup
from storage.settings import POSTGRESQL, StorageSettings
from storage.wording import counted

# The shared documents an install moves with: tokens and the User Provisioning switch,
# control-panel accounts, single sign-on settings, the connection status. Sessions, sign-outs
# and the setup link belong to the backend they were made on.
MOVED_DOCUMENTS = [TOKENS_FILE, ACCOUNTS_FILE, SSO_FILE, CONNECTION_FILE]
# What a server's start writes in them without being used: a fresh install is a target.
START_UP_KEYS = {SSO_FILE: SSO_START_UP_KEYS}


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add ``backup``, ``restore`` and ``storage`` to the operator command line."""
    backup = sub.add_parser(
        "backup", parents=[common], help="write a consistent snapshot (works while serving)"
    )
    backup.add_argument(
        "path", metavar="PATH", help="the snapshot file to write (a TinyDB JSON document)"
    )
    restore = sub.add_parser(
        "restore", parents=[common], help="restore a snapshot into a stopped instance"
    )
    restore.add_argument(
        "path",
        metavar="PATH",
        help="a snapshot written by 'backup', or the proware.before-restore-*.bak/ a restore kept",
    )
    storage = sub.add_parser("storage", parents=[common], help="move an install between stores")
    storage_sub = storage.add_subparsers(dest="action", required=True)
    migrate = storage_sub.add_parser(
        "migrate",
        parents=[common],
        help="copy this install (directory, tokens, admins, activity) into an empty store",
    )
    migrate.add_argument(
        "--to",
        required=True,
        metavar="TARGET",
        help="a PostgreSQL URL or connection string (postgresql://user@host/db), or a data "
        "directory",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``backup``, ``restore`` or ``storage migrate``; returns the exit code."""
    try:
        if args.command == "backup":
            return backup(settings.storage, Path(args.path))
        if args.command == "restore":
            return restore(settings.storage, Path(args.path))
        return migrate(settings.storage, target_settings(args.to))
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def backup(storage: StorageSettings, target: Path) -> int:
    """Write a consistent snapshot of the directory, even while servers run."""
    # Checked before reading anything: a database's snapshot can take a while.
    problem = _backup_target_problem(storage, target)
    if problem is None:
        try:
            users, groups = _write_backup(storage, target)
        except (OSError, WriteFailed) as exc:  # permission denied, disk full: nothing is left
            problem = _write_problem(exc)
    if problem is not None:
        print(f"error: no backup written to {target}: {problem}", file=sys.stderr)
        return 1
    print(f"Wrote {target}: {counted(users, 'user')}, {counted(groups, 'group')}.")
    return 0


def _write_problem(exc: OSError | WriteFailed) -> str:
    """The system's reason a backup write failed, and the file it named."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    if not isinstance(cause, OSError):
        return str(exc)
    where = f" ({cause.filename})" if cause.filename else ""
    return f"{cause.strerror or cause}{where}"


def _write_backup(storage: StorageSettings, target: Path) -> tuple[int, int]:
    """Write the snapshot; how many users and groups it holds."""
    if storage.backend == POSTGRESQL:
        snapshot = transfer.read_directory(storage, INDEXES)
        transfer.write_backup(snapshot, target)
        return len(snapshot.documents["User"]), len(snapshot.documents["Group"])
    summary = embedded_backup.backup(Path(storage.path), target)
    return summary.users, summary.groups


def _backup_target_problem(storage: StorageSettings, target: Path) -> str | None:
    """Why ``target`` cannot be the backup file, or None.

    The embedded store's own directory is refused: a backup named like one of its files
    (``proware.json``, a journal segment) would replace the live store under its server, and
    any other would be lost with the disk it is meant to outlive.
    """
    if target.is_dir():
        return "it is a directory: name the file to write in it"
    if not target.parent.is_dir():
        return f"there is no directory {target.parent}: create it first"
    if storage.backend != POSTGRESQL and target.parent.resolve() == Path(storage.path).resolve():
        return (
            "it is in the data directory, among the files it copies: write it to another "
            "directory, ideally on another disk"
        )
    return None


def restore(storage: StorageSettings, source: Path) -> int:
    """Install a snapshot into a stopped install, keeping the directory it replaces: the
    embedded store its files, PostgreSQL a backup file beside ``source`` (then it replaces
    the rows in one transaction)."""
    if storage.backend == POSTGRESQL:
        snapshot = transfer.read_backup(source)
        # Refused while any server, on any machine, serves the database.
        with transfer.in_sole_use(storage, "restore"):
            try:
                previous = transfer.keep_replaced(storage, INDEXES, Path(source).parent)
            except (OSError, WriteFailed) as exc:  # a read-only directory, a full disk
                print(
                    f"error: nothing was restored: the directory it would replace could not "
                    f"be kept beside the backup: {_write_problem(exc)}. Copy {source.name} "
                    "into a directory this user can write, and restore it from there",
                    file=sys.stderr,
                )
                return 1
            transfer.write_directory(snapshot, storage, INDEXES, replace=True)
        users, groups = len(snapshot.documents["User"]), len(snapshot.documents["Group"])
        print(f"Restored {_users_and_groups(users, groups)} from {source}.")
        if previous is not None:
            print(f"The previous directory is kept in {previous} (restore it the same way).")
        return 0
    summary = embedded_backup.restore(source, Path(storage.path), INDEXES)
    print(f"Restored {_users_and_groups(summary.users, summary.groups)} from {source}.")
    if summary.previous:
        print(f"The previous data is kept in {summary.previous} (restore it the same way).")
    return 0


def _users_and_groups(users: int, groups: int) -> str:
    """What a restore installed: "1 user and 2 groups"."""
    return f"{counted(users, 'user')} and {counted(groups, 'group')}"


def migrate(source: StorageSettings, target: StorageSettings) -> int:
    """Copy the install into the empty ``target``, check the copy, and say what was done."""
    moved = transfer.migrate(
        source,
        target,
        INDEXES,
        MOVED_DOCUMENTS,
        activity_log,
        on_step=lambda line: print(line),
        start_up_keys=START_UP_KEYS,
    )
    print(
        f"Migrated {counted(moved.users, 'user')}, {counted(moved.groups, 'group')}, "
        f"{counted(moved.memberships, 'membership')}, "
        f"{counted(len(moved.documents), 'shared document')} and "
        f"{counted(moved.events, 'activity event')}; the copy matches the source."
    )
    if target.backend == POSTGRESQL:
        print(
            'Next: set [storage] backend = "postgresql" and dsn (or $PROWARE_STORAGE_DSN) in the '
            "config file and start the servers. Admins sign in again (sessions do not move)."
        )
    else:
        print(f'Next: set [storage] backend = "tinydb" and path = "{target.path}".')
    return 0


def target_settings(target: str) -> StorageSettings:
    """``--to``: a PostgreSQL URL or ``key=value`` string, else a data directory.

    :raises StorageError: for a URL of another scheme (``mysql://``, a misspelt
        ``postgresq://``), which was taken for a directory and migrated into ``./mysql:/…``.
    """
    if target.startswith(("postgresql://", "postgres://")) or "=" in target:
        return StorageSettings(backend=POSTGRESQL, dsn=target, pool_size=1)
    if "://" in target:
        raise StorageError(
            f"--to {target} is a URL but not a PostgreSQL one (postgresql://user@host/db), "
            "nor a data directory (nothing was changed)"
        )
    return StorageSettings(path=Path(target).resolve())
