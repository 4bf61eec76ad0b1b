"""load_resource and load_search_request: canonical documents out, SCIM errors with a path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from marshmallow import Schema, ValidationError

from scim import constants
from scim.definitions import GROUP_RESOURCE, USER_RESOURCE
from scim.errors import InvalidSyntax, InvalidValue
from scim.schemas import (
    EnterpriseUserSchema,
    GroupSchema,
    SearchRequestSchema,
    UserSchema,
    load_resource,
    load_search_request,
)
from scim.schemas.fields import ScimDateTime, ScimDecimal, ScimInteger

# RFC 7643 §8.2, the full User representation (ids shortened where the RFC wraps them).
RFC7643_8_2_FULL_USER = {
    "schemas": [constants.USER],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "701984",
    "userName": "bjensen@example.com",
    "name": {
        "formatted": "Ms. Barbara J Jensen, III",
        "familyName": "Jensen",
        "givenName": "Barbara",
        "middleName": "Jane",
        "honorificPrefix": "Ms.",
        "honorificSuffix": "III",
    },
    "displayName": "Babs Jensen",
    "nickName": "Babs",
    "profileUrl": "https://login.example.com/bjensen",
    "emails": [
        {"value": "bjensen@example.com", "type": "work", "primary": True},
        {"value": "babs@jensen.org", "type": "home"},
    ],
    "addresses": [
        {
            "type": "work",
            "streetAddress": "100 Universal City Plaza",
            "locality": "Hollywood",
            "region": "CA",
            "postalCode": "91608",
            "country": "USA",
            "formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA",
            "primary": True,
        },
        {
            "type": "home",
            "streetAddress": "456 Hollywood Blvd",
            "locality": "Hollywood",
            "region": "CA",
            "postalCode": "91608",
            "country": "USA",
            "formatted": "456 Hollywood Blvd\nHollywood, CA 91608 USA",
        },
    ],
    "phoneNumbers": [
        {"value": "555-555-5555", "type": "work"},
        {"value": "555-555-4444", "type": "mobile"},
    ],
    "ims": [{"value": "someaimhandle", "type": "aim"}],
    "photos": [
        {"value": "https://photos.example.com/profilephoto/72930000000Ccne/F", "type": "photo"},
        {"value": "https://photos.example.com/profilephoto/72930000000Ccne/T", "type": "thumbnail"},
    ],
    "userType": "Employee",
    "title": "Tour Guide",
    "preferredLanguage": "en-US",
    "locale": "en-US",
    "timezone": "America/Los_Angeles",
    "active": True,
    "password": "t1meMa$heen",
    "groups": [
        {
            "value": "e9e30dba-f08f-4109-8486-d5c6a331660a",
            "$ref": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
            "display": "Tour Guides",
        }
    ],
    "x509Certificates": [{"value": "MIIDQzCCAqygAwIBAgICEAAwDQYJKoZIhvcNAQEFBQAwTjELMAkGA1UEBhMC"}],
    "meta": {
        "resourceType": "User",
        "created": "2010-01-23T04:56:22Z",
        "lastModified": "2011-05-13T04:42:34Z",
        "version": 'W/"a330bc54f0671c9"',
        "location": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
    },
}

# RFC 7643 §8.3, the enterprise extension object of the Enterprise User example.
RFC7643_8_3_ENTERPRISE = {
    "employeeNumber": "701984",
    "costCenter": "4130",
    "organization": "Universal Studios",
    "division": "Theme Park",
    "department": "Tour Operations",
    "manager": {
        "value": "26118915-6090-4610-87e4-49d8ca9f808d",
        "$ref": "../Users/26118915-6090-4610-87e4-49d8ca9f808d",
        "displayName": "John Smith",
    },
}

# RFC 7643 §8.4, the Group representation.
RFC7643_8_4_GROUP = {
    "schemas": [constants.GROUP],
    "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
    "displayName": "Tour Guides",
    "members": [
        {
            "value": "2819c223-7f76-453a-919d-413861904646",
            "$ref": "https://example.com/v2/Users/2819c223-7f76-453a-919d-413861904646",
            "display": "Babs Jensen",
        },
        {
            "value": "902c246b-6245-4190-8e05-00816be7344a",
            "$ref": "https://example.com/v2/Users/902c246b-6245-4190-8e05-00816be7344a",
            "display": "Mandy Pepperidge",
        },
    ],
    "meta": {
        "resourceType": "Group",
        "created": "2010-01-23T04:56:22Z",
        "lastModified": "2011-05-13T04:42:34Z",
        "version": 'W/"3694e05e9dff592"',
        "location": "https://example.com/v2/Groups/e9e30dba-f08f-4109-8486-d5c6a331660a",
    },
}

# entra-provisioning.md A3: the create-user body from Microsoft's docs.
ENTRA_A3_CREATE_USER = {
    "schemas": [constants.USER, constants.ENTERPRISE_USER],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee",
    "active": True,
    "emails": [
        {
            "primary": True,
            "type": "work",
            "value": "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com",
        }
    ],
    "meta": {"resourceType": "User"},
    "name": {
        "formatted": "givenName familyName",
        "familyName": "familyName",
        "givenName": "givenName",
    },
    "roles": [],
}

# entra-provisioning.md A8: the create-group body, with Microsoft's private schema URI (Q17).
ENTRA_A8_CREATE_GROUP = {
    "schemas": [constants.GROUP, constants.MICROSOFT_GROUP],
    "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
    "displayName": "displayName",
    "meta": {"resourceType": "Group"},
}


def _without(document: Any, *keys: str) -> dict:
    return {key: value for key, value in document.items() if key not in keys}


def _user(**attributes: object) -> dict:
    return load_resource(USER_RESOURCE, {"userName": "ann", **attributes})


@pytest.mark.parametrize(
    ("resource", "payload", "expected"),
    [
        pytest.param(
            USER_RESOURCE,
            RFC7643_8_2_FULL_USER,
            _without(RFC7643_8_2_FULL_USER, "id", "groups", "meta"),
            id="rfc7643-8.2-full-user",
        ),
        pytest.param(
            USER_RESOURCE,
            {**RFC7643_8_2_FULL_USER, constants.ENTERPRISE_USER: RFC7643_8_3_ENTERPRISE},
            {
                **_without(RFC7643_8_2_FULL_USER, "id", "groups", "meta"),
                "schemas": [constants.USER, constants.ENTERPRISE_USER],
                constants.ENTERPRISE_USER: {
                    **RFC7643_8_3_ENTERPRISE,
                    "manager": _without(RFC7643_8_3_ENTERPRISE["manager"], "displayName"),
                },
            },
            id="rfc7643-8.3-enterprise-user",
        ),
        pytest.param(
            GROUP_RESOURCE,
            RFC7643_8_4_GROUP,
            {
                "schemas": [constants.GROUP],
                "displayName": "Tour Guides",
                "members": RFC7643_8_4_GROUP["members"],
            },
            id="rfc7643-8.4-group",
        ),
        pytest.param(
            USER_RESOURCE,
            ENTRA_A3_CREATE_USER,
            {**_without(ENTRA_A3_CREATE_USER, "meta"), "schemas": [constants.USER]},
            id="entra-a3-create-user",
        ),
        pytest.param(
            GROUP_RESOURCE,
            ENTRA_A8_CREATE_GROUP,
            {
                "schemas": [constants.GROUP],
                "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
                "displayName": "displayName",
            },
            id="entra-a8-create-group",
        ),
    ],
)
def test_load_resource_returns_the_canonical_document(resource, payload, expected):
    assert load_resource(resource, payload) == expected


def test_load_resource_does_not_modify_the_payload():
    payload = copy.deepcopy(RFC7643_8_2_FULL_USER)
    load_resource(USER_RESOURCE, payload)
    assert payload == RFC7643_8_2_FULL_USER


def test_schemas_comes_first_and_lists_the_extension_only_when_it_has_a_value():
    with_extension = _user(**{constants.ENTERPRISE_USER: {"department": "Sales"}})
    without = _user(**{constants.ENTERPRISE_USER: {"department": None}})
    assert list(with_extension)[0] == "schemas"
    assert with_extension["schemas"] == [constants.USER, constants.ENTERPRISE_USER]
    assert without == {"schemas": [constants.USER], "userName": "ann"}


def test_write_only_password_is_kept_for_the_service_to_hash():
    assert _user(password="t1meMa$heen")["password"] == "t1meMa$heen"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("Zoë Ångström", id="latin-diacritics"),
        pytest.param("名前", id="cjk"),
        pytest.param("🧑‍💻 dev", id="emoji-zwj"),
        pytest.param("  Ann  ", id="surrounding-spaces"),
        pytest.param("ANN@Example.COM", id="mixed-case"),
    ],
)
def test_strings_round_trip_exactly_as_sent(text):
    """Entra Q19: no trimming, no case change, no normalisation."""
    document = _user(userName=text, displayName=text, name={"givenName": text})
    assert document["userName"] == text
    assert document["displayName"] == text
    assert document["name"] == {"givenName": text}


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        pytest.param({"userName": 5}, "userName: expected a string, got 5", id="number-username"),
        pytest.param({}, "userName: required", id="missing-username"),
        pytest.param({"userName": None}, "userName: required", id="null-username"),
        pytest.param({"userName": ""}, "userName: must not be empty", id="empty-username"),
        pytest.param(
            {"userName": "ann", "emails": [{"value": "a@x"}, {"value": "b@x", "primary": "yes"}]},
            "emails[1].primary: expected a boolean, got 'yes'",
            id="string-primary",
        ),
        pytest.param(
            {"userName": "ann", "active": 1}, "active: expected a boolean, got 1", id="one-active"
        ),
        pytest.param(
            {"userName": "ann", "name": "Ann"},
            "name: expected an object, got 'Ann'",
            id="string-name",
        ),
        pytest.param(
            {"userName": "ann", "emails": ["a@x"]},
            "emails[0]: expected an object, got 'a@x'",
            id="string-email",
        ),
        pytest.param(
            {"userName": "ann", "name": {"givenName": ["Ann"]}},
            "name.givenName: expected a string, got a list",
            id="list-given-name",
        ),
        pytest.param(
            {"userName": "ann", "externalId": 701984},
            "externalId: expected a string, got 701984",
            id="number-external-id",
        ),
        pytest.param(
            {"userName": "ann", constants.ENTERPRISE_USER: {"manager": {"value": 42}}},
            f"{constants.ENTERPRISE_USER}:manager.value: expected a string, got 42",
            id="number-manager-value",
        ),
        pytest.param(
            {"userName": "ann", constants.ENTERPRISE_USER: "Sales"},
            f"{constants.ENTERPRISE_USER}: expected an object, got 'Sales'",
            id="string-extension",
        ),
        pytest.param(
            {"userName": "ann", "title": True},
            "title: expected a string, got true",
            id="boolean-title",
        ),
    ],
)
def test_invalid_user_raises_invalid_value_naming_where(payload, detail):
    with pytest.raises(InvalidValue) as raised:
        load_resource(USER_RESOURCE, payload)
    assert raised.value.detail == detail


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        pytest.param({}, "displayName: required", id="missing-display-name"),
        pytest.param({"displayName": 7}, "displayName: expected a string, got 7", id="number"),
        pytest.param(
            {"displayName": "g", "members": [{"value": 7}]},
            "members[0].value: expected a string, got 7",
            id="number-member",
        ),
        pytest.param(
            {"displayName": "g", "members": [{"display": "Ann"}]},
            "members[0].value: required",
            id="member-without-value",
        ),
        pytest.param(
            {"displayName": "g", "members": [{"value": "u1", "display": "A", "displayName": "B"}]},
            "members[0]: given more than once, as 'display' and 'displayName'",
            id="member-display-twice",
        ),
        pytest.param(
            {"displayName": "g", "members": [{"value": "u1", "displayName": 7}]},
            "members[0].display: expected a string, got 7",
            id="number-member-display",
        ),
        pytest.param(
            {"displayName": "g", "members": [{"value": "u1", "display": "new\nUser"}]},
            "members[0].display: control characters are not allowed (U+000A at position 3)",
            id="member-display-control-character",
        ),
    ],
)
def test_invalid_group_raises_invalid_value_naming_where(payload, detail):
    with pytest.raises(InvalidValue) as raised:
        load_resource(GROUP_RESOURCE, payload)
    assert raised.value.detail == detail


def test_every_problem_is_listed_in_one_detail():
    with pytest.raises(InvalidValue) as raised:
        load_resource(USER_RESOURCE, {"active": "maybe"})
    assert raised.value.detail == "userName: required; active: expected a boolean, got 'maybe'"


@pytest.mark.parametrize(
    ("resource", "attribute"),
    [
        pytest.param(USER_RESOURCE, "userName", id="user-userName"),
        pytest.param(USER_RESOURCE, "displayName", id="user-displayName"),
        pytest.param(USER_RESOURCE, "externalId", id="user-externalId"),
        pytest.param(GROUP_RESOURCE, "displayName", id="group-displayName"),
        pytest.param(GROUP_RESOURCE, "externalId", id="group-externalId"),
    ],
)
@pytest.mark.parametrize(
    ("character", "code"),
    [
        pytest.param("\x00", "U+0000", id="nul"),
        pytest.param("\n", "U+000A", id="newline"),
        pytest.param("\x1f", "U+001F", id="unit-separator"),
        pytest.param("\x7f", "U+007F", id="delete"),
    ],
)
def test_control_characters_in_identifiers_are_rejected(resource, attribute, character, code):
    required = {"userName": "ann"} if resource is USER_RESOURCE else {"displayName": "g"}
    with pytest.raises(InvalidValue) as raised:
        load_resource(resource, {**required, attribute: f"ab{character}c"})
    assert raised.value.detail == (
        f"{attribute}: control characters are not allowed ({code} at position 2)"
    )


def test_control_characters_are_fine_where_text_may_span_lines():
    """RFC 7643 §8.2's own formatted address contains a newline."""
    address = {"formatted": "100 Universal City Plaza\nHollywood, CA 91608 USA"}
    assert _user(addresses=[address])["addresses"] == [address]


