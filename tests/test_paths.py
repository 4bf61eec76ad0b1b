"""Attribute paths: parsing as written, resolving to canonical definitions, reading values."""

from __future__ import annotations

import pytest

from scim import constants
from scim.definitions import (
    GROUP_RESOURCE,
    USER_RESOURCE,
    USER_SCHEMA,
    AttributeDef,
    ResourceTypeDef,
    SchemaDef,
)
from scim.errors import InvalidFilter, InvalidPath
from scim.filter import And, Compare
from scim.patch.path import PatchPath, parse_patch_path
from scim.paths import (
    AttrPath,
    parse_attr_path,
    resolve,
    split_urn,
    values_reader,
)

ENTERPRISE = constants.ENTERPRISE_USER


@pytest.fixture
def user() -> dict:
    """A user document in the project's layout (core top-level, extension under its URN)."""
    return {
        "schemas": [constants.USER, ENTERPRISE],
        "id": "2819c223-7f76-453a-919d-413861904646",
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "title": None,
        "emails": [
            {"value": "bjensen@example.com", "type": "work", "primary": True},
            {"value": "babs@jensen.org", "type": "home"},
            {"type": "other"},
        ],
        "meta": {"resourceType": "User", "lastModified": "2011-05-13T04:42:34Z"},
        ENTERPRISE: {"department": "Sales", "manager": {"value": "26118915-6090"}},
    }


# -- parse_attr_path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("userName", AttrPath(None, "userName", None), id="attribute"),
        pytest.param("name.givenName", AttrPath(None, "name", "givenName"), id="sub-attribute"),
        pytest.param("NAME.GivenName", AttrPath(None, "NAME", "GivenName"), id="case-kept"),
        pytest.param("groups.$ref", AttrPath(None, "groups", "$ref"), id="dollar-ref"),
        pytest.param("x509Certificates", AttrPath(None, "x509Certificates", None), id="digits"),
        pytest.param("a-b_c", AttrPath(None, "a-b_c", None), id="name-chars"),
        pytest.param("  emails ", AttrPath(None, "emails", None), id="surrounding-spaces"),
        pytest.param(
            "urn:ietf:params:scim:schemas:core:2.0:User:userName",
            AttrPath(constants.USER, "userName", None),
            id="rfc7644-3.10-core-urn",
        ),
        pytest.param(
            f"{ENTERPRISE}:department",
            AttrPath(ENTERPRISE, "department", None),
            id="entra-a5.5-enterprise-department",
        ),
        pytest.param(
            f"{ENTERPRISE}:manager.value",
            AttrPath(ENTERPRISE, "manager", "value"),
            id="urn-with-dots-and-sub-attribute",
        ),
        pytest.param(
            "URN:IETF:params:scim:schemas:extension:enterprise:2.0:User:Department",
            AttrPath("URN:IETF:params:scim:schemas:extension:enterprise:2.0:User", "Department"),
            id="urn-any-case",
        ),
    ],
)
def test_parse_attr_path_keeps_the_text_as_written(text: str, expected: AttrPath) -> None:
    assert parse_attr_path(text) == expected


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param("", "path: the attribute path is empty", id="empty"),
        pytest.param("   ", "path: the attribute path is empty", id="blank"),
        pytest.param("emails..value", "expected a sub-attribute name, found '.' at position 8"),
        pytest.param("name.", "expected a sub-attribute name at position 6", id="dangling-dot"),
        pytest.param("1name", "expected an attribute name, found '1' at position 1"),
        pytest.param("name.given.x", "unexpected '.' after 'given' at position 11"),
        pytest.param("user name", "unexpected ' ' after 'user' at position 5"),
        pytest.param('emails[type eq "work"]', "unexpected '[' after 'emails' at position 7"),
        pytest.param("urn:only", "expected a schema URN, ':' and an attribute name at position 1"),
        pytest.param("urn:a b:c", "unexpected ' ' in the schema URN at position 6"),
        pytest.param(f"{ENTERPRISE}:", "expected an attribute name at position 60"),
        pytest.param("http://x:y", "unexpected ':' after 'http' at position 5"),
    ],
)
def test_parse_attr_path_rejects_malformed_text_saying_where(text: str, detail: str) -> None:
    with pytest.raises(InvalidPath) as raised:
        parse_attr_path(text)
    assert detail in raised.value.detail
    assert raised.value.detail.startswith("path: ")


