"""The audit log: provisioning activity events, appended as JSON Lines and rotated by size.

Every SCIM request that changes data and every refused or failed one becomes one event (see
:class:`scim.api.context.Services`). A change's event is committed *with the change* by the
repository (``Transaction.note``) and reaches :meth:`AuditLog.append` after the commit, so the
durable record of "this change happened" is the store's own write. The audit log therefore
appends without an fsync per request: it fsyncs before the store discards journal records
that carry events (the repository's compaction hook), when it rotates, and when it closes,
and in between after every ``sync_every`` bytes, so that none of those fsyncs has megabytes
to write (on ext4 that stalled the journal's fsyncs, and so every write request, beside it).
After a crash, :meth:`AuditLog.catch_up` appends the events the store still holds beyond
the log's newest ``seq``.

Layout in the data directory::

    activity.jsonl        newest events, one JSON object per line
    activity.jsonl.1      the previous file, ... up to activity.jsonl.<backups>

Rotation renames files; a line, once written, is never changed.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from storage.backend import SharedState
from storage.controlfile import delete_gradually, fsync_directory
from storage.errors import DiskFull, PermissionDenied, StorageError, write_failure
from storage.jsontext import utf8_json

log = logging.getLogger("proware.audit")

FILE_NAME = "activity.jsonl"
MAX_BYTES = 5 * 1024 * 1024  # per file
BACKUPS = 5  # rotated files kept besides the current one
SYNC_EVERY = 256 * 1024  # appended bytes between two fdatasyncs

# Given the text of a log file, where the lines that may hold wanted events start
# (AuditLog.newest_first): found in the whole text, no line is looked at one by one.
LineFinder = Callable[[bytes], set[int]]

# Read-write only so that the last byte can be checked (pread) before the first append.
_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT

# Keys an event must never carry into the log, whoever built it (defence in depth: the SCIM
# layer already leaves secrets out of its events).
_SECRET_KEYS = frozenset({"authorization", "password", "secret", "bearer"})


class AuditLog:
    """An append-only JSON Lines file of events, rotated by size.

    Thread-safe: waitress calls :meth:`append` from several threads. The file is opened per
    append (a few microseconds beside the store's fsync'd commit), so no handle outlives a
    call and nothing needs closing for the data to reach the OS.

    :param max_bytes: rotate before a line would make the current file larger than this.
    :param backups: how many rotated files to keep; older ones are deleted.
    :param sync_every: fdatasync after this many appended bytes (one append in about a
        thousand pays for it).
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = MAX_BYTES,
        backups: int = BACKUPS,
        sync_every: int = SYNC_EVERY,
    ) -> None:
        if max_bytes < 1024:
            raise ValueError(f"max_bytes must be at least 1024, not {max_bytes}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.sync_every = sync_every
        self._lock = threading.Lock()
        self._unsynced = 0  # bytes appended since the last sync
        # Whether a file was created since the last sync (its name needs a directory fsync).
        self._new_file = False
        self._tail_checked = False  # whether the file was seen to end with a whole line
        # Appends that failed (disk full, permissions); shown on the activity page.
        self.failures = 0
        self._failing = False  # the last append failed, and that was logged

    # -- writing ---------------------------------------------------------------------------

    def append(self, event: dict) -> None:
        """Write one event as a line; never raises (a failure is logged and counted).

        The change an event describes is already committed when this runs, so failing here
        would turn an acknowledged change into an error response.
        """
        line = encode(event)
        with self._lock:
            try:
                self._append(line)
            except OSError as exc:
                self.failures += 1
                self._log_failure(exc)
            else:
                self._failing = False

    def _log_failure(self, exc: OSError) -> None:
        """A full disk, or a file this user may not open (left root's by a command run
        without ``sudo -u``), is said in one line, once until an append succeeds again:
        every request records an event or two, and a traceback each came to 85,000 lines
        for 4,000 creates refused on a full disk. Any other failure keeps its traceback."""
        if isinstance(exc, PermissionError):
            failure: StorageError = PermissionDenied(self.path, exc)
        else:
            failure = write_failure(self.path, exc)
        if not isinstance(failure, DiskFull | PermissionDenied):
            log.exception("could not append to the audit log %s", self.path)
        elif not self._failing:
            self._failing = True
            log.error(
                "could not append to the audit log: %s; until that is fixed, events are "
                "dropped and counted on the activity page",
                failure,
            )

    def sync(self) -> None:
        """Make every appended event durable (fsync); the repository's compaction hook."""
        with self._lock:
            self._sync()

    def close(self) -> None:
        """Make everything durable before the server stops (the same as :meth:`sync`)."""
        self.sync()

    def _append(self, line: bytes) -> None:
        descriptor = self._open()
        try:
            size = os.fstat(descriptor).st_size
            if size == 0:
                self._new_file = True
            elif size + len(line) > self.max_bytes:
                os.close(descriptor)
                descriptor = -1
                self._rotate()
                descriptor = self._open()
                self._new_file = True
                size = 0
            elif not self._tail_checked and not _ends_with_newline(descriptor, size):
                # A crash cut the last line short: start this event on a line of its own.
                line = b"\n" + line
            try:
                _write_whole(descriptor, line)
            except OSError:
                # Disk full midway: cut the part written away, or the next event would be
                # glued to it and both lines unreadable (failing that, check the tail first).
                self._tail_checked = False
                os.ftruncate(descriptor, size)
                raise
            self._tail_checked = True
            self._unsynced += len(line)
            if self._unsynced >= self.sync_every:
                os.fdatasync(descriptor)
                self._unsynced = 0
        finally:
            if descriptor >= 0:
                os.close(descriptor)

    def _open(self) -> int:
        """The log file opened for appending; its directory is made only if it is missing."""
        try:
            return os.open(self.path, _APPEND_FLAGS, 0o600)
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, _APPEND_FLAGS, 0o600)

    def _sync(self) -> None:
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        self._unsynced = 0
        if self._new_file:
            fsync_directory(self.path.parent)
            self._new_file = False

    def _rotate(self) -> None:
        """Shift activity.jsonl -> .1 -> .2 ...; the oldest beyond ``backups`` is deleted."""
        self._sync()  # a rotated file is never written again: make it whole first
        delete_gradually(rotated_path(self.path, self.backups))  # may be megabytes
        for number in range(self.backups - 1, 0, -1):
            source = rotated_path(self.path, number)
            if source.exists():
                source.rename(rotated_path(self.path, number + 1))
        if self.backups > 0:
            self.path.rename(rotated_path(self.path, 1))
        else:
            self.path.unlink()

    def catch_up(self, committed_after: Callable[[int], list[dict]]) -> int:
        """Append the committed events this log lacks (lost in a crash before a sync).

        :param committed_after: the store's ``recent_events(after_seq)``: events it still
            holds whose ``seq`` is above the newest ``seq`` in this log.
        :returns: how many events were appended.
        """
        missing = committed_after(self.last_seq())
        for event in missing:
            self.append(event)
        if missing:
            self.sync()
        return len(missing)

    def last_seq(self) -> int:
        """The ``seq`` of the newest committed event in the log (0 if there is none)."""
        for event in self.newest_first():
            seq = event.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                return seq
        return 0

    # -- reading ---------------------------------------------------------------------------

    def newest_first(
        self,
        containing: Sequence[str] = (),
        preselect: LineFinder | None = None,
        *,
        about: str | None = None,
        skip: int = 0,
    ) -> Iterator[dict]:
        """Every event still kept, newest first (the current file, then .1, .2, ...).

        ``containing``, ``preselect`` and ``about`` pre-select, sparing the decoding of the
        other lines, for a caller that still tests each event: a detail page looking for one
        user's events read all 84,000 lines kept at the default rotation.

        :param containing: only events whose JSON text holds each of these strings as it is
            (a user's id, ``"delete"`` with its quotes).
        :param preselect: only events on the lines it finds in a file's text (compact JSON
            in UTF-8, as :func:`encode` writes it); it must find every event wanted.
        :param about: only events whose ``id`` is this (a detail page's), as the PostgreSQL
            log selects them on an index.
        :param skip: leave out this many of the newest events selected (the PostgreSQL log
            does not read them; here they are still decoded, unreadable lines being no
            events).
        """
        selected = self._selected(containing, preselect, about)
        yield from itertools.islice(selected, min(skip, 1 << 62), None)  # a page is any size

    def _selected(
        self, containing: Sequence[str], preselect: LineFinder | None, about: str | None
    ) -> Iterator[dict]:
        if about is None:
            yield from read_newest_first(self.path, self.backups, containing, preselect)
            return
        literal = json_literal(about)
        if literal is not None:  # to pick the lines out of the text
            containing = (*containing, '"id":' + literal)
        candidates = read_newest_first(self.path, self.backups, containing, preselect)
        yield from (event for event in candidates if event.get("id") == about)


