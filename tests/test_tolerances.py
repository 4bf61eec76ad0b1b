"""Each input variant listed in scim/schemas/tolerance.py loads, named by its Entra quirk id."""

from __future__ import annotations

import pytest

from scim import constants
from scim.definitions import GROUP_RESOURCE, USER_RESOURCE
from scim.errors import InvalidValue
from scim.schemas import load_resource

ENTERPRISE = constants.ENTERPRISE_USER


def _user(**attributes: object) -> dict:
    return load_resource(USER_RESOURCE, {"userName": "ann", **attributes})


def _group(**attributes: object) -> dict:
    return load_resource(GROUP_RESOURCE, {"displayName": "Sales", **attributes})


# -- Q24: names in any case ------------------------------------------------------------------


def test_q24_attribute_names_in_any_case_become_canonical():
    document = load_resource(
        USER_RESOURCE,
        {"USERNAME": "ann", "DisplayName": "Ann", "externalid": "e1", "Active": True},
    )
    assert document == {
        "schemas": [constants.USER],
        "externalId": "e1",
        "userName": "ann",
        "displayName": "Ann",
        "active": True,
    }


def test_q24_sub_attribute_names_in_any_case_become_canonical():
    document = _user(
        Name={"FamilyName": "Jensen", "GIVENNAME": "Barbara"},
        Emails=[{"Value": "a@x", "Type": "work", "Primary": True}],
    )
    assert document["name"] == {"familyName": "Jensen", "givenName": "Barbara"}
    assert document["emails"] == [{"value": "a@x", "type": "work", "primary": True}]


def test_q24_extension_urn_key_and_its_keys_in_any_case_become_canonical():
    document = _user(**{ENTERPRISE.upper(): {"Department": "Sales", "Manager": {"Value": "m1"}}})
    assert document["schemas"] == [constants.USER, ENTERPRISE]
    assert document[ENTERPRISE] == {"department": "Sales", "manager": {"value": "m1"}}


def test_q24_one_name_given_twice_in_different_cases_is_rejected():
    with pytest.raises(InvalidValue) as raised:
        _user(title="Guide", Title="Boss")
    assert raised.value.detail == "title: given more than once, as 'title' and 'Title'"


def test_q24_a_null_duplicate_does_not_conflict_with_a_value():
    assert _user(title="Guide", TITLE=None)["title"] == "Guide"
    assert _user(TITLE=None, title="Guide")["title"] == "Guide"


# -- Q2 / Q15: booleans ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "loaded"),
    [
        pytest.param("True", True, id="True"),
        pytest.param("False", False, id="False"),
        pytest.param("true", True, id="true"),
        pytest.param("FALSE", False, id="FALSE"),
        pytest.param("tRuE", True, id="mixed-case"),
        pytest.param(True, True, id="json-true"),
        pytest.param(False, False, id="json-false"),
    ],
)
def test_q2_boolean_strings_in_any_case_load_as_real_booleans(sent, loaded):
    document = _user(active=sent, emails=[{"value": "a@x", "primary": sent}])
    assert document["active"] is loaded  # Q15: a JSON boolean, never the string
    assert document["emails"][0]["primary"] is loaded


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        pytest.param("yes", "'yes'", id="yes"),
        pytest.param("1", "'1'", id="string-one"),
        pytest.param(" true", "' true'", id="padded"),
        pytest.param("", "''", id="empty"),
        pytest.param(1, "1", id="number-one"),
        pytest.param(0, "0", id="number-zero"),
        pytest.param([True], "a list", id="list"),
    ],
)
def test_q2_anything_else_that_is_not_a_boolean_is_invalid(sent, shown):
    with pytest.raises(InvalidValue) as raised:
        _user(active=sent)
    assert raised.value.detail == f"active: expected a boolean, got {shown}"


# -- Q13: null is absent -----------------------------------------------------------------------


