"""Bearer-token authentication, the User Provisioning switch and token scopes, through HTTP."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from scim import constants
from scim.tokens import FILE_NAME as CONTROL_FILE
from scim.tokens import TokenStore
from storage.documents import SharedDocument
from storage.settings import POSTGRESQL
from tests.admin_support import another_process

PREFIX = "/scim/v2"
JWT = (
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9"
    ".eyJpc3MiOiJodHRwczovL3N0cy53aW5kb3dzLm5ldC8ifQ"
    ".c2lnbmF0dXJl"
)


def assert_refused(response, status: int, *fragments: str) -> dict:
    """A SCIM error body; a 401 also carries the Bearer challenge (RFC 6750 §3)."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == constants.SCIM_MEDIA_TYPE
    body = response.get_json()
    assert body["schemas"] == [constants.ERROR]
    assert body["status"] == str(status)
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return body


@pytest.fixture
def control(app: Flask) -> SharedDocument:
    """The control document the app reads tokens and the switch from."""
    return app.extensions["proware.backend"].document(CONTROL_FILE)


def _set_token_field(control: SharedDocument, name: str, key: str, value: str | None) -> None:
    def change(document: dict) -> None:
        for record in document["tokens"]:
            if record["name"] == name:
                record[key] = value

    control.update(change)


def test_a_valid_token_is_accepted(client: FlaskClient, token: str) -> None:
    response = client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200


def test_the_scheme_is_case_insensitive(client: FlaskClient, token: str) -> None:
    """RFC 9110 §11.1: auth-scheme names are case-insensitive."""
    response = client.get(f"{PREFIX}/Users", headers={"Authorization": f"bearer  {token} "})

    assert response.status_code == 200


HEADERS = [
    pytest.param(None, "no Authorization header", id="missing"),
    pytest.param("   ", "no Authorization header", id="blank"),
    pytest.param("Basic YWRtaW46YWRtaW4=", "'Basic' scheme", id="basic-scheme"),
    pytest.param(
        "Basic b2t0YTpzZWNyZXQ=",
        "Proware does not accept; expected 'Bearer <token>' with a token created in Proware's "
        "control panel (in Okta: Authentication Mode 'HTTP Header')",
        id="okta-basic-auth-mode-says-which-mode-to-choose",
    ),
    pytest.param("Bearer", "expected 'Bearer <token>'", id="bearer-without-token"),
    pytest.param("pw_just-the-token", "expected 'Bearer <token>'", id="no-scheme"),
    pytest.param("Bearer pw_not-a-real-token", "not known to this Proware server", id="unknown"),
    pytest.param(f"Bearer {JWT}", "JWT issued by Entra", id="entra-jwt-secret-field-empty"),
]


@pytest.mark.parametrize(("header", "fragment"), HEADERS)
def test_bad_credentials_are_401_saying_which(
    client: FlaskClient, token: str, header: str | None, fragment: str
) -> None:
    headers = {"Authorization": header} if header is not None else {}

    response = client.get(f"{PREFIX}/Users", headers=headers)

    assert_refused(response, 401, fragment)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("{token}", id="token-alone"),
        pytest.param("{token} {token}", id="token-twice"),
        pytest.param("Token {token}", id="token-scheme"),
        pytest.param("Bearer: {token}", id="bearer-colon"),
    ],
)
def test_a_token_sent_without_bearer_is_not_repeated(
    app: Flask, client: FlaskClient, token: str, events: list[dict], header: str
) -> None:
    """The refusal names the header's scheme only when it is a scheme's name: here the first
    word may be the secret, and the detail goes into the response, the activity log and the
    Connection status."""
    response = client.get(f"{PREFIX}/Users", headers={"Authorization": header.format(token=token)})

    assert_refused(response, 401, "expected 'Bearer <token>'")
    assert token not in response.get_data(as_text=True)
    assert token not in json.dumps(events)
    assert token not in repr(app.extensions["proware.admin"].connection.tokens())


