"""/Groups through HTTP: members are users, member PATCHes, uniqueness, projections, events."""

from __future__ import annotations

import pytest

from scim import constants


@pytest.fixture
def users(scim) -> list[dict]:
    """Three users: ann, bob, cat."""
    return [scim.create_user(name) for name in ("ann", "bob", "cat")]


def _member_ids(group: dict) -> list[str]:
    return [member["value"] for member in group.get("members", [])]


def _read(scim, group: dict) -> dict:
    return scim.get(f"/Groups/{group['id']}").get_json()


def test_create_group_answers_201_with_members_location_and_etag(scim, users) -> None:
    response = scim.post(
        "/Groups",
        {
            # Entra's private schema URI and "$ref": null must be accepted (Q17).
            "schemas": [constants.GROUP, constants.MICROSOFT_GROUP],
            "displayName": "Staff",
            "externalId": "8aa1a0c0",
            "members": [{"value": users[0]["id"], "$ref": None}],
        },
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body["displayName"] == "Staff"
    assert body["externalId"] == "8aa1a0c0"
    assert body["members"] == [
        {
            "value": users[0]["id"],
            "type": "User",
            "display": "ann",
            "$ref": f"http://localhost/scim/v2/Users/{users[0]['id']}",
        }
    ]
    assert response.headers["Location"] == body["meta"]["location"]
    assert response.headers["ETag"] == body["meta"]["version"]
    assert body["meta"]["resourceType"] == "Group"


def test_a_users_groups_attribute_lists_its_groups(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])

    ann = scim.get(f"/Users/{users[0]['id']}").get_json()

    assert ann["groups"] == [
        {
            "value": group["id"],
            "$ref": f"http://localhost/scim/v2/Groups/{group['id']}",
            "display": "Staff",
            "type": "direct",
        }
    ]


def test_get_group_by_id_returns_what_create_returned(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"], users[1]["id"]])

    assert _read(scim, group) == group


def test_put_replaces_the_member_list(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"], users[1]["id"]])

    response = scim.put(
        f"/Groups/{group['id']}",
        {"displayName": "Staff", "members": [{"value": users[2]["id"]}]},
    )

    assert response.status_code == 200
    assert _member_ids(response.get_json()) == [users[2]["id"]]
    assert _member_ids(_read(scim, group)) == [users[2]["id"]]


def test_put_without_members_keeps_the_member_list(scim, users) -> None:
    """A PUT that leaves members out changes only the other attributes."""
    group = scim.create_group("Staff", [users[0]["id"]])

    response = scim.put(f"/Groups/{group['id']}", {"displayName": "Team"})

    assert response.get_json()["displayName"] == "Team"
    assert _member_ids(response.get_json()) == [users[0]["id"]]


def test_delete_group_answers_204_and_a_repeat_404(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])

    assert scim.delete(f"/Groups/{group['id']}").status_code == 204
    assert scim.delete(f"/Groups/{group['id']}").status_code == 404
    assert "groups" not in scim.get(f"/Users/{users[0]['id']}").get_json()


# -- PATCH answers -------------------------------------------------------------------------


def test_group_patch_answers_204_with_an_etag(scim, users) -> None:
    """entra-provisioning.md A11-A13: 204 No Content, no member list."""
    group = scim.create_group("Staff")

    response = scim.patch_ops(
        f"/Groups/{group['id']}",
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": users[0]["id"]}]},
    )

    assert response.status_code == 204
    assert response.get_data() == b""
    assert response.headers["ETag"] == _read(scim, group)["meta"]["version"]


@pytest.mark.parametrize(
    ("query", "has_members"),
    [
        pytest.param("?attributes=displayName,members", True, id="attributes"),
        pytest.param("?excludedAttributes=members", False, id="excludedAttributes"),
    ],
)
def test_group_patch_with_a_projection_answers_200_with_the_resource(
    scim, users, query: str, has_members: bool
) -> None:
    group = scim.create_group("Staff")

    response = scim.patch_ops(
        f"/Groups/{group['id']}{query}",
        {"op": "add", "path": "members", "value": [{"value": users[0]["id"]}]},
    )

    assert response.status_code == 200
    body = response.get_json()
    assert body["displayName"] == "Staff"
    assert ("members" in body) is has_members
    assert response.headers["ETag"] == _read(scim, group)["meta"]["version"]


# -- member PATCH forms (entra-provisioning.md A12, A13, Q5, Q18, Q23) -----------------------


def test_one_add_can_carry_many_members_and_repeats_are_no_ops(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])
    ids = [user["id"] for user in users]

    scim.patch_ops(
        f"/Groups/{group['id']}",
        {"op": "Add", "path": "members", "value": [{"value": uid} for uid in ids]},
    )
    scim.patch_ops(
        f"/Groups/{group['id']}", {"op": "Add", "path": "members", "value": [{"value": ids[1]}]}
    )

    assert _member_ids(_read(scim, group)) == ids


