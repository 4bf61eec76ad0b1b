"""The storage contract: every repository implementation behaves the same way.

Runs once per entry of ``tests.storage_contract.IMPLEMENTATIONS``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from storage.errors import Conflict, NotFound, VersionMismatch
from storage.postgres.repository import PostgresRepository
from storage.repository import Repository
from tests.storage_contract import (
    IMPLEMENTATIONS,
    START_STAMP,
    CounterIds,
    FixedClock,
    group,
    user,
)

LATER_STAMP = "2026-11-26T10:54:53.123Z"  # START + 1 second


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture(params=list(IMPLEMENTATIONS))
def repository(request, tmp_path: Path, clock: FixedClock) -> Iterator[Repository]:
    opened = IMPLEMENTATIONS[request.param](tmp_path, clock, CounterIds())
    yield opened
    opened.close()


def insert(repository: Repository, kind: str, document: dict) -> dict:
    with repository.transaction() as tx:
        return tx.insert(kind, document)


def add_members(repository: Repository, group_id: str, user_ids: list[str]) -> list[str]:
    with repository.transaction() as tx:
        return tx.add_members(group_id, user_ids)


# -- insert and get -------------------------------------------------------------------------


def test_insert_stamps_id_and_meta(repository: Repository) -> None:
    stored = insert(repository, "User", user("ann"))

    assert stored["id"] == "id-1"
    assert stored["meta"] == {
        "resourceType": "User",
        "created": START_STAMP,
        "lastModified": START_STAMP,
        "version": 'W/"1"',
    }
    assert repository.get("User", "id-1") == stored


@pytest.mark.parametrize(
    "now",
    [
        datetime(2026, 11, 26, 12, 54, 52, 123999, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 11, 26, 10, 54, 52, 123000),
    ],
    ids=["other-offset", "naive-taken-as-utc"],
)
def test_timestamps_are_utc_with_milliseconds(
    repository: Repository, clock: FixedClock, now: datetime
) -> None:
    clock.now = now

    assert insert(repository, "User", user("ann"))["meta"]["created"] == START_STAMP


@pytest.mark.parametrize("implementation", list(IMPLEMENTATIONS))
def test_an_id_factory_repeating_itself_is_refused(
    tmp_path: Path, clock: FixedClock, implementation: str
) -> None:
    store = IMPLEMENTATIONS[implementation](tmp_path, clock, lambda: "same")
    insert(store, "User", user("ann"))

    with pytest.raises(RuntimeError, match="'same'"):
        insert(store, "User", user("bob"))

    assert store.count("User") == 1
    store.close()


def test_insert_ignores_id_and_meta_sent_by_the_caller(repository: Repository) -> None:
    stored = insert(repository, "User", user("ann", id="mine", meta={"version": 'W/"9"'}))

    assert stored["id"] == "id-1"
    assert stored["meta"]["version"] == 'W/"1"'
    assert not repository.exists("User", "mine")


def test_get_returns_a_copy_that_cannot_change_the_store(repository: Repository) -> None:
    insert(repository, "User", user("ann", emails=[{"value": "ann@example.com"}]))

    copy = repository.get("User", "id-1")
    copy["emails"][0]["value"] = "changed"
    copy["meta"]["version"] = "changed"

    assert repository.get("User", "id-1")["emails"][0]["value"] == "ann@example.com"
    assert repository.get("User", "id-1")["meta"]["version"] == 'W/"1"'


def test_insert_keeps_no_reference_to_the_callers_document(repository: Repository) -> None:
    document = user("ann", emails=[{"value": "ann@example.com"}])
    returned = insert(repository, "User", document)

    document["emails"][0]["value"] = "changed"
    returned["emails"][0]["value"] = "changed too"

    assert repository.get("User", "id-1")["emails"] == [{"value": "ann@example.com"}]


@pytest.mark.parametrize(
    ("kind", "id"), [("User", "nobody"), ("Group", "id-1")], ids=["unknown-id", "other-kind"]
)
def test_get_of_a_missing_document_raises_not_found(
    repository: Repository, kind: str, id: str
) -> None:
    insert(repository, "User", user("ann"))

    with pytest.raises(NotFound) as raised:
        repository.get(kind, id)
    assert (raised.value.kind, raised.value.id) == (kind, id)
    assert not repository.exists(kind, id)


def test_exists_is_true_for_a_stored_document(repository: Repository) -> None:
    insert(repository, "User", user("ann"))

    assert repository.exists("User", "id-1")


# -- indexes --------------------------------------------------------------------------------


@pytest.mark.parametrize("clashing", ["ann", "ANN", "Ann"])
def test_unique_index_refuses_the_same_value_in_any_case(
    repository: Repository, clashing: str
) -> None:
    insert(repository, "User", user("Ann"))

    with pytest.raises(Conflict) as raised:
        insert(repository, "User", user(clashing))

    assert (raised.value.kind, raised.value.field) == ("User", "userName")
    assert (raised.value.value, raised.value.holder) == (clashing, "id-1")
    assert repository.count("User") == 1


def test_unique_group_display_name_is_folded_too(repository: Repository) -> None:
    insert(repository, "Group", group("Sales"))

    with pytest.raises(Conflict):
        insert(repository, "Group", group("SALES"))


def test_the_same_value_in_two_kinds_does_not_clash(repository: Repository) -> None:
    insert(repository, "User", user("x", externalId="e"))
    insert(repository, "Group", group("x", externalId="e"))

    assert repository.find("User", "externalId", "e") == ["id-1"]
    assert repository.find("Group", "externalId", "e") == ["id-2"]


@pytest.mark.parametrize("new_name", ["ann", "ANN"], ids=["same", "case-change"])
def test_replace_may_keep_its_own_unique_value_or_change_its_case(
    repository: Repository, new_name: str
) -> None:
    insert(repository, "User", user("ann"))

    with repository.transaction() as tx:
        replaced = tx.replace("User", "id-1", user(new_name))

    assert replaced["userName"] == new_name
    assert repository.find("User", "userName", "Ann") == ["id-1"]


def test_replace_refuses_a_value_held_by_another_document(repository: Repository) -> None:
    insert(repository, "User", user("ann"))
    insert(repository, "User", user("bob"))

    with pytest.raises(Conflict) as raised, repository.transaction() as tx:
        tx.replace("User", "id-2", user("ANN"))

    assert raised.value.holder == "id-1"
    assert repository.get("User", "id-2")["userName"] == "bob"


def test_a_refused_write_leaves_the_rest_of_its_transaction(repository: Repository) -> None:
    """A caller may catch the Conflict and go on: what the transaction wrote before and
    after the refused insert and replace is committed, and nothing of them is."""
    insert(repository, "User", user("ann", externalId="a"))

    with repository.transaction() as tx:
        bob = tx.insert("User", user("bob", externalId="b"))["id"]
        with pytest.raises(Conflict):
            tx.insert("User", user("ANN", externalId="stray"))
        with pytest.raises(Conflict):
            tx.replace("User", bob, user("Ann", externalId="stray"))
        tx.replace("User", bob, user("bobby", externalId="b2"))
        cid = tx.insert("User", user("cid"))["id"]

    names = [document["userName"] for document in repository.all("User")]
    assert names == ["ann", "bobby", "cid"]
    assert repository.find("User", "externalId", "stray") == []
    assert repository.find("User", "userName", "bob") == []
    assert repository.find("User", "userName", "BOBBY") == [bob]
    assert repository.find("User", "userName", "cid") == [cid]
    assert repository.get("User", bob)["meta"]["version"] == 'W/"1"'  # one transaction


def test_find_folds_the_value_on_a_folded_index(repository: Repository) -> None:
    insert(repository, "User", user("Ann.Smith@Example.com"))

    assert repository.find("User", "userName", "ann.smith@example.COM") == ["id-1"]


def test_find_on_an_unfolded_index_is_case_exact(repository: Repository) -> None:
    insert(repository, "User", user("ann", externalId="AbC"))

    assert repository.find("User", "externalId", "AbC") == ["id-1"]
    assert repository.find("User", "externalId", "abc") == []


def test_non_unique_index_holds_every_document_with_the_value(repository: Repository) -> None:
    insert(repository, "User", user("ann", externalId="shared"))
    insert(repository, "User", user("bob", externalId="shared"))

    assert repository.find("User", "externalId", "shared") == ["id-1", "id-2"]


def test_find_on_a_field_without_an_index_raises_key_error(repository: Repository) -> None:
    with pytest.raises(KeyError):
        repository.find("User", "displayName", "ann")
    with pytest.raises(KeyError):
        repository.find_documents("User", "displayName", "ann")


def test_find_documents_gives_copies_of_what_find_names_in_its_order(
    repository: Repository,
) -> None:
    insert(repository, "User", user("ann", externalId="Shared"))
    insert(repository, "User", user("bob", externalId="other"))
    insert(repository, "User", user("cid", externalId="Shared"))

    found = repository.find_documents("User", "externalId", "Shared")

    assert [document["userName"] for document in found] == ["ann", "cid"]
    assert repository.find_documents("User", "externalId", "shared") == []
    assert [d["id"] for d in repository.find_documents("User", "userName", "BOB")] == ["id-2"]
    found[0]["userName"] = "changed"
    assert repository.get("User", "id-1")["userName"] == "ann"


def test_existing_names_the_ids_that_exist_in_the_order_given_each_once(
    repository: Repository,
) -> None:
    ids = [insert(repository, "User", user(name))["id"] for name in ("ann", "bob")]
    group_id = insert(repository, "Group", group("Sales"))["id"]

    asked = [ids[1], "nobody", group_id, ids[0], ids[1], "\x00"]
    assert repository.existing("User", asked) == [ids[1], ids[0]]
    assert repository.existing("Group", asked) == [group_id]
    assert repository.existing("User", []) == []


def test_documents_lacking_the_indexed_field_are_not_indexed(repository: Repository) -> None:
    insert(repository, "Group", {"externalId": "a"})
    insert(repository, "Group", {"externalId": "b"})  # two groups without displayName

    assert repository.count("Group") == 2
    assert repository.find("Group", "displayName", "") == []


def test_replace_moves_the_document_to_its_new_index_values(repository: Repository) -> None:
    insert(repository, "User", user("ann", externalId="old"))

    with repository.transaction() as tx:
        tx.replace("User", "id-1", user("annie"))

    assert repository.find("User", "userName", "ann") == []
    assert repository.find("User", "userName", "annie") == ["id-1"]
    assert repository.find("User", "externalId", "old") == []


def test_replace_leaving_indexed_values_as_they_were_keeps_them_in_place(
    repository: Repository,
) -> None:
    """A PATCH of other attributes, or a member change, rewrites the document: it stays
    where its lookups had it, first among those sharing its externalId."""
    insert(repository, "User", user("ann", externalId="shared"))
    insert(repository, "User", user("bob", externalId="shared"))

    with repository.transaction() as tx:
        tx.replace("User", "id-1", user("ann", externalId="shared", title="Boss"))

    assert repository.find("User", "userName", "ann") == ["id-1"]
    assert repository.find("User", "externalId", "shared") == ["id-1", "id-2"]


def test_delete_frees_its_unique_values(repository: Repository) -> None:
    insert(repository, "User", user("ann"))
    with repository.transaction() as tx:
        tx.delete("User", "id-1")

    assert insert(repository, "User", user("ANN"))["id"] == "id-2"
    assert repository.find("User", "userName", "ann") == ["id-2"]


# -- replace and versions -------------------------------------------------------------------


def test_replace_keeps_created_and_bumps_version_and_last_modified(
    repository: Repository, clock: FixedClock
) -> None:
    insert(repository, "User", user("ann"))
    clock.advance(seconds=1)

    with repository.transaction() as tx:
        replaced = tx.replace("User", "id-1", user("ann", displayName="Ann", id="x", meta={}))

    assert replaced["id"] == "id-1"
    assert replaced["meta"] == {
        "resourceType": "User",
        "created": START_STAMP,
        "lastModified": LATER_STAMP,
        "version": 'W/"2"',
    }
    assert repository.get("User", "id-1") == replaced


def test_replace_drops_attributes_absent_from_the_new_document(repository: Repository) -> None:
    insert(repository, "User", user("ann", title="Boss"))

    with repository.transaction() as tx:
        tx.replace("User", "id-1", user("ann"))

    assert "title" not in repository.get("User", "id-1")


def test_replace_of_a_missing_document_raises_not_found(repository: Repository) -> None:
    with pytest.raises(NotFound), repository.transaction() as tx:
        tx.replace("User", "nobody", user("ann"))


def test_delete_of_a_missing_document_raises_not_found(repository: Repository) -> None:
    with pytest.raises(NotFound), repository.transaction() as tx:
        tx.delete("User", "nobody")


@pytest.mark.parametrize("operation", ["replace", "delete"])
def test_a_stale_if_version_raises_version_mismatch(repository: Repository, operation: str) -> None:
    insert(repository, "User", user("ann"))

    with pytest.raises(VersionMismatch) as raised, repository.transaction() as tx:
        if operation == "replace":
            tx.replace("User", "id-1", user("bob"), if_version='W/"7"')
        else:
            tx.delete("User", "id-1", if_version='W/"7"')

    assert (raised.value.expected, raised.value.current) == ('W/"7"', 'W/"1"')
    assert repository.get("User", "id-1")["userName"] == "ann"


def test_the_current_if_version_is_accepted(repository: Repository) -> None:
    insert(repository, "User", user("ann"))

    with repository.transaction() as tx:
        tx.replace("User", "id-1", user("bob"), if_version='W/"1"')
        tx.delete("User", "id-1", if_version='W/"2"')

    assert not repository.exists("User", "id-1")


# -- memberships ----------------------------------------------------------------------------


@pytest.fixture
def people(repository: Repository) -> list[str]:
    """Three users (id-1..id-3) and one group (id-4)."""
    for name in ("ann", "bob", "cid"):
        insert(repository, "User", user(name))
    insert(repository, "Group", group("Sales"))
    return ["id-1", "id-2", "id-3"]


def test_add_members_keeps_the_order_and_skips_existing_and_repeated_ids(
    repository: Repository, people: list[str]
) -> None:
    assert add_members(repository, "id-4", ["id-2", "id-1"]) == ["id-2", "id-1"]
    assert add_members(repository, "id-4", ["id-1", "id-3", "id-3"]) == ["id-3"]

    assert repository.members("id-4") == ["id-2", "id-1", "id-3"]
    assert repository.groups_of("id-3") == ["id-4"]


def test_group_documents_of_gives_copies_of_the_users_groups_in_joining_order(
    repository: Repository, people: list[str]
) -> None:
    engineering = insert(repository, "Group", group("Engineering"))["id"]
    add_members(repository, engineering, ["id-1"])
    add_members(repository, "id-4", ["id-1"])

    add_members(repository, engineering, ["id-3"])

    found = repository.group_documents_of(["id-1", "id-2", "id-3", "nobody", "id-1"])

    assert list(found) == ["id-1", "id-2", "id-3", "nobody"]
    assert [document["displayName"] for document in found["id-1"]] == ["Engineering", "Sales"]
    assert found["id-1"] == [repository.get("Group", id) for id in repository.groups_of("id-1")]
    assert found["id-2"] == found["nobody"] == []
    assert [document["displayName"] for document in found["id-3"]] == ["Engineering"]
    found["id-1"][0]["displayName"] = "changed"
    assert repository.get("Group", engineering)["displayName"] == "Engineering"
    assert repository.group_documents_of([]) == {}
    with repository.transaction() as tx:
        tx.remove_members(engineering, ["id-1"])
        inside = tx.group_documents_of(["id-1"])["id-1"]
        assert [document["displayName"] for document in inside] == ["Sales"]


def test_get_with_groups_is_get_and_group_documents_of_in_one_read(
    repository: Repository, people: list[str]
) -> None:
    engineering = insert(repository, "Group", group("Engineering"))["id"]
    add_members(repository, engineering, ["id-1"])
    add_members(repository, "id-4", ["id-1"])

    document, groups = repository.get_with_groups("User", "id-1")

    assert document == repository.get("User", "id-1")
    assert groups == repository.group_documents_of(["id-1"])["id-1"]
    assert [group["displayName"] for group in groups] == ["Engineering", "Sales"]
    assert repository.get_with_groups("User", "id-2") == (repository.get("User", "id-2"), [])
    assert repository.get_with_groups("Group", "id-4") == (repository.get("Group", "id-4"), [])
    groups[0]["displayName"] = "changed"
    document["userName"] = "changed"
    assert repository.get("Group", engineering)["displayName"] == "Engineering"
    assert repository.get("User", "id-1")["userName"] == "ann"
    for kind, id in [("User", "nobody"), ("Group", "id-1"), ("User", "id-4"), ("User", "a\x00")]:
        with pytest.raises(NotFound):
            repository.get_with_groups(kind, id)
    with repository.transaction() as tx:
        tx.remove_members(engineering, ["id-1"])
        assert tx.get_with_groups("User", "id-1")[1] == tx.group_documents_of(["id-1"])["id-1"]
        assert [group["displayName"] for group in tx.get_with_groups("User", "id-1")[1]] == [
            "Sales"
        ]


def test_find_with_groups_is_find_documents_and_their_groups_in_one_read(
    repository: Repository, people: list[str]
) -> None:
    insert(repository, "User", user("dan", externalId="shared"))  # id-5
    insert(repository, "User", user("eve", externalId="shared"))  # id-6
    add_members(repository, "id-4", ["id-6", "id-1"])

    found, groups = repository.find_with_groups("User", "externalId", "shared")

    assert found == repository.find_documents("User", "externalId", "shared")
    assert groups == repository.group_documents_of(["id-5", "id-6"])
    assert [group["displayName"] for group in groups["id-6"]] == ["Sales"]
    assert repository.find_with_groups("User", "userName", "ANN") == (
        [repository.get("User", "id-1")],
        {"id-1": [repository.get("Group", "id-4")]},
    )
    assert repository.find_with_groups("User", "userName", "nobody") == ([], {})
    assert repository.find_with_groups("Group", "displayName", "sales") == (
        [repository.get("Group", "id-4")],
        {"id-4": []},
    )
    with pytest.raises(KeyError):
        repository.find_with_groups("User", "displayName", "ann")
    with repository.transaction() as tx:
        tx.remove_members("id-4", ["id-6"])
        assert tx.find_with_groups("User", "externalId", "shared")[1] == {"id-5": [], "id-6": []}


def test_add_members_skips_ids_that_are_no_user(repository: Repository, people: list[str]) -> None:
    """Neither an unknown id nor a group becomes a member; the users beside them do."""
    assert add_members(repository, "id-4", ["nobody", "id-2", "id-4"]) == ["id-2"]

    assert repository.members("id-4") == ["id-2"]
    assert repository.groups_of("nobody") == []
    assert repository.groups_of("id-4") == []


def test_a_membership_change_bumps_the_group(
    repository: Repository, people: list[str], clock: FixedClock
) -> None:
    clock.advance(seconds=1)
    add_members(repository, "id-4", ["id-1"])

    meta = repository.get("Group", "id-4")["meta"]
    assert (meta["created"], meta["lastModified"], meta["version"]) == (
        START_STAMP,
        LATER_STAMP,
        'W/"2"',
    )


@pytest.mark.parametrize(
    "no_change",
    [
        lambda tx: tx.add_members("id-4", ["id-1"]),
        lambda tx: tx.add_members("id-4", []),
        lambda tx: tx.remove_members("id-4", ["id-2"]),
        lambda tx: tx.clear_members("id-5"),
    ],
    ids=["add-existing", "add-nothing", "remove-non-member", "clear-empty"],
)
def test_a_membership_call_that_changes_nothing_keeps_the_version(
    repository: Repository, people: list[str], no_change
) -> None:
    add_members(repository, "id-4", ["id-1"])
    insert(repository, "Group", group("Empty"))

    with repository.transaction() as tx:
        no_change(tx)

    assert repository.get("Group", "id-4")["meta"]["version"] == 'W/"2"'
    assert repository.get("Group", "id-5")["meta"]["version"] == 'W/"1"'


def test_one_transaction_gives_a_document_one_new_version(
    repository: Repository, people: list[str]
) -> None:
    with repository.transaction() as tx:
        created = tx.insert("Group", group("Support"))
        tx.add_members(created["id"], ["id-1"])
    with repository.transaction() as tx:
        tx.replace("Group", "id-4", group("Sales team"))
        tx.clear_members("id-4")
        tx.add_members("id-4", people)
        tx.remove_members("id-4", ["id-3"])

    assert repository.get("Group", "id-5")["meta"]["version"] == 'W/"1"'
    assert repository.members("id-5") == ["id-1"]
    assert repository.get("Group", "id-4")["meta"]["version"] == 'W/"2"'
    assert repository.members("id-4") == ["id-1", "id-2"]


def test_remove_members_returns_only_those_removed(
    repository: Repository, people: list[str]
) -> None:
    add_members(repository, "id-4", people)

    with repository.transaction() as tx:
        removed = tx.remove_members("id-4", ["id-3", "id-1", "nobody"])

    assert removed == ["id-3", "id-1"]  # in the order given
    assert repository.members("id-4") == ["id-2"]
    assert repository.groups_of("id-1") == []
    assert repository.get("Group", "id-4")["meta"]["version"] == 'W/"3"'


def test_clear_members_empties_the_group(repository: Repository, people: list[str]) -> None:
    add_members(repository, "id-4", people)

    with repository.transaction() as tx:
        assert tx.clear_members("id-4") == people

    assert repository.members("id-4") == []
    assert all(repository.groups_of(id) == [] for id in people)


@pytest.mark.parametrize("method", ["add_members", "remove_members", "clear_members"])
def test_membership_calls_on_a_missing_group_raise_not_found(
    repository: Repository, people: list[str], method: str
) -> None:
    with pytest.raises(NotFound), repository.transaction() as tx:
        if method == "clear_members":
            tx.clear_members("id-1")  # a user, not a group
        else:
            getattr(tx, method)("nobody", ["id-1"])


def test_a_group_document_never_carries_its_members(
    repository: Repository, people: list[str]
) -> None:
    add_members(repository, "id-4", people)

    stored = repository.get("Group", "id-4")
    assert set(stored) == {"schemas", "displayName", "id", "meta"}
    assert [set(document) for document in repository.all("Group")] == [set(stored)]


def test_a_group_document_keeps_keys_of_its_own_through_membership_changes(
    repository: Repository, people: list[str]
) -> None:
    """What the service keeps in a group document beside its attributes (the displays sent
    with members, keyed by user id: scim.presentation.MEMBER_DISPLAYS) is stored as given,
    whatever the member relation does, and read back by every read."""
    displays = {"id-1": "new User", "id-3": "VP"}
    with repository.transaction() as tx:
        tx.add_members("id-4", people)
        tx.replace("Group", "id-4", group("Sales", _memberDisplays=displays))
    add_members(repository, "id-4", ["id-2"])  # a no-op: id-2 is a member already
    with repository.transaction() as tx:
        tx.remove_members("id-4", ["id-2"])

    stored = repository.get("Group", "id-4")
    assert stored["_memberDisplays"] == displays
    assert repository.get_many("Group", ["id-4"]) == [stored]
    assert [document["_memberDisplays"] for document in repository.all("Group")] == [displays]
    assert repository.find_documents("Group", "displayName", "sales") == [stored]
    assert repository.group_documents_of(["id-1"]) == {"id-1": [stored]}


def test_lock_groups_of_names_the_users_groups_as_the_transaction_sees_them(
    repository: Repository, people: list[str]
) -> None:
    """What a rename renews: the groups of a user, its own membership changes included."""
    support = insert(repository, "Group", group("Support"))["id"]
    add_members(repository, support, ["id-1"])
    add_members(repository, "id-4", ["id-1", "id-2"])

    with repository.transaction() as tx:
        assert sorted(tx.lock_groups_of("id-1")) == ["id-4", support]
        tx.remove_members(support, ["id-1"])
        assert tx.lock_groups_of("id-1") == ["id-4"]
        assert tx.lock_groups_of("id-3") == []
        tx.add_members(support, ["id-3"])
        assert tx.lock_groups_of("id-3") == [support]
        assert tx.lock_groups_of("nobody") == []


def test_deleting_a_user_removes_it_from_every_group(
    repository: Repository, people: list[str]
) -> None:
    insert(repository, "Group", group("Support"))
    add_members(repository, "id-4", people)
    add_members(repository, "id-5", ["id-2"])

    with repository.transaction() as tx:
        tx.delete("User", "id-2")

    assert repository.members("id-4") == ["id-1", "id-3"]
    assert repository.members("id-5") == []
    assert repository.groups_of("id-2") == []
    assert repository.get("Group", "id-5")["meta"]["version"] == 'W/"3"'


def test_deleting_a_group_drops_its_memberships(repository: Repository, people: list[str]) -> None:
    add_members(repository, "id-4", people)

    with repository.transaction() as tx:
        tx.delete("Group", "id-4")

    assert repository.members("id-4") == []
    assert all(repository.groups_of(id) == [] for id in people)
    assert repository.count("User") == 3


# -- all and count --------------------------------------------------------------------------


def test_all_yields_copies_in_insertion_order(repository: Repository) -> None:
    for name in ("cid", "ann", "bob"):
        insert(repository, "User", user(name))
    with repository.transaction() as tx:
        tx.replace("User", "id-1", user("cid", title="moved?"))
        tx.delete("User", "id-2")
    insert(repository, "User", user("dan"))

    documents = list(repository.all("User"))
    assert [document["userName"] for document in documents] == ["cid", "bob", "dan"]
    documents[0]["userName"] = "changed"
    assert repository.get("User", "id-1")["userName"] == "cid"


def test_get_many_gives_copies_of_those_that_exist_in_the_order_asked(
    repository: Repository,
) -> None:
    ids = [insert(repository, "User", user(name))["id"] for name in ("ann", "bob", "cid")]

    found = repository.get_many("User", [ids[2], "nobody", ids[0], ids[2]])

    assert [document["userName"] for document in found] == ["cid", "ann"]
    assert repository.get_many("Group", ids) == []
    found[0]["userName"] = "changed"
    assert repository.get("User", ids[2])["userName"] == "cid"


def test_get_many_of_gives_only_the_attributes_asked_that_each_has(
    repository: Repository,
) -> None:
    """A group's members' names, without the rest of each user (a group of 10,000 read
    whole took 0.3 s on PostgreSQL)."""
    ann = insert(repository, "User", {**user("ann"), "displayName": "Ann", "title": None})
    bob = insert(repository, "User", user("bob"))

    found = repository.get_many_of(
        "User", [bob["id"], "nobody", ann["id"], bob["id"]], ["displayName", "title", "x"]
    )

    assert found == [{"id": bob["id"]}, {"id": ann["id"], "displayName": "Ann", "title": None}]
    assert repository.get_many_of("Group", [ann["id"]], ["displayName"]) == []
    with repository.transaction() as tx:
        assert tx.get_many_of("User", [ann["id"]], ["userName"]) == [
            {"id": ann["id"], "userName": "ann"}
        ]


def test_scan_yields_what_all_does_without_copying(repository: Repository) -> None:
    for name in ("cid", "ann", "bob"):
        insert(repository, "User", user(name))
    with repository.transaction() as tx:
        tx.delete("User", "id-2")
    insert(repository, "Group", group("Sales"))

    assert list(repository.scan("User")) == list(repository.all("User"))
    assert list(repository.scan("Group")) == list(repository.all("Group"))
    assert list(repository.scan("Other")) == []
    first, again = next(repository.scan("User")), next(repository.scan("User"))
    if not isinstance(repository, PostgresRepository):
        # In-process stores hand out the stored document itself: a scan costs no copies.
        # A database store has none in the process, and parses each row afresh.
        assert first is again


def test_count_and_all_are_per_kind(repository: Repository) -> None:
    insert(repository, "User", user("ann"))
    insert(repository, "Group", group("Sales"))
    insert(repository, "Group", group("Support"))

    assert (repository.count("User"), repository.count("Group")) == (1, 2)
    assert [document["id"] for document in repository.all("Group")] == ["id-2", "id-3"]
    assert repository.count("Other") == 0
    assert list(repository.all("Other")) == []


# -- transactions ---------------------------------------------------------------------------


class Boom(Exception):
    """Raised inside a transaction to make it roll back."""


def test_an_exception_inside_a_transaction_leaves_the_store_as_before(
    repository: Repository, people: list[str]
) -> None:
    add_members(repository, "id-4", ["id-1"])
    before = {kind: list(repository.all(kind)) for kind in ("User", "Group")}

    with pytest.raises(Boom), repository.transaction() as tx:
        tx.insert("User", user("dan"))
        tx.replace("User", "id-1", user("annie"))
        tx.add_members("id-4", ["id-2"])
        tx.delete("User", "id-3")
        raise Boom

    assert {kind: list(repository.all(kind)) for kind in ("User", "Group")} == before
    assert repository.find("User", "userName", "dan") == []
    assert repository.find("User", "userName", "ann") == ["id-1"]
    assert repository.members("id-4") == ["id-1"]
    assert repository.groups_of("id-2") == []


def test_reads_inside_a_transaction_see_its_writes_before_others_do(
    repository: Repository,
) -> None:
    with repository.transaction() as tx:
        stored = tx.insert("User", user("ann", externalId="e1"))
        assert tx.get("User", stored["id"]) == stored
        assert tx.find("User", "externalId", "e1") == [stored["id"]]
        assert not repository.exists("User", stored["id"])

    assert repository.exists("User", stored["id"])


def test_a_conflict_caught_inside_a_transaction_keeps_its_other_writes(
    repository: Repository,
) -> None:
    insert(repository, "User", user("ann"))

    with repository.transaction() as tx:
        tx.insert("User", user("bob"))
        with pytest.raises(Conflict):
            tx.insert("User", user("ANN"))

    assert sorted(document["userName"] for document in repository.all("User")) == ["ann", "bob"]


def test_a_transaction_cannot_write_after_its_block(repository: Repository) -> None:
    with repository.transaction() as tx:
        pass

    with pytest.raises(RuntimeError):
        tx.insert("User", user("ann"))
    assert repository.count("User") == 0


def test_transactions_do_not_nest(repository: Repository) -> None:
    with repository.transaction() as tx:
        tx.insert("User", user("ann"))
        with pytest.raises(RuntimeError), repository.transaction():
            pass

    assert repository.count("User") == 1


def test_concurrent_inserts_never_duplicate_a_unique_value(repository: Repository) -> None:
    """8 threads insert their own names and the same shared ones, in different cases."""
    threads, per_thread, shared = 8, 10, 5
    refused: list[str] = []
    start = threading.Barrier(threads)

    def work(number: int) -> None:
        start.wait()
        for i in range(per_thread):
            insert(repository, "User", user(f"t{number}-{i}"))
            name = f"shared-{i % shared}"
            try:
                insert(repository, "User", user(name.upper() if number % 2 else name))
            except Conflict:
                refused.append(name)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    names = [document["userName"].casefold() for document in repository.all("User")]
    assert len(names) == len(set(names)) == threads * per_thread + shared
    assert len(refused) == threads * per_thread - shared
    assert repository.count("User") == len(names)
    for i in range(shared):
        assert len(repository.find("User", "userName", f"SHARED-{i}")) == 1
