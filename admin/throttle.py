"""The sign-in form's brake: how much CPU one server process gives to password checks.

A password check (scrypt, memory-hard on purpose) costs about 100 ms of CPU, taken from the
threads that answer Entra's SCIM requests, and anyone who can reach ``/admin/sign-in`` can
ask for one: the per-name lockout (:mod:`admin.accounts`) does not slow a client that tries
a new name each time. Measured with 16 connections doing that, a SCIM GET took 1.5-1.7 s
instead of a few milliseconds, on either store. So password checks may take at most
:data:`SHARE` of each second of a process's time, with :data:`BURST_SECONDS` in hand (about
twenty checks, so that a person's retries never meet the brake); an attempt beyond is refused
as busy without a check, and counts against no account. The budget is CPU time, measured:
a cheap hash (as the tests use) costs next to nothing of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SHARE = 0.25
BURST_SECONDS = 2.0


class PasswordChecks:
    """A budget of seconds for password checks, safe to share between a process's threads:
    :meth:`admit` before a check, :meth:`spent` after it."""

    def __init__(
        self,
        share: float = SHARE,
        burst_seconds: float = BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.share = share
        self.burst_seconds = burst_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._seconds = burst_seconds
        self._last = clock()

    def admit(self) -> bool:
        """Whether a password may be checked now: some of the budget is left."""
        with self._lock:
            self._refill()
            return self._seconds > 0.0

    def spent(self, seconds: float) -> None:
        """Take what a check cost (its thread's CPU time) from the budget."""
        with self._lock:
            self._refill()
            self._seconds -= seconds

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._seconds = min(self.burst_seconds, self._seconds + elapsed * self.share)
