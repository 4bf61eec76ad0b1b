"""Small JSON files replaced atomically and durably, and the control file built on them.

The control file is one JSON document shared by the running server and the command-line
tools (tokens, the User Provisioning switch). Readers never lock: a writer replaces the whole
file with ``os.replace``, so a reader sees the old content or the new one, never a mix.
Writers take an exclusive ``flock`` on a sibling ``<name>.lock`` file, so two processes
updating at once never lose each other's change.

``write_atomically``, ``read_json`` and ``remove_stray_temp_files`` are also the file layer of
:mod:`storage.tinydb_store`.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from storage.documents import REPAIR, DocumentGuard
from storage.errors import CorruptStore, PermissionDenied, write_failure
from storage.shapes import DocumentShape

T = TypeVar("T")

# What identifies one version of a file without reading it: os.replace gives every write a
# new inode, and the size and modification time catch the rest.
Stamp = tuple[int, int, int]

# ...once the version is older than this. The file system's clock moves in ticks (4 ms on
# ext4 here), and the inode numbers of files replaced in turn come back (two, alternating,
# seen here): a file written twice within one tick can have the inode number, modification
# time and size of the version a reader cached, with other content. A version younger than
# this is read again at each use (as git treats "racily clean" files), for 50 ms after a
# write, which comes at most once a minute on the request path (token uses).
SETTLE_NS = 50_000_000
_clock_ns = time.time_ns  # the wall clock files are stamped by (a test moves it)

_TEMP_SUFFIX = ".tmp"


def write_atomically(
    path: Path, data: bytes | Iterable[bytes], *, sync_every: int = 0, large: bool = False
) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    The bytes go to a temporary file in the same directory (mode 0600: these files hold
    personal data and secrets' hashes), which is flushed and fsync'd, renamed over ``path``,
    and then the directory is fsync'd so the rename itself survives a power cut. ``data``
    may be an iterable of chunks, so a large file is never held in memory whole.

    :param sync_every: flush to disk after about this many bytes (0: only at the end). On
        ext4 another file's fsync waits for this file's dirty pages too, so writing a large
        file in steps keeps a concurrent journal fsync from waiting for all of it.
    :param large: the file replaced is large: free its space with :func:`delete_gradually`
        rather than all at once in the rename.
    :raises DiskFull: no space was left for the new file; the old one is unchanged.
    :raises WriteFailed: another error kept the new file from replacing the old one.
    """
    try:
        descriptor, temp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=_TEMP_SUFFIX, dir=path.parent
        )
    except OSError as exc:
        raise write_failure(path, exc) from exc
    try:
        with os.fdopen(descriptor, "wb", buffering=1 << 16) as temp:
            unsynced = 0
            for chunk in [data] if isinstance(data, bytes) else data:
                temp.write(chunk)
                unsynced += len(chunk)
                if sync_every and unsynced >= sync_every:
                    temp.flush()
                    os.fdatasync(temp.fileno())
                    unsynced = 0
            temp.flush()
            os.fsync(temp.fileno())
        retired = _retire(path) if large else None
        os.replace(temp_name, path)
    except BaseException as exc:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # the old file is as it was
            raise write_failure(path, exc) from exc
        raise
    fsync_directory(path.parent)
    if retired is not None:
        delete_gradually(retired)


def delete_gradually(path: Path, step: int = 1 << 20, pause: float = 0.001) -> None:
    """Delete a large file a piece at a time, truncating it from the end.

    Freeing a big file at once (an unlink, or a rename over it) releases all its blocks in
    one filesystem transaction; on ext4 mounted with ``discard`` that stalled every fsync
    running meanwhile by 4-9 ms (measured: a 35 MB data file and a 17 MB journal segment,
    beside member adds that wait for their journal fsync). A missing file is fine.

    A file with another name (a hard link: ``restore`` keeps the replaced data file in its
    ``.bak`` directory that way, and so may an admin's own snapshot) is only unlinked: its
    blocks stay in use, and truncating would cut the other name's copy short.
    """
    try:
        with open(path, "r+b") as file:
            status = os.fstat(file.fileno())
            size = status.st_size if status.st_nlink == 1 else 0
            while size > step:
                size -= step
                file.truncate(size)
                time.sleep(pause)
    except FileNotFoundError:
        return
    path.unlink(missing_ok=True)


def _retire(path: Path) -> Path | None:
    """Keep the file about to be replaced under a temp name, so the rename frees nothing.

    The name is one :func:`remove_stray_temp_files` removes, should a crash leave it behind.
    """
    retired = path.with_name(f".{path.name}.retired{_TEMP_SUFFIX}")
    retired.unlink(missing_ok=True)
    try:
        os.link(path, retired)
    except FileNotFoundError:
        return None
    return retired


def remove_stray_temp_files(path: Path) -> list[Path]:
    """Delete temporary files an interrupted :func:`write_atomically` left next to ``path``.

    Only safe while no other writer can be working on ``path``.
    :returns: the files removed.
    """
    strays = sorted(path.parent.glob(f".{path.name}.*{_TEMP_SUFFIX}"))
    for stray in strays:
        stray.unlink(missing_ok=True)
    return strays


def read_json(path: Path) -> Any:
    """The JSON value in ``path``, or None if the file does not exist.

    :raises CorruptStore: naming the file and the position of the first error.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_json(path, raw)


def decode_json(path: Path, raw: bytes) -> Any:
    """Decode the bytes read from ``path``.

    :raises CorruptStore: naming the file and the position of the first error.
    """
    if not raw.strip():
        # Atomic writes never leave an empty file, so this is damage, not "no data yet".
        raise CorruptStore(f"{path} is empty; expected a JSON document (restore it from backup)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStore(
            f"{path} is not UTF-8: invalid byte at offset {exc.start}{REPAIR}"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CorruptStore(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}" + REPAIR
        ) from None


def fsync_directory(directory: Path) -> None:
    """Make the creation, renaming or removal of files in ``directory`` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _stamp(status: os.stat_result) -> Stamp:
    return (status.st_mtime_ns, status.st_size, status.st_ino)


