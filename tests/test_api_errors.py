"""Bad input through HTTP: every refusal is a SCIM error body, never a 500 or a traceback."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.exceptions import RequestURITooLarge

from app import create_app
from scim import constants
from server.config import ScimSettings, ServerSettings, Settings, StorageSettings
from storage.errors import Unavailable
from storage.journal import file as journal_file

PATCH_OP = constants.PATCH_OP
FILTER_LIMIT = 4096


def assert_scim_error(response, status: int, scim_type: str | None, *fragments: str) -> dict:
    """The RFC 7644 §3.12 shape: schemas, status as a string, scimType, a naming detail."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == constants.SCIM_MEDIA_TYPE
    body = response.get_json()
    assert body["schemas"] == [constants.ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    for fragment in fragments:
        assert fragment in body["detail"], body["detail"]
    assert "Traceback" not in body["detail"]
    return body


@pytest.fixture
def ann(scim) -> dict:
    return scim.create_user("ann")


@pytest.fixture
def staff(scim) -> dict:
    return scim.create_group("Staff")


# -- bodies --------------------------------------------------------------------------------

BAD_USER_BODIES = [
    pytest.param(b"{bad", "invalidSyntax", ["invalid JSON at line 1 column 2"], id="malformed"),
    pytest.param(b"", "invalidSyntax", ["empty body"], id="empty"),
    pytest.param(b"\xff\xfe{}", "invalidSyntax", ["not valid UTF-8 at byte 0"], id="not-utf8"),
    pytest.param(b"[" * 100_000, "invalidSyntax", ["nested too deeply"], id="deep-json"),
    pytest.param([{"userName": "ann"}], "invalidSyntax", ["got a list"], id="array"),
    pytest.param('"ann"', "invalidSyntax", ["got 'ann'"], id="string"),
    pytest.param(b"null", "invalidSyntax", ["expected a JSON object"], id="null"),
    pytest.param(
        b'{"userName": "ann", "x": NaN}', "invalidSyntax", ["NaN is not a JSON number"], id="nan"
    ),
    pytest.param(
        b'{"userName": "ann", "x": [-Infinity]}',
        "invalidSyntax",
        ["-Infinity is not a JSON number"],
        id="infinity",
    ),
    pytest.param(
        b'{"userName": "ann", "x": -' + b"9" * 5000 + b"}",
        "invalidSyntax",
        ["a number has more than 1000 digits"],
        id="number-too-long-to-read",  # int() refuses over 4,300 digits: it was a 500
    ),
    pytest.param(
        b'{"userName": "ann", "userName": "bob"}',
        "invalidSyntax",
        ["'userName' is given more than once in one object"],
        id="repeated-key",  # the last one silently won
    ),
    pytest.param(
        b'{"userName": "ann", "name": {"givenName": "A", "givenName": "B"}}',
        "invalidSyntax",
        ["'givenName' is given more than once"],
        id="repeated-nested-key",
    ),
    pytest.param({"userName": 5}, "invalidValue", ["userName", "string", "5"], id="int-name"),
    pytest.param({"userName": ""}, "invalidValue", ["userName", "empty"], id="empty-name"),
    pytest.param({"displayName": "Ann"}, "invalidValue", ["userName", "required"], id="no-name"),
    pytest.param(
        {"userName": "ann", "active": "maybe"}, "invalidValue", ["active"], id="bad-boolean"
    ),
    pytest.param({"userName": "ann", "name": "Ann"}, "invalidValue", ["name"], id="name-string"),
    pytest.param(
        {"userName": "ann", "emails": [{"value": 5}]},
        "invalidValue",
        ["emails"],
        id="email-value-int",
    ),
    pytest.param(
        {"userName": "ann", "userName ": "x", "USERNAME": "y"},
        "invalidValue",
        ["userName"],
        id="name-given-twice",
    ),
    pytest.param(
        {"userName": "a\x00b"}, "invalidValue", ["userName", "U+0000"], id="nul-in-userName"
    ),
    pytest.param(
        {"userName": "ann\n"}, "invalidValue", ["userName", "U+000A"], id="newline-in-userName"
    ),
    pytest.param(
        {"userName": "ann", "externalId": "e\x1b[31m"},
        "invalidValue",
        ["externalId", "U+001B"],
        id="escape-in-externalId",
    ),
    pytest.param(
        {"userName": "ann", "displayName": "Ann\x7f"},
        "invalidValue",
        ["displayName", "U+007F"],
        id="delete-in-displayName",
    ),
    pytest.param(
        {"userName": "x" * 1025}, "invalidValue", ["userName", "1024"], id="name-too-long"
    ),
]


@pytest.mark.parametrize(("body", "scim_type", "fragments"), BAD_USER_BODIES)
def test_bad_user_bodies_are_400_naming_the_problem(
    scim, body: object, scim_type: str, fragments: list[str]
) -> None:
    response = scim.post("/Users", body)

    assert_scim_error(response, 400, scim_type, *fragments)
    assert scim.get("/Users").get_json()["totalResults"] == 0


BAD_GROUP_BODIES = [
    pytest.param({"members": []}, ["displayName", "required"], id="no-displayName"),
    pytest.param({"displayName": "a\tb"}, ["displayName", "U+0009"], id="tab-in-displayName"),
    pytest.param(
        {"displayName": "ok", "externalId": "x\x01"}, ["externalId"], id="control-in-externalId"
    ),
    # A bare string is a member id (Entra Q23): one naming nothing is skipped, not refused.
    pytest.param({"displayName": "ok", "members": 5}, ["members[0]"], id="members-number"),
    pytest.param({"displayName": "ok", "members": [{"display": "x"}]}, ["members"], id="no-value"),
]


@pytest.mark.parametrize(("body", "fragments"), BAD_GROUP_BODIES)
def test_bad_group_bodies_are_400_naming_the_problem(
    scim, body: dict, fragments: list[str]
) -> None:
    assert_scim_error(scim.post("/Groups", body), 400, "invalidValue", *fragments)


NESTED = "is a group; nested groups are not supported; members must be users"


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_group_as_a_member_is_named_by_its_place_in_the_body(
    scim, ann, staff, method: str
) -> None:
    """The same words as a member sent with "type": "Group" (members[1]: nested groups are
    not supported; ...), and the member's index, not only "members"."""
    path = "/Groups" if method == "POST" else f"/Groups/{staff['id']}"
    name = "Other" if method == "POST" else "Staff"
    sent = [{"value": ann["id"]}, {"value": "nobody"}, {"value": staff["id"]}]

    group = scim.request(method, path, {"displayName": name, "members": sent})

    body = assert_scim_error(group, 400, "invalidValue")
    assert body["detail"] == f"members[2].value: '{staff['id']}' {NESTED}"


@pytest.mark.parametrize("op", ["add", "replace"])
def test_a_group_added_as_a_member_by_patch_names_the_operation(scim, ann, op: str) -> None:
    staff = scim.create_group("Staff", [ann["id"]])
    other = scim.create_group("Other")

    response = scim.patch_ops(
        f"/Groups/{staff['id']}",
        {"op": "replace", "path": "displayName", "value": "Staff"},
        {"op": op, "path": "members", "value": [{"value": other["id"]}]},
    )

    body = assert_scim_error(response, 400, "invalidValue")
    assert body["detail"] == f"Operations[1]: members: '{other['id']}' {NESTED}"
    assert scim.get(f"/Groups/{staff['id']}").get_json() == staff


def test_bad_bodies_on_put_are_400_and_change_nothing(scim, ann) -> None:
    response = scim.put(f"/Users/{ann['id']}", {"userName": "ann", "active": []})

    assert_scim_error(response, 400, "invalidValue", "active")
    assert scim.get(f"/Users/{ann['id']}").get_json() == ann


BAD_PATCHES = [
    pytest.param([1], "invalidSyntax", ["PATCH body must be a JSON object"], id="array-body"),
    pytest.param(
        '{"Operations": [{"op": "remove", "path": "title"}], "Operations": []}',
        "invalidSyntax",
        ["'Operations' is given more than once"],
        id="repeated-operations",  # only the last list was applied
    ),
    pytest.param({"schemas": [PATCH_OP]}, "invalidSyntax", ["Operations"], id="no-operations"),
    pytest.param(
        {"schemas": [PATCH_OP], "Operations": {"op": "add"}},
        "invalidSyntax",
        ["Operations"],
        id="operations-not-a-list",
    ),
    pytest.param(
        {"schemas": [PATCH_OP], "Operations": [{"op": "frob", "path": "title", "value": "x"}]},
        "invalidValue",
        ["Operations[0].op", "'frob'"],
        id="unknown-op",
    ),
    pytest.param(
        {"schemas": [PATCH_OP], "Operations": [{"op": "add", "path": 5, "value": "x"}]},
        "invalidValue",
        ["Operations[0].path"],
        id="path-not-a-string",
    ),
    pytest.param(
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "emails[type eq", "value": "x"}],
        },
        "invalidPath",
        ["Operations[0]", "no closing ']'"],
        id="unclosed-filter-path",
    ),
    pytest.param(
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "a..b", "value": 1}]},
        "invalidPath",
        ["Operations[0]"],
        id="malformed-dotted-path",
    ),
    pytest.param(
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": 7}]},
        "invalidValue",
        ["active"],
        id="wrong-type-value",
    ),
    pytest.param(
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "displayName", "value": "A\x07"}],
        },
        "invalidValue",
        ["displayName", "U+0007"],
        id="control-character-value",
    ),
]


