"""A request's transaction that PostgreSQL rolls back for a deadlock or a serialization
failure runs again (storage.retry); one that keeps failing is a 503 that changed nothing.
And a request that waited for a row another process then deleted is answered as if the
deletion came first, not with a 500.

The deadlock is a real one, between a SCIM request and a second connection that takes the
same two rows in the other order. The lasting failure is a real serialization failure
(SQLSTATE 40001) raised by the server itself, from a trigger, on every run.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from flask import Flask

from scim import constants
from server.config import Settings
from storage.retry import ATTEMPTS
from storage.settings import POSTGRESQL
from tests.conftest import ScimClient
from tests.pgserver import empty_database, wait_until_blocked_by
from tests.serverproc import ServerProcess


@pytest.fixture
def backend() -> str:
    return POSTGRESQL


@pytest.fixture
def dsn(settings: Settings) -> str:
    return settings.storage.dsn


@pytest.fixture
def other(dsn: str) -> Iterator[psycopg.Connection]:
    """A second session on the app's database, as another server process would have."""
    with psycopg.connect(dsn) as connection:
        yield connection


def activity_count(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute("SELECT count(*) FROM activity").fetchone()
    assert row is not None
    return row[0]


def operations_since(dsn: str, count: int) -> list[tuple[str, object]]:
    """(operation, status) of the activity events after the first ``count``."""
    with psycopg.connect(dsn, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT event->>'operation', event->'status' FROM activity ORDER BY seq OFFSET %s",
            (count,),
        ).fetchall()
    return [(operation, status) for operation, status in rows]


def test_a_request_that_a_real_deadlock_rolled_back_runs_again_and_succeeds(
    app: Flask,
    scim: ScimClient,
    dsn: str,
    other: psycopg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The member add locks the group, then waits for the user, which the other session
    holds while it asks for the group: PostgreSQL rolls the request back (it waited first,
    so its deadlock check runs first), and its second run goes through."""
    caplog.set_level(logging.INFO, logger="proware.storage")
    user = scim.create_user("ann@contoso.com")
    group = scim.create_group("Sales")
    before = activity_count(dsn)
    # The other session must not be the one PostgreSQL picks: it checks for deadlocks late.
    other.execute("SET deadlock_timeout = '60s'")
    other.execute("SELECT FROM resources WHERE kind = 'User' AND id = %s FOR UPDATE", (user["id"],))
    holder = other.info.backend_pid
    answers: list = []
    request = threading.Thread(
        target=lambda: answers.append(
            scim.patch_ops(
                f"/Groups/{group['id']}",
                {"op": "add", "path": "members", "value": [{"value": user["id"]}]},
            )
        )
    )
    request.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as monitor:
            wait_until_blocked_by(monitor, holder)
        # The other order: blocks until PostgreSQL has rolled the request back.
        other.execute(
            "SELECT FROM resources WHERE kind = 'Group' AND id = %s FOR UPDATE", (group["id"],)
        )
    finally:
        other.commit()
        request.join(60)

    assert [answer.status_code for answer in answers] == [204], answers[0].get_json()
    assert any("deadlock" in message for message in caplog.messages), caplog.messages
    members = scim.get(f"/Groups/{group['id']}").get_json()["members"]
    assert [member["value"] for member in members] == [user["id"]]
    # The rolled-back run's activity event went with it: one "add member", not two.
    assert [operation for operation, _ in operations_since(dsn, before)] == ["add member"]


def test_a_deadlock_retried_by_a_server_process_writes_no_line_of_another_format(
    tmp_path: Path,
) -> None:
    """psycopg warned "error ignored terminating <psycopg.Pipeline [INERROR]>: pipeline
    aborted" as the rolled-back run left its pipeline, in Python's default format among
    Proware's lines, from a worker of ``serve --processes`` too. The retry that follows is
    the news; that warning only repeats it."""
    dsn = empty_database()
    server = ServerProcess(tmp_path / "server", dsn=dsn, processes=2)
    token = server.create_token()
    server.enable_provisioning()
    server.start()
    answers: list[int] = []
    try:
        scim = server.connect(token)
        user = scim.post("/Users", {"schemas": [constants.USER], "userName": "ann@contoso.com"})
        group = scim.post("/Groups", {"schemas": [constants.GROUP], "displayName": "Sales"})
        add = {"op": "add", "path": "members", "value": [{"value": user.body["id"]}]}
        patch = {"schemas": [constants.PATCH_OP], "Operations": [add]}
        with psycopg.connect(dsn) as other:
            # As in the test above: the request waits for the user while holding the group.
            other.execute("SET deadlock_timeout = '60s'")
            other.execute(
                "SELECT FROM resources WHERE kind = 'User' AND id = %s FOR UPDATE",
                (user.body["id"],),
            )
            request = threading.Thread(
                target=lambda: answers.append(
                    scim.patch(f"/Groups/{group.body['id']}", patch).status
                )
            )
            request.start()
            try:
                with psycopg.connect(dsn, autocommit=True) as monitor:
                    wait_until_blocked_by(monitor, other.info.backend_pid)
                other.execute(
                    "SELECT FROM resources WHERE kind = 'Group' AND id = %s FOR UPDATE",
                    (group.body["id"],),
                )
            finally:
                other.commit()
                request.join(60)
        scim.close()
    finally:
        server.stop()
    output = server.log_path.read_text(encoding="utf-8")

    assert answers == [204], output
    assert "pipeline aborted" not in output, output
    # Python's default format ("WARNING:psycopg:...") or waitress's ("WARNING [pid] name: ...").
    foreign = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)[: ]", re.MULTILINE)
    assert foreign.search(output) is None, output


def test_a_lasting_serialization_failure_is_a_503_that_changed_nothing(
    app: Flask, scim: ScimClient, dsn: str
) -> None:
    user = scim.create_user("ann@contoso.com")
    group = scim.create_group("Sales")
    before = activity_count(dsn)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            """
            CREATE SEQUENCE runs;
            CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM nextval('runs');  -- not rolled back: counts every run
                RAISE EXCEPTION 'could not serialize access (test)'
                    USING ERRCODE = 'serialization_failure';
            END $$;
            CREATE TRIGGER refuse BEFORE INSERT ON members
                FOR EACH ROW EXECUTE FUNCTION refuse();
            """
        )

    try:
        response = scim.patch_ops(
            f"/Groups/{group['id']}",
            {"op": "replace", "path": "displayName", "value": "Renamed"},
            {"op": "add", "path": "members", "value": [{"value": user["id"]}]},
        )
        with psycopg.connect(dsn, autocommit=True) as connection:
            runs = connection.execute("SELECT last_value FROM runs").fetchone()
    finally:  # the database is the next test's too, emptied but not dropped
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                "DROP TRIGGER refuse ON members; DROP FUNCTION refuse(); DROP SEQUENCE runs"
            )

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "503"
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert "retry later" in body["detail"]
    assert response.headers["Retry-After"]
    assert runs == (ATTEMPTS,)
    after = scim.get(f"/Groups/{group['id']}").get_json()
    assert after["displayName"] == "Sales"
    assert after.get("members", []) == []
    assert after["meta"]["version"] == group["meta"]["version"]
    # No change event of any run: only the failed request, as every refused one is.
    assert [status for _, status in operations_since(dsn, before)] == [503]


def rename(scim: ScimClient, user: dict, method: str, new_name: str):
    """Entra's rename (a PATCH of ``userName``, entra-provisioning.md A5.2), or Okta's PUT."""
    if method == "PATCH":
        operation = {"op": "Replace", "path": "userName", "value": new_name}
        return scim.patch_ops(f"/Users/{user['id']}", operation)
    return scim.put(f"/Users/{user['id']}", {"userName": new_name})


@contextmanager
def renaming_until_released(
    scim: ScimClient, user: dict, method: str, new_name: str, dsn: str, other: psycopg.Connection
) -> Iterator[list]:
    """Rename ``user`` in a thread and wait until it waits for a lock ``other`` holds; on
    leaving, commit ``other`` and let the rename finish. Yields the list its answer goes to."""
    holder = other.info.backend_pid
    answers: list = []
    request = threading.Thread(target=lambda: answers.append(rename(scim, user, method, new_name)))
    request.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as monitor:
            wait_until_blocked_by(monitor, holder)
        yield answers
    finally:
        other.commit()
        request.join(60)


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_a_user_renamed_while_another_process_deletes_one_of_its_groups_is_renamed(
    app: Flask, scim: ScimClient, dsn: str, other: psycopg.Connection, method: str
) -> None:
    """A rename gives each of the user's groups a new version (their members show its name).
    It lists the groups and locks them: one deleted by another process in between is gone by
    the time the lock is granted, and is passed over (the deletion first, then the rename),
    not a 500."""
    ann = scim.create_user("ann@contoso.com")
    kept = scim.create_group("Sales", [ann["id"]])
    deleted = scim.create_group("Support", [ann["id"]])
    other.execute("DELETE FROM resources WHERE kind = 'Group' AND id = %s", (deleted["id"],))
    # The rename waits for the deleted group.
    with renaming_until_released(scim, ann, method, "ann.new@contoso.com", dsn, other) as answers:
        pass

    assert [answer.status_code for answer in answers] == [200], answers[0].get_json()
    renamed = scim.get(f"/Users/{ann['id']}").get_json()
    assert renamed["userName"] == "ann.new@contoso.com"
    assert [group["value"] for group in renamed["groups"]] == [kept["id"]]
    group = scim.get(f"/Groups/{kept['id']}").get_json()
    assert [member["display"] for member in group["members"]] == ["ann.new@contoso.com"]
    assert group["meta"]["version"] != kept["meta"]["version"]
    assert scim.get(f"/Groups/{deleted['id']}").status_code == 404


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
def test_a_group_the_user_joins_while_its_rename_waits_gets_a_new_version(
    app: Flask, scim: ScimClient, token: str, dsn: str, other: psycopg.Connection, method: str
) -> None:
    """A rename gives each of the user's groups a new version, so the one it joins while the
    rename waits for another group must get one too: a join that commits before the rename
    shows the old name under its version, and the rename then changes what that version
    shows (a cached copy would be a wrong 304, a stale If-Match a write)."""
    ann = scim.create_user("ann@contoso.com")
    sales = scim.create_group("Sales", [ann["id"]])
    support = scim.create_group("Support")
    # Another process holds Sales: the rename has listed ann's groups and waits for it.
    other.execute(
        "SELECT FROM resources WHERE kind = 'Group' AND id = %s FOR NO KEY UPDATE", (sales["id"],)
    )
    renamer = ScimClient(app.test_client(), token)
    new_name = "ann.new@contoso.com"
    with renaming_until_released(renamer, ann, method, new_name, dsn, other) as answers:
        # Entra adds ann to Support meanwhile: the join waits for nothing and commits.
        joined = scim.patch_ops(
            f"/Groups/{support['id']}",
            {"op": "add", "path": "members", "value": [{"value": ann["id"]}]},
        )
        assert joined.status_code == 204, joined.get_json()
        seen = scim.get(f"/Groups/{support['id']}")
        assert [member["display"] for member in seen.get_json()["members"]] == ["ann@contoso.com"]

    assert [answer.status_code for answer in answers] == [200], answers[0].get_json()
    after = scim.get(f"/Groups/{support['id']}", headers={"If-None-Match": seen.headers["ETag"]})
    assert after.status_code == 200
    assert [member["display"] for member in after.get_json()["members"]] == ["ann.new@contoso.com"]
    assert after.headers["ETag"] != seen.headers["ETag"]
    stale = scim.patch_ops(
        f"/Groups/{support['id']}",
        {"op": "replace", "path": "displayName", "value": "Support EU"},
        headers={"If-Match": seen.headers["ETag"]},
    )
    assert stale.status_code == 412


def test_a_rename_waits_for_a_member_add_in_flight_and_renews_that_group(
    app: Flask, scim: ScimClient, dsn: str, other: psycopg.Connection
) -> None:
    """The other order: another process has added the user to a group and not committed
    (it holds the group, and the user as a foreign key check does). The rename waits for it,
    then finds the group among the user's and gives it a new version."""
    ann = scim.create_user("ann@contoso.com")
    support = scim.create_group("Support")
    other.execute(
        "SELECT FROM resources WHERE kind = 'Group' AND id = %s FOR NO KEY UPDATE",
        (support["id"],),
    )
    other.execute(
        "INSERT INTO members (group_id, user_id) VALUES (%s, %s)", (support["id"], ann["id"])
    )
    with renaming_until_released(scim, ann, "PATCH", "ann.new@contoso.com", dsn, other) as answers:
        pass

    assert [answer.status_code for answer in answers] == [200], answers[0].get_json()
    group = scim.get(f"/Groups/{support['id']}").get_json()
    assert [member["display"] for member in group["members"]] == ["ann.new@contoso.com"]
    assert group["meta"]["version"] != support["meta"]["version"]


def test_an_if_match_waiting_for_the_user_is_checked_against_its_groups_names_then(
    app: Flask, scim: ScimClient, token: str, dsn: str, other: psycopg.Connection
) -> None:
    """The mirror case: a user's version covers its groups' names. A PATCH with If-Match that
    waits for the user's row while another process renames one of its groups compares the
    version as it is once the row is its own, not as it was sent: a 412, nothing written."""
    ann = scim.create_user("ann@contoso.com")
    sales = scim.create_group("Sales", [ann["id"]])
    etag = scim.get(f"/Users/{ann['id']}").headers["ETag"]
    other.execute(
        "SELECT FROM resources WHERE kind = 'User' AND id = %s FOR NO KEY UPDATE", (ann["id"],)
    )
    holder = other.info.backend_pid
    patcher = ScimClient(app.test_client(), token)
    answers: list = []
    request = threading.Thread(
        target=lambda: answers.append(
            patcher.patch_ops(
                f"/Users/{ann['id']}",
                {"op": "replace", "path": "displayName", "value": "Ann"},
                headers={"If-Match": etag},
            )
        )
    )
    request.start()
    try:
        with psycopg.connect(dsn, autocommit=True) as monitor:
            wait_until_blocked_by(monitor, holder)
        renamed = scim.patch_ops(
            f"/Groups/{sales['id']}", {"op": "replace", "path": "displayName", "value": "Sales EU"}
        )
        assert renamed.status_code in (200, 204), renamed.get_json()
    finally:
        other.commit()
        request.join(60)

    assert [answer.status_code for answer in answers] == [412], answers[0].get_json()
    after = scim.get(f"/Users/{ann['id']}")
    assert "displayName" not in after.get_json()
    assert [group["display"] for group in after.get_json()["groups"]] == ["Sales EU"]
    assert after.headers["ETag"] != etag
