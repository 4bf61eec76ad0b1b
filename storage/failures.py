"""Failed attempts per key, kept a while and bounded: the sign-in lockout of names that are
no account.

A real account's failures live with the account (a shared document); a name that is no
account has no record to keep them in, and writing each name tried into a document would let
anyone grow it without end. A :class:`FailureLog` keeps, per key, the moments of its recent
failures, for a bounded time and for a bounded number of keys:
:class:`MemoryFailureLog` in the process (the embedded store: one server process), and
:class:`storage.postgres.failures.PostgresFailureLog` in the database, so every server
process of an install counts the same failures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

# Keys kept at most: past that the ones whose failures are oldest are forgotten. An attacker
# who tries this many names (each costing a password hash) may free a name's count early.
MAX_KEYS = 10_000
# Moments kept per key at most, whatever the caller returns.
MAX_MOMENTS = 32

Change = Callable[[list[datetime]], list[datetime]]


class FailureLog(Protocol):
    """The recent failures of each key, shared by every process that serves one install."""

    def update(self, key: str, change: Change, *, now: datetime, keep_for: timedelta) -> None:
        """Replace the key's moments by ``change(moments)``, every other update of that key
        waiting meanwhile (in any process); a key whose newest moment is older than
        ``keep_for`` reads as none. If ``change`` raises (:class:`storage.documents.Unchanged`
        when it has nothing to record), nothing is stored.
        """
        ...


class MemoryFailureLog:
    """A :class:`FailureLog` in this process's memory (the embedded store's one process).

    :param max_keys: keys kept at most (the oldest are forgotten first).
    """

    def __init__(self, *, max_keys: int = MAX_KEYS) -> None:
        self._max_keys = max_keys
        self._moments: dict[str, tuple[datetime, list[datetime]]] = {}  # key -> (expires, ...)
        self._lock = threading.Lock()

    def update(self, key: str, change: Change, *, now: datetime, keep_for: timedelta) -> None:
        with self._lock:
            expires, moments = self._moments.get(key, (now, []))
            recorded = change(list(moments) if expires > now else [])[-MAX_MOMENTS:]
            self._moments.pop(key, None)
            self._moments[key] = (max(recorded, default=now) + keep_for, recorded)
            if len(self._moments) > self._max_keys:
                self._forget_oldest(now)

    def _forget_oldest(self, now: datetime) -> None:
        """Drop expired keys, then the oldest updated while still too many (hold the lock)."""
        for key in [key for key, (expires, _) in self._moments.items() if expires <= now]:
            del self._moments[key]
        while len(self._moments) > self._max_keys:
            del self._moments[next(iter(self._moments))]  # dicts keep insertion order