@pytest.mark.parametrize(("body", "scim_type", "fragments"), BAD_PATCHES)
def test_bad_patches_are_400_naming_the_problem_and_change_nothing(
    scim, ann, body: object, scim_type: str, fragments: list[str]
) -> None:
    response = scim.patch(f"/Users/{ann['id']}", body)

    assert_scim_error(response, 400, scim_type, *fragments)
    assert scim.get(f"/Users/{ann['id']}").get_json() == ann


# The same problem reads the same in a PATCH body as in a POST body ("userName: required",
# "active: expected a boolean, got 'maybe'"), not in marshmallow's own words ("Missing data
# for required field.", "Not a valid string.").
PATCH_BODY_DETAILS = [
    pytest.param({"schemas": [PATCH_OP]}, "invalidSyntax", "Operations: required", id="none"),
    pytest.param(
        {"Operations": "add"},
        "invalidSyntax",
        "Operations: expected a list, got 'add'",
        id="operations-a-string",
    ),
    pytest.param(
        {"schemas": PATCH_OP, "Operations": []},
        "invalidSyntax",
        f"schemas: expected a list, got '{PATCH_OP[:40]}...'",
        id="schemas-a-string",
    ),
    pytest.param(
        {"Operations": [{"op": "add", "path": "title", "value": "x"}, {"path": "title"}]},
        "invalidValue",
        "Operations[1].op: required",
        id="no-op",
    ),
    pytest.param(
        {"Operations": [{"op": 5, "path": "title", "value": "x"}]},
        "invalidValue",
        "Operations[0].op: expected a string, got 5",
        id="op-a-number",
    ),
    pytest.param(
        {"Operations": [{"op": "x" * 500, "path": "title", "value": "x"}]},
        "invalidValue",
        f"Operations[0].op: '{'x' * 40}...' is not one of add, replace, remove",
        id="long-op-shortened",
    ),
    pytest.param(
        {"Operations": [{"op": "add", "path": ["title"], "value": "x"}]},
        "invalidValue",
        "Operations[0].path: expected a string, got a list",
        id="path-a-list",
    ),
    pytest.param(
        {"Operations": [{"op": "add", "path": "title", "value": "x"}, "remove"]},
        "invalidSyntax",
        "Operations[1]: expected an object, got 'remove'",
        id="operation-a-string",
    ),
]


