"""The storage layer's own small errors; the SCIM service turns them into SCIM errors."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

from storage.ownership import give_back


class StorageError(Exception):
    """Base class for everything the storage layer raises on purpose."""


class NotFound(StorageError):
    """No document of that kind has that id."""

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"{kind} {id!r} not found")
        self.kind = kind
        self.id = id


class Conflict(StorageError):
    """A unique index already holds the value (after folding)."""

    def __init__(self, kind: str, field: str, value: str, holder: str) -> None:
        super().__init__(f"{kind} {field} {value!r} is already used by {holder!r}")
        self.kind = kind
        self.field = field
        self.value = value
        self.holder = holder


class VersionMismatch(StorageError):
    """The caller's expected version (If-Match) is not the document's current version."""

    def __init__(self, kind: str, id: str, expected: str, current: str) -> None:
        super().__init__(f"{kind} {id!r} is at version {current}, not {expected}")
        self.kind = kind
        self.id = id
        self.expected = expected
        self.current = current


class CorruptStore(StorageError):
    """A data file cannot be read; the message names the file and the position."""


class StoreLocked(StorageError):
    """Another process already owns this data directory."""


class Unavailable(StorageError):
    """The store cannot serve now (HTTP 503): the database cannot be reached or lost the
    connection (try again later), or the journal could not write to its disk
    (:class:`storage.journal.file.JournalBroken`: restart the server).

    The message is for the log: it names the server without its password
    (:func:`storage.postgres.connection.redact_dsn`), or the file. :attr:`detail` is what a
    client is told.
    """

    detail = "the directory's database is unavailable; retry later (the server log says why)"


class WriteFailed(Unavailable):
    """The disk refused a write (read-only, an I/O error, no space): nothing of the change
    was made (HTTP 503). The message names the file and the system's reason, for the log."""

    detail = (
        "the server could not write to its disk, so the change was not made; retry later "
        "(the server log says why)"
    )


class DiskFull(WriteFailed):
    """No space (or no quota) is left where the data lives: nothing of the change was made,
    and writes work again once space is freed, without a restart (HTTP 507, RFC 4918
    §11.5: "unable to store the representation ... considered to be temporary")."""

    detail = (
        "the server's disk is full, so the change was not made; it is accepted again once "
        "space is freed on the server (the server log names the directory)"
    )


class PermissionDenied(Unavailable):
    """This process may not open a file of the data directory: most likely one an operator
    command wrote while run as another user (root, without ``sudo -u proware``). A server
    refuses what needs it (HTTP 503) until the file is given back to its user, then works
    again without a restart; at start-up, and for a command, it is a one-line error."""

    def __init__(self, path: Path, exc: OSError) -> None:
        remedy = give_back(path) or (
            f"run Proware and its commands as the user that owns {path.parent} (and give the "
            "file back to that user)"
        )
        super().__init__(f"cannot open {path}: {exc.strerror}; {remedy}")
        self.detail = (
            f"the server may not read its file {path.name}; nothing was changed (the server "
            "log says why)"
        )


# errno values that mean "no room left", whatever else the write would have needed.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def write_failure(path: object, exc: OSError) -> WriteFailed:
    """The storage error for ``exc``, raised writing ``path``: :class:`DiskFull` when the
    disk (or quota) is full, else :class:`WriteFailed`."""
    reason = exc.strerror or str(exc)
    if exc.errno in _NO_SPACE:
        return DiskFull(f"{path}: no space left to write ({reason}); free space on its disk")
    return WriteFailed(f"{path}: the write failed ({reason})")


def log_background_failure(log: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a failure of work no request waits for (a periodic save, a save at shutdown):
    one line when it says what the operator is to do (a file left root's, a full disk),
    else with its traceback, which is then the only clue.

    A file of the data directory that a command run as root left behind gave a traceback
    on every control-panel view and every save, and at shutdown, until it was given back.
    """
    if isinstance(exc, PermissionDenied | DiskFull):
        log.warning("%s: %s", what, exc)
    else:
        log.warning(what, exc_info=exc)


class DamagedDocument(CorruptStore, Unavailable):
    """A shared document (``control.json``, ``admins.json``, ...: a file of the data
    directory or a row of the database) cannot be parsed, or is JSON of the wrong shape
    (:mod:`storage.shapes`), most likely after a hand edit (HTTP 503 while the server runs).

    Every use of it is refused until it is repaired, then it works again without a restart;
    nothing is written to it meanwhile. The message (for the log) names the file and where
    the damage is; :attr:`detail` (for clients) only the document's name.

    :param name: the document's name, when ``path`` is no file (a database row).
    """

    def __init__(
        self, path: Path | str, problem: str, *, name: str | None = None, first_report: bool = False
    ) -> None:
        super().__init__(problem)
        self.path = path
        # Set on the first refusal for one damaged version of the file: who catches that
        # one logs it (report), so that the log has one line per damage, not one per request.
        self.first_report = first_report
        what = f"control file {path.name}" if isinstance(path, Path) else f"control document {name}"
        self.detail = (
            f"the server's {what} is damaged: repair it or restore it (the server log says "
            "where the damage is); nothing was changed"
        )

    def report(self, log: logging.Logger) -> None:
        """Log the damage if this is its first refusal (a server; a command prints it)."""
        if self.first_report:
            log.error(
                "%s; until then everything that needs it is refused (SCIM requests with a "
                "503) and nothing is written to it; once repaired it is used again, without "
                "a restart",
                self,
            )


class Contention(Unavailable):
    """The database rolled the transaction back because of another one (a deadlock, a
    serialization failure, a unique value changing hands): nothing of it was written, so
    running the whole transaction again is safe (:func:`storage.retry.run_transaction`)."""


class NotServing(Unavailable):
    """This server process does not hold its share of the database: a restore or migration
    is replacing the directory. It serves again once it holds its share again."""

    detail = (
        "the directory is being restored or migrated; this server serves again once that "
        "has finished (retry later)"
    )


class Unstorable(StorageError, ValueError):
    """A value the store cannot hold: PostgreSQL refuses U+0000 and unpaired surrogates in
    text, and index keys past its size limit. The request is at fault (HTTP 400)."""
