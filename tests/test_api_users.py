"""/Users through HTTP: create, read, replace, patch, delete, uniqueness, password, events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from scim import constants
from server.config import ServerSettings, Settings, StorageSettings
from storage.journal.snapshot import DATA_FILE
from storage.settings import POSTGRESQL

ENTERPRISE = constants.ENTERPRISE_USER
PREFIX = "/scim/v2"
SCIM_JSON = constants.SCIM_MEDIA_TYPE


def test_create_user_answers_201_with_location_etag_and_meta(scim) -> None:
    response = scim.post("/Users", {"userName": "ann", "name": {"givenName": "Ann"}})

    assert response.status_code == 201
    assert response.mimetype == SCIM_JSON
    body = response.get_json()
    assert body["userName"] == "ann"
    assert body["name"] == {"givenName": "Ann"}
    assert body["schemas"] == [constants.USER]
    meta = body["meta"]
    assert meta["resourceType"] == "User"
    assert meta["created"] == meta["lastModified"]
    assert response.headers["Location"] == meta["location"]
    assert meta["location"] == f"http://localhost{PREFIX}/Users/{body['id']}"
    assert response.headers["ETag"] == meta["version"]


def test_create_user_ignores_client_supplied_id_and_meta(scim) -> None:
    """Entra's POST carries meta.resourceType; a legacy body may carry an id (A3, A8)."""
    body = scim.create_user("ann", id="mine", meta={"resourceType": "User", "version": "x"})

    assert body["id"] != "mine"
    assert body["meta"]["version"] != "x"


