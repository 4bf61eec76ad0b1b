"""The PostgreSQL schema's migrations: applied once, in order, by one process at a time."""

from __future__ import annotations

import threading

import psycopg
import pytest

from storage.errors import CorruptStore
from storage.postgres.connection import Database
from storage.postgres.migrations import LATEST, MIGRATIONS, Migration, apply_migrations
from tests import pgserver

NEXT = Migration(LATEST + 1, "a column for the test", "ALTER TABLE documents ADD COLUMN note text")


@pytest.fixture
def dsn() -> str:
    """A database without even Proware's schema."""
    return pgserver.empty_database()


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True)


def recorded(dsn: str) -> list[tuple[int, str]]:
    with connect(dsn) as connection:
        rows = connection.execute(
            "SELECT version, name FROM proware_schema_migrations ORDER BY version"
        )
        return [(version, name) for version, name in rows]


def tables(dsn: str) -> set[str]:
    with connect(dsn) as connection:
        rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {name for (name,) in rows}


def test_a_fresh_database_gets_every_migration_recorded(dsn: str) -> None:
    with connect(dsn) as connection:
        assert apply_migrations(connection) == [migration.number for migration in MIGRATIONS]

    assert recorded(dsn) == [(migration.number, migration.name) for migration in MIGRATIONS]
    assert {"resources", "resource_keys", "members", "activity", "documents", "secrets"} <= (
        tables(dsn)
    )


def test_applying_twice_changes_nothing(dsn: str) -> None:
    with connect(dsn) as connection:
        apply_migrations(connection)
        assert apply_migrations(connection) == []

    assert len(recorded(dsn)) == len(MIGRATIONS)


def test_a_later_migration_is_applied_alone_and_in_order(dsn: str) -> None:
    with connect(dsn) as connection:
        apply_migrations(connection)
        assert apply_migrations(connection, [NEXT, *MIGRATIONS]) == [NEXT.number]

    assert recorded(dsn)[-1] == (NEXT.number, NEXT.name)


def test_two_processes_starting_at_once_apply_each_migration_once(dsn: str) -> None:
    """The advisory lock makes the second wait, then find everything recorded."""
    start = threading.Barrier(2)
    applied: list[list[int]] = []
    failures: list[BaseException] = []

    def open_and_migrate() -> None:
        try:
            with connect(dsn) as connection:
                start.wait()
                applied.append(apply_migrations(connection))
        except BaseException as error:  # reported by the assertion below
            failures.append(error)

    workers = [threading.Thread(target=open_and_migrate) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert failures == []
    assert sorted(applied) == [[], [migration.number for migration in MIGRATIONS]]
    assert len(recorded(dsn)) == len(MIGRATIONS)


def test_a_failing_migration_leaves_the_schema_as_it_was(dsn: str) -> None:
    broken = Migration(LATEST + 1, "broken", "CREATE TABLE half (a int); SELECT 1 / 0")
    with connect(dsn) as connection:
        apply_migrations(connection)
        with pytest.raises(psycopg.errors.DivisionByZero):
            apply_migrations(connection, [*MIGRATIONS, broken])

    assert "half" not in tables(dsn)
    assert len(recorded(dsn)) == len(MIGRATIONS)


def test_a_database_newer_than_the_code_is_refused_and_left_unchanged(dsn: str) -> None:
    with connect(dsn) as connection:
        apply_migrations(connection, [*MIGRATIONS, NEXT])

    with pytest.raises(CorruptStore) as raised:
        Database(dsn)

    message = str(raised.value)
    assert f"schema is at version {NEXT.number}" in message
    assert f"knows versions up to {LATEST}" in message
    assert recorded(dsn)[-1] == (NEXT.number, NEXT.name)


def test_a_newer_database_names_a_way_back_this_version_can_take(dsn: str) -> None:
    """Not a restore into it, which this version refuses too, but a copy out and into a new
    database."""
    with connect(dsn) as connection:
        apply_migrations(connection, [*MIGRATIONS, NEXT])

    with pytest.raises(CorruptStore) as raised:
        Database(dsn)

    message = str(raised.value)
    assert "restore" not in message.replace("restore into it", "")
    assert "storage migrate --to DIRECTORY" in message
    assert "into a new, empty database with this one" in message