@pytest.mark.parametrize(("body", "scim_type", "detail"), PATCH_BODY_DETAILS)
def test_a_malformed_patch_body_reads_like_a_malformed_post_body(
    scim, ann, body: dict, scim_type: str, detail: str
) -> None:
    response = scim.patch(f"/Users/{ann['id']}", body)

    assert assert_scim_error(response, 400, scim_type)["detail"] == detail


# The schema checks the patched resource as a whole; its detail alone names an attribute but
# not which of a PATCH's operations put the bad value there.
BLAMED_OPERATIONS = [
    pytest.param(
        [
            {"op": "add", "path": "title", "value": "Boss"},
            {"op": "add", "path": "nickName", "value": "Babs"},
            {"op": "replace", "path": "active", "value": "maybe"},
            {"op": "add", "path": "displayName", "value": "Ann"},
        ],
        "Operations[2]: active: expected a boolean, got 'maybe'",
        id="third-of-four",
    ),
    pytest.param(
        [{"op": "add", "path": "title", "value": "x"}, {"op": "replace", "value": {"active": 1}}],
        "Operations[1]: active: expected a boolean, got 1",
        id="path-less",
    ),
    pytest.param(
        [{"op": "remove", "path": "nickName"}, {"op": "remove", "path": "userName"}],
        "Operations[1]: userName: required",
        id="required-removed",
    ),
    pytest.param(
        [
            {"op": "replace", "path": "active", "value": "maybe"},
            {"op": "replace", "path": "active", "value": True},
            {"op": "replace", "path": "title", "value": 7},
        ],
        "Operations[2]: title: expected a string, got 7",
        id="earlier-problem-repaired",  # the problem left is the one reported
    ),
    pytest.param(
        [{"op": "add", "path": "title", "value": f"t{n}"} for n in range(60)]
        + [{"op": "add", "path": "name.givenName", "value": 7}]
        + [{"op": "add", "path": "nickName", "value": f"n{n}"} for n in range(60)],
        "Operations[60]: name.givenName: expected a string, got 7",
        id="61st-of-121",
    ),
]


@pytest.mark.parametrize(("operations", "detail"), BLAMED_OPERATIONS)
def test_a_patch_leaving_an_invalid_value_names_the_operation(
    scim, ann, operations: list[dict], detail: str
) -> None:
    response = scim.patch_ops(f"/Users/{ann['id']}", *operations)

    assert assert_scim_error(response, 400, "invalidValue")["detail"] == detail
    assert scim.get(f"/Users/{ann['id']}").get_json() == ann


