"""ETags and conditional requests (RFC 7644 §3.14), and PUT's replace semantics (§3.5.1)."""

from __future__ import annotations

import json

import pytest

from scim import constants


@pytest.fixture
def ann(scim) -> dict:
    return scim.create_user("ann", title="Engineer")


def _write(scim, method: str, path: str, **kwargs):
    """One write of each kind to ``path`` (a user), with the given headers."""
    if method == "PUT":
        return scim.put(path, {"userName": "ann", "title": "Boss"}, **kwargs)
    if method == "PATCH":
        return scim.patch_ops(path, {"op": "replace", "path": "title", "value": "Boss"}, **kwargs)
    return scim.delete(path, **kwargs)


# -- the version and the ETag header agree ---------------------------------------------------


def test_meta_version_equals_the_etag_header_on_every_answer(scim, ann) -> None:
    path = f"/Users/{ann['id']}"
    answers = [
        scim.get(path),
        scim.put(path, {"userName": "ann", "title": "Boss"}),
        scim.patch_ops(path, {"op": "replace", "path": "title", "value": "Chief"}),
    ]

    for response in answers:
        assert response.headers["ETag"] == response.get_json()["meta"]["version"]
    versions = [response.headers["ETag"] for response in answers]
    assert versions[1] != versions[0] and versions[2] != versions[1]


def test_etags_are_weak_quoted_strings(scim, ann) -> None:
    """RFC 7232 §2.3: W/"..." (the version need not change with every byte)."""
    etag = scim.get(f"/Users/{ann['id']}").headers["ETag"]

    assert etag.startswith('W/"') and etag.endswith('"')


def test_a_no_op_patch_keeps_the_version(scim, ann) -> None:
    response = scim.patch_ops(
        f"/Users/{ann['id']}", {"op": "replace", "path": "title", "value": "Engineer"}
    )

    assert response.headers["ETag"] == ann["meta"]["version"]
    assert response.get_json()["meta"]["lastModified"] == ann["meta"]["lastModified"]


def test_the_service_provider_config_says_etags_are_supported(scim) -> None:
    assert scim.get("/ServiceProviderConfig").get_json()["etag"] == {"supported": True}


# -- If-Match ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_a_stale_if_match_is_412_and_changes_nothing(scim, ann, method: str) -> None:
    path = f"/Users/{ann['id']}"
    current = scim.put(path, {"userName": "ann", "title": "Lead"}).get_json()

    response = _write(scim, method, path, headers={"If-Match": ann["meta"]["version"]})

    assert response.status_code == 412
    body = response.get_json()
    assert body["status"] == "412"
    assert current["meta"]["version"] in body["detail"]
    assert scim.get(path).get_json() == current


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "if_match",
    [
        pytest.param("{current}", id="current"),
        pytest.param('W/"999", {current}', id="list-with-current"),
        pytest.param("*", id="star"),
    ],
)
def test_a_matching_if_match_succeeds(scim, ann, method: str, if_match: str) -> None:
    header = if_match.format(current=ann["meta"]["version"])

    response = _write(scim, method, f"/Users/{ann['id']}", headers={"If-Match": header})

    assert response.status_code == (204 if method == "DELETE" else 200)


def test_if_match_on_a_group_patch(scim, ann) -> None:
    group = scim.create_group("Staff")
    path = f"/Groups/{group['id']}"
    add_ann = {"op": "add", "path": "members", "value": [{"value": ann["id"]}]}

    first = scim.patch_ops(path, add_ann, headers={"If-Match": group["meta"]["version"]})
    stale = scim.patch_ops(
        path,
        {"op": "remove", "path": "members"},
        headers={"If-Match": group["meta"]["version"]},
    )

    assert first.status_code == 204
    assert stale.status_code == 412
    assert [m["value"] for m in scim.get(path).get_json()["members"]] == [ann["id"]]


# -- If-None-Match -------------------------------------------------------------------------


def test_if_none_match_with_the_current_version_is_304(scim, ann) -> None:
    response = scim.get(f"/Users/{ann['id']}", headers={"If-None-Match": ann["meta"]["version"]})

    assert response.status_code == 304
    assert response.get_data() == b""
    assert response.headers["ETag"] == ann["meta"]["version"]


@pytest.mark.parametrize("form", ["strong", "weak"])
def test_if_none_match_compares_weakly(scim, ann, form: str) -> None:
    """RFC 9110 §13.1.2: If-None-Match uses the weak comparison, so "1" matches W/"1"."""
    version = ann["meta"]["version"]
    assert version.startswith('W/"')
    tag = version[2:] if form == "strong" else version

    response = scim.get(f"/Users/{ann['id']}", headers={"If-None-Match": f'"other", {tag}'})

    assert response.status_code == 304
    assert response.headers["ETag"] == version