REMOVALS = [
    pytest.param(
        lambda ids: {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": ids[1]}]},
        "keeps-others",
        id="remove-with-value-array-entra-default",
    ),
    pytest.param(
        lambda ids: {"op": "remove", "path": f'members[value eq "{ids[1]}"]'},
        "keeps-others",
        id="remove-with-filter-path-rfc",
    ),
    pytest.param(
        lambda ids: {"op": "remove", "path": 'members[display eq "BOB"]'},
        "keeps-others",
        id="remove-with-filter-on-display",
    ),
    pytest.param(
        # RFC 7644 §3.5.2.2: a filter on any sub-attribute, $ref too, as a GET shows it.
        lambda ids: {"op": "remove", "path": f'members[$ref ew "/Users/{ids[1]}"]'},
        "keeps-others",
        id="remove-with-filter-on-ref",
    ),
    pytest.param(
        lambda ids: {"op": "remove", "path": "members"},
        "removes-all",
        id="bare-remove-removes-all",
    ),
    pytest.param(
        lambda ids: {"op": "replace", "path": "members", "value": [{"value": ids[0]}]},
        "keeps-others",
        id="replace-with-the-rest",
    ),
]


@pytest.mark.parametrize(("operation", "expected"), REMOVALS)
def test_member_removal_forms(scim, users, operation, expected: str) -> None:
    group = scim.create_group("Staff", [users[0]["id"], users[1]["id"]])
    ids = [users[0]["id"], users[1]["id"]]

    response = scim.patch_ops(f"/Groups/{group['id']}", operation(ids))

    assert response.status_code == 204
    remaining = _member_ids(_read(scim, group))
    assert remaining == ([] if expected == "removes-all" else [ids[0]])


def test_a_path_less_replace_can_carry_members_and_display_name(scim, users) -> None:
    """entra-provisioning.md A11 (validator form) with members in the value object."""
    group = scim.create_group("Staff", [users[0]["id"]])

    response = scim.patch_ops(
        f"/Groups/{group['id']}",
        {"op": "replace", "value": {"displayName": "Team", "members": [{"value": users[1]["id"]}]}},
    )

    assert response.status_code == 204
    after = _read(scim, group)
    assert after["displayName"] == "Team"
    assert _member_ids(after) == [users[1]["id"]]


def test_member_display_follows_the_users_current_name(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])

    scim.patch_ops(
        f"/Users/{users[0]['id']}", {"op": "replace", "path": "userName", "value": "ann.b"}
    )
    after_rename = _read(scim, group)["members"][0]["display"]
    scim.patch_ops(
        f"/Users/{users[0]['id']}", {"op": "replace", "path": "displayName", "value": "Ann B"}
    )
    after_display_name = _read(scim, group)["members"][0]["display"]

    assert after_rename == "ann.b"
    assert after_display_name == "Ann B"


# -- a display sent with a member (entra-provisioning.md Q23) ---------------------------------


def _displays(group: dict) -> dict[str, str]:
    return {member["value"]: member["display"] for member in group.get("members", [])}


@pytest.mark.parametrize("key", ["displayName", "display", "DISPLAYNAME", "Display"])
def test_a_display_sent_with_a_patch_add_is_what_the_group_shows(scim, users, key) -> None:
    """The reference suite adds {"displayName": "new User", "value": id} and GETs the group."""
    group = scim.create_group("Staff")
    add = {"op": "add", "path": "members", "value": [{key: "new User", "value": users[0]["id"]}]}

    response = scim.patch_ops(f"/Groups/{group['id']}", add)

    assert response.status_code == 204
    body = scim.get(f"/Groups/{group['id']}").get_json()
    assert _displays(body) == {users[0]["id"]: "new User"}
    assert "_memberDisplays" not in body