def test_a_group_patch_leaving_an_invalid_value_names_the_operation(scim, staff) -> None:
    response = scim.patch_ops(
        f"/Groups/{staff['id']}",
        {"op": "remove", "path": 'members[value eq "nobody"]'},
        {"op": "replace", "path": "displayName", "value": 5},
    )

    body = assert_scim_error(response, 400, "invalidValue")
    assert body["detail"] == "Operations[1]: displayName: expected a string, got 5"


def test_a_filtered_write_naming_no_sub_attribute_says_so(scim, ann) -> None:
    """It said "only 'eq' terms joined by 'and' describe an element to create" of a filter
    that was one eq term: what was wrong was the name."""
    path = 'emails[type eq "work" and kind eq "x"].value'

    response = scim.patch_ops(f"/Users/{ann['id']}", {"op": "add", "path": path, "value": "a@x"})

    assert assert_scim_error(response, 400, "noTarget")["detail"] == (
        f"Operations[0]: {path}: no element matches the filter, and 'kind' is not a "
        "sub-attribute of emails, so it cannot describe an element to create"
    )


def test_an_add_without_a_value_is_400_and_clears_nothing(scim) -> None:
    ann = scim.create_user("ann", title="Engineer")

    response = scim.patch_ops(f"/Users/{ann['id']}", {"op": "add", "path": "title"})

    assert scim.get(f"/Users/{ann['id']}").get_json()["title"] == "Engineer"
    assert_scim_error(response, 400, "invalidValue", "Operations[0]", "value")


BAD_SEARCHES = [
    pytest.param([1], "invalidSyntax", ["expected a JSON object"], id="array"),
    pytest.param(None, "invalidSyntax", ["empty body"], id="no-body"),
    pytest.param({"filter": 5}, "invalidValue", ["filter", "string"], id="filter-number"),
    pytest.param({"attributes": "userName"}, "invalidValue", ["attributes", "list"], id="attrs"),
    pytest.param({"sortOrder": "up"}, "invalidValue", ["sortOrder"], id="sortOrder"),
    pytest.param({"startIndex": "one"}, "invalidValue", ["startIndex"], id="startIndex"),
    pytest.param({"filter": "userName eq"}, "invalidFilter", ["filter"], id="bad-filter"),
    pytest.param(
        '{"count": ' + "9" * 5000 + "}", "invalidSyntax", ["more than 1000 digits"], id="long-count"
    ),
]


@pytest.mark.parametrize(("body", "scim_type", "fragments"), BAD_SEARCHES)
def test_bad_searches_are_400_naming_the_problem(
    scim, body: object, scim_type: str, fragments: list[str]
) -> None:
    response = scim.post("/Users/.search", body)

    assert_scim_error(response, 400, scim_type, *fragments)


# -- query parameters ----------------------------------------------------------------------

BAD_QUERIES = [
    pytest.param(
        {"filter": 'userName eq "x" ' + "and " * 2000},
        "invalidFilter",
        [f"longer than {FILTER_LIMIT}"],
        id="huge-filter",
    ),
    pytest.param(
        {"filter": "(" * 5000},
        "invalidFilter",
        ["filter"],
        id="nested-filter-over-the-limit",
    ),
    pytest.param({"filter": "userName eq"}, "invalidFilter", ["filter", "position"], id="no-value"),
    pytest.param({"filter": 'userName zz "x"'}, "invalidFilter", ["zz"], id="unknown-operator"),
    pytest.param({"filter": 'userName eq "x" and'}, "invalidFilter", ["filter"], id="dangling-and"),
    pytest.param({"count": "ten"}, "invalidValue", ["count"], id="count-word"),
    pytest.param({"startIndex": "1e3"}, "invalidValue", ["startIndex"], id="startIndex-exp"),
    pytest.param(
        {"startIndex": "9" * 5000},
        "invalidValue",
        ["startIndex: more than 1000 digits"],
        id="startIndex-too-long-to-read",
    ),
    pytest.param({"sortOrder": "up"}, "invalidValue", ["sortOrder"], id="sortOrder"),
    pytest.param({"attributes": "emails[type"}, "invalidValue", ["emails["], id="attributes"),
    pytest.param({"sortBy": "a..b"}, "invalidPath", [], id="sortBy"),
]


@pytest.mark.parametrize(("query", "scim_type", "fragments"), BAD_QUERIES)
def test_bad_query_parameters_are_400_naming_the_problem(
    scim, query: dict, scim_type: str, fragments: list[str]
) -> None:
    response = scim.get("/Users", query_string=query)

    assert_scim_error(response, 400, scim_type, *fragments)