def test_identifiers_may_be_1024_characters_but_not_more():
    assert _user(externalId="x" * 1024)["externalId"] == "x" * 1024
    with pytest.raises(InvalidValue) as raised:
        _user(externalId="x" * 1025)
    assert raised.value.detail == "externalId: must be at most 1024 characters, got 1025"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param([{"userName": "ann"}], id="list"),
        pytest.param("userName=ann", id="string"),
        pytest.param(None, id="null"),
        pytest.param(5, id="number"),
    ],
)
def test_body_that_is_not_an_object_is_invalid_syntax(payload):
    with pytest.raises(InvalidSyntax, match="request body: expected a JSON object"):
        load_resource(USER_RESOURCE, payload)


def test_validation_error_never_leaves_the_boundary():
    try:
        load_resource(USER_RESOURCE, {"userName": 5})
    except InvalidValue as error:
        assert error.__cause__ is None
        assert not isinstance(error, ValidationError)


@pytest.mark.parametrize(
    ("schema_class", "name"),
    [
        pytest.param(UserSchema, "UserSchema", id="user"),
        pytest.param(GroupSchema, "GroupSchema", id="group"),
        pytest.param(EnterpriseUserSchema, "EnterpriseUserSchema", id="enterprise-user"),
    ],
)
def test_named_schema_classes_are_marshmallow_schemas(schema_class, name):
    assert issubclass(schema_class, Schema)
    assert schema_class.__name__ == name
    assert schema_class.__doc__