def test_if_none_match_star_is_304(scim, ann) -> None:
    """RFC 9110 §13.1.2: "*" matches any current version."""
    response = scim.get(f"/Users/{ann['id']}", headers={"If-None-Match": "*"})

    assert response.status_code == 304


def test_if_none_match_with_an_old_version_returns_the_resource(scim, ann) -> None:
    path = f"/Users/{ann['id']}"
    scim.patch_ops(path, {"op": "replace", "path": "title", "value": "Boss"})

    response = scim.get(path, headers={"If-None-Match": f'W/"x", {ann["meta"]["version"]}'})

    assert response.status_code == 200
    assert response.get_json()["title"] == "Boss"


def test_if_none_match_on_an_unknown_id_is_404(scim) -> None:
    response = scim.get("/Users/ghost", headers={"If-None-Match": 'W/"1"'})

    assert response.status_code == 404


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "if_none_match",
    [
        pytest.param("{current}", id="current"),
        pytest.param('W/"999", {strong}', id="list-with-current-strong"),
        pytest.param("*", id="star"),
    ],
)
def test_a_matching_if_none_match_on_a_write_is_412_and_changes_nothing(
    scim, ann, method: str, if_none_match: str
) -> None:
    """RFC 7232 §3.2: a write whose If-None-Match matches the current version is a 412."""
    path = f"/Users/{ann['id']}"
    current = scim.get(path)
    version = current.headers["ETag"]
    header = if_none_match.format(current=version, strong=version.removeprefix("W/"))

    response = _write(scim, method, path, headers={"If-None-Match": header})

    assert response.status_code == 412
    assert response.get_json()["status"] == "412"
    after = scim.get(path)
    assert after.get_json() == current.get_json()
    assert after.headers["ETag"] == version


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_an_if_none_match_naming_another_version_lets_a_write_through(
    scim, ann, method: str
) -> None:
    response = _write(scim, method, f"/Users/{ann['id']}", headers={"If-None-Match": 'W/"999"'})

    assert response.status_code == (204 if method == "DELETE" else 200)


def test_a_stale_if_match_on_a_get_is_412(scim, ann) -> None:
    """RFC 7232 §3.1: a failed If-Match is a 412 on any method, before If-None-Match."""
    path = f"/Users/{ann['id']}"

    stale = scim.get(path, headers={"If-Match": 'W/"999"', "If-None-Match": "*"})
    current = scim.get(path, headers={"If-Match": ann["meta"]["version"]})

    assert stale.status_code == 412
    assert stale.get_json()["status"] == "412"
    assert current.status_code == 200
    assert current.get_json()["id"] == ann["id"]


def test_a_group_version_changes_when_its_members_change(scim, ann) -> None:
    group = scim.create_group("Staff")
    path = f"/Groups/{group['id']}"

    scim.patch_ops(path, {"op": "add", "path": "members", "value": [{"value": ann["id"]}]})

    assert scim.get(path, headers={"If-None-Match": group["meta"]["version"]}).status_code == 200


def _changes_to_anns_groups(scim, ann: dict):
    """Each step changes what a GET of ann shows in ``groups``, with no write to ann."""
    group = scim.create_group("Staff")
    path = f"/Groups/{group['id']}"
    yield (
        "joins",
        lambda: scim.patch_ops(
            path, {"op": "add", "path": "members", "value": [{"value": ann["id"]}]}
        ),
    )
    yield (
        "sees it renamed",
        lambda: scim.patch_ops(path, {"op": "replace", "path": "displayName", "value": "Crew"}),
    )
    yield (
        "leaves",
        lambda: scim.patch_ops(path, {"op": "remove", "path": f'members[value eq "{ann["id"]}"]'}),
    )
    yield (
        "joins again",
        lambda: scim.patch_ops(
            path, {"op": "add", "path": "members", "value": [{"value": ann["id"]}]}
        ),
    )
    yield "sees it deleted", lambda: scim.delete(path)