# A path that is no attribute path, in a query parameter, is named by the parameter: it was
# "path: ..." for sortBy, and "attributes: ..." for excludedAttributes.
MISNAMED_PARAMETERS = [
    pytest.param(
        {"sortBy": "name..givenName"},
        "invalidPath",
        "sortBy: expected a sub-attribute name, found '.' at position 6 in 'name..givenName'",
        id="sortBy",
    ),
    pytest.param(
        {"excludedAttributes": 'emails[type eq "work"]'},
        "invalidValue",
        "excludedAttributes: 'emails[type eq \"work\"]' holds a filter; list attribute names only",
        id="excludedAttributes-filter",
    ),
    pytest.param(
        {"excludedAttributes": "userName,a..b"},
        "invalidPath",
        "excludedAttributes: expected a sub-attribute name, found '.' at position 3 in 'a..b'",
        id="excludedAttributes-path",
    ),
    pytest.param(
        {"excludedAttributes": ",".join(f"a{n}" for n in range(300))},
        "invalidValue",
        "excludedAttributes: 300 names; at most 200 different ones are accepted",
        id="excludedAttributes-too-many",
    ),
    pytest.param(
        {"attributes": "a..b"},
        "invalidPath",
        "attributes: expected a sub-attribute name, found '.' at position 3 in 'a..b'",
        id="attributes-path",
    ),
]


@pytest.mark.parametrize(("query", "scim_type", "detail"), MISNAMED_PARAMETERS)
def test_a_bad_query_parameter_is_named_in_the_detail(
    scim, query: dict, scim_type: str, detail: str
) -> None:
    response = scim.get("/Users", query_string=query)

    assert assert_scim_error(response, 400, scim_type)["detail"] == detail


def test_excluded_attributes_of_a_search_body_are_named_as_sent(scim) -> None:
    response = scim.post("/Users/.search", {"excludedAttributes": ["a..b"]})

    assert assert_scim_error(response, 400, "invalidPath")["detail"].startswith(
        "excludedAttributes: "
    )


LONG = "x" * 3000

