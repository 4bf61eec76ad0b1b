"""Provisioning activity: filtering and paging audit events, and their one-line form.

Pure functions over event dicts (as written by :mod:`admin.audit`), shared by the
"Provisioning activity" page and ``python app.py activity tail``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

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


def page_of(
    events: Iterable[dict], wanted: ActivityFilter, number: int, size: int = PAGE_SIZE
) -> ActivityPage:
    """Page ``number`` (1-based) of the events that match, reading no more than needed."""
    number = max(number, 1)
    skip = (number - 1) * size
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


def describe(event: dict) -> str:
    """One event as one line of text (``python app.py activity tail``)."""
    status = event.get("status", "-")
    operation = event.get("operation") or "-"
    kind = event.get("resourceType") or ""
    target = " ".join(str(part) for part in (kind, event.get("name") or "") if part)
    if not target:
        target = f"{event.get('method', '')} {event.get('path', '')}".strip()
    fields = [
        str(event.get("time") or "-"),
        str(status),
        operation,
        target,
    ]
    extras = []
    if event.get("id"):
        extras.append(f"id={event['id']}")
    extras.append(f"token={event.get('token') or '-'}")
    extras.append(f"client={event.get('client') or '-'}")
    extras.append(f"request={event.get('request_id') or '-'}")
    if event.get("reason"):
        extras.append(f"reason={event['reason']}")
    line = "  ".join(fields + extras)
    if event.get("detail"):
        line += f"\n    {event['detail']}"
    return line


def _status(event: dict) -> int:
    try:
        return int(event.get("status") or 0)
    except (TypeError, ValueError):
        return 0