def test_enterprise_user_schema_loads_an_extension_object_on_its_own():
    loaded = EnterpriseUserSchema().load({"Department": "Sales", "manager": "boss"})
    assert loaded == {"department": "Sales", "manager": {"value": "boss"}}


# Types no writable attribute in the definitions uses today, tested on a bare schema.
_TYPED = Schema.from_dict(
    {"when": ScimDateTime(), "count": ScimInteger(), "ratio": ScimDecimal()}, name="Typed"
)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2008-01-23T04:56:22Z", id="utc-z"),
        pytest.param("2008-01-23T04:56:22.123+01:00", id="offset-fraction"),
        pytest.param("2008-01-23T04:56:22", id="no-offset"),
    ],
)
def test_datetime_is_validated_and_kept_as_sent(value):
    assert _TYPED().load({"when": value}) == {"when": value}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2008-01-23", id="date-only"),
        pytest.param("2008-01-23T04:56", id="no-seconds"),
        pytest.param("yesterday", id="words"),
        pytest.param("2008-13-23T04:56:22Z", id="month-13"),
        pytest.param(1201046182, id="epoch-number"),
    ],
)
def test_datetime_rejects_what_is_not_iso_8601(value):
    with pytest.raises(ValidationError, match="expected an ISO 8601 dateTime"):
        _TYPED().load({"when": value})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param("count", "7", "expected an integer, got '7'", id="integer-string"),
        pytest.param("count", 7.5, "expected an integer, got 7.5", id="integer-float"),
        pytest.param("count", True, "expected an integer, got true", id="integer-bool"),
        pytest.param("ratio", "2.5", "expected a number, got '2.5'", id="decimal-string"),
        pytest.param("ratio", False, "expected a number, got false", id="decimal-bool"),
    ],
)
def test_numbers_are_not_strings_or_booleans(field, value, message):
    with pytest.raises(ValidationError) as raised:
        _TYPED().load({field: value})
    assert raised.value.messages == {field: [message]}