def test_a_revoked_token_is_401_naming_it(app: Flask, client: FlaskClient, token: str) -> None:
    app.extensions["proware"].tokens.revoke("entra")

    response = client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {token}"})

    assert_refused(response, 401, "'entra' was revoked")


def test_an_expired_token_is_401_naming_it_and_the_date(
    app: Flask, client: FlaskClient, control: SharedDocument
) -> None:
    services = app.extensions["proware"]
    services.switch.set(True)
    secret, _ = services.tokens.create("old", expires_in_days=1)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    _set_token_field(control, "old", "expires", yesterday.isoformat())

    response = client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {secret}"})

    assert_refused(response, 401, "'old' expired on", yesterday.date().isoformat())


def test_a_token_with_days_left_still_works(app: Flask, client: FlaskClient) -> None:
    services = app.extensions["proware"]
    services.switch.set(True)
    secret, _ = services.tokens.create("fresh", expires_in_days=30)

    response = client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {secret}"})

    assert response.status_code == 200


def test_disabled_provisioning_is_403_saying_so(
    app: Flask, client: FlaskClient, token: str
) -> None:
    app.extensions["proware"].switch.set(False)

    response = client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {token}"})

    assert_refused(response, 403, "User Provisioning is disabled", "provisioning enable")
    assert "WWW-Authenticate" not in response.headers


def test_provisioning_is_disabled_on_a_fresh_install(app: Flask, client: FlaskClient) -> None:
    secret, _ = app.extensions["proware"].tokens.create("entra")

    response = client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {secret}"})

    assert_refused(response, 403, "disabled")


def test_credentials_are_checked_before_the_switch(app: Flask, client: FlaskClient) -> None:
    """A wrong token must say so even while provisioning is off."""
    response = client.get(f"{PREFIX}/Users", headers={"Authorization": "Bearer pw_wrong"})

    assert_refused(response, 401, "not known")


# -- read-only tokens --------------------------------------------------------------------------


@pytest.fixture
def reader(app: Flask, scim, scim_for) -> tuple:
    """A read-only client, and a user and group made by the read-write one."""
    user = scim.create_user("ann")
    group = scim.create_group("Staff", [user["id"]])
    user = scim.get(f"/Users/{user['id']}").get_json()  # now with its groups
    return scim_for(app, name="auditor", read_only=True), user, group


READS = [
    pytest.param("GET", "/Users", None, id="list-users"),
    pytest.param("GET", "/Users/{user}", None, id="get-user"),
    pytest.param("GET", "/Groups/{group}", None, id="get-group"),
    pytest.param("POST", "/Users/.search", {"filter": 'userName eq "ann"'}, id="search-users"),
    pytest.param("POST", "/Groups/.search", {}, id="search-groups"),
    pytest.param("GET", "/ServiceProviderConfig", None, id="config"),
    pytest.param("GET", "/Schemas", None, id="schemas"),
]


@pytest.mark.parametrize(("method", "path", "body"), READS)
def test_a_read_only_token_may_read_and_search(reader, method: str, path: str, body) -> None:
    client, user, group = reader

    response = client.request(method, path.format(user=user["id"], group=group["id"]), body)

    assert response.status_code == 200


