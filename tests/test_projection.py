"""Projection (RFC 7644 §3.4.2.5, §3.9): returned, attributes and excludedAttributes."""

from __future__ import annotations

import pytest

from scim import constants, definitions
from scim.definitions import GROUP_RESOURCE, USER_RESOURCE, AttributeDef, ResourceTypeDef, SchemaDef
from scim.errors import InvalidPath, InvalidValue
from scim.paths import AttrPath
from scim.projection import parse_attribute_list, project

ENTERPRISE = constants.ENTERPRISE_USER


def ann() -> dict:
    return {
        "schemas": [constants.USER, ENTERPRISE],
        "id": "u1",
        "externalId": "e1",
        "userName": "ann",
        "password": "hunter2",
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [
            {"value": "ann@work.example", "type": "work", "primary": True},
            {"value": "ann@home.example", "type": "home"},
        ],
        ENTERPRISE: {"department": "Sales", "manager": {"value": "u0"}},
        "meta": {"resourceType": "User", "created": "2024-01-01T00:00:00Z"},
    }


def show(document: dict, attributes: str | None = None, excluded: str | None = None) -> dict:
    return project(
        document,
        USER_RESOURCE,
        parse_attribute_list(attributes) or None,
        parse_attribute_list(excluded, "excludedAttributes") or None,
    )


def test_default_returns_everything_but_never_attributes() -> None:
    expected = ann()
    del expected["password"]
    assert show(ann()) == expected


def test_attributes_return_only_those_plus_id_and_schemas() -> None:
    assert show(ann(), "userName") == {"schemas": ann()["schemas"], "id": "u1", "userName": "ann"}


def test_sub_attribute_request_returns_the_parent_with_only_that_sub_attribute() -> None:
    result = show(ann(), "name.givenName,emails.value")
    assert result["name"] == {"givenName": "Ann"}
    assert result["emails"] == [{"value": "ann@work.example"}, {"value": "ann@home.example"}]


def test_extension_attribute_request_returns_it_inside_its_container() -> None:
    assert show(ann(), f"{ENTERPRISE}:department")[ENTERPRISE] == {"department": "Sales"}


def test_extension_schema_request_returns_the_whole_container() -> None:
    assert show(ann(), ENTERPRISE)[ENTERPRISE] == ann()[ENTERPRISE]


def test_names_in_any_case_select_canonical_keys() -> None:
    result = show(ann(), "USERNAME,Name.GivenName")
    assert result["userName"] == "ann"
    assert result["name"] == {"givenName": "Ann"}


def test_asking_for_a_never_attribute_still_omits_it() -> None:
    assert "password" not in show(ann(), "password,userName")


def test_excluded_attributes_are_removed() -> None:
    result = show(ann(), excluded="emails,name.familyName,meta")
    assert "emails" not in result
    assert "meta" not in result
    assert result["name"] == {"givenName": "Ann"}


def test_excluded_sub_attribute_of_multi_valued_is_removed_from_every_element() -> None:
    result = show(ann(), excluded="emails.primary")
    assert result["emails"] == [
        {"value": "ann@work.example", "type": "work"},
        {"value": "ann@home.example", "type": "home"},
    ]


def test_excluding_the_last_extension_attributes_drops_the_container() -> None:
    result = show(ann(), excluded=f"{ENTERPRISE}:department,{ENTERPRISE}:manager")
    assert ENTERPRISE not in result


def test_always_attributes_cannot_be_excluded() -> None:
    assert show(ann(), excluded="id")["id"] == "u1"


def test_group_members_are_excluded_on_request() -> None:
    """Entra Q9: every group read carries excludedAttributes=members."""
    group = {
        "schemas": [constants.GROUP],
        "id": "g1",
        "displayName": "G",
        "members": [{"value": "u1"}],
    }
    assert project(group, GROUP_RESOURCE, excluded=[AttrPath(None, "members")]) == {
        "schemas": [constants.GROUP],
        "id": "g1",
        "displayName": "G",
    }


def test_unknown_names_are_ignored() -> None:
    assert show(ann(), "userName,shoeSize,urn:x:y:1.0:Z:w") == show(ann(), "userName")
    assert show(ann(), excluded="shoeSize") == show(ann())


def test_input_is_never_mutated_or_aliased() -> None:
    before = ann()
    result = show(before, excluded="name.familyName")
    result[ENTERPRISE]["department"] = "changed"
    assert before == ann()