def test_create_user_accepts_entras_documented_body(scim) -> None:
    """entra-provisioning.md A3: string "True", roles: [], the enterprise extension."""
    payload = {
        "schemas": [constants.USER, ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_00aa00aa",
        "active": "True",
        "emails": [{"primary": True, "type": "work", "value": "test@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "f", "givenName": "g"},
        "roles": [],
        ENTERPRISE: {"department": "Sales"},
    }

    response = scim.post("/Users", payload)

    assert response.status_code == 201
    body = response.get_json()
    assert body["active"] is True
    assert body[ENTERPRISE] == {"department": "Sales"}
    assert body["emails"] == payload["emails"]
    assert body["name"] == payload["name"]


def test_get_user_by_id_returns_what_create_returned(scim) -> None:
    created = scim.create_user("ann", displayName="Ann A")

    response = scim.get(f"/Users/{created['id']}")

    assert response.status_code == 200
    assert response.get_json() == created
    assert response.headers["ETag"] == created["meta"]["version"]


@pytest.mark.parametrize(
    ("method", "body"),
    [
        pytest.param("GET", None, id="get"),
        pytest.param("PUT", {"userName": "x"}, id="put"),
        pytest.param("PATCH", {"schemas": [constants.PATCH_OP], "Operations": []}, id="patch"),
        pytest.param("DELETE", None, id="delete"),
    ],
)
def test_unknown_user_id_is_404_naming_it(scim, method: str, body: dict | None) -> None:
    response = scim.request(method, "/Users/no-such-id", body)

    assert response.status_code == 404
    assert "'no-such-id'" in response.get_json()["detail"]


def test_put_replaces_the_whole_user(scim) -> None:
    created = scim.create_user("ann", displayName="Ann", title="Engineer")

    response = scim.put(f"/Users/{created['id']}", {"userName": "ann", "displayName": "Ann B"})

    assert response.status_code == 200
    body = response.get_json()
    assert body["displayName"] == "Ann B"
    assert "title" not in body  # RFC 7644 §3.5.1: attributes left out are cleared
    assert body["meta"]["created"] == created["meta"]["created"]
    assert body["meta"]["version"] != created["meta"]["version"]


def test_put_ignores_read_only_attributes_and_takes_the_id_from_the_url(
    scim,
) -> None:
    created = scim.create_user("ann")
    other = scim.create_user("bob")

    response = scim.put(
        f"/Users/{created['id']}",
        {
            "id": other["id"],
            "userName": "ann",
            "meta": {"created": "2000-01-01T00:00:00Z", "version": 'W/"999"'},
            "groups": [{"value": "some-group"}],
        },
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == created["id"]
    assert body["meta"]["created"] == created["meta"]["created"]
    assert "groups" not in body
    assert scim.get(f"/Users/{other['id']}").get_json() == other


WRITE_PROJECTIONS = [
    pytest.param({"attributes": "userName,title"}, {"userName", "title"}, id="attributes"),
    pytest.param(
        {"excludedAttributes": f"title,meta,{ENTERPRISE}:department"},
        {"userName", "displayName", "active"},
        id="excluded",
    ),
    pytest.param({"attributes": ENTERPRISE}, {ENTERPRISE}, id="extension-urn"),
]
WRITTEN = {
    "userName": "ann",
    "displayName": "Ann",
    "title": "Boss",
    "active": True,
    ENTERPRISE: {"department": "Ops"},
}


@pytest.mark.parametrize(("projection", "kept"), WRITE_PROJECTIONS)
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_post_and_put_answer_the_representation_asked_for(
    scim, method: str, projection: dict, kept: set[str]
) -> None:
    """RFC 7644 §3.9: attributes/excludedAttributes on any operation that returns a
    resource; the Location and ETag headers still come with it."""
    path = "/Users"
    if method == "PUT":
        path = f"/Users/{scim.create_user('ann')['id']}"

    response = scim.request(method, path, WRITTEN, query_string=projection)

    assert response.status_code == (201 if method == "POST" else 200)
    body = response.get_json()
    assert set(body) - {"schemas", "id"} == kept
    stored = scim.get(f"/Users/{body['id']}").get_json()
    assert response.headers["ETag"] == stored["meta"]["version"]
    if method == "POST":
        assert response.headers["Location"] == stored["meta"]["location"]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_bad_projection_on_a_write_is_400_and_writes_nothing(scim, method: str) -> None:
    ann = scim.create_user("ann")
    path = "/Users" if method == "POST" else f"/Users/{ann['id']}"

    response = scim.request(
        method, path, {"userName": "bob"}, query_string={"attributes": "emails[type"}
    )

    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    listed = scim.get("/Users").get_json()
    assert [user["userName"] for user in listed["Resources"]] == ["ann"]


def test_patch_user_answers_200_with_the_updated_resource(scim) -> None:
    """entra-provisioning.md A5: the PATCH response is the full resource."""
    created = scim.create_user("ann", emails=[{"value": "a@x", "type": "work", "primary": True}])

    response = scim.patch_ops(
        f"/Users/{created['id']}",
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@x"},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Retail"},
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["emails"] == [{"value": "new@x", "type": "work", "primary": True}]
    assert body[ENTERPRISE] == {"department": "Retail"}
    assert response.headers["ETag"] == body["meta"]["version"]
    assert scim.get(f"/Users/{created['id']}").get_json() == body


def test_patch_user_can_disable_and_reenable_with_string_booleans(scim) -> None:
    """entra-provisioning.md A6, Q2, Q12: "False" disables; the user stays readable."""
    created = scim.create_user("ann", active=True)

    disabled = scim.patch_ops(
        f"/Users/{created['id']}", {"op": "Replace", "path": "active", "value": "False"}
    )
    read_back = scim.get(f"/Users/{created['id']}")
    enabled = scim.patch_ops(
        f"/Users/{created['id']}", {"op": "replace", "value": {"active": True}}
    )

    assert disabled.get_json()["active"] is False
    assert read_back.get_json()["active"] is False
    assert enabled.get_json()["active"] is True


ATOMIC_FAILURES = [
    pytest.param(
        {"op": "replace", "path": "userName", "value": 5},
        400,
        "invalidValue",
        id="wrong-type",
    ),
    pytest.param(
        {"op": "replace", "path": "emails[type eq", "value": "x"},
        400,
        "invalidPath",
        id="malformed-path",
    ),
    pytest.param(
        {"op": "remove", "path": "userName"},
        400,
        None,
        id="remove-required-attribute",
    ),
    pytest.param(
        {"op": "replace", "path": "userName", "value": "BOB"},
        409,
        "uniqueness",
        id="taken-user-name",
    ),
    pytest.param(
        {"op": "replace", "path": "id", "value": "mine"}, 400, "mutability", id="read-only-id"
    ),
    pytest.param(
        {"op": "add", "path": "groups", "value": [{"value": "g"}]},
        400,
        "mutability",
        id="read-only-groups",
    ),
]


@pytest.mark.parametrize(("failing", "status", "scim_type"), ATOMIC_FAILURES)
def test_patch_is_atomic_when_a_later_operation_fails(
    scim, failing: dict, status: int, scim_type: str | None
) -> None:
    """RFC 7644 §3.5.2: if one operation fails, none is applied."""
    created = scim.create_user("ann", displayName="Ann")
    scim.create_user("bob")
    before = scim.get(f"/Users/{created['id']}").get_json()

    response = scim.patch_ops(
        f"/Users/{created['id']}",
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "add", "path": "title", "value": "Boss"},
        failing,
    )

    assert response.status_code == status
    if scim_type:
        assert response.get_json()["scimType"] == scim_type
    after = scim.get(f"/Users/{created['id']}")
    assert after.get_json() == before
    assert after.headers["ETag"] == before["meta"]["version"]


def test_patch_with_no_operations_is_a_no_op(scim, events: list[dict]) -> None:
    """entra-provisioning.md Q21: the validator sends "Operations": [] and expects success."""
    created = scim.create_user("ann")
    events.clear()

    response = scim.patch_ops(f"/Users/{created['id']}")

    assert response.status_code == 200
    assert response.get_json()["meta"]["version"] == created["meta"]["version"]
    assert events == []


@pytest.mark.parametrize("path", ["", " "])
def test_a_patch_with_an_empty_path_is_one_without_a_path(scim, path: str) -> None:
    """A serializer that writes an unset optional string sends "path": ""; it means the
    resource itself, as an omitted path does (RFC 7644 §3.5.2), for add and replace, and a
    remove without a target is 400 noTarget (§3.5.2.2) either way."""
    created = scim.create_user("ann")
    user_path = f"/Users/{created['id']}"

    replaced = scim.patch_ops(
        user_path,
        {"op": "replace", "path": path, "value": {"title": "Boss", "name.givenName": "Ann"}},
    )
    added = scim.patch_ops(user_path, {"op": "add", "path": path, "value": {"nickName": "Annie"}})
    removed = scim.patch_ops(user_path, {"op": "remove", "path": path})

    assert replaced.status_code == 200 and added.status_code == 200
    after = added.get_json()
    assert (after["title"], after["name"]["givenName"], after["nickName"]) == (
        "Boss",
        "Ann",
        "Annie",
    )
    assert removed.status_code == 400
    assert removed.get_json()["scimType"] == "noTarget"
    assert removed.get_json()["detail"].startswith("Operations[0]: remove needs a path")
    assert scim.get(user_path).get_json() == after


def test_patch_skips_unknown_attributes_and_applies_the_rest(scim) -> None:
    """entra-provisioning.md Q22: one unmapped attribute must not fail the batch."""
    created = scim.create_user("ann")

    response = scim.patch_ops(
        f"/Users/{created['id']}",
        {"op": "replace", "path": "favouriteColour", "value": "green"},
        {"op": "replace", "path": "title", "value": "Boss"},
    )

    assert response.status_code == 200
    assert response.get_json()["title"] == "Boss"
    assert "favouriteColour" not in response.get_json()


# -- primary: true at most once (RFC 7643 §2.4) -----------------------------------------------

TWO_PRIMARY_EMAILS = [
    {"value": "a@x", "type": "work", "primary": True},
    {"value": "b@x", "type": "home", "primary": "True"},  # Entra's string boolean too (Q2)
]


def _refuses_two_primaries(
    response, name: str = "emails", marked: str = "[0], [1]", where: str = ""
) -> None:
    """A 400 invalidValue naming the attribute and the values marked primary (and, for a
    PATCH, the operation: ``where``)."""
    assert response.status_code == 400
    body = response.get_json()
    assert body["scimType"] == "invalidValue"
    first, second = marked.split(", ")
    assert body["detail"].startswith(
        f"{where}{name}: primary is true on more than one value ({name}{first}, {name}{second})"
    )


def test_a_post_with_two_primary_values_is_400_naming_the_attribute(scim) -> None:
    response = scim.post("/Users", {"userName": "ann", "emails": TWO_PRIMARY_EMAILS})

    _refuses_two_primaries(response)
    assert scim.get("/Users").get_json()["totalResults"] == 0


def test_a_put_with_two_primary_values_is_400_and_changes_nothing(scim) -> None:
    created = scim.create_user("ann")

    response = scim.put(
        f"/Users/{created['id']}",
        {
            "userName": "ann",
            "phoneNumbers": [{"value": "1", "primary": True}, {"value": "2", "primary": True}],
        },
    )

    _refuses_two_primaries(response, "phoneNumbers")
    assert scim.get(f"/Users/{created['id']}").get_json() == created


# An add appends after the stored value, whose primary the new ones clear (RFC 7644 §3.5.2).
@pytest.mark.parametrize(("op", "marked"), [("replace", "[0], [1]"), ("add", "[1], [2]")])
def test_a_patch_writing_a_list_with_two_primary_values_is_400(scim, op: str, marked: str) -> None:
    created = scim.create_user("ann", emails=[{"value": "old@x", "primary": True}])

    response = scim.patch_ops(
        f"/Users/{created['id']}", {"op": op, "path": "emails", "value": TWO_PRIMARY_EMAILS}
    )

    _refuses_two_primaries(response, marked=marked, where="Operations[0]: ")
    assert scim.get(f"/Users/{created['id']}").get_json() == created


def test_a_patch_making_one_value_primary_still_clears_the_others(scim) -> None:
    """RFC 7644 §3.5.2: a PATCH that sets primary on one value unsets it on the rest."""
    created = scim.create_user(
        "ann",
        emails=[
            {"value": "a@x", "type": "work", "primary": True},
            {"value": "b@x", "type": "home"},
        ],
    )

    response = scim.patch_ops(
        f"/Users/{created['id']}",
        {"op": "replace", "path": 'emails[type eq "home"].primary', "value": True},
    )

    assert response.status_code == 200
    assert [email.get("primary") for email in response.get_json()["emails"]] == [False, True]


def test_a_patch_leaving_a_stored_double_primary_alone_is_applied(scim, app: Flask) -> None:
    """A value stored before the rule existed must not refuse every later PATCH (Q22)."""
    created = scim.create_user("ann")
    repository = app.extensions["proware"].repository
    with repository.transaction() as tx:
        stored = tx.get(constants.USER_TYPE, created["id"])
        stored["emails"] = [{"value": "a@x", "primary": True}, {"value": "b@x", "primary": True}]
        tx.replace(constants.USER_TYPE, created["id"], stored)

    response = scim.patch_ops(
        f"/Users/{created['id']}", {"op": "replace", "path": "title", "value": "Boss"}
    )

    assert response.status_code == 200
    assert response.get_json()["title"] == "Boss"


def test_delete_user_answers_204_and_a_repeat_404(scim) -> None:
    created = scim.create_user("ann")

    first = scim.delete(f"/Users/{created['id']}")
    second = scim.delete(f"/Users/{created['id']}")

    assert first.status_code == 204
    assert first.get_data() == b""
    assert second.status_code == 404
    assert scim.get(f"/Users/{created['id']}").status_code == 404


# -- uniqueness ------------------------------------------------------------------------------


def test_user_name_taken_in_another_case_is_409_uniqueness(scim) -> None:
    """entra-provisioning.md Q11: userName is unique, compared case-insensitively."""
    first = scim.create_user("ann@example.com")

    response = scim.post("/Users", {"userName": "ANN@Example.COM"})

    assert response.status_code == 409
    body = response.get_json()
    assert body["scimType"] == "uniqueness"
    assert "userName" in body["detail"] and first["id"] in body["detail"]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_renaming_a_user_to_a_taken_name_is_409(scim, method: str) -> None:
    scim.create_user("ann")
    bob = scim.create_user("bob")

    if method == "PUT":
        response = scim.put(f"/Users/{bob['id']}", {"userName": "Ann"})
    else:
        response = scim.patch_ops(
            f"/Users/{bob['id']}", {"op": "replace", "path": "userName", "value": "Ann"}
        )

    assert response.status_code == 409
    assert response.get_json()["scimType"] == "uniqueness"
    assert scim.get(f"/Users/{bob['id']}").get_json() == bob


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_user_may_change_only_the_case_of_its_own_name(scim, method: str) -> None:
    ann = scim.create_user("ann")

    if method == "PUT":
        response = scim.put(f"/Users/{ann['id']}", {"userName": "ANN"})
    else:
        response = scim.patch_ops(
            f"/Users/{ann['id']}", {"op": "replace", "path": "userName", "value": "ANN"}
        )

    assert response.status_code == 200
    assert response.get_json()["userName"] == "ANN"


def test_external_id_is_not_unique(scim) -> None:
    """entra-provisioning.md Q11: only userName is unique."""
    scim.create_user("ann", externalId="shared")

    response = scim.post("/Users", {"userName": "bob", "externalId": "shared"})

    assert response.status_code == 201


def test_a_deleted_users_name_can_be_used_again(scim) -> None:
    ann = scim.create_user("ann")
    scim.delete(f"/Users/{ann['id']}")

    assert scim.post("/Users", {"userName": "Ann"}).status_code == 201


# -- password ------------------------------------------------------------------------------


def _password_reads(scim, user: dict) -> dict[str, object]:
    user_path = f"/Users/{user['id']}"
    search = {"schemas": [constants.SEARCH_REQUEST], "attributes": ["password", "userName"]}
    return {
        "get": scim.get(user_path).get_json(),
        "get-attributes": scim.get(user_path + "?attributes=password").get_json(),
        "put": scim.put(user_path, {"userName": "ann", "password": "Secret-2"}).get_json(),
        "patch": scim.patch_ops(
            user_path, {"op": "replace", "path": "password", "value": "Secret-3"}
        ).get_json(),
        "list": scim.get("/Users").get_json(),
        "list-attributes": scim.get("/Users?attributes=password").get_json(),
        "search": scim.post("/Users/.search", search).get_json(),
    }


def test_password_is_never_returned(scim) -> None:
    """RFC 7643 §4.1: password is writeOnly, returned never."""
    created = scim.post("/Users", {"userName": "ann", "password": "Secret-1"}).get_json()

    reads = {"post": created, **_password_reads(scim, created)}

    for name, body in reads.items():
        text = json.dumps(body)
        assert "password" not in text.casefold(), name
        assert "Secret-" not in text, name


NEVER_RETURNED_FILTERS = [
    pytest.param('password sw "scrypt:"', id="sw-hash-prefix"),
    pytest.param("password pr", id="pr"),
    pytest.param('userName eq "ann" and not (PASSWORD eq "x")', id="nested-any-case"),
    pytest.param(f'{constants.USER}:password co "a"', id="urn-prefixed"),
]
FILTER_ENTRY_POINTS = ["get", "search", "root-search"]


def _query_users(scim, entry: str, **parameters: str):
    """GET /Users, POST /Users/.search or POST /.search with these query parameters."""
    if entry == "get":
        return scim.get("/Users", query_string=parameters)
    path = "/Users/.search" if entry == "search" else "/.search"
    return scim.post(path, {"schemas": [constants.SEARCH_REQUEST], **parameters})


@pytest.mark.parametrize("entry", FILTER_ENTRY_POINTS)
@pytest.mark.parametrize("text", NEVER_RETURNED_FILTERS)
def test_a_filter_on_the_password_is_400_and_reveals_nothing(scim, entry: str, text: str) -> None:
    """RFC 7643 §4.1.1: the hash SHALL NOT be returnable, also not one match at a time."""
    scim.create_user("ann", password="Secret-1")

    response = _query_users(scim, entry, filter=text)

    assert response.status_code == 400
    body = response.get_json()
    assert body["scimType"] == "invalidFilter"
    assert "password" in body["detail"].casefold()
    assert "never returned" in body["detail"]
    assert "Resources" not in body


@pytest.mark.parametrize("entry", FILTER_ENTRY_POINTS)
@pytest.mark.parametrize("sort_by", ["password", "Password", f"{constants.USER}:password"])
def test_sorting_by_the_password_is_400(scim, entry: str, sort_by: str) -> None:
    """The order of the results would reveal the hashes as surely as a filter."""
    scim.create_user("ann", password="Secret-1")
    scim.create_user("bob", password="Secret-2")

    response = _query_users(scim, entry, sortBy=sort_by)

    assert response.status_code == 400
    body = response.get_json()
    assert body["scimType"] == "invalidValue"
    assert body["detail"].startswith("sortBy: ")
    assert "never returned" in body["detail"]


def test_password_is_never_stored_in_clear(scim, app: Flask, settings: Settings) -> None:
    """No file under [storage] path (data, journal, activity log) and no database row holds
    a clear password."""
    created = scim.create_user("ann", password="Clear-Text-1")
    scim.patch_ops(
        f"/Users/{created['id']}", {"op": "replace", "path": "password", "value": "Clear-Text-2"}
    )
    scim.put(f"/Users/{created['id']}", {"userName": "ann", "password": "Clear-Text-3"})
    scim.create_user("bob", password="Clear-Text-4")

    files = [path for path in settings.storage.path.rglob("*") if path.is_file()]

    if settings.storage.backend == POSTGRESQL:
        rows = database_rows(settings.storage.dsn)
        assert any("scrypt:" in row for row in rows)
        assert not [row for row in rows if "Clear-Text" in row]
    else:
        assert settings.storage.path / DATA_FILE in files
    for path in files:
        assert b"Clear-Text" not in path.read_bytes(), path.name
    stored = list(app.extensions["proware"].repository.all("User"))
    assert len(stored) == 2
    assert all(user["password"].startswith("scrypt:") for user in stored)


def test_put_without_password_keeps_the_stored_hash(scim, app: Flask) -> None:
    repository = app.extensions["proware"].repository
    created = scim.create_user("ann", password="Secret-1")
    stored_hash = repository.get("User", created["id"])["password"]

    scim.put(f"/Users/{created['id']}", {"userName": "ann", "title": "Boss"})

    assert stored_hash.startswith("scrypt:")
    assert repository.get("User", created["id"])["password"] == stored_hash


def test_a_put_resending_the_same_password_is_recorded_as_a_change(
    scim, app: Flask, events: list[dict]
) -> None:
    """Only a salted hash is stored: telling the password unchanged would cost another slow
    hash and would tell a read-write token whether a guess is the current password (a
    version that stays put). So it is set again: a new hash, a new version, an event."""
    repository = app.extensions["proware"].repository
    body = {"userName": "ann", "active": True, "password": "Secret-1"}
    created = scim.post("/Users", body).get_json()
    first_hash = repository.get("User", created["id"])["password"]
    events.clear()

    response = scim.put(f"/Users/{created['id']}", body)

    assert response.status_code == 200
    assert response.get_json()["meta"]["version"] != created["meta"]["version"]
    assert repository.get("User", created["id"])["password"] != first_hash
    assert [event["operation"] for event in events] == ["update"]


# -- text fidelity, content types, URLs --------------------------------------------------------

NON_ASCII = [
    pytest.param("Zoë Ångström", id="latin-accents"),
    pytest.param("Zoe\u0308 decomposed", id="combining-mark-not-normalised"),
    pytest.param("山田 太郎", id="cjk"),
    pytest.param("Ünïcødé 🙂 emoji", id="astral-plane"),
    pytest.param("  leading and trailing spaces  ", id="spaces-kept"),
]


@pytest.mark.parametrize("text", NON_ASCII)
def test_non_ascii_text_round_trips_exactly(scim, text: str) -> None:
    """entra-provisioning.md Q19: values are stored and returned exactly as sent."""
    created = scim.create_user(text, displayName=text, name={"formatted": text})

    read_back = scim.get(f"/Users/{created['id']}")
    found = scim.get("/Users", query_string={"filter": f'userName eq "{text}"'})

    assert read_back.get_json()["userName"] == text
    assert read_back.get_json()["displayName"] == text
    assert read_back.get_json()["name"]["formatted"] == text
    assert text in read_back.get_data().decode("utf-8")  # UTF-8, not \\u escapes
    assert [user["id"] for user in found.get_json()["Resources"]] == [created["id"]]


CONTENT_TYPES = [
    pytest.param("application/scim+json; charset=utf-8", id="entra-scim-json-charset"),
    pytest.param("application/scim+json", id="scim-json"),
    pytest.param("application/json", id="json"),
    pytest.param("application/json; charset=UTF-8", id="json-charset"),
    pytest.param("text/plain", id="text-plain"),
    pytest.param("application/x-www-form-urlencoded", id="form"),
    pytest.param(None, id="none"),
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_a_body_is_parsed_as_json_whatever_its_content_type(
    client, token: str, content_type: str | None
) -> None:
    """entra-provisioning.md A0, Q8: never 406/415; the body is JSON whatever the header."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
    if content_type:
        headers["Content-Type"] = content_type

    response = client.post(
        f"{PREFIX}/Users", data=json.dumps({"userName": "ann"}).encode(), headers=headers
    )

    assert response.status_code == 201
    assert response.mimetype == SCIM_JSON
    assert response.get_json()["userName"] == "ann"


def test_a_utf8_body_with_a_byte_order_mark_is_accepted(scim) -> None:
    response = scim.post("/Users", b"\xef\xbb\xbf" + json.dumps({"userName": "ann"}).encode())

    assert response.status_code == 201


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("//Users", id="double-slash-from-tenant-url-with-trailing-slash"),
        pytest.param("/Users/", id="trailing-slash"),
        pytest.param("//Users//", id="both"),
    ],
)
def test_entras_url_forms_are_answered_without_a_redirect(scim, path: str) -> None:
    """entra-provisioning.md A0: Entra appends /Users to a Tenant URL that may end in '/'."""
    created = scim.create_user("ann")

    listed = scim.get(path)
    by_id = scim.get(path.rstrip("/") + f"/{created['id']}/")

    assert listed.status_code == 200
    assert listed.get_json()["totalResults"] == 1
    assert by_id.status_code == 200


def test_location_uses_the_request_host_without_a_public_url(scim) -> None:
    response = scim.post("/Users", {"userName": "ann"}, headers={"Host": "proware.internal:8443"})

    location = response.headers["Location"]
    assert location.startswith(f"http://proware.internal:8443{PREFIX}/Users/")
    assert response.get_json()["meta"]["location"] == location


def test_meta_location_is_filtered_as_the_client_reads_it(scim) -> None:
    """meta.location is built from the request's URL, never stored: a filter on it tests the
    URL the same request would show (here through another Host), on every backend."""
    ann, bob = scim.create_user("ann"), scim.create_user("bob")
    host = {"Host": "proware.internal:8443"}
    location = f"http://proware.internal:8443{PREFIX}/Users/{bob['id']}"

    def found(text: str, **parameters: str) -> list[str]:
        response = scim.get("/Users", query_string={"filter": text, **parameters}, headers=host)
        return [user["userName"] for user in response.get_json()["Resources"]]

    assert found(f'meta.location eq "{location}"') == ["bob"]
    assert found(f'meta.location eq "http://localhost{PREFIX}/Users/{bob["id"]}"') == []
    assert found('meta.location sw "http://proware.internal:8443/"') == ["ann", "bob"]
    assert found(f'meta[location ew "{ann["id"]}"]') == ["ann"]
    assert found(f'id eq "{ann["id"]}" and meta.location co "/Users/"') == ["ann"]
    assert found("meta.location pr", sortBy="meta.location", sortOrder="descending") == sorted(
        ["ann", "bob"], key=lambda name: {"ann": ann["id"], "bob": bob["id"]}[name], reverse=True
    )


@pytest.fixture
def public_app(tmp_path: Path) -> Flask:
    settings = Settings(
        server=ServerSettings(public_url="https://proware.example.com/base/"),
        storage=StorageSettings(path=tmp_path / "public"),
    )
    app = create_app(settings)
    yield app
    app.extensions["proware"].repository.close()


def test_public_url_is_used_for_location_and_meta_location(public_app: Flask, scim_for) -> None:
    scim = scim_for(public_app)

    created = scim.post("/Users", {"userName": "ann"}, headers={"Host": "10.0.0.5:8000"})
    group = scim.create_group("staff", [created.get_json()["id"]])
    listed = scim.get("/Users").get_json()

    base = "https://proware.example.com/base/scim/v2"
    user_id = created.get_json()["id"]
    assert created.headers["Location"] == f"{base}/Users/{user_id}"
    assert created.get_json()["meta"]["location"] == f"{base}/Users/{user_id}"
    assert listed["Resources"][0]["meta"]["location"] == f"{base}/Users/{user_id}"
    assert group["members"][0]["$ref"] == f"{base}/Users/{user_id}"


# -- activity events and the access log ------------------------------------------------------


def test_each_successful_change_emits_one_event(scim, events: list[dict], token: str) -> None:
    ann = scim.create_user("ann")
    user_path = f"/Users/{ann['id']}"
    scim.patch_ops(user_path, {"op": "replace", "path": "title", "value": "Boss"})
    scim.patch_ops(user_path, {"op": "replace", "path": "active", "value": False})
    scim.patch_ops(user_path, {"op": "replace", "path": "active", "value": True})
    scim.put(user_path, {"userName": "ann2"})
    scim.get(user_path)
    scim.delete(user_path)

    changes = [(e["operation"], e["resourceType"], e["id"], e["name"]) for e in events]
    assert changes == [
        ("create", "User", ann["id"], "ann"),
        ("update", "User", ann["id"], "ann"),
        ("disable", "User", ann["id"], "ann"),
        ("enable", "User", ann["id"], "ann"),
        ("update", "User", ann["id"], "ann2"),
        ("delete", "User", ann["id"], "ann2"),
    ]
    assert [e["status"] for e in events] == [201, 200, 200, 200, 200, 204]
    assert {e["token"] for e in events} == {"entra"}
    assert all(e["request_id"] and e["time"] for e in events)
    assert token not in json.dumps(events)


def test_a_patch_that_disables_and_renames_emits_both_operations(scim, events: list[dict]) -> None:
    ann = scim.create_user("ann")
    events.clear()

    scim.patch_ops(
        f"/Users/{ann['id']}",
        {"op": "replace", "path": "active", "value": "False"},
        {"op": "replace", "path": "displayName", "value": "Ann"},
    )

    assert [e["operation"] for e in events] == ["disable", "update"]


def test_a_put_that_disables_or_enables_emits_that_operation(scim, events: list[dict]) -> None:
    """Okta's PUT-based deactivation (and scripts') shows as a disable, as Entra's PATCH does:
    the activity log's operation filter must find it."""
    ann = scim.create_user("ann")
    path = f"/Users/{ann['id']}"

    scim.put(path, {"userName": "ann", "active": False})
    scim.put(path, {"userName": "ann", "active": True, "title": "Boss"})

    assert [e["operation"] for e in events] == ["create", "disable", "enable", "update"]


def test_a_put_that_changes_nothing_writes_nothing(scim, events: list[dict]) -> None:
    """Okta PUTs the whole user on every profile push; resending what is stored (read-only
    ``id``, ``meta`` and ``groups`` included) is no change: no new version or lastModified,
    no event."""
    body = {
        "schemas": [constants.USER],
        "userName": "ann",
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"value": "ann@example.com", "type": "work", "primary": True}],
        "active": True,
    }
    created = scim.post("/Users", {**body, "password": "s3cret"}).get_json()
    path = f"/Users/{created['id']}"
    events.clear()

    for resent in (body, {**created, "groups": []}):
        response = scim.put(path, resent)
        assert response.status_code == 200
        assert response.get_json()["meta"] == created["meta"]
        assert response.headers["ETag"] == created["meta"]["version"]

    assert events == []


def test_a_put_of_what_a_get_showed_writes_nothing_after_entras_create(
    scim, events: list[dict]
) -> None:
    """Entra's create carries ``"roles": []`` (entra-provisioning.md A3), which is stored but,
    being empty, never shown (RFC 7643 §2.5: unassigned). A client that PUTs back the GET it
    read must not get a new version, lastModified and "update" event for it, and a PUT adding
    an empty list changes nothing either."""
    created = scim.post(
        "/Users",
        {"userName": "ann", "roles": [], "emails": [], "meta": {"resourceType": "User"}},
    ).get_json()
    path = f"/Users/{created['id']}"
    shown = scim.get(path).get_json()
    events.clear()

    for resent in (shown, {**shown, "roles": [], "x509Certificates": []}):
        response = scim.put(path, resent)
        assert response.status_code == 200
        assert response.get_json()["meta"] == created["meta"]
    assert events == []
    assert scim.put(path, {**shown, "title": "Boss"}).get_json()["title"] == "Boss"


def test_a_failing_activity_listener_never_fails_the_request(
    app: Flask, scim, events: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    """The change is committed before listeners run: a 500 would make Entra retry a create."""

    def broken(event: dict) -> None:
        raise RuntimeError("activity log is full")

    app.extensions["proware"].listeners.insert(0, broken)

    created = scim.post("/Users", {"userName": "ann"})
    refused = scim.post("/Users", {"userName": "ANN"})

    assert created.status_code == 201
    assert refused.status_code == 409
    assert [e["operation"] for e in events] == ["create", "failed"]
    failures = [r for r in caplog.records if r.name == "proware.activity"]
    assert len(failures) == 2 and failures[0].exc_info is not None


def test_access_log_has_one_line_per_request_without_the_secret(
    scim, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="proware.access")

    scim.post("/Users", {"userName": "ann"})
    scim.get("/Users?filter=userName+eq+%22ann%22")

    lines = [r.getMessage() for r in caplog.records if r.name == "proware.access"]
    assert len(lines) == 2
    assert lines[0].startswith('127.0.0.1 "POST /scim/v2/Users" 201 ')
    assert "token=entra" in lines[0]
    assert "ms " in lines[0]  # the duration
    assert lines[1].startswith('127.0.0.1 "GET /scim/v2/Users?filter=userName')
    assert all(token not in line for line in lines)


def test_access_log_lines_cannot_be_forged_through_the_path(
    scim, caplog: pytest.LogCaptureFixture
) -> None:
    """The path is logged decoded: %0A was a line break, %1B an escape to the terminal."""
    caplog.set_level("INFO", logger="proware.access")

    scim.get("/Users/x%0A2026-12-07 ERROR proware FORGED%1B[31m%00?q=%0A")

    [line] = [r.getMessage() for r in caplog.records if r.name == "proware.access"]
    assert line.isprintable()
    assert "/Users/x\\n2026-12-07 ERROR proware FORGED\\x1b[31m\\x00?q=%0A" in line


def database_rows(dsn: str) -> list[str]:
    """Every row of every table of Proware's database, as text."""
    import psycopg

    with psycopg.connect(dsn) as connection:
        tables = connection.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        return [
            str(row)
            for (table,) in tables
            for row in connection.execute(f"SELECT t::text FROM {table} t".encode()).fetchall()
        ]
