"""How long each thread has waited for its commits to become durable.

A commit returns only once its change is on disk: after the journal's fdatasync (its own, or
another commit's that covers it), or after PostgreSQL's ``COMMIT``. Each store adds the time
it waited there, off the CPU, to :data:`commit_wait` of the thread that waited: the wall time
less the thread's own CPU time meanwhile (the system call's), which the thread's CPU clock
already counts. The server reads it at a request's start and end (:mod:`server.requestcost`)
to tell the slow requests that waited for the disk from those that computed. Per thread: a
request runs on one thread, and several threads may commit at once.
"""

from __future__ import annotations

import threading
import time


class CommitWait(threading.local):
    """Seconds this thread has spent waiting for its commits to be durable."""

    seconds: float = 0.0


commit_wait = CommitWait()


def clocks() -> tuple[float, float]:
    """Now, on the wall clock and on this thread's CPU clock: where a wait starts."""
    return time.perf_counter(), time.thread_time()


def add_wait(started: tuple[float, float]) -> None:
    """Add to this thread's wait the time since ``started`` (:func:`clocks`) it did not
    spend computing."""
    wall, cpu = started
    commit_wait.seconds += max(0.0, time.perf_counter() - wall - (time.thread_time() - cpu))