# Every detail that repeats a value the client sent repeats at most its first 64 characters:
# each was repeated whole (a 3,000-character id made a 3,017-character detail), and a detail
# is also logged, kept in the activity log and shown in the control panel.
ECHOED_VALUES = [
    pytest.param("GET", f"/Users?sortOrder={LONG}", None, {}, 400, id="sortOrder"),
    pytest.param("GET", f"/Users?count={LONG}", None, {}, 400, id="count"),
    pytest.param("GET", f"/Users?attributes=emails[{LONG}", None, {}, 400, id="attributes"),
    pytest.param("GET", f"/Users?sortBy=a.b.{LONG}", None, {}, 400, id="sortBy"),
    pytest.param("GET", f"/Users?filter=userName zz{LONG}", None, {}, 400, id="filter-operator"),
    pytest.param("GET", f'/Users?filter=userName eq "a" {LONG}', None, {}, 400, id="filter-rest"),
    pytest.param("GET", f"/Users/{LONG}", None, {}, 404, id="user-id"),
    pytest.param("DELETE", f"/Groups/{LONG}", None, {}, 404, id="group-id"),
    pytest.param("GET", f"/Schemas/{LONG}", None, {}, 404, id="schema-id"),
    pytest.param("GET", f"/ResourceTypes/{LONG}", None, {}, 404, id="resource-type"),
    pytest.param("POST", "/Users", f'{{"{LONG}": 1, "{LONG}": 2}}', {}, 400, id="repeated-key"),
    pytest.param(
        "PATCH",
        "/Users/{id}",
        {"Operations": [{"op": "add", "path": "a" * 3000 + "!", "value": "x"}]},
        {},
        400,
        id="patch-path",
    ),
    pytest.param(
        "PATCH",
        "/Users/{id}",
        {"Operations": [{"op": "add", "path": "title", "value": "x"}]},
        {"If-Match": LONG},
        412,
        id="if-match",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status"), ECHOED_VALUES)
def test_a_long_value_is_shortened_in_the_detail(
    scim, ann, method: str, path: str, body, headers: dict, status: int
) -> None:
    response = scim.request(method, path.format(id=ann["id"]), body, headers=headers)

    detail = assert_scim_error(response, status, response.get_json().get("scimType"))["detail"]
    assert len(detail) < 300, detail
    assert "..." in detail, detail


def test_a_taken_user_name_is_shortened_in_the_409(scim) -> None:
    scim.create_user("x" * 1000)

    response = scim.post("/Users", {"userName": "X" * 1000})

    body = assert_scim_error(response, 409, "uniqueness")
    assert body["detail"].startswith(f"userName '{'X' * 64}...' is already used by another user")


TAKEN_BY_PATCH = [
    pytest.param(
        "/Users",
        [
            {"op": "replace", "path": "title", "value": "Boss"},
            {"op": "replace", "path": "userName", "value": "BOB"},
        ],
        "Operations[1]: userName 'BOB' is already used by another user",
        id="user-path",
    ),
    pytest.param(
        "/Users",
        [
            {"op": "replace", "value": {"USERNAME": "Bob", "title": "Boss"}},
            {"op": "add", "path": "displayName", "value": "Ann"},
        ],
        "Operations[0]: userName 'Bob' is already used by another user",
        id="user-pathless-any-case",
    ),
    pytest.param(
        "/Users",
        [
            {"op": "replace", "path": "userName", "value": "bob"},
            {"op": "replace", "path": "userName", "value": "carl"},
            {"op": "replace", "path": "userName", "value": "Bob"},
            {"op": "replace", "path": "title", "value": "Boss"},
        ],
        "Operations[2]: userName 'Bob' is already used by another user",
        id="user-last-to-set-it",
    ),
    pytest.param(
        "/Groups",
        [
            {"op": "add", "path": "members", "value": [{"value": "nobody"}]},
            {"op": "Replace", "path": "displayName", "value": "admins"},
        ],
        "Operations[1]: displayName 'admins' is already used by another group",
        id="group",
    ),
]


@pytest.mark.parametrize(("endpoint", "operations", "start"), TAKEN_BY_PATCH)
def test_a_patch_taking_a_unique_value_names_the_operation_in_the_409(
    scim, endpoint: str, operations: list[dict], start: str
) -> None:
    """A 409 says which operation set the value, as a schema refusal names its operation."""
    scim.create_user("bob")
    scim.create_group("Admins")
    target = scim.create_user("ann") if endpoint == "/Users" else scim.create_group("Staff")
    path = f"{endpoint}/{target['id']}"

    response = scim.patch_ops(path, *operations)

    body = assert_scim_error(response, 409, "uniqueness")
    assert body["detail"].startswith(start), body["detail"]
    assert scim.get(path).get_json() == target


def test_an_unknown_long_path_is_shortened_in_the_404(scim) -> None:
    response = scim.get(f"/Bogus{LONG}")

    detail = assert_scim_error(response, 404, None)["detail"]
    assert detail == "no such endpoint: GET " + ("/scim/v2/Bogus" + LONG)[:128] + "..."


@pytest.fixture
def deep_settings(tmp_path: Path) -> Settings:
    """A filter limit high enough that the nesting check, not the length check, answers."""
    return Settings(
        scim=ScimSettings(max_filter_length=100_000),
        storage=StorageSettings(path=tmp_path / "deep"),
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("(" * 5000, id="open-parentheses"),
        pytest.param("(" * 5000 + 'userName eq "x"' + ")" * 5000, id="balanced"),
        pytest.param("not(" * 3000 + 'userName eq "x"' + ")" * 3000, id="nested-not"),
        pytest.param('emails[value eq "x" and ' * 2000, id="nested-value-paths"),
    ],
)
def test_a_deeply_nested_filter_is_400_not_a_crash(
    deep_settings: Settings, scim_for, text: str
) -> None:
    app = create_app(deep_settings)
    try:
        response = scim_for(app).get("/Users", query_string={"filter": text})
    finally:
        app.extensions["proware"].repository.close()

    assert_scim_error(response, 400, "invalidFilter", "filter")


# -- routes and methods ----------------------------------------------------------------------

UNKNOWN_ROUTES = [
    pytest.param("GET", "/Foo", id="unknown-endpoint"),
    pytest.param("GET", "/Users/abc/def", id="below-a-resource"),
    pytest.param("GET", "", id="the-prefix-itself"),
]


@pytest.mark.parametrize(("method", "path"), UNKNOWN_ROUTES)
def test_unknown_routes_are_404(scim, method: str, path: str) -> None:
    response = scim.request(method, path)

    assert_scim_error(response, 404, None, "no such endpoint", f"/scim/v2{path}")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/Users?filter=userName+eq+%22x%22", id="bare-host-as-ngrok-prints-it"),
        pytest.param("/scim/Users?filter=userName+eq+%22x%22", id="scim-without-v2"),
        pytest.param("/Groups/abc", id="resource-by-id"),
        pytest.param("/a" * 5000 + "/Users/abc", id="deep-path-tail"),
    ],
)
def test_a_scim_endpoint_outside_the_prefix_says_where_the_tenant_url_must_point(
    client, token: str, path: str
) -> None:
    """A Tenant URL pasted without /scim/v2 (Entra A0) fails Test Connection with a 404: the
    detail says what to change in Entra, not only which path failed."""
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})

    assert_scim_error(
        response, 404, None, "no such endpoint", "the Tenant URL in Entra must end in /scim/v2"
    )