@pytest.mark.parametrize(
    "text", ["userName", "name.givenName", f"{ENTERPRISE}:manager.value", "groups.$ref"]
)
def test_attr_path_renders_as_written(text: str) -> None:
    assert str(parse_attr_path(text)) == text


# -- parse_patch_path --------------------------------------------------------------------------


def test_patch_path_without_brackets_is_an_attr_path() -> None:
    path = parse_patch_path("name.familyName")
    assert path == PatchPath(AttrPath(None, "name", "familyName"))
    assert str(path) == "name.familyName"


def test_patch_path_with_value_filter_and_sub_attribute() -> None:
    """Entra Q4: ``emails[type eq "work"].value``."""
    path = parse_patch_path('emails[type eq "work"].value')
    assert path == PatchPath(
        AttrPath(None, "emails", None), Compare(AttrPath(None, "type", None), "eq", "work"), "value"
    )
    assert str(path) == 'emails[type eq "work"].value'


def test_patch_path_member_filter() -> None:
    """RFC 7644 §3.5.2.3: ``members[value eq "2819c223..."]``."""
    path = parse_patch_path('members[value eq "2819c223-7f76-453a-919d-413861904646"]')
    assert path.attr == AttrPath(None, "members", None)
    assert path.value_filter == Compare(
        AttrPath(None, "value", None), "eq", "2819c223-7f76-453a-919d-413861904646"
    )
    assert path.sub_attribute is None


def test_patch_path_filter_may_hold_brackets_inside_strings() -> None:
    path = parse_patch_path('emails[value eq "a]b[c" and type eq "x"].display')
    assert path.value_filter == And(
        Compare(AttrPath(None, "value", None), "eq", "a]b[c"),
        Compare(AttrPath(None, "type", None), "eq", "x"),
    )
    assert path.sub_attribute == "display"


def test_patch_path_with_urn_prefix_and_filter() -> None:
    path = parse_patch_path(f'{constants.USER}:emails[type eq "work"]')
    assert path.attr == AttrPath(constants.USER, "emails", None)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param('emails[type eq "work"', "'[' at position 7 has no closing ']'"),
        pytest.param("emails]", "']' without '[' at position 7"),
        pytest.param('[type eq "x"]', "expected an attribute name before '['"),
        pytest.param('emails[type eq "work"]x', "expected '.' and a sub-attribute after ']'"),
        pytest.param('emails[type eq "work"].', "expected a sub-attribute name after '].'"),
        pytest.param('emails[type eq "work"].1', "at position 24"),
        pytest.param('name.givenName[type eq "x"]', "not to the sub-attribute 'name.givenName'"),
        pytest.param('emails..x[type eq "x"]', "at position 8"),
    ],
)
def test_patch_path_errors_outside_brackets_are_invalid_path(text: str, detail: str) -> None:
    with pytest.raises(InvalidPath) as raised:
        parse_patch_path(text)
    assert detail in raised.value.detail


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        pytest.param("emails[type eq]", "expected a value after 'eq' at position 15"),
        pytest.param("emails[]", "the value filter in [...] is empty at position 8"),
        pytest.param("emails[type[x eq 1]]", "cannot contain another '[' at position 12"),
        pytest.param('emails[type eq "x" or]', "expected an attribute path"),
    ],
)
def test_patch_path_errors_inside_brackets_are_invalid_filter(text: str, detail: str) -> None:
    """Positions count from the start of the whole path."""
    with pytest.raises(InvalidFilter) as raised:
        parse_patch_path(text)
    assert detail in raised.value.detail


