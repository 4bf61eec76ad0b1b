"""Shared documents and secrets in PostgreSQL: what ControlFile promises, across processes.

Two :class:`Database` objects on one database stand for two server processes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

from storage.postgres.connection import Database
from storage.postgres.documents import STAMP_TTL, PostgresDocument, shared_secret
from tests import pgserver


@pytest.fixture
def databases() -> Iterator[tuple[Database, Database]]:
    dsn = pgserver.clean_database()
    first, second = Database(dsn), Database(dsn)
    yield first, second
    first.close()
    second.close()


@pytest.fixture
def database(databases: tuple[Database, Database]) -> Database:
    return databases[0]


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_missing_document_reads_empty_and_has_no_stamp(database: Database) -> None:
    document = PostgresDocument(database, "control.json")

    assert (document.read(), document.stamp()) == ({}, None)
    assert document.path == "PostgreSQL document 'control.json'"


def test_update_writes_and_returns_a_copy_with_a_new_version(database: Database) -> None:
    document = PostgresDocument(database, "control.json")

    returned = document.update(lambda content: content.update(tokens=[1]))
    returned["tokens"].append(2)
    document.update(lambda content: content["tokens"].append(3))

    assert document.read() == {"tokens": [1, 3]}
    assert document.stamp() == 2


def test_a_change_that_raises_writes_nothing_not_even_an_empty_row(database: Database) -> None:
    document = PostgresDocument(database, "control.json")

    def refuse(content: dict) -> None:
        content["half"] = True
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        document.update(refuse)

    assert (document.read(), document.stamp()) == ({}, None)


def test_reads_are_copies(database: Database) -> None:
    document = PostgresDocument(database, "control.json")
    document.update(lambda content: content.update(tokens=[]))

    document.read()["tokens"].append("mine")

    assert document.read() == {"tokens": []}


def test_the_version_is_trusted_for_a_quarter_second_then_read_again(
    databases: tuple[Database, Database],
) -> None:
    ticks = Ticks()
    reader = PostgresDocument(databases[0], "control.json", monotonic=ticks)
    writer = PostgresDocument(databases[1], "control.json")
    writer.update(lambda content: content.update(enabled=False))
    assert reader.read() == {"enabled": False}

    writer.update(lambda content: content.update(enabled=True))
    ticks.now += 0.2
    stale = reader.read()
    ticks.now += 0.1

    assert stale == {"enabled": False}
    assert reader.read() == {"enabled": True}


def test_another_processs_change_shows_within_one_second(
    databases: tuple[Database, Database],
) -> None:
    """As a revoked token or User Provisioning turned off must: what is derived from the
    document is trusted for STAMP_TTL at most, and that is under a second. Timed by the
    test's clock, not the machine's, so that a loaded machine can neither fail it nor hide
    a TTL that is too long."""
    ticks = Ticks()
    reader = PostgresDocument(databases[0], "control.json", monotonic=ticks)
    writer = PostgresDocument(databases[1], "control.json")
    writer.update(lambda content: content.update(enabled=True))
    assert reader.derived(lambda content: content["enabled"]) is True

    writer.update(lambda content: content.update(enabled=False))
    ticks.now += STAMP_TTL

    assert STAMP_TTL < 1.0
    assert reader.derived(lambda content: content["enabled"]) is False


def test_derived_is_built_once_per_version(database: Database) -> None:
    document = PostgresDocument(database, "control.json")
    document.update(lambda content: content.update(tokens=["a"]))
    builds: list[dict] = []

    def build(content: dict) -> int:
        builds.append(content)
        return len(content["tokens"])

    assert [document.derived(build) for _ in range(3)] == [1, 1, 1]
    document.update(lambda content: content["tokens"].append("b"))

    assert document.derived(build) == 2
    assert len(builds) == 2


def test_concurrent_updates_from_two_processes_lose_nothing(
    databases: tuple[Database, Database],
) -> None:
    documents = [PostgresDocument(database, "control.json") for database in databases]
    rounds = 40
    start = threading.Barrier(2)

    def increment(document: PostgresDocument) -> None:
        start.wait()
        for _ in range(rounds):
            document.update(lambda content: content.update(count=content.get("count", 0) + 1))

    workers = [threading.Thread(target=increment, args=(doc,)) for doc in documents]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    # A new reader: each writer may trust its own last version for a quarter second.
    assert PostgresDocument(databases[0], "control.json").read() == {"count": 2 * rounds}


def test_an_update_that_commits_first_but_caches_last_leaves_the_newer_content(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two updates of one process commit in turn but reach the cache in either order: the
    older must not replace the newer, or reads would miss (say) a token just created."""
    ticks = Ticks()  # the version stays trusted for the whole test
    document = PostgresDocument(database, "control.json", monotonic=ticks)
    newer_cached = threading.Event()
    transaction = database.transaction

    @contextlib.contextmanager
    def slow_to_cache_for_the_first_writer():
        with transaction() as connection:
            yield connection
        if threading.current_thread().name == "first":
            newer_cached.wait(timeout=10)  # committed; the second update commits and caches

    monkeypatch.setattr(database, "transaction", slow_to_cache_for_the_first_writer)
    first = threading.Thread(
        target=document.update, args=(lambda content: content.update(a=1),), name="first"
    )
    first.start()
    while PostgresDocument(database, "control.json").stamp() is None:  # not committed yet
        time.sleep(0.01)
    document.update(lambda content: content.update(b=2))
    newer_cached.set()
    first.join()

    assert document.read() == {"a": 1, "b": 2}


def test_a_shared_secret_is_created_once_and_the_same_for_every_process(
    databases: tuple[Database, Database],
) -> None:
    start = threading.Barrier(8)
    seen: list[bytes] = []

    def read(database: Database) -> None:
        start.wait()
        seen.append(shared_secret(database, "session.key"))

    workers = [threading.Thread(target=read, args=(databases[n % 2],)) for n in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(set(seen)) == 1 and len(seen[0]) == 32
    assert shared_secret(databases[0], "other.key") != seen[0]
