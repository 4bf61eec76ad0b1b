"""Repeated refusals in the activity log: a client's first in full, its repeats counted.

A SCIM request refused for want of a valid token (no header, an unknown, revoked or expired
token: :mod:`scim.api.auth`, waitress's own refusals included) and a refused control panel
sign-in used to write one event each, so a scanner or a misconfigured client retrying every
second pushed the provisioning history out of the log (a file rotated by size, a table
capped at 100,000 events). Now the first refusal of a kind (operation, client address,
reason, status, and the token or username it named) is written in full; its repeats within
:data:`WINDOW` are counted, and the count becomes one event once the window has ended: on a
thread of its own while serving (:meth:`RefusalDigest.write_on_time`), else when the next
refusal or the activity page finds the window ended, and at the latest when the server stops
(:meth:`RefusalDigest.close`).

Memory is bounded: at most :data:`MAX_KINDS` kinds are counted one by one. Refusals of any
other kind meanwhile are folded into one count per operation, written as one event when its
own window ends. Each server process counts its own refusals: with several processes on
PostgreSQL, each may write a client's first refusal and a count of its own.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storage.repository import Clock

Write = Callable[[dict], None]

WINDOW = timedelta(minutes=10)  # how long a client's repeats are counted into one event
MAX_KINDS = 100  # kinds counted one by one; refusals of any other are folded together

# What makes two refusals "the same": who was refused, how, and why. Events carry only
# short values here (an address, a reason, a status, a token's name, a username cut to 200
# characters), so a counted kind holds a few hundred bytes at most.
KEY_FIELDS = ("operation", "source", "client", "reason", "status", "token", "name")

# Folded refusals keep a count per reason; reasons are the code's own words, this is a guard.
_MAX_REASONS = 32


@dataclass
class _Count:
    """The repeats of one kind of refusal since its first, which was written in full."""

    fields: dict  # the KEY_FIELDS the first event had
    write: Write
    started: datetime
    repeats: int = 0
    last: datetime | None = None


@dataclass
class _Folded:
    """Refusals of kinds beyond MAX_KINDS, none of them written, for one operation."""

    fields: dict  # operation, and source for the control panel's
    write: Write
    started: datetime
    count: int = 0
    last: datetime | None = None
    reasons: Counter[str] = field(default_factory=Counter)


class RefusalDigest:
    """Counts a client's repeated refusals and writes each count as one event.

    Thread-safe (waitress offers from several threads); events are written outside the lock.

    :param clock: the current time (aware); windows and the counts' events use it.
    :param window: how long the repeats of a first refusal are counted.
    :param max_kinds: how many kinds are counted one by one at a time.
    """

    def __init__(
        self, *, clock: Clock, window: timedelta = WINDOW, max_kinds: int = MAX_KINDS
    ) -> None:
        self.clock = clock
        self.window = window
        self.max_kinds = max_kinds
        self._lock = threading.Lock()
        # In the order of their first refusal, so also in the order their windows end.
        self._counts: OrderedDict[tuple, _Count] = OrderedDict()
        self._folded: dict[tuple, _Folded] = {}
        self._closed = False
        self._on_time = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def offer(self, event: dict, write: Write) -> None:
        """Write ``event`` with ``write`` if it is the first of its kind in a window, else
        count it; first the counts whose window has ended. Never raises what ``write`` does
        not (the activity log's writers never raise)."""
        now = self.clock()
        with self._lock:
            due = self._take_due(now)
            first = self._closed or self._count(event, write, now)
            if not self._closed:
                self._start_timer()
        _write_all(due)
        if first:
            write(event)

    def flush_due(self) -> int:
        """Write the counts whose window has ended; returns how many events were written."""
        with self._lock:
            due = self._take_due(self.clock())
        _write_all(due)
        return len(due)

    def pending(self) -> int:
        """How many refusals are counted and not written yet."""
        with self._lock:
            return sum(c.repeats for c in self._counts.values()) + sum(
                f.count for f in self._folded.values()
            )

    def pending_apart(self) -> tuple[int, int]:
        """How many refusals are counted and not written yet: (SCIM requests, control panel
        sign-ins), for the activity page's summary strip."""
        with self._lock:
            held = [(c.fields, c.repeats) for c in self._counts.values()]
            held += [(f.fields, f.count) for f in self._folded.values()]
        # The control panel's refusals carry a source (admin.activity.from_control_panel).
        panel = sum(count for fields, count in held if "source" in fields)
        return sum(count for _, count in held) - panel, panel

    def write_on_time(self) -> None:
        """From now on, write each count when its window ends, on a thread of its own (a
        serving process; the thread runs while something is counted)."""
        with self._lock:
            self._on_time = True
            self._start_timer()

    def close(self) -> None:
        """Write every count now, whatever its window, and from now on write every refusal
        as it comes (the server stops: nothing counted may be lost)."""
        self._stop.set()
        with self._lock:
            self._closed = True
            thread = self._thread
            due = self._take_due(None)
        _write_all(due)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # -- under the lock --------------------------------------------------------------------

    def _count(self, event: dict, write: Write, now: datetime) -> bool:
        """Count ``event``; True if it is the first of its kind (to be written in full)."""
        key = _key(event)
        counted = self._counts.get(key)
        if counted is not None:
            counted.repeats += 1
            counted.last = now
            return False
        if len(self._counts) < self.max_kinds:
            fields = {name: event[name] for name in KEY_FIELDS if name in event}
            self._counts[key] = _Count(fields, write, now)
            return True
        kind = (key[0], key[1])
        folded = self._folded.get(kind)
        if folded is None:
            fields = {name: event[name] for name in ("operation", "source") if name in event}
            folded = self._folded[kind] = _Folded(fields, write, now)
        folded.count += 1
        folded.last = now
        reason = str(event.get("reason") or "-")
        if reason in folded.reasons or len(folded.reasons) < _MAX_REASONS:
            folded.reasons[reason] += 1
        else:
            folded.reasons["other"] += 1
        return False

    def _take_due(self, now: datetime | None) -> list[tuple[Write, dict]]:
        """Forget the kinds whose window ended by ``now`` (None: all); their counts' events."""
        ended = None if now is None else now - self.window
        due: list[tuple[Write, dict]] = []
        while self._counts:
            key, counted = next(iter(self._counts.items()))
            if ended is not None and counted.started > ended:
                break
            del self._counts[key]
            if counted.repeats:
                due.append((counted.write, self._count_event(counted)))
        for kind, folded in list(self._folded.items()):
            if ended is None or folded.started <= ended:
                del self._folded[kind]
                due.append((folded.write, self._folded_event(folded)))
        return due

    def _next_end(self) -> datetime | None:
        """When the next window ends (None: nothing is counted)."""
        starts = [folded.started for folded in self._folded.values()]
        if self._counts:
            starts.append(next(iter(self._counts.values())).started)
        return min(starts) + self.window if starts else None

    def _start_timer(self) -> None:
        if not self._on_time or self._thread is not None or self._next_end() is None:
            return
        self._thread = threading.Thread(
            target=self._write_when_due, name="proware-refusal-counts", daemon=True
        )
        self._thread.start()

    # -- the thread ------------------------------------------------------------------------

    def _write_when_due(self) -> None:
        """Sleep until the next window ends, write what is due; end when nothing is counted."""
        while True:
            with self._lock:
                end = self._next_end()
                if end is None or self._closed:
                    self._thread = None
                    return
            delay = (end - self.clock()).total_seconds()
            if delay > 0 and self._stop.wait(delay):
                return  # closed: close() writes what is left
            self.flush_due()

    # -- the events ------------------------------------------------------------------------

    def _count_event(self, counted: _Count) -> dict:
        fields = counted.fields
        what = _what(fields, counted.repeats)
        why = str(fields.get("reason") or "refused").replace("-", " ")
        if fields.get("token"):
            why += f", token {fields['token']!r}"
        if fields.get("name"):
            why += f", username {fields['name']!r}"
        assert counted.last is not None  # a count has at least one repeat
        return {
            **fields,
            "time": self.clock().isoformat(),
            "request_id": None,
            "repeated": counted.repeats,
            "first": counted.started.isoformat(),
            "last": counted.last.isoformat(),
            "detail": (
                f"{counted.repeats} more {what} refused from {fields.get('client') or '-'} "
                f"({why}) {_between(counted.started, counted.last)}, counted rather than "
                "logged one by one"
            ),
        }

    def _folded_event(self, folded: _Folded) -> dict:
        what = _what(folded.fields, folded.count)
        reasons = ", ".join(
            f"{reason.replace('-', ' ')} {count}" for reason, count in folded.reasons.most_common()
        )
        assert folded.last is not None
        return {
            **folded.fields,
            "time": self.clock().isoformat(),
            "request_id": None,
            "client": None,
            "reason": "many-clients",
            "repeated": folded.count,
            "reasons": dict(folded.reasons),
            "first": folded.started.isoformat(),
            "last": folded.last.isoformat(),
            "detail": (
                f"{folded.count} {what} refused from clients beyond the {self.max_kinds} "
                f"counted one by one ({reasons}) {_between(folded.started, folded.last)}; "
                "none of them was logged on its own"
            ),
        }


def _what(fields: dict, count: int) -> str:
    """What was refused, in the number ``count`` takes ("1 more request", "37 more requests")."""
    what = "sign-in" if fields.get("operation") == "sign-in refused" else "request"
    return what if count == 1 else what + "s"


def _between(first: datetime, last: datetime) -> str:
    return f"between {first.astimezone(UTC):%H:%M:%S} and {last.astimezone(UTC):%H:%M:%S} UTC"


def _key(event: dict) -> tuple:
    """The event's KEY_FIELDS as a dictionary key."""
    key: tuple = tuple(map(event.get, KEY_FIELDS))
    try:
        hash(key)
    except TypeError:  # events carry strings, numbers and None here; anything else by repr
        key = tuple(map(repr, key))
    return key


def _write_all(due: list[tuple[Write, dict]]) -> None:
    for write, event in due:
        write(event)
