"""Failed sign-ins of names that are no account, in PostgreSQL: the same count for every
server process, and a table bounded in rows and in time that never holds the names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from flask import Flask

from admin.accounts import LockoutPolicy
from app import create_app
from server.config import Settings
from storage.documents import Unchanged
from storage.postgres.connection import Database
from storage.postgres.failures import PostgresFailureLog
from storage.settings import POSTGRESQL
from tests import pgserver
from tests.admin_support import AdminClient
from tests.storage_contract import START

KEEP = timedelta(minutes=30)


@pytest.fixture
def backend() -> str:
    return POSTGRESQL


@pytest.fixture
def database() -> Iterator[Database]:
    opened = Database(pgserver.clean_database())
    yield opened
    opened.close()


def record(log: PostgresFailureLog, key: str, now: datetime) -> list[datetime]:
    """Add ``now`` to ``key``'s moments; returns the moments the log had for it."""
    seen: list[list[datetime]] = []

    def add(moments: list[datetime]) -> list[datetime]:
        seen.append(moments)
        return [*moments, now]

    log.update(key, add, now=now, keep_for=KEEP)
    return seen[-1]


def stored(database: Database) -> list[tuple[bytes, int]]:
    with database.connection() as connection:
        rows = connection.execute(
            "SELECT digest, cardinality(moments) FROM failures ORDER BY expires"
        ).fetchall()
    return [(bytes(digest), count) for digest, count in rows]


def test_two_processes_see_one_count_per_name(database: Database) -> None:
    first = PostgresFailureLog(database)
    second = PostgresFailureLog(Database(database.pool.conninfo))
    try:
        assert record(first, "mallory", START) == []
        assert record(second, "mallory", START + timedelta(seconds=1)) == [START]
        assert len(record(first, "mallory", START + timedelta(seconds=2))) == 2
    finally:
        second.database.close()


def test_the_table_keeps_at_most_max_keys_and_never_a_name(database: Database) -> None:
    log = PostgresFailureLog(database, max_keys=3)
    for number in range(5):
        record(log, f"guess{number}@contoso.com", START + timedelta(seconds=number))

    rows = stored(database)

    assert len(rows) == 3  # the keys whose failures are oldest were forgotten
    assert all(len(digest) == 32 for digest, _ in rows)
    assert not any(b"contoso" in digest for digest, _ in rows)
    assert record(log, "guess4@contoso.com", START + timedelta(seconds=9)) != []
    assert record(log, "guess0@contoso.com", START + timedelta(seconds=9)) == []


def test_failures_past_their_time_are_forgotten_and_deleted(database: Database) -> None:
    log = PostgresFailureLog(database)
    record(log, "old", START)
    later = START + KEEP + timedelta(seconds=1)

    assert record(log, "old", later) == []  # expired: read as none
    record(log, "new", later + KEEP - timedelta(seconds=1))
    record(log, "newer", later + KEEP + timedelta(seconds=1))  # "old" has expired again

    assert len(stored(database)) == 2


def test_a_change_that_records_nothing_writes_nothing(database: Database) -> None:
    log = PostgresFailureLog(database)

    def unchanged(moments: list[datetime]) -> list[datetime]:
        raise Unchanged

    with pytest.raises(Unchanged):
        log.update("mallory", unchanged, now=START, keep_for=KEEP)

    assert stored(database) == []


def test_two_servers_on_one_database_lock_an_unknown_name_together(
    app: Flask, settings: Settings
) -> None:
    """Five failures in all lock the name, wherever they were sent (not five per server)."""
    other = create_app(settings)
    try:
        clients = [AdminClient(app.test_client()), AdminClient(other.test_client())]
        attempts = LockoutPolicy().max_failures
        statuses = [
            clients[number % 2].sign_in("mallory", f"guess number {number}").status_code
            for number in range(attempts + 2)
        ]
    finally:
        other.extensions["proware.backend"].close()

    # The fifth failure locks it: 401s, then 429 "locked" from both servers.
    assert statuses == [401] * (attempts - 1) + [429] * 3
