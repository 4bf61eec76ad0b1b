"""Bookkeeping saves off the request path: on a thread of their own, one at a time.

Token last-use times and the connection status are saved at most once a minute, by the
request that finds the minute up. Each save rewrites a small file with two fsyncs (the file,
then its directory), and both fell due in the same request: measured in-process on an idle
disk, a GET by id took 2.6 ms at the median with both saves against 0.29 ms without, and
beside a busy journal one such save took up to 5.9 ms. The request now only asks for the
save; :class:`BackgroundSave` runs it on a thread of its own, and :class:`PacedSave` asks
for it at most once an interval, and at the end of the interval for what came meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

log = logging.getLogger("proware.storage")


class BackgroundSave:
    """Run ``save`` on a thread of its own when asked, one run at a time.

    Asked while a run is going on, it runs once more right after, so that what changed
    meanwhile is saved too. ``save`` handles its own failures; anything it raises is logged.
    """

    def __init__(self, save: Callable[[], None], name: str) -> None:
        self._save = save
        self._name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False

    def request(self) -> None:
        """Start a run, or another one after the current one; never waits."""
        with self._lock:
            if self._thread is not None:
                self._again = True
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def wait(self) -> None:
        """Return once no run is going on (those asked for meanwhile included)."""
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return
            thread.join()

    def _run(self) -> None:
        while True:
            try:
                self._save()
            except Exception:
                log.exception("%s: the save failed", self._name)
            with self._lock:
                if not self._again:
                    self._thread = None
                    return
                self._again = False


class Timer(Protocol):
    """A call scheduled for later (:class:`threading.Timer`), which can still be called off."""

    def cancel(self) -> None: ...


def start_timer(delay: float, call: Callable[[], None], name: str) -> Timer:
    """Run ``call`` on a thread of its own, named ``name``, after ``delay`` seconds: a daemon,
    so it never holds up the process's exit, where the owner's flush saves what is pending."""
    timer = threading.Timer(delay, call)
    timer.name = name
    timer.daemon = True
    timer.start()
    return timer


class PacedSave:
    """Asks ``saving`` to run at most once an ``interval``: at once when the last save is that
    old, else when the interval is up (a timer), whether or not more asks follow.

    Without the timer, what was noted in the interval after a save waited for the next ask
    after it: with several server processes, one that got no more requests kept it from the
    others indefinitely (a token's last use, Entra's Test Connection in the connection
    status).

    :param schedule: starts a timer (:func:`start_timer`, under the owner's thread name; a
        fake in tests).
    """

    def __init__(
        self,
        saving: BackgroundSave,
        interval: timedelta,
        clock: Callable[[], datetime],
        schedule: Callable[[float, Callable[[], None]], Timer],
    ) -> None:
        self._saving = saving
        self._interval = interval
        self._clock = clock
        self._schedule = schedule
        self._lock = threading.Lock()
        self._saved_at: datetime | None = None
        self._due: Timer | None = None  # the save scheduled for the end of the interval

    def request(self) -> None:
        """Something changed: save now, or when the interval since the last save is up."""
        now = self._clock()
        with self._lock:
            saved_at = self._saved_at
            if saved_at is not None and now - saved_at < self._interval:
                if self._due is None:  # else saved when the interval is up already
                    delay = (saved_at + self._interval - now).total_seconds()
                    self._due = self._schedule(delay, self._when_due)
                return
            self._saved_at = now  # claim this save, so concurrent asks skip it
            due, self._due = self._due, None
        if due is not None:  # late: this save takes its place
            due.cancel()
        self._saving.request()

    def saved(self) -> None:
        """A save ran outside the pacing (a forced one): the interval starts again."""
        with self._lock:
            self._saved_at = self._clock()

    def call_off(self) -> None:
        """Cancel the save scheduled for later (the caller saves now instead)."""
        with self._lock:
            due, self._due = self._due, None
        if due is not None:
            due.cancel()

    def _when_due(self) -> None:
        with self._lock:
            self._due = None
            self._saved_at = self._clock()
        self._saving.request()
