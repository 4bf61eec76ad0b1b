"""Properties of PATCH: arbitrary input gives a result or a SCIM error, never anything else."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scim import constants
from scim.definitions import GROUP_RESOURCE, USER_RESOURCE
from scim.errors import ScimError
from scim.patch import Operation, PatchResult, apply_patch
from scim.schemas.patch import load_patch_request

ENTERPRISE = constants.ENTERPRISE_USER

USER = {
    "schemas": [constants.USER, ENTERPRISE],
    "id": "u1",
    "userName": "ann",
    "name": {"givenName": "Ann"},
    "emails": [{"value": "a@x.org", "type": "work", "primary": True}],
    ENTERPRISE: {"department": "Sales", "manager": {"value": "u0"}},
    "meta": {"resourceType": "User"},
}
GROUP = {"schemas": [constants.GROUP], "id": "g1", "displayName": "G", "members": [{"value": "u1"}]}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(max_size=12) | st.sampled_from(["value", "Value", "type"]), children, max_size=4
        )
    ),
    max_leaves=12,
)

# Paths worth hitting often, plus arbitrary text that must fail cleanly.
known_paths = st.sampled_from(
    [
        "userName",
        "name",
        "name.givenName",
        "Name.FamilyName",
        "emails",
        "emails.value",
        'emails[type eq "work"]',
        'emails[type eq "work"].value',
        'emails[value co "x"].type',
        'roles[primary eq "True"].value',
        "active",
        "id",
        "meta.created",
        "members",
        'members[value eq "u1"]',
        'members[display eq "x"]',
        "members.display",
        ENTERPRISE,
        f"{ENTERPRISE}:department",
        f"{ENTERPRISE}:manager",
        f"{ENTERPRISE}:manager.value",
        "urn:example:unknown:1.0:User:x",
        "displayName",
        "",
    ]
)
paths = st.none() | known_paths | st.text(max_size=30)
ops = st.sampled_from(["add", "replace", "remove", "Add", "REPLACE", "move"]) | st.text(max_size=6)
pathless_values = st.dictionaries(
    st.sampled_from(
        [
            "name.givenName",
            "nickName",
            "emails",
            "members",
            "id",
            ENTERPRISE,
            f"{ENTERPRISE}:department",
            "name",
        ]
    )
    | st.text(max_size=20),
    json_values,
    max_size=4,
)
operations = st.builds(Operation, ops, paths, json_values | pathless_values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(operations, max_size=4), st.booleans())
def test_any_operations_give_a_result_or_a_scim_error(ops_list: list, on_group: bool) -> None:
    """Atomic too: whatever happens, the input document is unchanged."""
    document, resource = (GROUP, GROUP_RESOURCE) if on_group else (USER, USER_RESOURCE)
    before = copy.deepcopy(document)
    try:
        result = apply_patch(document, ops_list, resource)
    except ScimError:
        pass
    else:
        assert isinstance(result, PatchResult)
        if on_group:
            assert result.document["members"] == GROUP["members"]
    assert document == before


bodies = st.dictionaries(
    st.sampled_from(["schemas", "Operations", "operations", "x"]),
    json_values
    | st.lists(
        st.dictionaries(
            st.sampled_from(["op", "Op", "path", "Path", "value", "VALUE", "x"]),
            json_values | ops | paths,
            max_size=4,
        ),
        max_size=3,
    ),
    max_size=3,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies | json_values)
def test_any_body_loads_and_applies_or_gives_a_scim_error(body: object) -> None:
    try:
        apply_patch(USER, load_patch_request(body), USER_RESOURCE)
    except ScimError:
        pass