def test_members_without_a_display_show_the_users_name_beside_those_with_one(scim, users) -> None:
    group = scim.create_group("Staff")
    scim.patch_ops(
        f"/Groups/{group['id']}",
        {"op": "add", "path": "members", "value": [{"value": users[0]["id"]}]},
        {"op": "add", "path": "members", "value": [{"value": users[1]["id"], "display": "Bo"}]},
    )

    shown = _displays(_read(scim, group))

    assert shown == {users[0]["id"]: "ann", users[1]["id"]: "Bo"}


def test_post_and_put_keep_the_displays_sent_and_a_put_without_members_keeps_them(
    scim, users
) -> None:
    ann, bob, cat = (user["id"] for user in users)
    created = scim.post(
        "/Groups",
        {"displayName": "Staff", "members": [{"value": ann, "display": "VP"}, {"value": bob}]},
    ).get_json()
    path = f"/Groups/{created['id']}"

    renamed_only = scim.put(path, {"displayName": "Team"}).get_json()
    replaced = scim.put(
        path,
        {"displayName": "Team", "members": [{"value": ann}, {"value": cat, "displayName": "C"}]},
    ).get_json()

    assert _displays(created) == {ann: "VP", bob: "bob"}
    assert _displays(renamed_only) == {ann: "VP", bob: "bob"}
    assert _displays(replaced) == {ann: "ann", cat: "C"}
    assert _displays(scim.get(path).get_json()) == {ann: "ann", cat: "C"}


def test_a_patch_replace_states_each_members_display_anew(scim, users) -> None:
    ann, bob, cat = (user["id"] for user in users)
    group = scim.create_group("Staff")
    path = f"/Groups/{group['id']}"
    scim.patch_ops(
        path,
        {
            "op": "add",
            "path": "members",
            "value": [{"value": ann, "display": "A"}, {"value": bob, "display": "B"}],
        },
    )

    scim.patch_ops(
        path,
        {
            "op": "replace",
            "path": "members",
            "value": [{"value": ann}, {"value": cat, "display": "C"}],
        },
    )

    assert _displays(_read(scim, group)) == {ann: "ann", cat: "C"}


def test_a_removed_member_added_again_without_a_display_shows_the_users_name(scim, users) -> None:
    ann = users[0]["id"]
    group = scim.create_group("Staff")
    path = f"/Groups/{group['id']}"
    add_with = {"op": "add", "path": "members", "value": [{"value": ann, "display": "A"}]}
    scim.patch_ops(path, add_with)

    scim.patch_ops(path, {"op": "remove", "path": f'members[value eq "{ann}"]'})
    scim.patch_ops(path, {"op": "add", "path": "members", "value": [{"value": ann}]})

    assert _displays(_read(scim, group)) == {ann: "ann"}


def test_adding_a_member_again_with_another_display_changes_nothing(scim, users) -> None:
    """An add of a value already there makes no change (RFC 7644 §3.5.2.1): nor to its display."""
    ann = users[0]["id"]
    group = scim.create_group("Staff", [ann])
    path = f"/Groups/{group['id']}"
    before = scim.get(path).get_json()

    response = scim.patch_ops(
        path, {"op": "add", "path": "members", "value": [{"value": ann, "display": "A"}]}
    )

    assert response.status_code == 204
    assert scim.get(path).get_json() == before


def test_a_path_less_replace_renames_the_group_and_keeps_the_displays_sent(scim, users) -> None:
    ann, bob = users[0]["id"], users[1]["id"]
    group = scim.create_group("Staff", [ann])

    response = scim.patch_ops(
        f"/Groups/{group['id']}",
        {
            "op": "replace",
            "value": {"displayName": "Team", "members": [{"value": bob, "display": "B"}]},
        },
    )

    assert response.status_code == 204
    after = _read(scim, group)
    assert after["displayName"] == "Team"
    assert _displays(after) == {bob: "B"}


def test_a_patch_changing_only_displays_is_an_update_event(scim, users, events: list[dict]) -> None:
    ann = users[0]["id"]
    group = scim.create_group("Staff", [ann])
    path = f"/Groups/{group['id']}"

    scim.patch_ops(
        path, {"op": "replace", "path": "members", "value": [{"value": ann, "display": "A"}]}
    )

    assert [e["operation"] for e in events] == ["create", "update"]
    assert _displays(_read(scim, group)) == {ann: "A"}