@pytest.mark.parametrize("path", ["/nothing", "/scim/v2/Foo"])
def test_other_unknown_paths_get_no_tenant_url_hint(client, token: str, path: str) -> None:
    response = client.get(path, headers={"Authorization": f"Bearer {token}"})

    assert "Tenant URL" not in assert_scim_error(response, 404, None, path)["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/Me"), ("GET", "/me"), ("PATCH", "/Me"), ("POST", "/Me"), ("GET", "/Me/x")],
)
def test_me_is_501_not_implemented(scim, method: str, path: str) -> None:
    """RFC 7644 §3.11: a provider without the /Me alias SHOULD answer 501."""
    response = scim.request(method, path, {} if method in ("PATCH", "POST") else None)

    assert_scim_error(response, 501, None, "/Me is an alias", "/Users/{id}")


def test_bulk_is_501_not_implemented(scim) -> None:
    """RFC 7644 §3.7 and §3.12: bulk.supported is false, so POST /Bulk is an operation the
    provider does not implement, not an unknown endpoint."""
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []}
    response = scim.request("POST", "/Bulk", body)

    assert_scim_error(response, 501, None, "/Bulk is not supported", "bulk.supported is false")
    assert scim.get("/ServiceProviderConfig").get_json()["bulk"]["supported"] is False


def test_bulk_without_a_token_is_401_first(client) -> None:
    response = client.post("/scim/v2/Bulk", json={})

    assert_scim_error(response, 401, None)


def test_me_without_a_token_is_401_first(client) -> None:
    response = client.get("/scim/v2/Me")

    assert_scim_error(response, 401, None)


@pytest.mark.parametrize("path", ["/nothing/here", "/", "/scim"])
def test_unknown_routes_outside_the_prefix_are_404_too(client, path: str) -> None:
    response = client.get(path)

    assert_scim_error(response, 404, None, f"GET {path}")


ANSWERS = [
    pytest.param("POST", "/Users", {"userName": "bob"}, 201, id="created"),
    pytest.param("GET", "/Users", None, 200, id="list"),
    pytest.param("HEAD", "/Users", None, 200, id="head"),
    pytest.param("OPTIONS", "/Users", None, 200, id="options"),
    pytest.param("DELETE", "/Users/{ann}", None, 204, id="no-content"),
    pytest.param("GET", "/Schemas", None, 200, id="discovery"),
    pytest.param("GET", "/Users/ghost", None, 404, id="not-found"),
    pytest.param("PUT", "/Users", None, 405, id="method-not-allowed"),
    pytest.param("POST", "/Users", "{", 400, id="bad-request"),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), ANSWERS)
def test_every_answer_is_scim_json(scim, ann, method: str, path: str, body, status: int) -> None:
    """entra-provisioning.md A0: the validator warns on anything but application/scim+json."""
    response = scim.request(method, path.format(ann=ann["id"]), body)

    assert response.status_code == status
    assert response.mimetype == constants.SCIM_MEDIA_TYPE


WRONG_METHODS = [
    pytest.param("DELETE", "/Users", "GET, HEAD, OPTIONS, POST", id="delete-users"),
    pytest.param("PUT", "/Groups", "GET, HEAD, OPTIONS, POST", id="put-groups"),
    pytest.param("POST", "/Users/some-id", "DELETE, GET, HEAD, OPTIONS, PATCH, PUT", id="post-id"),
    pytest.param("GET", "/Users/.search", "POST", id="get-search"),
    pytest.param("POST", "/ServiceProviderConfig", "GET, HEAD, OPTIONS", id="post-config"),
]


@pytest.mark.parametrize(("method", "path", "allowed"), WRONG_METHODS)
def test_unsupported_methods_are_405_listing_the_allowed_ones(
    scim, method: str, path: str, allowed: str
) -> None:
    response = scim.request(method, path)

    assert_scim_error(response, 405, None, f"{method} is not allowed", f"(allowed: {allowed})")
    assert response.headers["Allow"] == allowed


def test_a_refused_method_needs_a_token_first(client) -> None:
    """Unrouted requests under the prefix are authenticated like routed ones."""
    response = client.delete("/scim/v2/Users")

    assert_scim_error(response, 401, None, "no Authorization header")


# -- size limit ------------------------------------------------------------------------------


@pytest.fixture
def small_body_app(tmp_path: Path) -> Flask:
    settings = Settings(
        server=ServerSettings(max_body_bytes=1024),
        storage=StorageSettings(path=tmp_path / "small"),
    )
    app = create_app(settings)
    yield app
    app.extensions["proware"].repository.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_an_oversized_body_is_413_naming_the_limit(small_body_app: Flask, scim_for, method) -> None:
    scim = scim_for(small_body_app)
    user = scim.create_user("ann")
    path = "/Users" if method == "POST" else f"/Users/{user['id']}"

    response = scim.request(method, path, {"userName": "ann", "title": "x" * 2000})

    assert_scim_error(response, 413, None, "1024 bytes", "max_body_bytes")
    assert scim.get(f"/Users/{user['id']}").get_json() == user