def test_numbers_load_as_sent():
    assert _TYPED().load({"count": 7, "ratio": 2.5}) == {"count": 7, "ratio": 2.5}


# RFC 7644 §3.4.3, Figure 5: a SearchRequest.
RFC7644_3_4_3_SEARCH = {
    "schemas": [constants.SEARCH_REQUEST],
    "attributes": ["displayName", "userName"],
    "filter": 'displayName sw "smith"',
    "startIndex": 1,
    "count": 10,
}


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(RFC7644_3_4_3_SEARCH, RFC7644_3_4_3_SEARCH, id="rfc7644-3.4.3"),
        pytest.param(
            {
                "Filter": 'userName eq "ann"',
                "EXCLUDEDATTRIBUTES": ["emails"],
                "sortby": "userName",
                "SortOrder": "Descending",
                "startindex": 3,
                "Count": 0,
            },
            {
                "filter": 'userName eq "ann"',
                "excludedAttributes": ["emails"],
                "sortBy": "userName",
                "sortOrder": "Descending",
                "startIndex": 3,
                "count": 0,
            },
            id="keys-in-any-case",
        ),
        pytest.param(
            {"filter": None, "count": None, "unknown": 1, "schemas": [constants.MICROSOFT_GROUP]},
            {"schemas": [constants.MICROSOFT_GROUP]},
            id="nulls-and-unknown-keys-skipped",
        ),
        pytest.param({}, {}, id="empty"),
    ],
)
def test_search_request_loads_under_rfc_names(payload, expected):
    assert load_search_request(payload) == expected


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        pytest.param({"startIndex": "1"}, "startIndex: expected an integer, got '1'", id="start"),
        pytest.param({"count": 2.5}, "count: expected an integer, got 2.5", id="count-float"),
        pytest.param({"COUNT": True}, "count: expected an integer, got true", id="count-bool"),
        pytest.param(
            {"attributes": "userName,emails"},
            "attributes: expected a list, got 'userName,emails'",
            id="attributes-string",
        ),
        pytest.param(
            {"excludedAttributes": ["emails", 5]},
            "excludedAttributes[1]: expected a string, got 5",
            id="excluded-number",
        ),
        pytest.param({"filter": 5}, "filter: expected a string, got 5", id="filter-number"),
        pytest.param(
            {"sortOrder": "up"},
            "sortOrder: expected 'ascending' or 'descending', got 'up'",
            id="sort-order",
        ),
    ],
)
def test_invalid_search_request_raises_invalid_value_naming_it(payload, detail):
    with pytest.raises(InvalidValue) as raised:
        load_search_request(payload)
    assert raised.value.detail == detail


def test_search_request_that_is_not_an_object_is_invalid_syntax():
    with pytest.raises(InvalidSyntax):
        load_search_request(["filter"])


def test_search_request_schema_is_a_marshmallow_schema():
    assert issubclass(SearchRequestSchema, Schema)
