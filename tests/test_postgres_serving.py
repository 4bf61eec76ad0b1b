"""A server that lost its share of the database while a restore took it serves nothing until
it holds its share again, then serves the restored directory.

The share is lost as it is in production: PostgreSQL ends the session holding it
(``pg_terminate_backend``, as a network cut or a database restart would). The restore is
``python app.py restore``'s own, run on connections of the test's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from flask import Flask

from scim.service import INDEXES
from server.config import Settings
from storage import transfer
from storage.errors import StorageError
from storage.postgres.serving import APPLICATION_NAME
from storage.postgres.sessions import session_name
from storage.settings import POSTGRESQL
from tests.admin_support import signed_in
from tests.conftest import ScimClient


@pytest.fixture
def backend() -> str:
    return POSTGRESQL


@contextmanager
def restoring(settings: Settings) -> Iterator[None]:
    """Cut the server's share of the database, then hold the database as ``restore`` does.

    The server's watch thread may take its share again between the two (a bounded retry).
    """
    dsn = settings.storage.dsn
    deadline = time.monotonic() + 30
    while True:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                (session_name(APPLICATION_NAME),),
            )
        try:
            with transfer.in_sole_use(settings.storage, "restore"):
                yield
            return
        except StorageError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # the terminated session is still exiting


def serves_again(scim: ScimClient) -> int:
    """The status of a listing once it is no longer a 503 (a bounded wait)."""
    deadline = time.monotonic() + 30
    while True:
        response = scim.get("/Users")
        if response.status_code != 503 or time.monotonic() > deadline:
            return response.status_code
        time.sleep(0.05)


def test_a_server_that_lost_its_share_refuses_everything_until_the_restore_ends(
    app: Flask, scim: ScimClient, settings: Settings
) -> None:
    kept = scim.create_user("kept@contoso.com")
    backup = transfer.read_directory(settings.storage, INDEXES)
    dropped = scim.create_user("dropped@contoso.com")
    panel = signed_in(app)

    with restoring(settings):
        refused = {
            "list": scim.get("/Users"),
            "get": scim.get(f"/Users/{kept['id']}"),
            "create": scim.post("/Users", {"userName": "lost@contoso.com"}),
            "delete": scim.delete(f"/Users/{kept['id']}"),
        }
        page = panel.get("/admin/directory/users")
        health = app.test_client().get("/healthz")
        transfer.write_directory(backup, settings.storage, INDEXES, replace=True)

    for name, response in refused.items():
        assert response.status_code == 503, name
        body = response.get_json()
        assert body["status"] == "503", name
        assert "being restored or migrated" in body["detail"], name
        assert response.headers["Retry-After"], name
    assert page.status_code == 503
    assert "being restored or migrated" in page.get_data(as_text=True)
    assert page.mimetype == "text/html"
    assert health.status_code == 503

    assert serves_again(scim) == 200
    names = [user["userName"] for user in scim.get("/Users").get_json()["Resources"]]
    assert names == ["kept@contoso.com"]  # the restored directory, nothing written meanwhile
    assert scim.get(f"/Users/{dropped['id']}").status_code == 404
    assert panel.get("/admin/directory/users").status_code == 200
    with psycopg.connect(settings.storage.dsn, autocommit=True) as connection:
        holders = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (session_name(APPLICATION_NAME),),
        ).fetchone()
    assert holders == (1,)  # it holds its share again, so the next restore is refused


def test_a_server_whose_share_was_cut_with_nothing_else_holding_it_serves_on(
    app: Flask, scim: ScimClient, settings: Settings
) -> None:
    """The request that finds the share lost takes it again itself, and is answered."""
    with psycopg.connect(settings.storage.dsn, autocommit=True) as connection:
        cut = connection.execute(
            "SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (session_name(APPLICATION_NAME),),
        ).fetchall()
        assert [ended for ended, _ in cut] == [True]
        deadline = time.monotonic() + 30  # until the ended session has gone
        # A row of no columns is (), which is false: the row itself says the session is there.
        while (
            connection.execute(
                "SELECT FROM pg_stat_activity WHERE pid = %s", (cut[0][1],)
            ).fetchone()
            is not None
        ):
            assert time.monotonic() < deadline
            time.sleep(0.01)

        assert scim.get("/Users").status_code == 200
        holders = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (session_name(APPLICATION_NAME),),
        ).fetchone()
    assert holders == (1,)
