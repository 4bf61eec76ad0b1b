"""A database that is unreachable or goes away: storage errors, never psycopg's, and never a
password in a message; and service again once the database is back.

These tests stop and start a server of their own, so the session's server is untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from psycopg.conninfo import conninfo_to_dict

from storage.errors import Unavailable
from storage.postgres.connection import Database, redact_dsn
from storage.postgres.documents import PostgresDocument
from storage.postgres.events import PostgresEventLog
from storage.postgres.repository import PostgresRepository
from tests import pgserver
from tests.external import missing
from tests.storage_contract import INDEXES, user

PASSWORD = "hunter2-secret"

T = TypeVar("T")


@pytest.fixture(scope="module")
def databases() -> Iterator[pgserver.DatabaseFactory]:
    bindir = pgserver.find_bindir()
    if bindir is None:
        missing("PostgreSQL's server is not installed (apt-get install postgresql)")
        raise AssertionError("unreachable")
    started = pgserver.PostgresServer(bindir)
    started.start()
    yield pgserver.DatabaseFactory(started)
    started.stop()


@pytest.fixture
def server(databases: pgserver.DatabaseFactory) -> pgserver.PostgresServer:
    return databases.server


@pytest.fixture
def database(databases: pgserver.DatabaseFactory) -> Iterator[Database]:
    """A new database whose requests give up after one second without a connection, and
    whose pool starts reconnecting afresh two seconds into an outage."""
    opened = Database(databases.create(), checkout_timeout=1.0, reconnect_timeout=2.0)
    yield opened
    opened.close()


def soon(read: Callable[[], T], within: float) -> tuple[T, float]:
    """``read()`` once the database answers again; and how long that took."""
    started = time.monotonic()
    while True:
        try:
            return read(), time.monotonic() - started
        except Unavailable:
            if time.monotonic() - started > within:
                raise


@pytest.fixture
def stopped(server: pgserver.PostgresServer) -> Iterator[None]:
    """The server stopped for the test's body; started again afterwards, whatever happens."""
    server.stop(remove=False)
    yield
    server.start()


# -- DSNs in messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (
            f"host=db.example.com dbname=proware user=app password={PASSWORD}",
            "user=app password=******** dbname=proware host=db.example.com",
        ),
        (
            f"postgresql://app:{PASSWORD}@db.example.com:5433/proware?sslmode=require",
            "user=app password=******** dbname=proware host=db.example.com port=5433 "
            "sslmode=require",
        ),
        ("postgresql://app@db.example.com/proware", "user=app dbname=proware host=db.example.com"),
        (f"host=x password='{PASSWORD}' =broken", "(a connection string that cannot be parsed)"),
    ],
    ids=["key-value", "uri", "no-password", "unparseable"],
)
def test_redact_dsn_never_shows_the_password(dsn: str, shown: str) -> None:
    assert redact_dsn(dsn) == shown


def test_an_unreachable_server_fails_the_open_with_one_line_without_the_password() -> None:
    port = pgserver.free_port()  # nothing listens there
    dsn = f"postgresql://proware:{PASSWORD}@127.0.0.1:{port}/proware"

    with pytest.raises(Unavailable) as raised:
        PostgresRepository(dsn, INDEXES)

    message = str(raised.value)
    assert PASSWORD not in message and "\n" not in message
    assert message.startswith("PostgreSQL at user=proware password=******** dbname=proware ")
    assert "Connection refused" in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_connection_string_that_cannot_be_parsed_is_not_repeated() -> None:
    with pytest.raises(Unavailable) as raised:
        Database(f"host=127.0.0.1 password={PASSWORD} =oops")

    assert PASSWORD not in str(raised.value)
    assert "cannot be parsed" in str(raised.value)


@pytest.mark.parametrize("form", ["key-value", "uri"])
def test_a_database_on_the_same_machine_is_reached_over_its_unix_socket(
    databases: pgserver.DatabaseFactory, form: str
) -> None:
    """What the README recommends for a database beside the server: a directory as host."""
    server = databases.server
    name = conninfo_to_dict(databases.create())["dbname"]
    if form == "uri":
        dsn = f"postgresql:///{name}?host={server.directory}&port={server.port}&user=postgres"
    else:
        dsn = server.dsn(name, unix=True)
    repository = PostgresRepository(dsn, INDEXES)
    try:
        with repository.transaction() as transaction:
            transaction.insert("User", user("ada"))
        assert [found["userName"] for found in repository.all("User")] == ["ada"]
        with repository.database.connection() as connection:
            (peer,) = connection.execute("SELECT inet_client_addr()").fetchone()
        assert peer is None  # no client address: not TCP
    finally:
        repository.close()