def activity_log(state: SharedState) -> Any:
    """The activity log of ``state``: the backend's own (PostgreSQL's table), else an
    :class:`AuditLog` file in its data directory. Both have this module's methods."""
    log = state.event_log()
    if log is not None:
        return log
    assert state.data_dir is not None  # a backend without a log of its own has files
    return AuditLog(state.data_dir / FILE_NAME)


def encode(event: dict) -> bytes:
    """One event as a JSON line, without any key that could hold a secret."""
    clean = {key: value for key, value in event.items() if key.lower() not in _SECRET_KEYS}
    return utf8_json(clean, default=str) + b"\n"


def rotated_path(path: Path, number: int) -> Path:
    """The name of the ``number``-th rotated file (``activity.jsonl.1`` is the newest)."""
    return path.with_name(f"{path.name}.{number}")


def log_files(path: Path, backups: int = BACKUPS) -> list[Path]:
    """The files of a log that exist, newest first."""
    candidates = [path] + [rotated_path(path, n) for n in range(1, backups + 1)]
    return [candidate for candidate in candidates if candidate.exists()]


def read_newest_first(
    path: Path,
    backups: int = BACKUPS,
    containing: Sequence[str] = (),
    preselect: LineFinder | None = None,
) -> Iterator[dict]:
    """The events in a log's files, newest first; unreadable lines are skipped."""
    yield from read_files_newest_first(log_files(path, backups), containing, preselect)


