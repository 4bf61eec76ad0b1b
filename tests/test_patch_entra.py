"""Every PATCH body in entra-provisioning.md, loaded from the wire and applied.

Each case names the section or quirk it comes from; adding a captured body adds a case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from scim import constants
from scim.definitions import GROUP_RESOURCE, USER_RESOURCE, ResourceTypeDef
from scim.filter import parse_filter
from scim.patch import MemberChange, apply_patch
from scim.schemas.patch import load_patch_request

ENTERPRISE = constants.ENTERPRISE_USER
MEMBER = "f648f8d5ea4e4cd38e9c"


def user(**extra: object) -> dict:
    """An Entra-provisioned user as stored after the A3 create."""
    return {
        "schemas": [constants.USER, ENTERPRISE],
        "id": "6764549bef60420686bc",
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_00aa00aa@testuser.com",
        "active": True,
        "name": {"formatted": "givenName familyName", "familyName": "familyName"},
        "emails": [{"primary": True, "type": "work", "value": "old@testuser.com"}],
        ENTERPRISE: {"department": "Sales"},
        **extra,
    }


def core_only_user() -> dict:
    """A user without the enterprise extension."""
    document = user(schemas=[constants.USER])
    del document[ENTERPRISE]
    return document


def group(**extra: object) -> dict:
    return {
        "schemas": [constants.GROUP],
        "id": "40734ae655284ad3abcc",
        "displayName": "dn",
        **extra,
    }


def body(*operations: dict) -> dict:
    return {"schemas": [constants.PATCH_OP], "Operations": list(operations)}


@dataclass
class Case:
    """A wire body, the document before, and what the patch must produce."""

    body: dict
    before: dict
    after: dict
    resource: ResourceTypeDef = USER_RESOURCE
    members: list[MemberChange] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


CASES = {
    "A5.1-default-dialect-filter-and-sub-attribute": Case(
        body(
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "updatedEmail@microsoft.com",
            },
            {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        ),
        user(),
        user(
            emails=[{"primary": True, "type": "work", "value": "updatedEmail@microsoft.com"}],
            name={"formatted": "givenName familyName", "familyName": "updatedFamilyName"},
        ),
    ),
    "A5.2-single-valued-username": Case(
        body(
            {
                "op": "Replace",
                "path": "userName",
                "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com",
            }
        ),
        user(),
        user(userName="5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"),
    ),
    "A5.3-add-and-replace-mixed-with-department": Case(
        body(
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "AdeleV2@REDACTED.onmicrosoft.com",
            },
            {"op": "Replace", "path": 'addresses[type eq "work"].formatted', "value": "18/2111"},
            {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Retail"},
        ),
        user(),
        user(
            emails=[{"primary": True, "type": "work", "value": "AdeleV2@REDACTED.onmicrosoft.com"}],
            addresses=[{"type": "work", "formatted": "18/2111"}],
            **{ENTERPRISE: {"department": "Retail"}},
        ),
    ),
    "A5.4-compliant-dialect-pathless-replace": Case(
        body(
            {
                "op": "replace",
                "path": 'emails[type eq "work"].value',
                "value": "TestMhvaes@test.microsoft.com",
            },
            {
                "op": "replace",
                "value": {
                    "displayName": "Bjfe",
                    "name.givenName": "Kkom",
                    "name.familyName": "Unua",
                    f"{ENTERPRISE}:employeeNumber": "Aklq",
                },
            },
        ),
        user(),
        user(
            emails=[{"primary": True, "type": "work", "value": "TestMhvaes@test.microsoft.com"}],
            displayName="Bjfe",
            name={"formatted": "givenName familyName", "familyName": "Unua", "givenName": "Kkom"},
            **{ENTERPRISE: {"department": "Sales", "employeeNumber": "Aklq"}},
        ),
    ),
    "A5.4-compliant-dialect-pathless-add": Case(
        body(
            {
                "op": "add",
                "value": {
                    "displayName": "Foo Bar",
                    "title": "Bar Foo",
                    "name.givenName": "Foo",
                    "name.familyName": "Bar",
                    "name.formatted": "Foo Bar",
                },
            }
        ),
        user(),
        user(
            displayName="Foo Bar",
            title="Bar Foo",
            name={"formatted": "Foo Bar", "familyName": "Bar", "givenName": "Foo"},
        ),
    ),
    "A5.4-validator-active-and-username-pathless": Case(
        body({"op": "replace", "value": {"active": True, "userName": "renamed@x.com"}}),
        user(active=False),
        user(active=True, userName="renamed@x.com"),
    ),
    "A5.5-form1-urn-path": Case(
        body({"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Retail"}),
        user(),
        user(**{ENTERPRISE: {"department": "Retail"}}),
    ),
    "A5.5-form2-pathless-urn-keys-bundled": Case(
        body(
            {
                "op": "replace",
                "value": {
                    f"{ENTERPRISE}:department": "Retail",
                    f"{ENTERPRISE}:employeeNumber": "42",
                    f"{ENTERPRISE}:costCenter": "CC1",
                },
            }
        ),
        user(),
        user(**{ENTERPRISE: {"department": "Retail", "employeeNumber": "42", "costCenter": "CC1"}}),
    ),
    "A5.5-form3-pathless-nested-extension-object": Case(
        body({"op": "add", "value": {ENTERPRISE: {"department": "Sales 2"}}}),
        user(),
        user(**{ENTERPRISE: {"department": "Sales 2"}}),
    ),
    "A5.5-form3-creates-extension-on-core-only-user": Case(
        body({"op": "add", "value": {ENTERPRISE: {"department": "Ops"}}}),
        core_only_user(),
        user(**{ENTERPRISE: {"department": "Ops"}}),
    ),
    "A6-documented-boolean-false": Case(
        body({"op": "Replace", "path": "active", "value": False}),
        user(),
        user(active=False),
    ),
    "A6-default-dialect-string-False-stored-as-sent": Case(
        body({"op": "Replace", "path": "active", "value": "False"}),
        user(),
        user(active="False"),
    ),
    "A6-lowercase-string-false": Case(
        body({"op": "Replace", "path": "active", "value": "false"}),
        user(),
        user(active="false"),
    ),
    "A11-group-displayname": Case(
        body(
            {
                "op": "Replace",
                "path": "displayName",
                "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName",
            }
        ),
        group(),
        group(displayName="1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"),
        GROUP_RESOURCE,
    ),
    "A11-validator-pathless-displayname": Case(
        body({"op": "replace", "value": {"displayName": "MSADPJJZWBUS"}}),
        group(),
        group(displayName="MSADPJJZWBUS"),
        GROUP_RESOURCE,
    ),
    "A11-validator-pathless-externalid": Case(
        body({"op": "replace", "value": {"externalId": "c3b97a69-0bb1"}}),
        group(),
        group(externalId="c3b97a69-0bb1"),
        GROUP_RESOURCE,
    ),
    "A12-add-members": Case(
        body({"op": "Add", "path": "members", "value": [{"$ref": None, "value": MEMBER}]}),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("add", (MEMBER,))],
    ),
    "A12-several-members-in-one-op": Case(
        body(
            {
                "op": "Add",
                "path": "members",
                "value": [{"$ref": None, "value": "u1"}, {"$ref": None, "value": "u2"}],
            }
        ),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("add", ("u1", "u2"))],
    ),
    "A13-form1-remove-with-value-array": Case(
        body({"op": "Remove", "path": "members", "value": [{"$ref": None, "value": MEMBER}]}),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("remove", (MEMBER,))],
    ),
    "A13-form1-compat-doc-without-ref": Case(
        body({"op": "Remove", "path": "members", "value": [{"value": "u1091"}]}),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("remove", ("u1091",))],
    ),
    "A13-form2-filter-path": Case(
        body({"op": "remove", "path": 'members[value eq "7f4bc1a3-285e-48ae-8202-5accb43efb0e"]'}),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("remove", ("7f4bc1a3-285e-48ae-8202-5accb43efb0e",))],
    ),
    "A13-form3-bare-members-removes-all": Case(
        body({"op": "Remove", "path": "members"}),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("clear")],
    ),
    "A17-legacy-manager-add-one-element-array": Case(
        body(
            {
                "op": "Add",
                "path": "manager",
                "value": [{"$ref": "http://x/scim/Users/271", "value": "271"}],
            }
        ),
        user(),
        user(),
        skipped=["manager"],  # unqualified: only the URN path reaches the extension
    ),
    "A17-legacy-manager-add-urn-path": Case(
        body(
            {
                "op": "Add",
                "path": f"{ENTERPRISE}:manager",
                "value": [{"$ref": "http://x/scim/Users/271", "value": "271"}],
            }
        ),
        user(),
        user(
            **{
                ENTERPRISE: {
                    "department": "Sales",
                    "manager": {"$ref": "http://x/scim/Users/271", "value": "271"},
                }
            }
        ),
    ),
    "Q3-pathless-dotted-and-urn-keys": Case(
        body(
            {
                "op": "Replace",
                "value": {"name.givenName": "Ann", f"{ENTERPRISE}:employeeNumber": "7"},
            }
        ),
        user(),
        user(
            name={
                "formatted": "givenName familyName",
                "familyName": "familyName",
                "givenName": "Ann",
            },
            **{ENTERPRISE: {"department": "Sales", "employeeNumber": "7"}},
        ),
    ),
    "Q4-filtered-writes-create-one-element": Case(
        body(
            {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555"},
            {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].display', "value": "Cell"},
            {"op": "Add", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Way"},
            {"op": "Add", "path": 'addresses[type eq "work"].locality', "value": "Town"},
        ),
        user(),
        user(
            phoneNumbers=[{"type": "mobile", "value": "+1 555", "display": "Cell"}],
            addresses=[{"type": "work", "streetAddress": "1 Way", "locality": "Town"}],
        ),
    ),
    "Q4-roles-primary-filter-literal-becomes-boolean": Case(
        body({"op": "Add", "path": 'roles[primary eq "True"].value', "value": "Admin"}),
        user(),
        user(roles=[{"primary": True, "value": "Admin"}]),
    ),
    "Q13-remove-with-value-on-filtered-path-clears": Case(
        body({"op": "Remove", "path": 'emails[type eq "work"].value', "value": "old@testuser.com"}),
        user(),
        user(emails=[{"primary": True, "type": "work"}]),
    ),
    "Q13-remove-with-value-on-single-valued-clears": Case(
        body({"op": "Remove", "path": f"{ENTERPRISE}:department", "value": "Sales"}),
        user(),
        core_only_user(),
    ),
    "Q13-validator-empty-string-then-null": Case(
        body(
            {"op": "replace", "path": "name.formatted", "value": ""},
            {"op": "replace", "path": "name.familyName", "value": None},
        ),
        user(),
        {key: value for key, value in user().items() if key != "name"},
    ),
    "Q14-manager-bare-string": Case(
        body({"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": "271"}),
        user(),
        user(**{ENTERPRISE: {"department": "Sales", "manager": {"value": "271"}}}),
    ),
    "Q14-validator-manager-object": Case(
        body({"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": "AXTK"}}),
        user(),
        user(**{ENTERPRISE: {"department": "Sales", "manager": {"value": "AXTK"}}}),
    ),
    "Q16-app-role-json-in-a-string": Case(
        body(
            {
                "op": "Add",
                "path": "roles",
                "value": [{"value": '{"id":"1","value":"Admin","displayName":"Admin"}'}],
            }
        ),
        user(),
        user(roles=[{"value": '{"id":"1","value":"Admin","displayName":"Admin"}'}]),
    ),
    "Q18-adding-a-present-member-is-still-reported-once": Case(
        body({"op": "Add", "path": "members", "value": [{"value": "u1"}, {"value": "u1"}]}),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("add", ("u1",))],
    ),
    "Q21-empty-operations": Case(body(), user(), user()),
    "Q22-unknown-attributes-skipped-rest-applied": Case(
        body(
            {
                "op": "replace",
                "value": {
                    "title": "Boss",
                    "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:badge": "9",
                    "favouriteColour": "red",
                },
            },
            {"op": "Replace", "path": "pronouns", "value": "they"},
        ),
        user(),
        user(title="Boss"),
        skipped=[
            "urn:ietf:params:scim:schemas:extension:Custom:2.0:User:badge",
            "favouriteColour",
            "pronouns",
        ],
    ),
    "Q23-bare-string-member-id": Case(
        body({"op": "Add", "path": "members", "value": "string id 1"}),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("add", ("string id 1",))],
    ),
    "Q23-member-with-displayname-and-odd-casing": Case(
        body(
            {"op": "Add", "path": "members", "value": [{"displayName": "new User", "Value": "u9"}]}
        ),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("add", ("u9",), displays=(("u9", "new User"),))],
    ),
    "Q23-members-without-display": Case(
        body({"op": "add", "path": "members", "value": [{"value": "u8"}, {"value": "u9"}]}),
        group(),
        group(),
        GROUP_RESOURCE,
        members=[MemberChange("add", ("u8", "u9"))],
    ),
    "Q24-any-case-names": Case(
        {
            "operations": [
                {"OP": "Replace", "Path": "Name.GivenName", "Value": "Ann"},
                {"op": "Add", "path": f"{ENTERPRISE}:Department", "value": "Ops"},
            ]
        },
        user(),
        user(
            name={
                "formatted": "givenName familyName",
                "familyName": "familyName",
                "givenName": "Ann",
            },
            **{ENTERPRISE: {"department": "Ops"}},
        ),
    ),
    "Q6-legacy-dot-before-extension-attribute": Case(
        body({"op": "Replace", "path": f"{ENTERPRISE}.department", "value": "Legacy"}),
        user(),
        user(**{ENTERPRISE: {"department": "Legacy"}}),
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_entra_patch_body(case: Case) -> None:
    result = apply_patch(case.before, load_patch_request(case.body), case.resource)
    assert result.document == case.after
    assert result.member_changes == case.members
    assert result.skipped == case.skipped


def test_members_filter_other_than_a_single_id_is_remove_matching() -> None:
    """A13 form 2 with a filter the service has to evaluate itself."""
    path = 'members[value eq "a" or value eq "b"]'
    result = apply_patch(
        group(), load_patch_request(body({"op": "remove", "path": path})), GROUP_RESOURCE
    )
    assert result.member_changes == [
        MemberChange("remove_matching", filter=parse_filter('value eq "a" or value eq "b"'))
    ]
