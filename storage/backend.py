"""The backend: where one install keeps its directory and every piece of shared state.

``[storage] backend`` picks one (:mod:`storage.settings`):

- :class:`EmbeddedBackend`: the journal store and small JSON files in the data directory,
  owned by one server process (the default; nothing to install);
- ``PostgresBackend`` (:mod:`storage.postgres.backend`): one PostgreSQL database holding
  the directory, the shared documents, secrets and activity, so that any number of server
  processes, on any number of machines, serve one install.

The service, the control panel and the command line take what they need from a backend:
the repository, a :class:`~storage.documents.SharedDocument` by name (``control.json``,
``admins.json``, ...), a shared random secret (the session signing key), and, for a
backend that keeps activity itself, its event log.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

from storage.controlfile import ControlFile
from storage.documents import SharedDocument
from storage.errors import CorruptStore, StorageError
from storage.failures import FailureLog, MemoryFailureLog
from storage.repository import Index, Repository
from storage.settings import POSTGRESQL, StorageSettings

log = logging.getLogger("proware.storage")

SECRET_BYTES = 32


class SharedState(Protocol):
    """The state every process of an install shares, but the directory itself: what the
    command line opens while a server runs (the embedded store belongs to the server)."""

    name: str  # "tinydb" or "postgresql"
    # The data directory for files that stay local to a process (None: none is used).
    data_dir: Path | None

    def describe(self) -> str:
        """Where the data lives, for people (never a password)."""
        ...

    def document(self, name: str) -> SharedDocument:
        """The shared document called ``name`` (one object per name and backend)."""
        ...

    def secret(self, name: str) -> bytes:
        """A random secret created on first use and the same for every process after."""
        ...

    def event_log(self) -> Any | None:
        """The backend's own activity log (with :class:`admin.audit.AuditLog`'s methods),
        or None when activity goes to a file of the data directory."""
        ...

    def close(self) -> None:
        """Release connections, files and locks."""
        ...


class Backend(SharedState, Protocol):
    """What one install keeps its state in, the directory (the repository) included."""

    repository: Repository

    def failure_log(self) -> FailureLog:
        """Failed sign-ins of names that are no account, as every server process counts them
        (one object per backend)."""
        ...

    def check_serving(self) -> None:
        """Return if this process may serve requests now.

        :raises NotServing: it lost its hold on the store (a restore may be replacing it).
        """
        ...


class EmbeddedState:
    """Small JSON files in one data directory, read and updated under a lock."""

    name = "tinydb"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir: Path | None = Path(data_dir)
        self._root = Path(data_dir)
        self._documents: dict[str, ControlFile] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"data directory {self._root.resolve()}"

    def document(self, name: str) -> ControlFile:
        # One object per file, so that every user of a document shares its read cache.
        with self._lock:
            if name not in self._documents:
                self._documents[name] = ControlFile(self._root / name)
            return self._documents[name]

    def secret(self, name: str) -> bytes:
        return load_or_create_secret(self._root / name)

    def event_log(self) -> None:
        return None

    def close(self) -> None:
        return None


class EmbeddedBackend(EmbeddedState):
    """The embedded store and its files in one data directory (one server process)."""

    def __init__(self, data_dir: Path, repository: Repository) -> None:
        super().__init__(data_dir)
        self.repository = repository
        self._failures = MemoryFailureLog()

    def failure_log(self) -> MemoryFailureLog:
        """In memory: the embedded store has one server process."""
        return self._failures

    def check_serving(self) -> None:
        """Always: the data directory's lock file is held for the process's life."""

    def close(self) -> None:
        self.repository.close()


def open_backend(
    settings: StorageSettings, indexes: list[Index], *, repository: Repository | None = None
) -> Backend:
    """Open the backend ``settings`` choose, the directory included (the server).

    :param repository: a store to use instead of the embedded one (tests).
    :raises StorageError: the data directory is locked or damaged, or the database is
        unreachable (:class:`storage.errors.Unavailable`), with a message saying which.
    """
    if settings.backend == POSTGRESQL:
        return _postgres(settings, indexes, serving=True)
    data_dir = writable_data_dir(Path(settings.path))
    if repository is None:
        from storage import open_store

        repository = open_store(data_dir, indexes)
    return EmbeddedBackend(data_dir, repository)


def open_state(settings: StorageSettings, indexes: list[Index]) -> SharedState:
    """Open the shared state alone (the command line, while a server may be running).

    :raises StorageError: as :func:`open_backend`.
    """
    if settings.backend == POSTGRESQL:
        return _postgres(settings, indexes)
    return EmbeddedState(writable_data_dir(Path(settings.path)))


def writable_data_dir(data_dir: Path) -> Path:
    """``data_dir``, created if missing, once this process may create files in it.

    :raises StorageError: it cannot be created, or not written in (a directory the server's
        user does not own, as /var/lib/proware made by root would be).
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(
            f"cannot create the data directory {data_dir}: {exc.strerror}; create it for "
            "this user, or set [storage] path"
        ) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise StorageError(
            f"the data directory {data_dir} is not writable by this user; give it to the "
            "user that runs Proware, or set [storage] path"
        )
    return data_dir


def _postgres(settings: StorageSettings, indexes: list[Index], *, serving: bool = False) -> Backend:
    # Imported here: psycopg is loaded only by installs that use it.
    from storage.postgres.backend import PostgresBackend

    return PostgresBackend(
        settings.dsn,
        indexes,
        pool_size=settings.pool_size,
        timeout=settings.timeout_seconds,
        serving=serving,
    )


def load_or_create_secret(path: Path) -> bytes:
    """The secret in ``path``, created (mode 0600) if there is none.

    Creation is atomic: the key is written to a temporary file and hard-linked into place,
    so two processes starting at once agree on one key. A key readable by others is made
    private again, with a warning.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as temp:  # mkstemp: mode 0600
            temp.write(secrets.token_hex(SECRET_BYTES) + "\n")
            temp.flush()
            os.fsync(temp.fileno())
        try:
            os.link(temp_name, path)
        except FileExistsError:
            pass  # another process won the race: use its key
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting mode 0600", path, mode)
        os.chmod(path, 0o600)
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except ValueError:  # UnicodeDecodeError too
        key = b""
    if len(key) < SECRET_BYTES:
        # A StorageError, so that serve says this and exits rather than show a traceback.
        raise CorruptStore(
            f"{path} holds no valid session key; delete it and restart to generate a new one "
            "(every admin will have to sign in again)"
        )
    return key