def test_a_user_version_changes_with_what_its_groups_show(scim, ann) -> None:
    """A user's groups come from other resources: its ETag must follow them anyway, or a
    cached copy would be answered 304 with stale groups."""
    path = f"/Users/{ann['id']}"
    seen = [scim.get(path).get_json()]

    for step, change in _changes_to_anns_groups(scim, ann):
        change()
        response = scim.get(path, headers={"If-None-Match": seen[-1]["meta"]["version"]})
        assert response.status_code == 200, step
        assert response.get_json().get("groups") != seen[-1].get("groups"), step
        seen.append(response.get_json())
        again = scim.get(path, headers={"If-None-Match": seen[-1]["meta"]["version"]})
        assert again.status_code == 304, step

    for resource in seen:  # in no group, a user shows its own version
        assert (resource["meta"]["version"] == ann["meta"]["version"]) == ("groups" not in resource)


def test_if_match_takes_the_version_a_user_in_a_group_shows(scim, ann) -> None:
    scim.create_group("Staff", [ann["id"]])
    path = f"/Users/{ann['id']}"
    shown = scim.get(path).get_json()["meta"]["version"]

    stale = _write(scim, "PATCH", path, headers={"If-Match": ann["meta"]["version"]})
    current = _write(scim, "PATCH", path, headers={"If-Match": shown})

    assert stale.status_code == 412
    assert current.status_code == 200


def test_a_group_version_changes_when_a_member_is_renamed(scim) -> None:
    ann = scim.create_user("ann", displayName="Ann")
    group = scim.create_group("Staff", [ann["id"]])
    path = f"/Groups/{group['id']}"
    rename = {"op": "replace", "path": "displayName", "value": "Ann B."}

    retitled = scim.patch_ops(
        f"/Users/{ann['id']}", {"op": "replace", "path": "title", "value": "Boss"}
    )
    unchanged = scim.get(path, headers={"If-None-Match": group["meta"]["version"]})
    scim.patch_ops(f"/Users/{ann['id']}", rename)
    renamed = scim.get(path, headers={"If-None-Match": group["meta"]["version"]})

    assert retitled.status_code == 200 and unchanged.status_code == 304
    assert renamed.status_code == 200
    assert renamed.get_json()["members"][0]["display"] == "Ann B."


def test_renaming_a_member_renews_only_the_groups_that_show_its_name(scim) -> None:
    """A group showing the display a client sent for a member (Q23) does not change when the
    user is renamed, and keeps its version; one showing the user's name gets a new one."""
    ann = scim.create_user("ann", displayName="Ann")
    by_name = scim.create_group("Staff", [ann["id"]])
    sent = scim.post(
        "/Groups", {"displayName": "Board", "members": [{"value": ann["id"], "display": "VP"}]}
    ).get_json()

    scim.patch_ops(
        f"/Users/{ann['id']}", {"op": "replace", "path": "displayName", "value": "Ann B."}
    )
    board = scim.get(f"/Groups/{sent['id']}", headers={"If-None-Match": sent["meta"]["version"]})
    staff = scim.get(
        f"/Groups/{by_name['id']}", headers={"If-None-Match": by_name["meta"]["version"]}
    )

    assert board.status_code == 304
    assert scim.get(f"/Groups/{sent['id']}").get_json()["members"][0]["display"] == "VP"
    assert staff.status_code == 200
    assert staff.get_json()["members"][0]["display"] == "Ann B."


def test_a_group_version_changes_when_a_members_display_changes(scim) -> None:
    ann = scim.create_user("ann", displayName="Ann")
    group = scim.create_group("Staff", [ann["id"]])
    path = f"/Groups/{group['id']}"

    scim.patch_ops(
        path, {"op": "replace", "path": "members", "value": [{"value": ann["id"], "display": "A"}]}
    )
    changed = scim.get(path, headers={"If-None-Match": group["meta"]["version"]})

    assert changed.status_code == 200
    assert changed.get_json()["members"][0]["display"] == "A"
    assert changed.headers["ETag"] != group["meta"]["version"]


# -- a query reads the version a GET shows ---------------------------------------------------


