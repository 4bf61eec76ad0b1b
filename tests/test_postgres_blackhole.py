"""A database that goes silent (a network cut, a firewall dropping packets, a paused VM):
requests answer 503 within ``[storage] timeout_seconds``, and the serving lock notices its
connection is dead, instead of both waiting for the kernel's fifteen minutes.

The silence is real: every packet on the link to PostgreSQL is dropped (tests/blackhole.py),
so no socket is closed and no error comes back. Each test mends the link at the end, which
also frees a call still waiting on it.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from flask import Flask
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app import create_app
from server.config import Settings
from storage.errors import StorageError
from storage.postgres.connection import Database
from storage.postgres.serving import ServingLock
from tests import pgserver
from tests.blackhole import BlackholeLink, open_link
from tests.conftest import ScimClient

T = TypeVar("T")

TIMEOUT = 3  # [storage] timeout_seconds in these tests
# How long a test waits for what must happen within about TIMEOUT (twice that for the
# serving lock: its loss, then a reconnection that times out): generous on a loaded
# machine, and far below the kernel's fifteen minutes.
BOUND = 15.0


@pytest.fixture
def link() -> Iterator[BlackholeLink]:
    factory = pgserver.session_server()
    opened = open_link(factory.server.port)
    yield opened
    opened.close()


def over(link: BlackholeLink, dsn: str) -> str:
    """``dsn`` reaching its database through ``link``."""
    return make_conninfo(dsn, host=link.host, port=link.port)


def within(seconds: float, call: Callable[[], T]) -> tuple[T | BaseException, float]:
    """What ``call()`` returned or raised, and how long it took; fails if it takes longer
    than ``seconds`` (the call is left waiting; mending the link frees it)."""
    outcome: list[T | BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            outcome.append(error)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still waiting for the silent database after {seconds:g} s")
    return outcome[0], time.monotonic() - started


@pytest.fixture
def app(link: BlackholeLink, tmp_path: Path) -> Iterator[Flask]:
    """A serving app whose database is reached over the link."""
    dsn = over(link, pgserver.fresh_database())
    settings = Settings(source="test")
    storage = replace(
        settings.storage, backend="postgresql", dsn=dsn, path=tmp_path, timeout_seconds=TIMEOUT
    )
    app = create_app(replace(settings, storage=storage))
    app.config["TESTING"] = True
    yield app
    link.mend()  # frees a request still waiting, so the close does not wait for it
    app.extensions["proware"].tokens.flush()
    app.extensions["proware.backend"].close()


def test_requests_to_a_silent_database_answer_503_within_the_timeout(
    link: BlackholeLink, scim: ScimClient
) -> None:
    kept = scim.create_user("kept@contoso.com")

    link.cut()
    answers = [within(BOUND, lambda: scim.get(f"/Users/{kept['id']}")) for _ in range(3)]

    for response, waited in answers:
        assert not isinstance(response, BaseException), response
        assert response.status_code == 503, response.get_json()
        assert response.headers["Retry-After"]
        assert response.get_json()["status"] == "503"
        # One wait of about TIMEOUT (a statement, a connection, or the serving lock's
        # reconnection); not a second one to log the refusal in the activity table.
        assert waited < 2 * TIMEOUT
    link.mend()
    deadline = time.monotonic() + 30
    while (response := scim.get(f"/Users/{kept['id']}")).status_code == 503:
        assert time.monotonic() < deadline, "the server did not serve again once mended"
        time.sleep(0.1)
    assert response.status_code == 200


def test_the_serving_lock_notices_its_silent_connection_without_a_query(
    link: BlackholeLink,
) -> None:
    """Its watch thread is told never to look: only the connection's keepalives can tell."""
    database = Database(over(link, pgserver.fresh_database()), timeout=TIMEOUT)
    lock = ServingLock(database, check_interval=3600)
    try:
        lock.check()

        link.cut()
        deadline = time.monotonic() + BOUND
        refused = None
        while refused is None and time.monotonic() < deadline:
            try:
                lock.check()
            except StorageError as error:
                refused = error
            time.sleep(0.1)

        assert refused is not None, f"the lock still looked held {BOUND:g} s into the silence"
        assert "does not hold its share" in str(refused)
    finally:
        link.mend()
        lock.release()
        database.close()


def test_an_idle_connection_to_a_silent_database_is_dropped_within_the_timeout(
    link: BlackholeLink,
) -> None:
    """What the serving lock relies on: a quiet connection's keepalives go unanswered, and
    the kernel ends it, so its socket reports the error to whoever looks."""
    database = Database(over(link, pgserver.fresh_database()), timeout=TIMEOUT)
    connection = database.connect("idle")
    try:
        link.cut()

        outcome, waited = within(BOUND, lambda: _wait_readable(connection))

        assert outcome is None and waited < BOUND
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
    finally:
        link.mend()
        connection.close()
        database.close()


def _wait_readable(connection: psycopg.Connection) -> None:
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    poller.poll()


def test_options_the_dsn_sets_itself_are_kept() -> None:
    dsn = pgserver.clean_database() + " keepalives_idle=30 tcp_user_timeout=60000"
    database = Database(dsn, timeout=TIMEOUT)
    try:
        with database.connection() as connection:
            options = conninfo_to_dict(connection.info.dsn)
    finally:
        database.close()

    assert options["keepalives_idle"] == "30"
    assert options["tcp_user_timeout"] == "60000"
    assert options["keepalives"] == "1"
    assert options["connect_timeout"] == str(TIMEOUT)
