"""What one request cost, measured in the server, and a log line for each slow one.

A request that took long either computed long or waited: for the disk to make its commit
durable, for the garbage collector, for the interpreter's lock or the store's while another
request ran. The client sees only the total. :class:`Meter` reads four clocks at a request's
start and end (app.py), so that a slow request's line says which it was::

    WARNING proware.slow slow request "PATCH /scim/v2/Groups/7c1f…" 204 54.2ms \
        cpu=1.9ms commit=51.3ms gc=0.0ms other=1.0ms token=entra id=3f9a…

(one line; :func:`describe` writes it, :data:`LINE` reads it back, as ``make bench`` does.)

- ``cpu``: the CPU time of the request's thread (``time.thread_time``), the garbage
  collector's passes and the system calls' own CPU time included;
- ``commit``: the time its commits waited, off the CPU, to be durable (:mod:`storage.waits`):
  for fdatasync, or for PostgreSQL's ``COMMIT``;
- ``gc``: the garbage collector's passes that ran on the request's thread (``gc.callbacks``);
  already counted in ``cpu``;
- ``other``: what is left of the wall time, ``wall - cpu - commit``: waiting for the
  interpreter's lock, for the store's lock, for the operating system to schedule the
  process.

Both ends are the request's first and last hooks, so the time waitress takes to read the
request and send the response is outside, as is the wait for a worker thread (which
:mod:`server.httpserver` logs itself).
"""

from __future__ import annotations

import gc
import re
import threading
import time
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Cost:
    """What a request cost, in seconds (see the module docstring)."""

    wall: float
    cpu: float
    commit: float
    gc: float

    @property
    def other(self) -> float:
        """The wall time neither computing nor waiting for a commit: other waits."""
        return max(0.0, self.wall - self.cpu - self.commit)

    def fields(self) -> str:
        """``cpu=1.9ms commit=51.3ms gc=0.0ms other=1.0ms``, for a log line."""
        return (
            f"cpu={self.cpu * 1000:.1f}ms commit={self.commit * 1000:.1f}ms "
            f"gc={self.gc * 1000:.1f}ms other={self.other * 1000:.1f}ms"
        )


@dataclass(frozen=True, slots=True)
class Meter:
    """The clocks of this thread at one moment; a later one minus an earlier is a Cost."""

    wall: float
    cpu: float
    commit: float
    gc: float

    @classmethod
    def now(cls) -> Meter:
        return cls(time.perf_counter(), time.thread_time(), commit_wait.seconds, _gc_clock.seconds)

    def since(self, start: Meter) -> Cost:
        return Cost(
            self.wall - start.wall,
            self.cpu - start.cpu,
            self.commit - start.commit,
            self.gc - start.gc,
        )


def describe(method: str, path: str, status: int, cost: Cost, token: str, request_id: str) -> str:
    """The slow-request log line (module docstring); ``path`` without secrets."""
    return (
        f'slow request "{method} {path}" {status} {cost.wall * 1000:.1f}ms {cost.fields()} '
        f"token={token} id={request_id}"
    )


# A line of :func:`describe`, wherever it is in a log line.
LINE = re.compile(
    r'slow request "(?P<method>\S+) (?P<path>[^"]+)" (?P<status>\d+) (?P<wall>[\d.]+)ms '
    r"cpu=(?P<cpu>[\d.]+)ms commit=(?P<commit>[\d.]+)ms gc=(?P<gc>[\d.]+)ms "
    r"other=(?P<other>[\d.]+)ms token=(?P<token>\S+) id=(?P<id>\S+)"
)