WRITES = [
    pytest.param("POST", "/Users", {"userName": "bob"}, id="create-user"),
    pytest.param("PUT", "/Users/{user}", {"userName": "ann"}, id="replace-user"),
    pytest.param(
        "PATCH", "/Users/{user}", {"schemas": [constants.PATCH_OP], "Operations": []}, id="patch"
    ),
    pytest.param("DELETE", "/Users/{user}", None, id="delete-user"),
    pytest.param("POST", "/Groups", {"displayName": "x"}, id="create-group"),
    pytest.param("DELETE", "/Groups/{group}", None, id="delete-group"),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_a_read_only_token_may_not_write(reader, scim, method: str, path: str, body) -> None:
    client, user, group = reader

    response = client.request(method, path.format(user=user["id"], group=group["id"]), body)

    assert_refused(response, 403, "'auditor' is read-only")
    assert scim.get(f"/Users/{user['id']}").get_json() == user
    assert scim.get("/Users").get_json()["totalResults"] == 1
    assert scim.get(f"/Groups/{group['id']}").get_json() == group


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "read-write"])
@pytest.mark.parametrize("path", ["/Users/{user}", "/Groups/{group}"], ids=["user", "group"])
def test_head_reads_a_resource_and_changes_nothing(
    app: Flask, reader, scim, scim_for, path: str, read_only: bool
) -> None:
    """HEAD is a GET without a body: it once fell through to the view's DELETE branch."""
    _, user, group = reader
    client = scim_for(app, name="probe", read_only=read_only)
    target = path.format(user=user["id"], group=group["id"])

    response = client.request("HEAD", target)

    assert response.status_code == 200
    assert response.headers["ETag"] == scim.get(target).get_json()["meta"]["version"]
    assert response.data == b""
    assert scim.get(f"/Users/{user['id']}").get_json() == user
    assert scim.get(f"/Groups/{group['id']}").get_json() == group