# -- unexpected failures ---------------------------------------------------------------------


def test_an_unexpected_exception_is_a_generic_500_with_a_request_id(
    app: Flask, scim, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False
    directory = app.extensions["proware"].directory

    def explode(*args, **kwargs):
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(directory, "query", explode)

    response = scim.get("/Users")

    body = assert_scim_error(response, 500, None, "internal server error")
    request_id = response.headers["X-Request-Id"]
    assert request_id in body["detail"]
    assert "hunter2" not in response.get_data(as_text=True)
    assert "RuntimeError" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.name == "proware" and r.levelno == logging.ERROR]
    assert request_id in logged[0].getMessage()
    assert logged[0].exc_info is not None  # the traceback goes to the log


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_database_out_of_reach_is_a_503_to_retry_never_a_500(
    app: Flask, scim, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """PostgreSQL gone mid-run (storage raises Unavailable): Entra retries a 503."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    directory = app.extensions["proware"].directory

    def unreachable(*args, **kwargs):
        raise Unavailable("PostgreSQL at db.example.com:5432 is unreachable: connection refused")

    monkeypatch.setattr(directory, "query" if method == "GET" else "create", unreachable)

    response = scim.request(method, "/Users", {"userName": "ann"} if method == "POST" else None)

    assert_scim_error(response, 503, None, "database is unavailable; retry later")
    assert response.headers["Retry-After"] == "5"


def test_a_failed_journal_fsync_is_a_503_and_nothing_of_the_change_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The embedded store's fdatasync fails (EIO): the change may not be on disk, so it is
    refused with a 503 that says so, never a 500; every later write until a restart too,
    while reads go on from what is durable."""
    app = create_app(Settings(storage=StorageSettings(path=tmp_path / "data"), source="test"))
    app.config["PROPAGATE_EXCEPTIONS"] = False
    services = app.extensions["proware"]
    token, _ = services.tokens.create("entra")
    services.switch.set(True)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": constants.SCIM_MEDIA_TYPE}

    def post(user_name: str):
        return client.post("/scim/v2/Users", json={"userName": user_name}, headers=headers)

    def failing(descriptor: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    try:
        assert post("ann").status_code == 201
        with monkeypatch.context() as patch:
            patch.setattr(journal_file.os, "fdatasync", failing)
            refused = post("bob")
        later = post("cid")
        listed = client.get("/scim/v2/Users", headers=headers).get_json()
    finally:
        app.extensions["proware.backend"].close()

    for response in (refused, later):
        assert_scim_error(response, 503, None, "could not write to its disk", "restarts")
    assert [user["userName"] for user in listed["Resources"]] == ["ann"]


def test_other_protocol_errors_keep_their_status_with_a_scim_body(app: Flask, client) -> None:
    """Werkzeug raises some HTTP errors itself (here 414); they are rendered as SCIM errors."""

    def too_long() -> None:
        raise RequestURITooLarge()

    app.add_url_rule("/too-long", view_func=too_long)

    response = client.get("/too-long")

    assert_scim_error(response, 414, None, "requested URL")


def test_error_bodies_are_valid_json_with_non_ascii_details(scim) -> None:
    response = scim.get("/Users/日本")

    body = assert_scim_error(response, 404, None, "'日本'")
    assert json.loads(response.get_data().decode("utf-8")) == body


@pytest.mark.parametrize(
    ("body", "where"),
    [
        pytest.param('{"userName": "ann", "title": "a\\u0000b"}', "U+0000 at position 1", id="nul"),
        pytest.param('{"userName": "ann", "displayName": "\\ud800x"}', "U+D800", id="surrogate"),
        pytest.param(
            '{"userName": "ann", "emails": [{"value": "\\udfff@x"}]}', "U+DFFF", id="in-a-list"
        ),
    ],
)
def test_characters_no_store_can_hold_are_refused_on_every_backend(
    scim, body: str, where: str
) -> None:
    """JSON can spell U+0000 and unpaired surrogates; PostgreSQL cannot store them."""
    response = scim.request("POST", "/Users", body)

    assert_scim_error(response, 400, "invalidValue", where)
    assert scim.get("/Users").get_json()["totalResults"] == 0


def test_an_identifier_too_long_to_index_is_refused(scim) -> None:
    response = scim.post("/Users", {"userName": "日" * 700})  # 700 characters, 2,100 bytes

    assert_scim_error(response, 400, "invalidValue", "at most 2000 bytes")


@pytest.mark.parametrize(
    "path",
    ["/Users/a%00b", '/Users?filter=userName+eq+"a%00b"', '/Users?filter=userName+eq+"\\u0000"'],
)
def test_a_nul_in_a_url_is_never_a_500(scim, path: str) -> None:
    assert scim.get(path).status_code in (200, 400, 404)
