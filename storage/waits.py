"""How long each thread has waited for its commits to become durable.

A commit returns only once its change is on disk: after the journal's fdatasync (its own, or
another commit's that covers it), or after PostgreSQL's ``COMMIT``. Each store adds the time
it waited there to :data:`commit_wait` of the thread that waited. The server reads it at a
request's start and end (:mod:`server.requestcost`) to tell the slow requests that waited for
the disk from those that computed. Per thread: a request runs on one thread, and several
threads may commit at once.
"""

from __future__ import annotations

import threading


class CommitWait(threading.local):
    """Seconds this thread has spent waiting for its commits to be durable."""

    seconds: float = 0.0


commit_wait = CommitWait()