def test_filters_and_member_removal_read_the_display_the_group_shows(scim, users) -> None:
    ann, bob = users[0]["id"], users[1]["id"]
    group = scim.create_group("Staff", [bob])
    path = f"/Groups/{group['id']}"
    scim.patch_ops(
        path, {"op": "add", "path": "members", "value": [{"value": ann, "displayName": "new User"}]}
    )

    by_sent = scim.get("/Groups", query_string={"filter": 'members.display eq "new User"'})
    by_name = scim.get("/Groups", query_string={"filter": 'members.display eq "ann"'})
    removal = scim.patch_ops(path, {"op": "remove", "path": 'members[display eq "new User"]'})

    assert [g["id"] for g in by_sent.get_json()["Resources"]] == [group["id"]]
    assert by_name.get_json()["totalResults"] == 0
    assert removal.status_code == 204
    assert _member_ids(_read(scim, group)) == [bob]


@pytest.mark.parametrize(
    ("member", "detail"),
    [
        pytest.param(
            {"display": 7},
            "Operations[0]: members[1].display: expected a string, got a number",
            id="number",
        ),
        pytest.param(
            {"display": "new\nUser"},
            "Operations[0]: members[1].display: control characters are not allowed "
            "(U+000A at position 3)",
            id="control-character",
        ),
        pytest.param(
            {"display": "x" * 1025},
            "Operations[0]: members[1].display: must be at most 1024 characters, got 1025",
            id="too-long",
        ),
        pytest.param(
            {"display": "A", "displayName": "B"},
            "Operations[0]: members[1]: display given more than once, "
            "as 'display' and 'displayName'",
            id="given-twice",
        ),
    ],
)
def test_a_patch_with_a_bad_member_display_is_400_and_changes_nothing(
    scim, users, member: dict, detail: str
) -> None:
    group = scim.create_group("Staff")
    path = f"/Groups/{group['id']}"
    value = [{"value": users[0]["id"]}, {"value": users[1]["id"], **member}]

    response = scim.patch_ops(path, {"op": "add", "path": "members", "value": value})

    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    assert response.get_json()["detail"] == detail
    assert _member_ids(_read(scim, group)) == []


def test_deleting_a_user_removes_it_from_every_group(scim, users) -> None:
    first = scim.create_group("Staff", [users[0]["id"], users[1]["id"]])
    second = scim.create_group("Admins", [users[0]["id"]])

    scim.delete(f"/Users/{users[0]['id']}")

    assert _member_ids(_read(scim, first)) == [users[1]["id"]]
    assert _member_ids(_read(scim, second)) == []
    found = scim.get("/Groups", query_string={"filter": f'members.value eq "{users[0]["id"]}"'})
    assert found.get_json()["totalResults"] == 0


# -- bad members: a group is refused, an id naming nothing is skipped ----------------------


def test_a_group_as_member_is_400_with_a_clear_error(scim, users) -> None:
    inner = scim.create_group("Inner")

    response = scim.post("/Groups", {"displayName": "Outer", "members": [{"value": inner["id"]}]})

    assert response.status_code == 400
    body = response.get_json()
    assert body["scimType"] == "invalidValue"
    assert inner["id"] in body["detail"] and "group" in body["detail"]
    assert scim.get('/Groups?filter=displayName eq "Outer"').get_json()["totalResults"] == 0


def test_a_member_typed_group_is_400(scim, users) -> None:
    response = scim.post(
        "/Groups",
        {"displayName": "Outer", "members": [{"value": users[0]["id"], "type": "Group"}]},
    )

    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"


@pytest.mark.parametrize("op", ["add", "replace"])
def test_a_patch_adding_a_group_as_member_is_400_and_changes_nothing(scim, users, op) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])
    inner = scim.create_group("Inner")

    response = scim.patch_ops(
        f"/Groups/{group['id']}", {"op": op, "path": "members", "value": [{"value": inner["id"]}]}
    )

    assert response.status_code == 400
    assert inner["id"] in response.get_json()["detail"]
    assert _read(scim, group) == group


