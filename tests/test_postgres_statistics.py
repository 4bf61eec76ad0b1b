"""The planner's statistics follow the directory as it grows (storage.postgres.statistics).

The plans that matter are those a pooled connection cached while the tables were empty; a
connection of the test's own stands for one, with its plan cached as a generic plan.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import psycopg
import pytest

from storage.postgres import transfer
from storage.postgres.connection import Database
from storage.postgres.reads import FIND_WITH_GROUPS
from storage.postgres.repository import PostgresRepository
from storage.postgres.statistics import TABLES, PlannerStatistics
from tests import pgserver
from tests.storage_contract import INDEXES, group, user


@pytest.fixture
def dsn() -> str:
    """A new database: the reusable one keeps the statistics of the tests before (TRUNCATE
    leaves them), so its tables are never new."""
    return pgserver.empty_database()


@pytest.fixture
def repository(dsn: str) -> Iterator[PostgresRepository]:
    repository = PostgresRepository(dsn, INDEXES)
    yield repository
    repository.close()


def prepare_lookup(connection: psycopg.Connection) -> None:
    """Plan Entra's matching lookup now, once, as a pooled connection keeps it."""
    numbered = iter(range(1, 10))
    statement = re.sub("%s", lambda _: f"${next(numbered)}", FIND_WITH_GROUPS)
    connection.execute("SET plan_cache_mode = force_generic_plan")
    connection.execute(f"PREPARE lookup AS {statement}")
    connection.execute("EXECUTE lookup('userName', 'nobody')")


def indexes_reading_users(connection: psycopg.Connection) -> set[str]:
    """The indexes the cached lookup reads the user (``resources AS r``) through."""
    row = connection.execute("EXPLAIN (FORMAT JSON) EXECUTE lookup('userName', 'user-5')")
    found: set[str] = set()

    def visit(node: dict, under_users: bool) -> None:
        # The scan of r, or the bitmap index scans under it (they name no relation).
        reading_users = node.get("Alias") == "r" or (under_users and "Alias" not in node)
        if reading_users and "Index Name" in node:
            found.add(node["Index Name"])
        for child in node.get("Plans", []):
            visit(child, reading_users)

    visit(row.fetchone()[0][0]["Plan"], False)  # type: ignore[index]
    return found


def fill(repository: PostgresRepository, users: int, groups: int, first: int = 0) -> None:
    """Users ``user-<first>`` on, and groups that share them out between them."""
    ids = []
    for number in range(first, first + users):
        with repository.transaction() as tx:
            ids.append(tx.insert("User", user(f"user-{number}"))["id"])
    for number in range(groups):
        with repository.transaction() as tx:
            group_id = tx.insert("Group", group(f"group-{first}-{number}"))["id"]
            tx.add_members(group_id, ids[number::groups])


def test_a_lookup_planned_on_an_empty_directory_reads_users_by_id_once_it_has_grown(
    repository: PostgresRepository, dsn: str
) -> None:
    """Planned on empty tables, the lookup read every user through the index on insertion
    order; the repository's ANALYZE makes PostgreSQL plan it again, by primary key."""
    repository.statistics = PlannerStatistics(repository.database, check_every=64)
    with psycopg.connect(dsn, autocommit=True) as connection:
        prepare_lookup(connection)
        assert indexes_reading_users(connection) == {"resources_in_order"}

        fill(repository, users=600, groups=20)
        repository.statistics.close()  # waits for a look still under way

        assert indexes_reading_users(connection) == {"resources_pkey"}


def analyze_counts(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT relname, analyze_count FROM pg_stat_user_tables WHERE relname = ANY(%s)",
            (list(TABLES),),
        ).fetchall()
    return dict(rows)


def test_tables_are_analyzed_again_only_once_they_have_doubled(
    repository: PostgresRepository, dsn: str
) -> None:
    statistics = PlannerStatistics(repository.database, check_every=10**9)  # looks on demand
    repository.statistics = statistics
    before = analyze_counts(dsn)
    fill(repository, users=300, groups=3)

    assert statistics.refresh() == ["members", "resource_keys", "resources"]
    assert statistics.refresh() == []  # nothing grew since
    fill(repository, users=30, groups=0, first=300)  # a tenth more: not worth planning again
    assert statistics.refresh() == []
    after = analyze_counts(dsn)
    assert {table: after[table] - before[table] for table in TABLES} == {
        "resources": 1,
        "resource_keys": 1,
        "members": 1,
        "activity": 0,  # nothing noted: still empty
    }


def test_a_look_that_fails_is_logged_and_changes_nothing_else(
    dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(dsn, pool_size=1)
    statistics = PlannerStatistics(database, check_every=1)
    database.close()  # every look now fails

    with caplog.at_level(logging.WARNING, logger="storage.postgres.statistics"):
        statistics.grew(1)
        statistics.close()

    assert "could not refresh the planner's statistics" in caplog.text
    assert "is unavailable" in caplog.text


def test_a_directory_written_whole_is_analyzed(repository: PostgresRepository) -> None:
    """After ``storage migrate`` or a restore, the first requests are planned for the rows."""
    fill(repository, users=50, groups=2)
    snapshot = transfer.snapshot(repository.database)
    target = Database(pgserver.empty_database(), pool_size=1)  # migrated on opening
    try:
        transfer.load(target, INDEXES, snapshot, replace=False)
        with target.connection() as connection:
            analyzed = connection.execute(
                "SELECT relname FROM pg_stat_user_tables "
                "WHERE relname = ANY(%s) AND last_analyze IS NOT NULL ORDER BY relname",
                (list(TABLES),),
            ).fetchall()
    finally:
        target.close()
    assert [name for (name,) in analyzed] == sorted(TABLES)


def group_scans(connection: psycopg.Connection, user_name: str) -> list[str]:
    """How the lookup of ``user_name`` reads its groups (``resources AS g``) in the plan
    PostgreSQL caches for it (a generic plan): each scan's index and index condition."""
    row = connection.execute(f"EXPLAIN (FORMAT JSON) EXECUTE lookup('userName', '{user_name}')")
    found: list[str] = []

    def visit(node: dict) -> None:
        if node.get("Alias") == "g":
            found.append(f"{node.get('Index Name')}: {node.get('Index Cond')}")
        for child in node.get("Plans", []):
            visit(child)

    visit(row.fetchone()[0][0]["Plan"])  # type: ignore[index]
    return found


def test_groups_created_after_the_statistics_are_read_by_primary_key(
    repository: PostgresRepository, dsn: str
) -> None:
    """Entra creates the users, then the groups: statistics taken in between say there are
    no groups, and the plan for a user's groups then read them all, for every lookup."""
    repository.statistics = PlannerStatistics(repository.database, check_every=10**9)
    fill(repository, users=600, groups=0)
    repository.statistics.analyze()  # the statistics know users only
    fill(repository, users=0, groups=40)
    with repository.transaction() as tx:  # user-5 joins every group
        user_ids = tx.find("User", "userName", "user-5")
        for group_id in [document["id"] for document in repository.all("Group")]:
            tx.add_members(group_id, user_ids)
    with psycopg.connect(dsn, autocommit=True) as connection:
        prepare_lookup(connection)
        [scan] = group_scans(connection, "user-5")
    # One probe per membership, not a scan of every group (whose condition is the kind).
    assert scan.startswith("resources_pkey: ") and "(id = members.group_id)" in scan
