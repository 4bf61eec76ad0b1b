"""Provisioning activity: filtering and paging audit events, and their one-line form.

Pure functions over event dicts (as written by :mod:`admin.audit`), shared by the
"Provisioning activity" page and ``python app.py activity tail``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from admin.audit import json_literal, line_start

OUTCOMES = ("success", "refused", "failed")

PAGE_SIZE = 50


@dataclass(frozen=True)
class ActivityFilter:
    """What the activity page's filter form asks for; empty fields match everything."""

    outcome: str = ""
    operation: str = ""
    token: str = ""
    text: str = ""

    def matches(self, event: dict) -> bool:
        """Whether ``event`` passes every filter that is set."""
        if self.outcome and outcome(event) != self.outcome:
            return False
        if self.operation and event.get("operation") != self.operation:
            return False
        if self.token and event.get("token") != self.token:
            return False
        if self.text:
            needle = self.text.casefold()
            haystack = " ".join(
                str(event.get(key) or "")
                for key in ("name", "id", "detail", "path", "request_id", "client", "resourceType")
            )
            if needle not in haystack.casefold():
                return False
        return True

    def containing(self) -> tuple[str, ...]:
        """Text the JSON line of every matching event holds as it is (the operation's and
        the token's quoted values): the log's pre-selection (``AuditLog.newest_first``)."""
        return tuple(
            literal
            for value in (self.operation, self.token)
            if value and (literal := json_literal(value)) is not None
        )

    def preselect(self) -> Preselect | None:
        """Where, in the text of a log file, the lines start whose events this filter may
        match (``admin.audit.AuditLog.newest_first``), found in the whole text at once;
        None when that would be nearly every line. Finding the failures among 84,000 events,
        or a name, decoded every one of them (0.25-0.35 s). The PostgreSQL log selects the
        same rows in SQL.

        Written for the lines ``admin.audit.encode`` writes: compact JSON in UTF-8.
        """
        text = self.text
        # As every writer writes it (json_literal), and without a space (the haystack joins
        # two fields with one).
        if json_literal(text) is None or " " in text:
            text = ""
        if self.outcome not in ("refused", "failed") and not text:
            return None
        return Preselect(
            not_succeeding=self.outcome in ("refused", "failed"), mentioning=text.lower()
        )


@dataclass(frozen=True)
class Preselect:
    """A line finder for ``admin.audit.AuditLog.newest_first``: where the lines start that
    may hold a wanted event, in a file's text; what it looks for is also said in its fields,
    which ``storage.postgres.events.PostgresEventLog`` selects in SQL (a
    ``storage.postgres.events.Preselection``)."""

    not_succeeding: bool = False  # a refused or failed request (see outcome())
    sign_in_refused: bool = False  # with not_succeeding: or a refused sign-in
    mentioning: str = ""  # lowercase printable ASCII, found in any case

    def __call__(self, data: bytes) -> set[int]:
        finders: list[Callable[[bytes], set[int]]] = []
        if self.not_succeeding:
            pattern = _COUNTED_IN_SUMMARY if self.sign_in_refused else _NOT_SUCCESS
            finders.append(partial(_lines_matching, pattern))
        if self.mentioning:
            finders.append(partial(_lines_mentioning, self.mentioning.encode("ascii")))
        if not finders:  # every line
            return {0, *(found.end() for found in re.finditer(rb"\n", data))}
        return set.intersection(*(find(data) for find in finders))


# What a line needs to hold for its event not to be a success (see outcome()): a reason, an
# operation "failed", or a status of 400 and more, or one written as a string.
_NOT_SUCCESS = re.compile(rb'"reason":|"operation":"failed"|"status":(?:"|[4-9]\d\d|\d{4})')
# ... or a refused sign-in (the summary strip counts those apart, whatever their status).
_COUNTED_IN_SUMMARY = re.compile(_NOT_SUCCESS.pattern + rb'|"operation":"sign-in refused"')
_NOT_ASCII = re.compile(rb"[\x80-\xff]")

# What the activity page's summary strip counts: refused or failed requests and refused
# sign-ins.
refusals_and_failures = Preselect(not_succeeding=True, sign_in_refused=True)


def _lines_matching(pattern: re.Pattern[bytes], data: bytes) -> set[int]:
    return {line_start(data, found.start()) for found in pattern.finditer(data)}


def _lines_mentioning(needle: bytes, data: bytes) -> set[int]:
    """The lines holding ``needle`` (lowercase ASCII) in any case, and those with any other
    character than ASCII, which may match once case folded (the Kelvin sign folds to "k")."""
    lowered = data.lower()  # ASCII letters only, so every offset stays where it was
    starts = set()
    found = lowered.find(needle)
    while found != -1:
        starts.add(line_start(data, found))
        found = lowered.find(needle, found + 1)
    if not data.isascii():
        starts.update(line_start(data, found.start()) for found in _NOT_ASCII.finditer(data))
    return starts