# -- resolve -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "container"),
    [
        pytest.param("userName", "userName", None, id="core"),
        pytest.param("USERNAME", "userName", None, id="entra-q24-any-case"),
        pytest.param("name.FamilyName", "name.familyName", None, id="sub-attribute-any-case"),
        pytest.param("emails.Value", "emails.value", None, id="multi-valued-sub"),
        pytest.param("ID", "id", None, id="common-id"),
        pytest.param("externalid", "externalId", None, id="common-externalId"),
        pytest.param("meta.lastmodified", "meta.lastModified", None, id="common-meta"),
        pytest.param("schemas", "schemas", None, id="schemas"),
        pytest.param(f"{constants.USER}:userName", "userName", None, id="core-urn"),
        pytest.param(f"{constants.USER}:meta.created", "meta.created", None, id="core-urn-common"),
        pytest.param(
            f"{ENTERPRISE}:department", f"{ENTERPRISE}:department", ENTERPRISE, id="extension"
        ),
        pytest.param(
            f"{ENTERPRISE.upper()}:DEPARTMENT",
            f"{ENTERPRISE}:department",
            ENTERPRISE,
            id="extension-any-case",
        ),
        pytest.param(
            f"{ENTERPRISE}:manager.value",
            f"{ENTERPRISE}:manager.value",
            ENTERPRISE,
            id="extension-sub-attribute",
        ),
        pytest.param(
            f"{ENTERPRISE}.department",
            f"{ENTERPRISE}:department",
            ENTERPRISE,
            id="entra-q6-legacy-dot-before-attribute",
        ),
    ],
)
def test_resolve_gives_canonical_names(text: str, name: str, container: str | None) -> None:
    resolved = resolve(parse_attr_path(text), USER_RESOURCE)
    assert resolved is not None
    assert resolved.name == name
    assert resolved.container == container


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("nickname2", id="unknown-attribute"),
        pytest.param("name.nope", id="unknown-sub-attribute"),
        pytest.param("department", id="extension-attribute-needs-its-urn"),
        pytest.param(f"{ENTERPRISE}:id", id="common-attribute-not-in-extension"),
        pytest.param(f"{ENTERPRISE}:userName", id="core-attribute-not-in-extension"),
        pytest.param("urn:example:unknown:2.0:User:department", id="unknown-urn"),
        pytest.param(f"{constants.GROUP}:displayName", id="other-resource-core-urn"),
    ],
)
def test_resolve_returns_none_for_what_the_resource_does_not_have(text: str) -> None:
    assert resolve(parse_attr_path(text), USER_RESOURCE) is None


def test_resolve_on_group_does_not_know_the_enterprise_extension() -> None:
    assert resolve(parse_attr_path(f"{ENTERPRISE}:department"), GROUP_RESOURCE) is None
    resolved = resolve(parse_attr_path("members.value"), GROUP_RESOURCE)
    assert resolved is not None and resolved.definition.case_exact


def test_resolved_exposes_the_definitions() -> None:
    resolved = resolve(parse_attr_path("name.givenName"), USER_RESOURCE)
    assert resolved is not None
    assert resolved.schema is USER_SCHEMA
    assert resolved.attribute.name == "name"
    assert resolved.sub_attribute is not None and resolved.sub_attribute.name == "givenName"
    assert resolved.definition is resolved.sub_attribute


# -- split_urn ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(f"{ENTERPRISE}:department", (ENTERPRISE, "department"), id="entra-a5.5"),
        pytest.param(f"{ENTERPRISE}:manager.value", (ENTERPRISE, "manager.value"), id="sub"),
        pytest.param(ENTERPRISE, (ENTERPRISE, ""), id="exactly-the-urn"),
        pytest.param(ENTERPRISE.upper(), (ENTERPRISE, ""), id="urn-any-case"),
        pytest.param(
            f"{ENTERPRISE.lower()}:Department", (ENTERPRISE, "Department"), id="rest-as-written"
        ),
        pytest.param(f"{ENTERPRISE}.department", (ENTERPRISE, "department"), id="entra-q6-dot"),
        pytest.param(f"{constants.USER}:userName", (constants.USER, "userName"), id="core-urn"),
        pytest.param(
            "urn:ietf:params:scim:schemas:extension:other:2.0:User:x",
            (None, "urn:ietf:params:scim:schemas:extension:other:2.0:User:x"),
            id="unknown-urn",
        ),
        pytest.param(f"{ENTERPRISE}x:y", (None, f"{ENTERPRISE}x:y"), id="urn-must-end-there"),
        pytest.param("name.givenName", (None, "name.givenName"), id="not-a-urn"),
    ],
)
def test_split_urn_matches_a_known_schema_urn_as_prefix(
    text: str, expected: tuple[str | None, str]
) -> None:
    assert split_urn(text, USER_RESOURCE) == expected