def _settled(stamp: Stamp) -> bool:
    """Whether a later write must change ``stamp`` (:data:`SETTLE_NS`)."""
    return _clock_ns() - stamp[0] > SETTLE_NS


class ControlFile:
    """A JSON object on disk that several processes read and update safely.

    A missing file reads as ``{}``. :meth:`read` is cheap enough to call on every request:
    one ``os.stat``, and a re-read only when the file changed (or was written in the last
    :data:`SETTLE_NS`, when a change may not show in its stamp).

    A file that cannot be parsed, or is not of the shape its owner declared (:meth:`declare`),
    after a hand edit while the server runs, makes every :meth:`read`, :meth:`derived` and
    :meth:`update` raise :class:`DamagedDocument` until it is repaired; nothing is written to
    it meanwhile. The shape is checked once a version, when it is read, not on each use. The
    last good content is not used instead: these files say who may do what (tokens,
    revocations, accounts, the provisioning switch), and a stale copy would let a revoked
    token or a removed account in again.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._cache: tuple[Stamp, dict] | None = None
        self._cache_lock = threading.Lock()
        # build function -> (stamp, what it built): see derived().
        self._derived: dict[Callable[[dict], Any], tuple[Stamp | None, Any]] = {}
        self._guard = DocumentGuard(self.path, self.path.name)

    def declare(self, shape: DocumentShape) -> None:
        """Refuse every version not of ``shape`` from now on (:class:`SharedDocument`)."""
        with self._cache_lock:
            if self._guard.declare(shape):  # what was read before was not checked against it
                self._cache = None
                self._derived.clear()

    def stamp(self) -> Stamp | None:
        """What identifies the file's current content (None if there is no file).

        Callers that derive state from :meth:`read` compare stamps to know when to rebuild it.
        """
        try:
            return _stamp(os.stat(self.path))
        except FileNotFoundError:
            return None

    def read(self) -> dict:
        """A copy of the current content, re-read from disk only if the file changed.

        :raises DamagedDocument: if the file is not a JSON object of the declared shape.
        """
        stamp = self.stamp()
        if stamp is None:
            return {}
        with self._cache_lock:
            if self._cache is None or self._cache[0] != stamp or not _settled(stamp):
                loaded = self._load()
                if loaded is None:  # deleted since the stat
                    return {}
                self._cache = loaded
            return copy.deepcopy(self._cache[1])

    def derived(self, build: Callable[[dict], T]) -> T:
        """``build(content)``, built again only when the file changed (or is not settled:
        :data:`SETTLE_NS`): one ``os.stat`` a call.

        For state read on every request (the token index, the provisioning switch), which
        :meth:`read` would deep-copy each time. ``build`` gets a copy of the content; what it
        returns is shared by every caller until the file changes, so treat it as read-only.
        """
        stamp = self.stamp()
        with self._cache_lock:
            known = self._derived.get(build)
            if known is not None and known[0] == stamp and (stamp is None or _settled(stamp)):
                return known[1]
        value = build(self.read() if stamp is not None else {})
        with self._cache_lock:
            self._derived[build] = (stamp, value)
        return value

    def update(self, change: Callable[[dict], None]) -> dict:
        """Apply ``change`` to the latest content and write the result; returns a copy of it.

        Holds the exclusive lock from the re-read to the rename, so concurrent updates (from
        any process) apply one after the other. If ``change`` raises, nothing is written.

        :raises DamagedDocument: if the file is not a JSON object of the declared shape
            (nothing is written).
        """
        with self._exclusive_lock():
            stamp_and_data = self._load()
            data = stamp_and_data[1] if stamp_and_data else {}
            change(data)
            encoded = json.dumps(data, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
            write_atomically(self.path, encoded)
            with self._cache_lock:
                self._cache = (_stamp(os.stat(self.path)), data)
            return copy.deepcopy(data)

    def _load(self) -> tuple[Stamp, dict] | None:
        """Read the file and its stamp from one open file, so the two always agree, and
        refuse a version that is damaged (known damaged: refused unread)."""
        try:
            with open(self.path, "rb") as file:
                stamp = _stamp(os.fstat(file.fileno()))
                was_damaged = self._guard.refuse_if_known(stamp)
                raw = file.read()
        except FileNotFoundError:
            return None
        except PermissionError as exc:  # written by a command run as root: was a 500
            raise PermissionDenied(self.path, exc) from None
        try:
            data = decode_json(self.path, raw)
        except CorruptStore as exc:
            raise self._guard.found(stamp, str(exc)) from None
        self._guard.check(stamp, data, was_damaged)
        return stamp, data

    @contextmanager
    def _exclusive_lock(self) -> Iterator[None]:
        # flock locks belong to the open file description, so this excludes other threads of
        # this process as well as other processes. The lock file is never deleted: removing
        # it would let a waiter lock a file nobody else can see any more.
        try:
            descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except PermissionError as exc:  # left root's: "the write failed", and a traceback
            raise PermissionDenied(self.lock_path, exc) from None
        except OSError as exc:  # a read-only remount refuses even an existing file
            raise write_failure(self.lock_path, exc) from exc
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            # Temp files left by a writer that died can only be cleaned up under the lock.
            remove_stray_temp_files(self.path)
            yield
        finally:
            os.close(descriptor)  # closing releases the flock