# -- what needs a token ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "authorized"),
    [
        pytest.param("/Users", True, id="list"),
        pytest.param("/ServiceProviderConfig", True, id="discovery"),
        pytest.param("/Users/nope", True, id="not-found"),
        pytest.param("/Nothing", True, id="no-route"),
        pytest.param("/Users", False, id="refused"),
    ],
)
def test_scim_answers_are_never_stored_or_sniffed(
    client: FlaskClient, token: str, path: str, authorized: bool
) -> None:
    """Directory data, and details that repeat a client's input (OWASP REST Security)."""
    headers = {"Authorization": f"Bearer {token}"} if authorized else {}

    response = client.get(f"{PREFIX}{path}", headers=headers)

    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_healthz_needs_no_token(client: FlaskClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


SCIM_ROUTES = [
    pytest.param("GET", "/Users", id="users"),
    pytest.param("POST", "/Users", id="create-user"),
    pytest.param("GET", "/Users/some-id", id="user"),
    pytest.param("PATCH", "/Users/some-id", id="patch-user"),
    pytest.param("DELETE", "/Groups/some-id", id="delete-group"),
    pytest.param("POST", "/Groups/.search", id="search"),
    pytest.param("GET", "/ServiceProviderConfig", id="service-provider-config"),
    pytest.param("GET", "/Schemas", id="schemas"),
    pytest.param("GET", f"/Schemas/{constants.USER}", id="schema"),
    pytest.param("GET", "/ResourceTypes", id="resource-types"),
    pytest.param("GET", "/ResourceTypes/User", id="resource-type"),
    pytest.param("GET", "/NoSuchThing", id="unknown-path"),
    pytest.param("GET", "", id="prefix"),
    pytest.param("PUT", "/Users", id="unknown-method"),
]


@pytest.mark.parametrize(("method", "path"), SCIM_ROUTES)
def test_every_scim_route_needs_a_token(client: FlaskClient, method: str, path: str) -> None:
    response = client.open(f"{PREFIX}{path}", method=method)

    assert_refused(response, 401, "no Authorization header")


# -- the CLI and the server share the control file --------------------------------------------


def test_a_new_token_works_at_once_and_a_revoked_one_fails_at_once(
    app: Flask, client: FlaskClient, token: str, backend: str
) -> None:
    """Another TokenStore on the same control document stands for the CLI process (or, on
    PostgreSQL, another server process, which sees the change within a second)."""
    cli = TokenStore(another_process(app, CONTROL_FILE))
    secret, _ = cli.create("second")
    headers = {"Authorization": f"Bearer {secret}"}
    within = 1.0 if backend == POSTGRESQL else 0.0

    before = _first_answer(lambda: client.get(f"{PREFIX}/Users", headers=headers), 200, within)
    cli.revoke("second")
    after = _first_answer(lambda: client.get(f"{PREFIX}/Users", headers=headers), 401, within)

    assert before.status_code == 200
    assert_refused(after, 401, "revoked")


def _first_answer(send, status: int, within: float):
    """The first response with ``status``, asking again for up to ``within`` seconds (0:
    once); any other status is the last answer to a request sent by then.

    Whether the change showed in time is told by when the request was sent, not by when its
    answer came: the test bounded the whole call by ``within`` + 0.1 s, which one request
    on a loaded machine can take."""
    deadline = time.monotonic() + within
    response = send()
    while response.status_code != status and time.monotonic() < deadline:
        time.sleep(0.02)
        response = send()
    return response


def test_a_request_records_when_the_token_was_last_used(
    app: Flask, client: FlaskClient, token: str
) -> None:
    client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {token}"})

    [info] = app.extensions["proware"].tokens.list()
    assert info.last_used is not None


# -- refusals are logged and emitted, never with the secret -----------------------------------


def test_a_refused_request_emits_an_event_with_reason_and_detail(
    app: Flask, client: FlaskClient, token: str, events: list[dict]
) -> None:
    app.extensions["proware"].tokens.revoke("entra")

    client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {token}"})
    client.get(f"{PREFIX}/Nothing", headers={"Authorization": "Bearer pw_guess"})

    assert [(e["operation"], e["reason"], e["status"]) for e in events] == [
        ("refused", "revoked-token", 401),
        ("refused", "unknown-token", 401),
    ]
    assert "'entra' was revoked" in events[0]["detail"]
    assert events[1]["path"] == f"{PREFIX}/Nothing"
    assert token not in json.dumps(events)
    assert "pw_guess" not in json.dumps(events)


def test_a_refused_write_names_the_token_in_its_event(reader, events: list[dict]) -> None:
    client, user, _ = reader

    client.delete(f"/Users/{user['id']}")

    [event] = events
    assert event["reason"] == "read-only-token"
    assert event["token"] == "auditor"
    assert event["method"] == "DELETE"


def test_a_failed_request_emits_a_failed_event(scim, events: list[dict]) -> None:
    scim.post("/Users", {"userName": 5})

    [event] = events
    assert event["operation"] == "failed"
    assert event["status"] == 400
    assert "userName" in event["detail"]
    assert event["token"] == "entra"


def test_the_access_log_shows_refusals_without_the_secret(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="proware.access")

    client.get(f"{PREFIX}/Users", headers={"Authorization": "Bearer pw_secret-guess"})

    [line] = [r.getMessage() for r in caplog.records if r.name == "proware.access"]
    assert '"GET /scim/v2/Users" 401' in line
    assert "token=-" in line
    assert "pw_secret-guess" not in line


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param({}, "no-header", id="no-header"),
        pytest.param({"Authorization": "Bearer pw_guess"}, "unknown-token", id="unknown"),
        pytest.param({"Authorization": "Bearer eyJh.eyJz.sig"}, "jwt", id="jwt"),
    ],
)
def test_the_access_log_says_why_a_request_was_refused(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, headers: dict, reason: str
) -> None:
    """README: when Test Connection fails, the server's access log says why."""
    caplog.set_level("INFO", logger="proware.access")

    client.get(f"{PREFIX}/Users", headers=headers)

    [line] = [r.getMessage() for r in caplog.records if r.name == "proware.access"]
    assert line.endswith(f" reason={reason}")


def test_the_access_log_names_the_switch_when_provisioning_is_off(
    app: Flask, client: FlaskClient, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    app.extensions["proware"].switch.set(False)
    caplog.set_level("INFO", logger="proware.access")

    client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {token}"})
    app.extensions["proware"].switch.set(True)
    client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {token}"})

    refused, served = [r.getMessage() for r in caplog.records if r.name == "proware.access"]
    assert " 403 " in refused and refused.endswith(" reason=provisioning-disabled")
    assert " 200 " in served and "reason=" not in served