# -- the server going away ------------------------------------------------------------------


def test_reads_and_writes_raise_unavailable_while_the_server_is_down_and_work_after(
    server: pgserver.PostgresServer, database: Database
) -> None:
    repository = PostgresRepository(database, INDEXES)
    with repository.transaction() as tx:
        id = tx.insert("User", user("before"))["id"]

    server.stop(remove=False)
    try:
        with pytest.raises(Unavailable, match="is unavailable"):
            repository.get("User", id)
        with pytest.raises(Unavailable), repository.transaction() as tx:
            tx.insert("User", user("during"))
        with pytest.raises(Unavailable):
            list(repository.scan("User"))
        time.sleep(3)  # an outage longer than the pool's reconnect timeout
    finally:
        server.start()

    back, waited = soon(lambda: repository.get("User", id), within=10)
    assert back["userName"] == "before"
    assert waited < 4  # the service is back within seconds of the database
    with repository.transaction() as tx:
        tx.insert("User", user("after"))
    assert [doc["userName"] for doc in repository.all("User")] == ["before", "after"]


def test_a_restarted_server_costs_no_failed_request(
    server: pgserver.PostgresServer, database: Database
) -> None:
    """The pool's connections die with the server; the first request afterwards gets a new
    one instead of an error (check_if_stirred sees the dead socket)."""
    repository = PostgresRepository(database, INDEXES)
    with repository.transaction() as tx:
        id = tx.insert("User", user("before"))["id"]
    assert repository.get("User", id)["userName"] == "before"  # a pooled connection, used

    server.stop(remove=False)
    server.start()

    assert repository.get("User", id)["userName"] == "before"
    with repository.transaction() as tx:
        tx.insert("User", user("after"))
    assert repository.count("User") == 2


def test_losing_the_server_inside_a_transaction_raises_unavailable_and_writes_nothing(
    server: pgserver.PostgresServer, database: Database
) -> None:
    repository = PostgresRepository(database, INDEXES)

    with pytest.raises(Unavailable), repository.transaction() as tx:
        tx.insert("User", user("lost"))
        server.stop(remove=False)
        try:
            tx.insert("User", user("never"))
        finally:
            server.start()

    assert soon(lambda: repository.count("User"), within=10)[0] == 0


def test_unavailable_waits_only_as_long_as_the_checkout_timeout(
    database: Database, stopped: None
) -> None:
    repository = PostgresRepository(database, INDEXES)
    started = time.monotonic()

    with pytest.raises(Unavailable, match="within 1 s"):
        repository.count("User")

    assert time.monotonic() - started < 3


def test_the_event_log_counts_a_failed_append_instead_of_raising(
    database: Database, stopped: None
) -> None:
    log = PostgresEventLog(database)

    log.append({"operation": "refused", "status": 401})

    assert log.failures == 1


def test_a_shared_document_raises_unavailable_while_the_server_is_down(
    database: Database, stopped: None
) -> None:
    with pytest.raises(Unavailable):
        PostgresDocument(database, "control.json").stamp()


def test_the_event_log_gives_up_at_once_on_a_database_just_found_unavailable_then_resumes(
    server: pgserver.PostgresServer, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused request's event is not worth a second wait for a connection before its 503
    (the pool would wait its whole checkout timeout, 1 s); once the database answers again,
    events are written again."""
    log = PostgresEventLog(database)
    asked = []  # the connections asked for while the database was just found unavailable

    def waiting_again() -> None:
        asked.append("connection")
        raise Unavailable("the pool would wait here")

    server.stop(remove=False)
    try:
        with pytest.raises(Unavailable), database.connection() as connection:
            connection.execute("SELECT 1")
        with monkeypatch.context() as patch:
            patch.setattr(database, "connection", waiting_again)
            log.append({"operation": "refused", "status": 503})
    finally:
        server.start()

    assert log.failures == 1
    assert asked == []
    soon(log.last_seq, within=10)
    log.append({"operation": "refused", "status": 401})
    assert log.failures == 1
    assert [event["status"] for event in log.newest_first()] == [401]