def read_files_newest_first(
    files: list[Path], containing: Sequence[str] = (), preselect: LineFinder | None = None
) -> Iterator[dict]:
    """The events in ``files`` (given newest first), newest first; pre-selected with
    ``containing`` and ``preselect`` (see :meth:`AuditLog.newest_first`)."""
    wanted = [text.encode("utf-8") for text in containing if text]
    for file in files:
        try:
            data = file.read_bytes()
        except FileNotFoundError:  # rotated away meanwhile
            continue
        if preselect is not None:
            lines = _lines_at(data, preselect(data), wanted)
        elif wanted:
            lines = _lines_holding(data, wanted)
        else:
            lines = reversed(data.splitlines())
        for line in lines:
            event = decode(line)
            if event is not None:
                yield event


def _lines_at(data: bytes, starts: set[int], wanted: list[bytes]) -> Iterator[bytes]:
    """The lines of ``data`` that start at ``starts`` and hold every one of ``wanted``, last
    first."""
    for start in sorted(starts, reverse=True):
        end = data.find(b"\n", start)
        line = data[start : len(data) if end == -1 else end]
        if all(text in line for text in wanted):
            yield line


def json_literal(value: str) -> str | None:
    """``value`` as a JSON string, if every writer of the log writes it so (printable ASCII
    with no quote or backslash: nothing to escape); None if not."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return None


def line_start(data: bytes, offset: int) -> int:
    """Where the line of ``data`` holding ``offset`` starts."""
    return data.rfind(b"\n", 0, offset) + 1


def _lines_holding(data: bytes, wanted: list[bytes]) -> Iterator[bytes]:
    """The lines of ``data`` that hold every one of ``wanted``, last first: the first string
    is searched for in the whole text (no line is looked at unless it holds it)."""
    first, rest = wanted[0], wanted[1:]
    found = data.rfind(first)
    while found != -1:
        start = line_start(data, found)
        end = data.find(b"\n", found)
        line = data[start : len(data) if end == -1 else end]
        if all(text in line for text in rest):
            yield line
        found = data.rfind(first, 0, start)


def decode(line: bytes) -> dict | None:
    """One line as an event, or None for a blank, cut or foreign line.

    orjson reads a line about five times faster than the standard library, and a filter on
    the activity page that matches little reads every kept line (84,000 at the default
    rotation: 1.8 s with ``json.loads``, 0.35 s with orjson). What orjson refuses and the
    standard library reads (a lone surrogate escape) is read by the standard library.
    """
    if not line.strip():
        return None
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            event = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None
    return event if isinstance(event, dict) else None


def _write_whole(descriptor: int, data: bytes) -> None:
    """Write all of ``data`` (O_APPEND: each write at the end); a disk filling up midway
    makes one write short and the next raise."""
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view) :]


def _ends_with_newline(descriptor: int, size: int) -> bool:
    return os.pread(descriptor, 1, size - 1) == b"\n"
