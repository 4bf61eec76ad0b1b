"""The values a repository stamps on documents: times, ids, versions; copying documents; and
the characters no store holds."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

# U+0000 and the surrogates, which UTF-8 text holds only in pairs: no text means them, JSON
# can spell both ("\\u0000", "\\ud800"), and PostgreSQL stores neither.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_hex_id() -> str:
    """An opaque, unguessable document id (32 hex digits)."""
    return uuid.uuid4().hex


def clone(value: Any) -> Any:
    """A deep copy of a JSON value; several times faster than ``copy.deepcopy``."""
    if isinstance(value, dict):
        return {key: clone(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clone(item) for item in value]
    return value


def timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and "Z", e.g. "2026-11-26T10:54:52.123Z"."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # isoformat is C; strftime formatting took a few microseconds on every write.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def version_tag(number: int) -> str:
    """The weak entity tag for version ``number`` (RFC 7644 §3.14)."""
    return f'W/"{number}"'


def version_number(tag: str) -> int:
    """The counter inside a tag made by :func:`version_tag`."""
    return int(tag[3:-1])