def test_a_patch_skips_member_ids_that_name_nothing_and_applies_the_rest(
    scim, users, caplog: pytest.LogCaptureFixture
) -> None:
    """Entra Q20/Q23: a stale id must not stick the group; it is skipped and logged."""
    caplog.set_level("INFO", logger="proware.scim")
    group = scim.create_group("Staff", [users[0]["id"]])

    response = scim.patch_ops(
        f"/Groups/{group['id']}",
        {"op": "replace", "path": "displayName", "value": "Renamed"},
        {"op": "remove", "path": "members", "value": [{"value": users[0]["id"]}]},
        {"op": "add", "path": "members", "value": [{"value": users[1]["id"]}]},
        {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]},
    )

    assert response.status_code == 204
    after = _read(scim, group)
    assert after["displayName"] == "Renamed"
    assert _member_ids(after) == [users[1]["id"]]
    [line] = [
        r.getMessage() for r in caplog.records if "member ids that name no user" in r.getMessage()
    ]
    assert group["id"] in line and "'no-such-user'" in line


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_long_skipped_member_id_is_shortened_where_it_is_reported(
    scim, users, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The log and the token's Connection status repeat a skipped id as an error's detail
    does: its first 64 characters (a 1,000-character id was written whole)."""
    caplog.set_level("INFO", logger="proware.scim")
    group = scim.create_group("Staff")
    long_id = "x" * 1000

    if method == "POST":
        response = scim.post("/Groups", {"displayName": "New", "members": [{"value": long_id}]})
    else:
        response = scim.patch_ops(
            f"/Groups/{group['id']}", {"op": "add", "path": "members", "value": long_id}
        )

    assert response.status_code in (201, 204)
    [line] = [
        r.getMessage() for r in caplog.records if "member ids that name no user" in r.getMessage()
    ]
    assert f"['{'x' * 64}...']" in line and len(line) < 300


def test_the_reference_suites_string_id_1_add_is_204_and_changes_nothing(scim, users) -> None:
    """Entra Q23: {"op":"add","path":"members","value":"string id 1"} expects 204."""
    group = scim.create_group("Staff", [users[0]["id"]])

    response = scim.patch_ops(
        f"/Groups/{group['id']}", {"op": "add", "path": "members", "value": "string id 1"}
    )

    assert response.status_code == 204
    assert response.headers["ETag"] == group["meta"]["version"]
    assert _read(scim, group) == group


def test_a_patch_replacing_members_skips_ids_that_name_nothing(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])

    response = scim.patch_ops(
        f"/Groups/{group['id']}",
        {
            "op": "replace",
            "path": "members",
            "value": [{"value": "gone"}, {"value": users[2]["id"]}],
        },
    )

    assert response.status_code == 204
    assert _member_ids(_read(scim, group)) == [users[2]["id"]]


def test_a_patch_with_a_projection_still_answers_200_when_it_skips_a_member(scim, users) -> None:
    group = scim.create_group("Staff")

    response = scim.patch_ops(
        f"/Groups/{group['id']}?attributes=members",
        {"op": "add", "path": "members", "value": [{"value": "gone"}, {"value": users[1]["id"]}]},
    )

    assert response.status_code == 200
    assert _member_ids(response.get_json()) == [users[1]["id"]]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_a_full_body_skips_member_ids_that_name_nothing_as_a_patch_does(
    app, scim, users, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A PUT states the members as a PATCH replace of members does (Okta's group push sends
    both): an id that names nothing (a user deleted here, or restored away) is skipped and
    reported by both, never a 400 that the next push would repeat."""
    caplog.set_level("INFO", logger="proware.scim")
    group = scim.create_group("Staff", [users[0]["id"]])
    sent = [
        {"value": "ghost", "display": "Gone"},
        {"value": users[1]["id"], "display": "Bo"},
        {"value": "ghost"},
    ]
    body = {"displayName": "New", "members": sent}

    if method == "POST":
        response = scim.post("/Groups", body)
    else:
        response = scim.put(f"/Groups/{group['id']}", body)

    assert response.status_code == (201 if method == "POST" else 200)
    written = response.get_json()
    assert [(m["value"], m["display"]) for m in written["members"]] == [(users[1]["id"], "Bo")]
    assert _read(scim, written) == written
    stored = app.extensions["proware"].repository.get("Group", written["id"])
    assert stored["_memberDisplays"] == {users[1]["id"]: "Bo"}
    [line] = [
        r.getMessage() for r in caplog.records if "member ids that name no user" in r.getMessage()
    ]
    assert line.startswith(method) and written["id"] in line and "['ghost']" in line


# -- uniqueness ----------------------------------------------------------------------------


def test_group_display_name_is_unique_case_insensitively(scim) -> None:
    """entra-provisioning.md A8, Q11: Entra matches groups on displayName."""
    scim.create_group("Staff")

    response = scim.post("/Groups", {"displayName": "STAFF"})

    assert response.status_code == 409
    assert response.get_json()["scimType"] == "uniqueness"
    assert "displayName" in response.get_json()["detail"]


def test_a_group_may_change_only_the_case_of_its_own_name(scim) -> None:
    group = scim.create_group("Staff")
    other = scim.create_group("Admins")

    own = scim.patch_ops(
        f"/Groups/{group['id']}", {"op": "replace", "value": {"displayName": "STAFF"}}
    )
    taken = scim.patch_ops(
        f"/Groups/{other['id']}", {"op": "replace", "path": "displayName", "value": "staff"}
    )

    assert own.status_code == 204
    assert _read(scim, group)["displayName"] == "STAFF"
    assert taken.status_code == 409
    assert _read(scim, other) == other


def test_group_external_id_is_not_unique(scim) -> None:
    scim.create_group("Staff", externalId="same")

    assert scim.post("/Groups", {"displayName": "Admins", "externalId": "same"}).status_code == 201


# -- excludedAttributes=members (entra-provisioning.md A9, A10, Q9) -------------------------


def test_excluded_members_on_get_by_id_returns_no_members_key(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])

    response = scim.get(f"/Groups/{group['id']}?excludedAttributes=members")

    body = response.get_json()
    assert "members" not in body
    assert body["displayName"] == "Staff"
    assert response.headers["ETag"] == group["meta"]["version"]