@dataclass(frozen=True)
class ActivityPage:
    """One page of matching events, newest first."""

    events: list[dict]
    number: int
    has_next: bool


def outcome(event: dict) -> str:
    """ "success", "refused" (authentication or authorisation, 401/403) or "failed"."""
    status = _status(event)
    if event.get("reason") or status in (401, 403):
        return "refused"
    if status >= 400 or event.get("operation") == "failed":
        return "failed"
    return "success"


def requests_of(event: dict) -> int:
    """How many requests (or sign-ins) the event stands for: a count of a client's repeated
    refusals (:mod:`admin.refusals`) stands for that many, any other event for one."""
    repeated = event.get("repeated")
    if isinstance(repeated, int) and not isinstance(repeated, bool) and repeated > 0:
        return repeated
    return 1


def admin_event(time: datetime, source: str, operation: str, **fields: object) -> dict:
    """An admin event made outside any request (config.toml read at start, the command
    line): no request id, client or signed-in admin; ``source`` says where it came from."""
    return {
        "time": time.isoformat(timespec="milliseconds"),  # as every request event
        "request_id": None,
        "client": None,
        "admin": None,
        "source": source,
        "operation": operation,
        "status": 200,
        **fields,
    }


def from_control_panel(event: dict) -> bool:
    """Whether the event is the control panel's (a sign-in, a setting), not a SCIM request's."""
    return "source" in event  # admin.context.AdminContext.note sets it; SCIM events have none


def page_of(
    events: Iterable[dict],
    wanted: ActivityFilter,
    number: int,
    size: int = PAGE_SIZE,
    skipped: int = 0,
) -> ActivityPage:
    """Page ``number`` (1-based) of the events that match, reading no more than needed.

    :param skipped: how many of the newest matching events ``events`` already leaves out
        (:func:`skippable`).
    """
    number = max(number, 1)
    skip = max((number - 1) * size - skipped, 0)
    found: list[dict] = []
    for event in events:
        if not wanted.matches(event):
            continue
        if skip:
            skip -= 1
            continue
        found.append(event)
        if len(found) > size:
            break
    return ActivityPage(events=found[:size], number=number, has_next=len(found) > size)


def skippable(wanted: ActivityFilter, number: int, size: int = PAGE_SIZE) -> int:
    """How many events the log may leave out unread before page ``number``: those of the
    pages before it when nothing is filtered (every event matches), else none."""
    return (max(number, 1) - 1) * size if wanted == ActivityFilter() else 0


def since(events: Iterable[dict], moment: datetime) -> Iterator[dict]:
    """The events of a newest-first stream down to ``moment`` (stops at the first older one)."""
    for event in events:
        when = event_time(event)
        if when is not None and when < moment:
            return
        yield event


def event_time(event: dict) -> datetime | None:
    """The event's time as an aware datetime (None when missing or malformed)."""
    text = event.get("time")
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on, or that a reader cannot see,
    escaped as Python does (``\\x1b``, ``\\n``, ``\\u202e``): control characters, line and
    paragraph separators, format characters such as bidirectional overrides.

    For what reaches a terminal from stored data: a client-chosen name must not move the
    cursor, recolour the screen or forge a line of its own.
    """
    if text.isprintable():
        return text
    return "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode() for char in text
    )


def describe(event: dict) -> str:
    """One event as one line of text (``python app.py activity tail``), every value from the
    event made :func:`printable`; a detail follows on a line of its own."""

    def value(key: str, default: str = "") -> str:
        found = event.get(key)
        return printable(str(found)) if found not in (None, "") else default

    kind = value("resourceType")
    target = " ".join(part for part in (kind, value("name")) if part)
    if not target:
        target = f"{value('method')} {value('path')}".strip()
    fields = [value("time", "-"), value("status", "-"), value("operation", "-"), target]
    extras = []
    if event.get("id"):
        extras.append(f"id={value('id')}")
    extras.append(f"token={value('token', '-')}")
    extras.append(f"client={value('client', '-')}")
    extras.append(f"request={value('request_id', '-')}")
    if event.get("reason"):
        extras.append(f"reason={value('reason')}")
    if event.get("repeated"):
        extras.append(f"repeated={value('repeated')}")
    line = "  ".join(fields + extras)
    if event.get("detail"):
        line += f"\n    {value('detail')}"
    return line


def _status(event: dict) -> int:
    try:
        return int(event.get("status") or 0)
    except (TypeError, ValueError):
        return 0