def _user_names(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [resource["userName"] for resource in response.get_json()["Resources"]]


def test_a_filter_on_meta_version_compares_with_the_version_a_get_shows(scim, ann) -> None:
    """ann is in a group, so the version she shows is not the one stored; a filter on it, with
    the ETag a GET returned, finds her (on every backend, with or without an index)."""
    bob = scim.create_user("bob")
    scim.create_group("Staff", [ann["id"]])
    shown = scim.get(f"/Users/{ann['id']}").headers["ETag"]
    stored = ann["meta"]["version"]
    assert shown != stored and bob["meta"]["version"] == stored  # W/"1" both

    def found(text: str) -> list[str]:
        return _user_names(scim.get("/Users", query_string={"filter": text}))

    literal = json.dumps(shown)  # W/"1.<digest>" as a filter's string, quotes escaped
    assert found(f"meta.version eq {literal}") == ["ann"]
    assert found(f"meta.version eq {json.dumps(stored)}") == ["bob"]
    assert found(f'userName eq "ann" and meta.version eq {literal}') == ["ann"]
    assert found(f"meta[version eq {literal}]") == ["ann"]
    assert found(f"meta.version ne {literal}") == ["bob"]
    assert found('meta.version co "."') == ["ann"]
    searched = scim.post(
        "/.search", {"schemas": [constants.SEARCH_REQUEST], "filter": f"meta.version eq {literal}"}
    )
    assert _user_names(searched) == ["ann"]
    listed = scim.get("/Users", query_string={"filter": f"meta.version eq {literal}"})
    assert listed.get_json()["Resources"][0]["meta"]["version"] == shown
    assert searched.get_json()["Resources"][0]["meta"]["version"] == shown


def test_sorting_by_meta_version_orders_by_the_version_a_get_shows(scim, ann) -> None:
    """Stored, ann and bob both have W/"1" (a tie, kept in creation order); shown, ann's
    W/"1.<digest>" sorts after bob's W/"1"."""
    scim.create_user("bob")
    scim.create_group("Staff", [ann["id"]])

    ascending = scim.get("/Users", query_string={"sortBy": "meta.version"})
    descending = scim.post(
        "/.search",
        {
            "schemas": [constants.SEARCH_REQUEST],
            "filter": "userName pr",
            "sortBy": "meta.version",
            "sortOrder": "descending",
        },
    )

    assert _user_names(ascending) == ["bob", "ann"]
    assert _user_names(descending) == ["ann", "bob"]


@pytest.mark.parametrize(
    "parameters",
    [
        pytest.param({"excludedAttributes": "groups"}, id="groups-excluded"),
        pytest.param({"attributes": "meta.version"}, id="only-the-version"),
        pytest.param({"attributes": "meta", "filter": 'userName eq "ann"'}, id="index-lookup"),
    ],
)
def test_a_listed_user_shows_the_version_its_get_shows(scim, ann, parameters: dict) -> None:
    """The version covers the user's groups even where the response leaves them out."""
    scim.create_group("Staff", [ann["id"]])
    etag = scim.get(f"/Users/{ann['id']}").headers["ETag"]

    listed = scim.get("/Users", query_string=parameters).get_json()["Resources"]

    assert [user["meta"]["version"] for user in listed] == [etag]


# -- PUT replaces ----------------------------------------------------------------------------


def test_put_clears_attributes_it_leaves_out(scim) -> None:
    ann = scim.create_user(
        "ann",
        title="Engineer",
        emails=[{"value": "a@x", "type": "work"}],
        **{constants.ENTERPRISE_USER: {"department": "Sales"}},
    )

    body = scim.put(f"/Users/{ann['id']}", {"userName": "ann", "nickName": "A"}).get_json()

    assert body["nickName"] == "A"
    for gone in ("title", "emails", constants.ENTERPRISE_USER):
        assert gone not in body
    assert body["schemas"] == [constants.USER]


def test_put_keeps_id_created_and_group_membership(scim, ann) -> None:
    group = scim.create_group("Staff", [ann["id"]])

    body = scim.put(
        f"/Users/{ann['id']}",
        {"id": "other", "userName": "ann", "meta": {"created": "1999-01-01T00:00:00Z"}},
    ).get_json()

    assert body["id"] == ann["id"]
    assert body["meta"]["created"] == ann["meta"]["created"]
    assert [g["value"] for g in body["groups"]] == [group["id"]]


def test_put_accepts_the_resource_it_was_given_back(scim, ann) -> None:
    """A client that GETs, edits and PUTs the whole resource must not be refused."""
    resource = scim.get(f"/Users/{ann['id']}").get_json()
    resource["title"] = "Boss"

    response = scim.put(
        f"/Users/{ann['id']}", resource, headers={"If-Match": resource["meta"]["version"]}
    )

    assert response.status_code == 200
    assert response.get_json()["title"] == "Boss"


def test_put_of_a_group_accepts_the_resource_it_was_given_back(scim, ann) -> None:
    group = scim.create_group("Staff", [ann["id"]])
    group["displayName"] = "Team"

    response = scim.put(f"/Groups/{group['id']}", group)

    assert response.status_code == 200
    assert response.get_json()["displayName"] == "Team"
    assert [m["value"] for m in response.get_json()["members"]] == [ann["id"]]