def test_q13_legacy_create_example_with_nulls_and_a_malformed_urn_loads():
    """entra-provisioning.md A3, the legacy "Example 2. Provision a user"."""
    payload = {
        "schemas": [constants.USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"],
        "externalId": "jdoe",
        "userName": "jdoe@testuser.com",
        "active": True,
        "addresses": None,
        "displayName": "John Doe",
        "emails": [{"primary": True, "type": "work", "value": "jdoe@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"familyName": "Doe", "givenName": "John"},
        "title": None,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0User": {"department": None},
        ENTERPRISE: {"department": None, "manager": None},
    }
    assert load_resource(USER_RESOURCE, payload) == {
        "schemas": [constants.USER],
        "externalId": "jdoe",
        "userName": "jdoe@testuser.com",
        "displayName": "John Doe",
        "name": {"familyName": "Doe", "givenName": "John"},
        "active": True,
        "emails": [{"value": "jdoe@testuser.com", "type": "work", "primary": True}],
    }


def test_q13_null_sub_attributes_and_null_list_items_are_absent():
    document = _user(name={"givenName": None}, emails=[None, {"value": "a@x", "type": None}])
    assert "name" not in document
    assert document["emails"] == [{"value": "a@x"}]


# -- A3, A8: read-only attributes in a POST or PUT ---------------------------------------------


def test_a3_read_only_id_meta_and_groups_are_ignored():
    document = _user(
        id="client-chosen",
        meta={"resourceType": "User", "version": 'W/"1"'},
        groups=[{"value": "g1", "display": "Sales"}],
    )
    assert document == {"schemas": [constants.USER], "userName": "ann"}


def test_a8_read_only_id_and_meta_are_ignored_and_member_display_kept():
    """A member's display is immutable, not read-only (RFC 7643 §2.4): the group keeps it (Q23)."""
    document = _group(
        id="client-chosen",
        meta={"resourceType": "Group"},
        members=[{"value": "u1", "display": "Ann"}],
    )
    assert document == {
        "schemas": [constants.GROUP],
        "displayName": "Sales",
        "members": [{"value": "u1", "display": "Ann"}],
    }


def test_a3_read_only_manager_display_name_is_ignored():
    document = _user(**{ENTERPRISE: {"manager": {"value": "m1", "displayName": "Boss"}}})
    assert document[ENTERPRISE] == {"manager": {"value": "m1"}}


# -- A3: empty lists ---------------------------------------------------------------------------


def test_a3_empty_roles_list_is_fine_and_kept_as_sent():
    assert _user(roles=[])["roles"] == []


def test_a8_empty_members_list_is_kept_so_a_put_can_clear_members():
    assert _group(members=[])["members"] == []


# -- multi-valued attribute given as a single value --------------------------------------------


def test_single_email_object_becomes_a_one_element_list():
    document = _user(emails={"value": "a@x", "primary": "True"})
    assert document["emails"] == [{"value": "a@x", "primary": True}]


def test_single_member_object_becomes_a_one_element_list():
    assert _group(members={"value": "u1"})["members"] == [{"value": "u1"}]


# -- Q14: manager ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "manager",
    [
        pytest.param("m1", id="bare-id"),
        pytest.param({"value": "m1"}, id="rfc-form"),
        pytest.param({"value": {"value": "m1"}}, id="validator-2026-nested-value"),
        pytest.param({"Value": {"VALUE": "m1"}}, id="nested-value-odd-case"),
        pytest.param({"value": "m1", "displayName": "Boss"}, id="with-read-only-display-name"),
    ],
)
def test_q14_manager_forms_load_as_value_object(manager):
    document = _user(**{ENTERPRISE: {"manager": manager}})
    assert document[ENTERPRISE] == {"manager": {"value": "m1"}}


def test_q14_manager_ref_is_kept():
    manager = {"value": "m1", "$ref": "../Users/m1"}
    assert _user(**{ENTERPRISE: {"manager": manager}})[ENTERPRISE] == {"manager": manager}


def test_q14_manager_that_is_neither_id_nor_object_is_invalid():
    with pytest.raises(InvalidValue) as raised:
        _user(**{ENTERPRISE: {"manager": 17}})
    assert raised.value.detail == f"{ENTERPRISE}:manager: expected an object, got 17"


# -- Q17, A3: schemas is never validated against a closed list ---------------------------------


@pytest.mark.parametrize(
    ("schemas", "expected"),
    [
        pytest.param(
            [constants.GROUP, constants.MICROSOFT_GROUP], [constants.GROUP], id="q17-microsoft"
        ),
        pytest.param(["urn:example:unknown"], [constants.GROUP], id="unknown-urn"),
        pytest.param([constants.USER], [constants.GROUP], id="wrong-resource-urn"),
        pytest.param("not a list", [constants.GROUP], id="not-a-list"),
        pytest.param([], [constants.GROUP], id="empty"),
    ],
)
def test_q17_schemas_is_never_rejected_and_is_recomputed(schemas, expected):
    assert _group(schemas=schemas)["schemas"] == expected


def test_a3_malformed_extension_urn_in_schemas_is_not_rejected():
    document = _user(
        schemas=[constants.USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0User"]
    )
    assert document["schemas"] == [constants.USER]


# -- Q23: member objects -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member", "loaded"),
    [
        pytest.param({"$ref": None, "value": "u1"}, {"value": "u1"}, id="a12-ref-null"),
        pytest.param(
            {"value": "u1", "display": "Ann"}, {"value": "u1", "display": "Ann"}, id="display"
        ),
        pytest.param(
            {"displayName": "new User", "value": "u1"},
            {"value": "u1", "display": "new User"},
            id="displayName",
        ),
        pytest.param(
            {"DISPLAYNAME": "new User", "value": "u1"},
            {"value": "u1", "display": "new User"},
            id="displayName-any-case",
        ),
        pytest.param(
            {"Display": "Ann", "displayName": None, "value": "u1"},
            {"value": "u1", "display": "Ann"},
            id="display-with-null-displayName",
        ),
        pytest.param({"value": "u1", "display": None}, {"value": "u1"}, id="display-null"),
        pytest.param({"Value": "u1"}, {"value": "u1"}, id="odd-case-value"),
        pytest.param("u1", {"value": "u1"}, id="bare-id"),
        pytest.param(
            {"value": "u1", "type": "User"}, {"value": "u1", "type": "User"}, id="type-user"
        ),
        pytest.param(
            {"value": "u1", "TYPE": "user"}, {"value": "u1", "type": "User"}, id="type-user-case"
        ),
        pytest.param({"value": "u1", "type": "direct"}, {"value": "u1"}, id="type-other"),
    ],
)
def test_q23_member_forms_load_as_value_object(member, loaded):
    assert _group(members=[member])["members"] == [loaded]


@pytest.mark.parametrize("group_type", ["Group", "group", "GROUP"])
def test_q23_member_of_type_group_is_rejected_because_groups_do_not_nest(group_type):
    with pytest.raises(InvalidValue) as raised:
        _group(members=[{"value": "u1"}, {"value": "g1", "type": group_type}])
    assert raised.value.detail == (
        "members[1]: nested groups are not supported; members must be users"
    )


# -- Q22: unknown attributes -------------------------------------------------------------------


def test_q22_unknown_attributes_are_skipped_at_every_level():
    document = _user(
        favouriteColour="green",
        name={"givenName": "Ann", "nameSuffix": "x"},
        emails=[{"value": "a@x", "verified": True}],
        **{
            ENTERPRISE: {"department": "Sales", "badgeNumber": 7},
            "urn:example:custom:2.0:User": {"shoeSize": 39},
        },
    )
    assert document == {
        "schemas": [constants.USER, ENTERPRISE],
        "userName": "ann",
        "name": {"givenName": "Ann"},
        "emails": [{"value": "a@x"}],
        ENTERPRISE: {"department": "Sales"},
    }


def test_q22_complex_value_with_only_unknown_sub_attributes_is_absent():
    document = _user(name={"nameSuffix": "x"}, emails=[{"verified": True}])
    assert "name" not in document
    assert document["emails"] == []