def test_split_urn_prefers_the_longest_schema_urn() -> None:
    """A schema id that extends another must win over it (Entra A5.5 item 4)."""
    core = SchemaDef("urn:example:Thing", "Thing", "", (AttributeDef("ext"),))
    extension = SchemaDef("urn:example:Thing:ext", "ThingExt", "", (AttributeDef("color"),))
    resource = ResourceTypeDef("Thing", "/Things", "", core, (extension,))
    assert split_urn("urn:example:Thing:ext:color", resource) == ("urn:example:Thing:ext", "color")
    assert split_urn("urn:example:Thing:ext", resource) == ("urn:example:Thing:ext", "")
    assert split_urn("urn:example:Thing:extra", resource) == ("urn:example:Thing", "extra")


# -- values_reader -----------------------------------------------------------------------------


def _values(document: dict, text: str) -> list:
    resolved = resolve(parse_attr_path(text), USER_RESOURCE)
    assert resolved is not None
    return values_reader(resolved)(document)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("userName", ["bjensen"], id="single-value"),
        pytest.param("name.givenName", ["Barbara"], id="complex-sub-attribute"),
        pytest.param(
            "emails.value", ["bjensen@example.com", "babs@jensen.org"], id="multi-valued-sub"
        ),
        pytest.param("emails.type", ["work", "home", "other"], id="multi-valued-sub-type"),
        pytest.param("nickName", [], id="absent"),
        pytest.param("title", [], id="null-is-unassigned"),
        pytest.param("name.middleName", [], id="absent-sub-attribute"),
        pytest.param(f"{ENTERPRISE}:department", ["Sales"], id="extension"),
        pytest.param(f"{ENTERPRISE}:manager.value", ["26118915-6090"], id="extension-sub"),
        pytest.param(f"{ENTERPRISE}:costCenter", [], id="extension-absent"),
        pytest.param("meta.lastModified", ["2011-05-13T04:42:34Z"], id="common-meta"),
    ],
)
def test_values_reader_flattens_every_value_at_the_path(
    user: dict, text: str, expected: list
) -> None:
    assert _values(user, text) == expected


def test_values_reader_of_multi_valued_complex_gives_the_elements(user: dict) -> None:
    assert _values(user, "emails") == user["emails"]


def test_values_reader_without_the_extension_object_is_empty(user: dict) -> None:
    del user[ENTERPRISE]
    assert _values(user, f"{ENTERPRISE}:department") == []


def test_values_reader_reads_keys_in_any_case() -> None:
    """Documents are canonical, but one written with other casing still reads (RFC 7643 §2.1)."""
    document = {"Name": {"GivenName": "Ann"}, ENTERPRISE.upper(): {"Department": "Ops"}}
    assert _values(document, "name.givenName") == ["Ann"]
    assert _values(document, f"{ENTERPRISE}:department") == ["Ops"]


def test_values_reader_accepts_a_single_object_for_a_multi_valued_attribute() -> None:
    assert _values({"emails": {"value": "a@x"}}, "emails.value") == ["a@x"]


def test_values_reader_skips_malformed_elements_and_flattens_lists() -> None:
    document = {"emails": ["a@x", None, {"value": ["b@x", None]}, {"value": "c@x"}]}
    assert _values(document, "emails.value") == ["b@x", "c@x"]
    assert _values(document, "emails") == ["a@x", {"value": ["b@x", None]}, {"value": "c@x"}]