def test_excluded_members_on_a_list_returns_no_members_key(scim, users) -> None:
    scim.create_group("Staff", [users[0]["id"]])
    scim.create_group("Admins", [users[1]["id"]])

    response = scim.get('/Groups?excludedAttributes=members&filter=displayName eq "staff"')

    body = response.get_json()
    assert body["totalResults"] == 1
    assert body["Resources"][0]["displayName"] == "Staff"
    assert "members" not in body["Resources"][0]


def test_excluding_only_a_member_sub_attribute_keeps_members(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])

    body = scim.get(f"/Groups/{group['id']}?excludedAttributes=members.display").get_json()

    assert _member_ids(body) == [users[0]["id"]]
    assert "display" not in body["members"][0]


def test_attributes_without_members_returns_no_members(scim, users) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])

    body = scim.get(f"/Groups/{group['id']}?attributes=displayName").get_json()

    assert body == {"schemas": [constants.GROUP], "id": group["id"], "displayName": "Staff"}


CORE_URN_PROJECTIONS = [
    pytest.param({"attributes": constants.GROUP}, True, id="attributes"),
    pytest.param({"attributes": constants.GROUP.upper()}, True, id="attributes-any-case"),
    pytest.param({"attributes": f"{constants.GROUP}:members.value"}, True, id="urn-sub"),
    pytest.param({"excludedAttributes": constants.GROUP}, False, id="excluded"),
    pytest.param({"excludedAttributes": f"{constants.GROUP}:Members"}, False, id="excluded-urn"),
]


@pytest.mark.parametrize(("projection", "with_members"), CORE_URN_PROJECTIONS)
def test_a_core_schema_urn_projects_members_alike_on_every_endpoint(
    scim, users, projection: dict, with_members: bool
) -> None:
    """The core schema's URN stands for every core attribute, members included (RFC 7644
    §3.10): list, filter, /.search and GET by id answer the same resource."""
    group = scim.create_group("Staff", [users[0]["id"]])
    search = {"schemas": [constants.SEARCH_REQUEST]} | {
        name: [value] for name, value in projection.items()
    }

    by_id = scim.get(f"/Groups/{group['id']}", query_string=projection).get_json()
    listed = scim.get("/Groups", query_string=projection).get_json()
    filtered = scim.get(
        "/Groups", query_string={"filter": 'displayName eq "staff"', **projection}
    ).get_json()
    searched = scim.post("/Groups/.search", search).get_json()

    assert ("members" in by_id) is with_members
    assert _member_ids(by_id) == ([users[0]["id"]] if with_members else [])
    assert listed["Resources"] == [by_id]
    assert filtered["Resources"] == [by_id]
    assert searched["Resources"] == [by_id]


