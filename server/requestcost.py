"""What one request cost, measured in the server, and a log line for each slow one.

A request that took long either computed long or waited: behind other requests for its
turn, for the disk to make its commit durable, for the garbage collector, for the
interpreter's lock or the store's while another request ran. The client sees only the
total. :class:`Meter` reads four clocks at a request's start and end (app.py), and the
server notes when the request was queued (server/httpserver.py), so that a slow request's
line says which it was::

    WARNING proware.slow slow request "PATCH /scim/v2/Groups/7c1f…" 204 54.2ms \
        queued=0.0ms cpu=1.9ms commit=51.3ms gc=0.0ms other=1.0ms token=entra id=3f9a…

(one line; :func:`describe` writes it, :data:`LINE` reads it back, as ``make bench`` does.)
The first figure is the total, from the queue to the answer; the parts add up to it:

- ``queued``: the wait from the arrival of the packet that completed the request (the
  kernel's receive timestamp, on Linux; elsewhere from the moment the server queued it) to
  its first hook: behind the requests before it (with one thread, the loop runs one at a
  time and reads the next only after) or for a free worker thread;
- ``cpu``: the CPU time of the request's thread (``time.thread_time``), the garbage
  collector's passes included (and, on Linux, the interrupts the kernel handled meanwhile);
- ``commit``: the time its commits waited, off the CPU, to be durable (:mod:`storage.waits`):
  for fdatasync, or for PostgreSQL's ``COMMIT``;
- ``gc``: the garbage collector's passes that ran on the request's thread (``gc.callbacks``);
  already counted in ``cpu``;
- ``other``: what is left of the time from the first hook to the last, less ``cpu`` and
  ``commit``: waiting for the interpreter's lock, for the store's lock, for the operating
  system to schedule the process.

Sending the answer after the last hook is outside, as is the time a client's packet spends
on the network before it arrives.
"""

from __future__ import annotations

import gc
import re
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

from storage.waits import commit_wait


class _GcClock(threading.local):
    """Seconds the garbage collector has run on this thread, and when its pass began."""

    seconds: float = 0.0
    started: float = 0.0


_gc_clock = _GcClock()


def _on_gc(phase: str, info: dict) -> None:
    # Called on the thread whose allocation started the pass, before and after it.
    if phase == "start":
        _gc_clock.started = time.perf_counter()
    else:
        _gc_clock.seconds += time.perf_counter() - _gc_clock.started


def watch_gc() -> None:
    """Start timing the garbage collector's passes (once per process; idempotent)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


# The WSGI environ key of the time (``time.perf_counter``) the server queued the request
# for its turn (server/httpserver.py); absent when another server runs the app.
QUEUED_AT = "proware.queued_at"


@dataclass(frozen=True, slots=True)
class Cost:
    """What a request cost, in seconds (see the module docstring)."""

    wall: float
    cpu: float
    commit: float
    gc: float
    queued: float = 0.0

    @property
    def total(self) -> float:
        """From the request's arrival in the queue to its answer."""
        return self.queued + self.wall

    @property
    def other(self) -> float:
        """The wall time neither computing nor waiting for a commit: other waits."""
        return max(0.0, self.wall - self.cpu - self.commit)

    def fields(self) -> str:
        """``queued=0.0ms cpu=1.9ms commit=51.3ms gc=0.0ms other=1.0ms``, for a log line."""
        return (
            f"queued={self.queued * 1000:.1f}ms cpu={self.cpu * 1000:.1f}ms "
            f"commit={self.commit * 1000:.1f}ms gc={self.gc * 1000:.1f}ms "
            f"other={self.other * 1000:.1f}ms"
        )


class Meter(NamedTuple):
    """The clocks of this thread at one moment, and when the request was queued (its
    :data:`QUEUED_AT`, if any); a later one minus an earlier is a :class:`Cost`.

    A tuple, read at every request's start and end: it costs 0.6 us to make where a frozen
    dataclass cost 1.0 (timeit).
    """

    wall: float
    cpu: float
    commit: float
    gc: float
    queued_at: float | None = None

    @classmethod
    def now(cls, queued_at: float | None = None) -> Meter:
        return cls(
            time.perf_counter(),
            time.thread_time(),
            commit_wait.seconds,
            _gc_clock.seconds,
            queued_at,
        )

    def queued(self) -> float:
        """How long the request waited before this moment (0: not known)."""
        return 0.0 if self.queued_at is None else max(0.0, self.wall - self.queued_at)

    def elapsed(self) -> float:
        """Seconds from the request's arrival (or this moment) to now: one clock read, to
        tell whether a request was slow before reading the others."""
        return time.perf_counter() - self.wall + self.queued()

    def since(self, start: Meter) -> Cost:
        """What was spent from ``start`` to this moment."""
        return Cost(
            self.wall - start.wall,
            self.cpu - start.cpu,
            self.commit - start.commit,
            self.gc - start.gc,
            start.queued(),
        )


def describe(method: str, path: str, status: int, cost: Cost, token: str, request_id: str) -> str:
    """The slow-request log line (module docstring); ``path`` without secrets."""
    return (
        f'slow request "{method} {path}" {status} {cost.total * 1000:.1f}ms {cost.fields()} '
        f"token={token} id={request_id}"
    )


# A line of :func:`describe`, wherever it is in a log line.
LINE = re.compile(
    r'slow request "(?P<method>\S+) (?P<path>[^"]+)" (?P<status>\d+) (?P<total>[\d.]+)ms '
    r"queued=(?P<queued>[\d.]+)ms cpu=(?P<cpu>[\d.]+)ms commit=(?P<commit>[\d.]+)ms "
    r"gc=(?P<gc>[\d.]+)ms other=(?P<other>[\d.]+)ms token=(?P<token>\S+) id=(?P<id>\S+)"
)
