"""One process owns a data directory: an exclusive ``flock`` on ``<data_dir>/proware.lock``.

Two servers writing one journal would interleave records and each compact away the other's
changes, so the second one must fail at once, saying who holds the directory. The lock is
taken without waiting, belongs to the open file (so it also excludes a second store in the
same process) and vanishes with the process, even after ``kill -9``: a stale lock file
never blocks a restart. The control file (tokens) has its own lock, so operator commands
keep working while a server runs.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from storage.errors import PermissionDenied, StoreLocked

LOCK_FILE = "proware.lock"


class DataDirLock:
    """The exclusive hold on one data directory, released by :meth:`release` or process exit.

    :raises StoreLocked: if another process (or another store in this one) holds it.
    :raises PermissionDenied: if this user may not open the lock file.
    """

    def __init__(self, data_dir: Path, *, purpose: str = "server") -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / LOCK_FILE
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError as exc:  # a lock file root left (`restore` without `sudo -u`)
            raise PermissionDenied(self.path, exc) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            raise StoreLocked(
                f"data directory {self.data_dir} is in use by another Proware server "
                f"(pid {holder or 'unknown'}); stop it first"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        # Who holds it, for the message above and for operators: "<pid> <purpose>".
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()} {purpose}\n".encode(), 0)
        self._descriptor: int | None = descriptor

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._descriptor is not None

    def release(self) -> None:
        """Give the directory up (idempotent). The lock file stays: see ControlFile's lock."""
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing releases the flock
            self._descriptor = None


def _read_pid(descriptor: int) -> int | None:
    try:
        return int(os.pread(descriptor, 64, 0).split()[0])
    except (IndexError, ValueError, OSError):
        return None
