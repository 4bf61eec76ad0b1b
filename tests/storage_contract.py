"""What the storage contract suite runs against: every repository, built the same way.

tests/test_repository_contract.py runs the whole contract once per entry of
``IMPLEMENTATIONS``; adding a repository is adding one line there. The clock and id factory
are injected so tests can assert exact ``id`` and ``meta`` values.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from storage.journal import JournalRepository
from storage.memory import MemoryRepository
from storage.postgres.repository import PostgresRepository
from storage.repository import Clock, IdFactory, Index, Repository
from storage.tinydb_store import TinyDBRepository
from tests import pgserver

# The indexes the SCIM service configures (scim/service.py INDEXES).
INDEXES = [
    Index("User", "userName", unique=True, fold=str.casefold),
    Index("User", "externalId"),
    Index("Group", "displayName", unique=True, fold=str.casefold),
    Index("Group", "externalId"),
]

START = datetime(2026, 11, 26, 10, 54, 52, 123456, tzinfo=UTC)
START_STAMP = "2026-11-26T10:54:52.123Z"

# name -> how to open one in a fresh directory
RepositoryFactory = Callable[[Path, Clock, IdFactory], Repository]

IMPLEMENTATIONS: dict[str, RepositoryFactory] = {
    "memory": lambda directory, clock, new_id: MemoryRepository(INDEXES, clock, new_id),
    "tinydb": lambda directory, clock, new_id: TinyDBRepository(
        directory / "proware.json", INDEXES, clock, new_id
    ),
    "journal": lambda directory, clock, new_id: JournalRepository(
        directory / "data", INDEXES, clock, new_id
    ),
    "postgresql": lambda directory, clock, new_id: PostgresRepository(
        pgserver.clean_database(), INDEXES, clock, new_id
    ),
}


class FixedClock:
    """A clock that stands still until the test moves it."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        """Move forward by ``timedelta(**delta)``; returns the new time."""
        self.now += timedelta(**delta)
        return self.now


class CounterIds:
    """An id factory giving "id-1", "id-2", ... (with another prefix for a reopened store)."""

    def __init__(self, prefix: str = "id-") -> None:
        self._prefix = prefix
        self._numbers = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._numbers)}"


def user(user_name: str, **attributes: object) -> dict:
    """A minimal User document."""
    return {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": user_name} | (
        attributes
    )


def group(display_name: str, **attributes: object) -> dict:
    """A minimal Group document."""
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": display_name,
    } | attributes