def test_request_attributes_only_when_asked() -> None:
    """RFC 7643 §7: returned "request" attributes appear only in an attributes list."""
    schema = SchemaDef(
        "urn:test:Thing",
        "Thing",
        "",
        (
            AttributeDef("shown"),
            AttributeDef("secret", returned=definitions.REQUEST),
            AttributeDef(
                "box",
                type=definitions.COMPLEX,
                sub_attributes=(
                    AttributeDef("a"),
                    AttributeDef("pin", returned=definitions.NEVER),
                    AttributeDef("key", returned=definitions.ALWAYS),
                ),
            ),
        ),
    )
    thing = ResourceTypeDef("Thing", "/Things", "", schema)
    document = {"shown": 1, "secret": 2, "box": {"a": 1, "pin": 2, "key": 3}}
    assert project(document, thing) == {"shown": 1, "box": {"a": 1, "key": 3}}
    assert project(document, thing, [AttrPath(None, "secret"), AttrPath(None, "box", "a")]) == {
        "secret": 2,
        "box": {"a": 1, "key": 3},
    }


def test_keys_the_definitions_do_not_know_pass_through_by_default_only() -> None:
    document = {**ann(), "legacy": 1}
    assert show(document)["legacy"] == 1
    assert "legacy" not in show(document, "userName")


# -- parsing the parameter -----------------------------------------------------------------


def test_attribute_list_parses_each_item() -> None:
    assert parse_attribute_list(f"userName,name.givenName, {ENTERPRISE}:department") == [
        AttrPath(None, "userName"),
        AttrPath(None, "name", "givenName"),
        AttrPath(ENTERPRISE, "department"),
    ]


@pytest.mark.parametrize("text", [None, "", " , "])
def test_empty_attribute_list_selects_nothing(text: str | None) -> None:
    assert parse_attribute_list(text) == []


def test_filter_in_attribute_list_is_invalid_value() -> None:
    with pytest.raises(InvalidValue, match="^excludedAttributes: "):
        parse_attribute_list('emails[type eq "work"]', "excludedAttributes")


@pytest.mark.parametrize("text", ["user name", "name.given.name", "9lives"])
def test_garbage_in_attribute_list_is_invalid_path(text: str) -> None:
    with pytest.raises(InvalidPath):
        parse_attribute_list(text)


# -- the default projection's shortcut -----------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUES = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.just([]),
    st.just({}),
    st.lists(st.one_of(st.just({}), st.fixed_dictionaries({"value": st.text(max_size=2)}))),
    st.fixed_dictionaries({"givenName": st.text(max_size=2)}),
)
_NAMES = st.sampled_from(
    ["userName", "password", "name", "emails", "phoneNumbers", "title", "unknownThing", "PASSWORD"]
)


@given(
    core=st.dictionaries(_NAMES, _VALUES, max_size=5),
    extension=st.dictionaries(st.sampled_from(["department", "manager", "other"]), _VALUES),
)
def test_the_default_projection_is_the_full_one_when_it_returns_its_input(
    core: dict, extension: dict
) -> None:
    """Without attributes or excluded, project() may hand the document back untouched, but
    only when the full projection would have produced an equal document."""
    document = {"schemas": [constants.USER], "id": "u1", **core, ENTERPRISE: extension}
    nothing = [AttrPath(None, "noSuchAttribute")]  # excludes nothing, takes the long way

    shortcut = project(document, USER_RESOURCE)
    full = project(document, USER_RESOURCE, excluded=nothing)

    assert shortcut == full
    if shortcut is document:
        assert full == document


def test_a_user_without_a_password_is_returned_as_it_is() -> None:
    document = {key: value for key, value in ann().items() if key != "password"}

    assert project(document, USER_RESOURCE) is document
    assert "password" not in project(ann(), USER_RESOURCE)


def _every_user_attribute_name() -> list[str]:
    """Every attribute and sub-attribute of a User, short and URN-prefixed, and the URNs."""
    names = []
    for schema in USER_RESOURCE.schemas:
        names.append(schema.id)
        for attribute in schema.attributes:
            paths = [attribute.name] + [
                f"{attribute.name}.{sub.name}" for sub in attribute.sub_attributes or []
            ]
            names += [f"{schema.id}:{path}" for path in paths]
            if schema is USER_RESOURCE.schema:
                names += paths
    return names


def test_a_list_of_every_user_attribute_is_accepted() -> None:
    names = _every_user_attribute_name()

    assert len(parse_attribute_list(",".join(names))) == len(set(names)) > 100


def test_a_name_repeated_counts_once() -> None:
    assert parse_attribute_list(",".join(["userName"] * 20_000)) == [AttrPath(None, "userName")]


def test_a_list_of_too_many_names_is_refused() -> None:
    """Each name is resolved again for every resource of the answer: 50,000 names on a page
    of 1,000 users held the server for 37 s."""
    names = ",".join(f"a{i}" for i in range(201))

    with pytest.raises(InvalidValue, match="^attributes: 201 names; at most 200"):
        parse_attribute_list(names)
