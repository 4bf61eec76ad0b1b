"""The open journal segment: ordered appends, and fsyncs that concurrent commits share.

Appends happen under the repository's transaction lock, one record per transaction, so the
file order is the commit order. :meth:`JournalFile.sync` runs outside that lock: a commit
waits for the first fsync that starts after its record was written, and one fsync covers
every record written before it began (group commit), so N threads committing at once cost
about one fsync each round instead of N in a row.

After a failed fsync the file's state is unknown (the kernel may have dropped the dirty
pages and will not report it again), so the journal refuses every later write until the
process restarts and recovery reads what really reached the disk.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from storage.controlfile import fsync_directory
from storage.errors import DiskFull, Unavailable, write_failure
from storage.journal.format import segment_name


class JournalBroken(Unavailable):
    """An earlier write or fsync failed; restart the server to recover from the files."""

    detail = (
        "the directory could not write to its disk and accepts no changes until the server "
        "restarts (the server log says why)"
    )


class JournalFile:
    """Appends records to segment ``generation`` of the journal in ``directory``.

    :param size: bytes already in the segment (after any torn tail was cut away).
    :param seq: the last record already in the journal (durable).
    """

    def __init__(self, directory: Path, generation: int, *, size: int = 0, seq: int = 0) -> None:
        self.directory = directory
        self.generation = generation
        self.size = size
        self._descriptor = self._open(generation)
        self._written_seq = seq  # last record fully written to the file
        self._synced_seq = seq  # last record known durable
        self._sync_lock = threading.Lock()
        self._failure: BaseException | None = None

    @property
    def path(self) -> Path:
        """The segment being appended to."""
        return self.directory / segment_name(self.generation)

    @property
    def synced_seq(self) -> int:
        """The last record known to be on disk."""
        return self._synced_seq

    @property
    def failure(self) -> BaseException | None:
        """The error that broke the journal, if one did."""
        return self._failure

    def append(self, data: bytes, seq: int) -> None:
        """Write record ``seq`` at the end of the segment (not yet durable).

        The caller holds the repository's lock. If the disk is full the partial record is
        cut away again and the journal stays usable: writes succeed again once space is
        freed. Any other failed write (an I/O error, a read-only remount) breaks the
        journal until the server restarts, like a failed fsync.

        :raises DiskFull: no space was left; nothing of the record remains.
        :raises JournalBroken: the write failed otherwise, or the partial record could not
            be cut away.
        """
        self._check()
        start, view = self.size, memoryview(data)
        try:
            while view:
                view = view[os.write(self._descriptor, view) :]
        except BaseException as exc:
            try:
                os.ftruncate(self._descriptor, start)
            except OSError as truncating:
                self._failure = truncating
            if not isinstance(exc, OSError):
                raise
            error = write_failure(self.path, exc)
            if self._failure is None and isinstance(error, DiskFull):
                raise error from exc
            self._failure = self._failure or exc
            raise JournalBroken(
                f"{self.path}: a write failed ({exc.strerror or exc}); no more changes are "
                "accepted until the server restarts"
            ) from exc
        self.size += len(data)
        self._written_seq = seq

    def sync(self, seq: int) -> None:
        """Return once record ``seq`` is durable, sharing fsyncs with concurrent callers.

        :raises JournalBroken: if this or an earlier fsync failed.
        """
        if self._synced_seq >= seq:
            return
        with self._sync_lock:
            if self._synced_seq >= seq:
                return  # another caller's fsync began after our write and covered it
            self._check()
            target = self._written_seq
            try:
                # fdatasync, not fsync: an append needs its data and the new file size on
                # disk, which fdatasync writes too; the timestamps fsync adds are not worth
                # 14 us of CPU and a longer wait per commit (measured on ext4 here).
                os.fdatasync(self._descriptor)
            except BaseException as exc:
                self._failure = exc
                raise JournalBroken(
                    f"{self.path}: fsync failed ({exc}); the last changes may not be on "
                    "disk, so no more are accepted: restart the server"
                ) from exc
            self._synced_seq = target

    def rotate(self, generation: int) -> None:
        """Make everything written durable, then append to a new segment ``generation``.

        The caller holds the repository's lock, so nothing is appended meanwhile.
        """
        with self._sync_lock:
            self._check()
            try:
                os.fsync(self._descriptor)
            except BaseException as exc:
                self._failure = exc
                raise
            self._synced_seq = self._written_seq
            descriptor = self._open(generation)  # failing here leaves the old segment in use
            os.close(self._descriptor)
            self._descriptor, self.generation, self.size = descriptor, generation, 0

    def close(self) -> None:
        """Sync what was written and close the segment (idempotent)."""
        with self._sync_lock:
            if self._descriptor < 0:
                return
            try:
                if self._failure is None:
                    os.fsync(self._descriptor)
                    self._synced_seq = self._written_seq
            finally:
                os.close(self._descriptor)
                self._descriptor = -1

    def _open(self, generation: int) -> int:
        path = self.directory / segment_name(generation)
        existed = path.exists()
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if not existed:
            # The new name must survive a power cut before records in it are acknowledged.
            fsync_directory(self.directory)
        return descriptor

    def _check(self) -> None:
        if self._failure is not None:
            raise JournalBroken(
                f"{self.path}: an earlier write failed ({self._failure}); no more changes are "
                "accepted until the server restarts"
            )
        if self._descriptor < 0:
            raise JournalBroken(f"{self.path}: the journal is closed")