@pytest.mark.parametrize(
    ("projection", "with_groups"),
    [
        pytest.param({"attributes": constants.USER}, True, id="attributes"),
        pytest.param({"attributes": f"{constants.USER}:groups"}, True, id="urn-attribute"),
        pytest.param({"excludedAttributes": constants.USER}, False, id="excluded"),
    ],
)
def test_a_core_schema_urn_projects_a_users_groups_alike_on_every_endpoint(
    scim, users, projection: dict, with_groups: bool
) -> None:
    group = scim.create_group("Staff", [users[0]["id"]])

    by_id = scim.get(f"/Users/{users[0]['id']}", query_string=projection).get_json()
    listed = scim.get("/Users", query_string={"count": "1", **projection}).get_json()
    filtered = scim.get(
        "/Users", query_string={"filter": 'userName eq "ann"', **projection}
    ).get_json()

    assert [g["value"] for g in by_id.get("groups", [])] == ([group["id"]] if with_groups else [])
    assert listed["Resources"] == [by_id]
    assert filtered["Resources"] == [by_id]


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_post_and_put_of_a_group_honour_excluded_members(scim, users, method: str) -> None:
    """RFC 7644 §3.9, as Entra's excludedAttributes=members on reads (Q9)."""
    body = {"displayName": "Staff", "members": [{"value": users[0]["id"]}]}
    path = "/Groups"
    if method == "PUT":
        path = f"/Groups/{scim.create_group('Staff')['id']}"

    response = scim.request(method, path, body, query_string={"excludedAttributes": "members"})
    attributes = scim.request(
        "PUT", f"/Groups/{response.get_json()['id']}", body, query_string={"attributes": "members"}
    )

    assert response.status_code in (200, 201)
    assert "members" not in response.get_json()
    assert response.get_json()["displayName"] == "Staff"
    assert set(attributes.get_json()) == {"schemas", "id", "members"}
    assert _member_ids(_read(scim, response.get_json())) == [users[0]["id"]]


def test_groups_can_be_found_by_member(scim, users) -> None:
    staff = scim.create_group("Staff", [users[0]["id"], users[1]["id"]])
    scim.create_group("Admins", [users[1]["id"]])

    response = scim.get(
        "/Groups",
        query_string={
            "filter": f'members[value eq "{users[0]["id"]}"]',
            "excludedAttributes": "members",
        },
    )

    body = response.get_json()
    assert [group["id"] for group in body["Resources"]] == [staff["id"]]
    assert "members" not in body["Resources"][0]


@pytest.fixture
def teams(scim, users) -> dict[str, str]:
    """Staff holds ann and bob, Admins holds bob, cat is in no group: the ids by name."""
    staff = scim.create_group("Staff", [users[0]["id"], users[1]["id"]])
    admins = scim.create_group("Admins", [users[1]["id"]])
    return {"Staff": staff["id"], "Admins": admins["id"]}


USER_GROUP_FILTERS = [
    pytest.param('groups.value eq "{Admins}"', ["bob"], id="value"),
    pytest.param('groups.display eq "STAFF"', ["ann", "bob"], id="display-folded"),
    pytest.param('groups.type eq "direct"', ["ann", "bob"], id="type"),
    pytest.param('groups.$ref ew "/Groups/{Admins}"', ["bob"], id="ref"),
    pytest.param("groups pr", ["ann", "bob"], id="pr"),
    pytest.param("not (groups pr)", ["cat"], id="not-pr"),
    pytest.param('groups eq "{Staff}"', ["ann", "bob"], id="whole-attribute-compares-value"),
    pytest.param(
        'groups[display eq "Admins" and type eq "direct"]', ["bob"], id="value-path-filter"
    ),
    pytest.param(f'{constants.USER}:groups.value eq "{{Staff}}"', ["ann", "bob"], id="urn"),
    pytest.param('userName eq "ann" and groups.display eq "Admins"', [], id="indexed-and"),
]


@pytest.mark.parametrize(("text", "names"), USER_GROUP_FILTERS)
def test_users_can_be_found_by_group(scim, teams, text: str, names: list[str]) -> None:
    """A user's groups come from the member relation, not its stored document; a filter
    reads them as the client sees them, on every backend."""
    body = scim.get("/Users", query_string={"filter": text.format(**teams)}).get_json()

    assert [user["userName"] for user in body["Resources"]] == names
    assert body["totalResults"] == len(names)


def test_users_can_be_found_by_group_with_post_search_and_at_the_root(scim, teams) -> None:
    search = {"schemas": [constants.SEARCH_REQUEST], "filter": 'groups.display eq "Admins"'}

    searched = scim.post("/Users/.search", search).get_json()
    everywhere = scim.post("/.search", search).get_json()

    assert [user["userName"] for user in searched["Resources"]] == ["bob"]
    assert [user["userName"] for user in everywhere["Resources"]] == ["bob"]


USER_GROUP_SORTS = [
    pytest.param("groups.display", "ascending", ["bob", "ann", "cat"], id="display"),
    pytest.param("groups.display", "descending", ["cat", "ann", "bob"], id="display-desc"),
]


@pytest.mark.parametrize(("sort_by", "order", "names"), USER_GROUP_SORTS)
def test_users_can_be_sorted_by_group(
    scim, users, sort_by: str, order: str, names: list[str]
) -> None:
    """A multi-valued attribute sorts by its first value (RFC 7644 §3.4.2.3); no groups
    comes last ascending, first descending."""
    scim.create_group("B-Team", [users[0]["id"]])
    scim.create_group("A-Team", [users[1]["id"]])
    scim.create_group("Z-Team", [users[0]["id"], users[1]["id"]])

    body = scim.get(f"/Users?sortBy={sort_by}&sortOrder={order}").get_json()

    assert [user["userName"] for user in body["Resources"]] == names


# -- activity events -------------------------------------------------------------------------


def test_group_changes_emit_one_event_per_operation(scim, users, events: list[dict]) -> None:
    group = scim.create_group("Staff")
    path = f"/Groups/{group['id']}"
    ann, bob = users[0]["id"], users[1]["id"]
    scim.patch_ops(path, {"op": "add", "path": "members", "value": [{"value": ann}]})
    scim.patch_ops(path, {"op": "remove", "path": f'members[value eq "{ann}"]'})
    scim.patch_ops(
        path,
        {"op": "replace", "path": "displayName", "value": "Team"},
        {"op": "add", "path": "members", "value": [{"value": bob}]},
    )
    scim.patch_ops(path, {"op": "remove", "path": "members", "value": [{"value": "not-in"}]})
    scim.delete(path)

    assert [(e["operation"], e["resourceType"], e["name"]) for e in events] == [
        ("create", "Group", "Staff"),
        ("add member", "Group", "Staff"),
        ("remove member", "Group", "Staff"),
        ("update", "Group", "Team"),
        ("add member", "Group", "Team"),
        ("delete", "Group", "Team"),
    ]
    assert {e["id"] for e in events} == {group["id"]}
    assert [e["status"] for e in events] == [201, 204, 204, 204, 204, 204]


def test_a_put_names_the_member_changes_it_made(scim, users, events: list[dict]) -> None:
    """A PUT of the whole group (Okta's group push) is recorded as the PATCH doing the same
    would be: members added or removed, a rename as an update, and nothing when the group
    was resent as it is."""
    ann, bob = users[0]["id"], users[1]["id"]
    group = scim.create_group("Staff", [ann])
    path = f"/Groups/{group['id']}"
    events.clear()

    scim.put(path, {"displayName": "Staff", "members": [{"value": ann}, {"value": bob}]})
    scim.put(path, {"displayName": "Staff", "members": [{"value": bob}]})
    scim.put(path, {"displayName": "Team", "members": [{"value": bob}]})
    version = _read(scim, group)["meta"]["version"]
    resent = scim.put(path, {"displayName": "Team", "members": [{"value": bob}]})

    assert [e["operation"] for e in events] == ["add member", "remove member", "update"]
    assert resent.get_json()["meta"]["version"] == version
