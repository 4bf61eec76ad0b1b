"""What the service reads from the store: indexes instead of scans, members only when shown.

The cost of Entra's requests must stay flat as the directory grows (issue: a store that keeps
its speed at 50,000 users), so these tests count the repository calls a request makes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from scim import constants
from scim import service as service_module
from scim.filter import parse_filter
from scim.pagination import Page
from scim.paths import parse_attr_path
from scim.presentation import VERSION, derived_documents, present
from scim.service import INDEXES, Directory, Query
from storage.memory import MemoryRepository, MemoryTransaction
from storage.query import Found
from storage.query import Query as StoreQuery
from storage.state import State
from storage.values import clone

BASE = "https://proware.example.com/scim/v2"
PATCH_OP = constants.PATCH_OP


class CountingTransaction(MemoryTransaction):
    """A transaction counting the group writes and existence checks a member change makes."""

    def replace(self, kind: str, id: str, document: dict, *, if_version: str | None = None) -> dict:
        self._repository.calls[f"replace {kind}"] += 1  # type: ignore[attr-defined]
        return super().replace(kind, id, document, if_version=if_version)

    def existing(self, kind: str, ids: list[str]) -> list[str]:
        self._repository.calls[f"existing {kind}"] += 1  # type: ignore[attr-defined]
        return super().existing(kind, ids)


class CountingRepository(MemoryRepository):
    """The in-memory store, counting the reads that grow with the directory."""

    def __init__(self) -> None:
        super().__init__(INDEXES)
        self.calls: Counter[str] = Counter()

    def all(self, kind: str) -> Iterator[dict]:
        self.calls[f"all {kind}"] += 1
        return super().all(kind)

    def scan(self, kind: str) -> Iterator[dict]:
        self.calls[f"all {kind}"] += 1
        return super().scan(kind)

    def query(self, kind: str, query: StoreQuery) -> Found:
        self.calls[f"all {kind}"] += 1  # a pass over the whole kind, in this store
        return super().query(kind, query)

    def members(self, group_id: str) -> list[str]:
        self.calls["members"] += 1
        return super().members(group_id)

    def find(self, kind: str, field: str, value: str) -> list[str]:
        self.calls["find"] += 1
        return super().find(kind, field, value)

    def find_documents(self, kind: str, field: str, value: str) -> list[dict]:
        self.calls["find"] += 1
        return super().find_documents(kind, field, value)

    def group_documents_of(self, user_ids: list[str]) -> dict[str, list[dict]]:
        self.calls["groups"] += 1
        return super().group_documents_of(user_ids)

    def _begin(self, state: State) -> MemoryTransaction:
        super()._begin(state)  # refuses nesting
        self._active = CountingTransaction(self, state)
        return self._active


@pytest.fixture
def repository() -> CountingRepository:
    return CountingRepository()


@pytest.fixture
def directory(repository: CountingRepository) -> Directory:
    directory = Directory(repository)
    for number in range(20):
        directory.create(
            constants.USER_TYPE,
            {
                "userName": f"user{number}@contoso.com",
                "externalId": f"ext-{number}",
                "active": True,
            },
            BASE,
        )
    return directory


def _group_with_members(directory: Directory) -> str:
    ids = [user["id"] for user in directory.repository.all(constants.USER_TYPE)]
    group = directory.create(
        constants.GROUP_TYPE,
        {"displayName": "Sales", "members": [{"value": id} for id in ids]},
        BASE,
    ).resource
    return group["id"]


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        pytest.param(constants.USER_TYPE, 'userName eq "USER7@contoso.com"', id="userName"),
        pytest.param(constants.USER_TYPE, 'externalId eq "ext-7"', id="externalId"),
        pytest.param(
            constants.USER_TYPE,
            'userName eq "user7@contoso.com" and active pr',
            id="userName-inside-and",
        ),
        pytest.param(constants.GROUP_TYPE, 'displayName eq "sales"', id="group-displayName"),
    ],
)
def test_matching_queries_are_answered_from_an_index_not_a_scan(
    directory: Directory, repository: CountingRepository, kind: str, text: str
) -> None:
    _group_with_members(directory)
    repository.calls.clear()

    result = directory.query(kind, Query(filter=parse_filter(text)), BASE)

    assert result.total == 1
    assert repository.calls[f"all {kind}"] == 0
    assert repository.calls["find"] == 1  # once, not again to build the page


def test_a_filter_with_no_indexed_equality_scans(
    directory: Directory, repository: CountingRepository
) -> None:
    """The converse, so the counter above can fail: `co` cannot use the index."""
    repository.calls.clear()

    result = directory.query(
        constants.USER_TYPE, Query(filter=parse_filter('userName co "user7"')), BASE
    )

    assert result.total == 1
    assert repository.calls[f"all {constants.USER_TYPE}"] == 1


def test_reading_a_group_without_members_never_reads_them(
    directory: Directory, repository: CountingRepository
) -> None:
    group_id = _group_with_members(directory)
    repository.calls.clear()

    group = directory.get(constants.GROUP_TYPE, group_id, BASE, with_members=False)
    listed = directory.query(
        constants.GROUP_TYPE,
        Query(
            filter=parse_filter('displayName eq "Sales"'),
            excluded=[parse_attr_path("members")],
        ),
        BASE,
    )

    assert "members" not in group and "members" not in listed.resources[0]
    assert repository.calls["members"] == 0


def test_a_member_add_answered_204_never_reads_the_member_list(
    directory: Directory, repository: CountingRepository
) -> None:
    group_id = _group_with_members(directory)
    newcomer = directory.create(constants.USER_TYPE, {"userName": "new@contoso.com"}, BASE).resource
    repository.calls.clear()

    directory.patch(
        constants.GROUP_TYPE,
        group_id,
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": newcomer["id"]}]}],
        },
        BASE,
        with_members=False,
    )

    assert repository.calls["members"] == 0
    assert newcomer["id"] in repository.members(group_id)


def _add_members(directory: Directory, group_id: str, op: str, members: list[dict]) -> None:
    directory.patch(
        constants.GROUP_TYPE,
        group_id,
        {"schemas": [PATCH_OP], "Operations": [{"op": op, "path": "members", "value": members}]},
        BASE,
        with_members=False,
    )


@pytest.mark.parametrize("op", ["Add", "add"], ids=["default-dialect", "compliant-dialect"])
def test_entras_member_adds_write_no_group_document_and_check_no_ids(
    directory: Directory, repository: CountingRepository, op: str
) -> None:
    """Entra adds members in chunks of 10, value only: keeping the displays other clients
    send (Q23) costs its adds nothing, in a group with or without such displays."""
    ids = [user["id"] for user in directory.repository.all(constants.USER_TYPE)]
    plain = directory.create(constants.GROUP_TYPE, {"displayName": "Plain"}, BASE).resource["id"]
    shown = directory.create(
        constants.GROUP_TYPE,
        {"displayName": "Shown", "members": [{"value": ids[19], "display": "VP"}]},
        BASE,
    ).resource["id"]
    repository.calls.clear()

    _add_members(directory, plain, op, [{"value": id} for id in ids[:10]])
    _add_members(directory, shown, op, [{"value": id} for id in ids[:10]])

    assert repository.calls["replace Group"] == 0
    assert repository.calls["existing User"] == 0
    assert repository.calls["members"] == 0
    assert repository.members(plain) == ids[:10]
    shown_members = directory.get(constants.GROUP_TYPE, shown, BASE)["members"]
    assert [member["display"] for member in shown_members][:2] == ["VP", "user0@contoso.com"]


def test_a_member_add_with_a_display_writes_the_group_document_once(
    directory: Directory, repository: CountingRepository
) -> None:
    """The converse, so the counters above can fail."""
    ids = [user["id"] for user in directory.repository.all(constants.USER_TYPE)]
    group_id = directory.create(constants.GROUP_TYPE, {"displayName": "Plain"}, BASE).resource["id"]
    repository.calls.clear()

    _add_members(directory, group_id, "add", [{"value": ids[0], "displayName": "new User"}])

    assert repository.calls["replace Group"] == 1
    stored = repository.get(constants.GROUP_TYPE, group_id)
    assert stored["_memberDisplays"] == {ids[0]: "new User"}


def test_renaming_a_user_rewrites_only_the_groups_that_show_its_name(
    directory: Directory, repository: CountingRepository
) -> None:
    user_id = next(directory.repository.all(constants.USER_TYPE))["id"]
    for name, member in (
        ("ByName", {"value": user_id}),
        ("Sent", {"value": user_id, "display": "VP"}),
    ):
        directory.create(constants.GROUP_TYPE, {"displayName": name, "members": [member]}, BASE)
    repository.calls.clear()

    directory.patch(
        constants.USER_TYPE,
        user_id,
        {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed"}],
        },
        BASE,
    )

    assert repository.calls["replace Group"] == 1


@pytest.mark.parametrize(
    "filter_text",
    [None, 'userName co "user1"', "active eq true"],
    ids=["plain", "filter-hits", "filter-all"],
)
def test_a_page_deep_into_a_listing_copies_only_the_page(
    directory: Directory, monkeypatch: pytest.MonkeyPatch, filter_text: str | None
) -> None:
    """Account discovery and other clients page through everything with startIndex (A16):
    each page copies its own documents, not every one it passes over."""
    copied = Counter[str]()

    def counting_clone(value: object) -> object:
        if isinstance(value, dict) and "userName" in value:
            copied["documents"] += 1
        return clone(value)

    monkeypatch.setattr(service_module, "clone", counting_clone)
    expr = parse_filter(filter_text) if filter_text else None
    everything = directory.query(constants.USER_TYPE, Query(filter=expr), BASE).resources
    copied.clear()

    result = directory.query(
        constants.USER_TYPE, Query(filter=expr, page=Page(start_index=3, count=5)), BASE
    )

    assert [user["id"] for user in result.resources] == [user["id"] for user in everything[2:7]]
    assert copied["documents"] == len(result.resources)


@pytest.mark.parametrize(
    ("attributes", "excluded", "reads", "groups"),
    [
        (None, None, 1, True),
        ("userName", None, 0, False),
        ("groups.display", None, 1, True),
        ("meta.version", None, 1, False),
        (None, "groups", 1, False),
        (None, "groups,meta", 0, False),
    ],
    ids=[
        "default",
        "neither-groups-nor-meta",
        "groups-asked",
        "version-asked",
        "groups-excluded",
        "groups-and-meta-excluded",
    ],
)
def test_a_page_of_users_reads_their_groups_at_once_and_only_when_shown(
    directory: Directory,
    repository: CountingRepository,
    attributes: str | None,
    excluded: str | None,
    reads: int,
    groups: bool,
) -> None:
    """One read for the page (on a database, one statement: not one per user), when the
    client sees ``groups`` or ``meta`` (a user's version covers its groups)."""
    _group_with_members(directory)
    repository.calls.clear()

    result = directory.query(
        constants.USER_TYPE,
        Query(
            attributes=[parse_attr_path(attributes)] if attributes else None,
            excluded=[parse_attr_path(path) for path in excluded.split(",")] if excluded else None,
            page=Page(start_index=1, count=10),
        ),
        BASE,
    )

    assert len(result.resources) == 10
    assert repository.calls["groups"] == reads
    shown = [[group["display"] for group in user.get("groups", [])] for user in result.resources]
    assert shown == ([["Sales"]] * 10 if groups else [[]] * 10)
    versions = [user["meta"]["version"] for user in result.resources if "meta" in user]
    assert all("." in version for version in versions)  # W/"1.<digest>": with the groups


def test_listing_in_place_leaves_the_stored_documents_alone(directory: Directory) -> None:
    """Filters, sorting and pages read the stored documents themselves; what a client gets
    is still a copy."""
    repository = directory.repository
    before = list(repository.all(constants.USER_TYPE))
    query = Query(
        filter=parse_filter('userName co "user"'),
        sort_by=parse_attr_path("userName"),
        ascending=False,
        page=Page(start_index=2, count=3),
    )

    for result in (
        directory.query(constants.USER_TYPE, query, BASE),
        directory.query(constants.USER_TYPE, Query(page=Page(start_index=2, count=3)), BASE),
    ):
        for user in result.resources:
            user["userName"] = "changed"
            user["meta"]["version"] = "changed"
    assert list(repository.all(constants.USER_TYPE)) == before


def test_a_group_filter_loads_members_only_when_it_reads_them(
    directory: Directory, repository: CountingRepository
) -> None:
    """A value that merely contains the word "members" is no reason to load member lists."""
    group_id = _group_with_members(directory)
    member = repository.members(group_id)[0]
    excluded = [parse_attr_path("members")]
    repository.calls.clear()

    by_name = directory.query(
        constants.GROUP_TYPE,
        Query(filter=parse_filter('displayName co "members"'), excluded=excluded),
        BASE,
    )
    name_reads = repository.calls["members"]
    by_member = directory.query(
        constants.GROUP_TYPE,
        Query(filter=parse_filter(f'members.value eq "{member}"'), excluded=excluded),
        BASE,
    )

    assert by_name.total == 0 and name_reads == 0
    assert by_member.total == 1 and repository.calls["members"] >= 1


def test_a_filter_on_users_groups_reads_them_at_once_and_leaves_the_store_alone(
    directory: Directory, repository: CountingRepository
) -> None:
    """Groups come from the relation: one read for every candidate (one statement on a
    database, not one per user), one for the page; the stored users never gain them."""
    group_id = _group_with_members(directory)
    before = list(repository.all(constants.USER_TYPE))
    repository.calls.clear()

    result = directory.query(
        constants.USER_TYPE,
        Query(
            filter=parse_filter(f'groups.value eq "{group_id}"'),
            sort_by=parse_attr_path("groups.display"),
            page=Page(start_index=1, count=5),
        ),
        BASE,
    )

    assert result.total == 20
    assert repository.calls["groups"] == 2
    assert list(repository.all(constants.USER_TYPE)) == before


class RecordingReader:
    """A repository that records which of its methods the service calls (not the calls
    they make in turn): on a database each is one statement."""

    def __init__(self, inner: MemoryRepository) -> None:
        self.inner = inner
        self.names: list[str] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        attribute = getattr(self.inner, name)
        if callable(attribute):
            self.names.append(name)
        return attribute


def test_a_user_is_read_with_its_groups_in_one_read(directory: Directory) -> None:
    """A GET by id and Entra's matching lookup read the user and its groups together."""
    group_id = _group_with_members(directory)
    user_id = directory.repository.find("User", "userName", "user7@contoso.com")[0]
    recording = RecordingReader(directory.repository)  # type: ignore[arg-type]
    reading = Directory(recording)  # type: ignore[arg-type]

    resource = reading.get(constants.USER_TYPE, user_id, BASE)
    assert recording.names == ["get_with_groups"]
    assert [entry["value"] for entry in resource["groups"]] == [group_id]

    recording.names.clear()
    lookup = parse_filter('userName eq "user7@contoso.com"')
    result = reading.query(constants.USER_TYPE, Query(filter=lookup), BASE)
    assert recording.names == ["find_with_groups"]
    assert [entry["value"] for entry in result.resources[0]["groups"]] == [group_id]

    recording.names.clear()
    without = Query(filter=lookup, excluded=[parse_attr_path("groups")])
    result = reading.query(constants.USER_TYPE, without, BASE)
    assert recording.names == ["find_with_groups"]  # for the version it shows
    assert "groups" not in result.resources[0]

    recording.names.clear()
    without = Query(filter=lookup, excluded=[parse_attr_path("groups"), parse_attr_path("meta")])
    result = reading.query(constants.USER_TYPE, without, BASE)
    assert recording.names == ["find_documents"]
    assert "groups" not in result.resources[0]


@pytest.mark.parametrize(
    ("kind", "text", "first_read"),
    [
        pytest.param(constants.USER_TYPE, "meta.version pr", "scan", id="user-version"),
        pytest.param(constants.USER_TYPE, 'meta[version co "."]', "scan", id="user-meta"),
        pytest.param(constants.USER_TYPE, "meta.lastModified pr", "query", id="user-other-meta"),
        pytest.param(constants.GROUP_TYPE, "meta.version pr", "query", id="group-version"),
    ],
)
def test_only_a_filter_on_a_users_version_is_left_to_the_service(
    directory: Directory, kind: str, text: str, first_read: str
) -> None:
    """A user's shown version covers its groups, which its stored document lacks: only a
    filter naming it reads every user and their groups (at once); any other filter, and a
    group's version, which is the stored one, is still the store's own query."""
    _group_with_members(directory)
    recording = RecordingReader(directory.repository)  # type: ignore[arg-type]
    reading = Directory(recording)  # type: ignore[arg-type]
    before = list(directory.repository.all(constants.USER_TYPE))

    result = reading.query(kind, Query(filter=parse_filter(text)), BASE)

    assert result.total == (20 if kind == constants.USER_TYPE else 1)
    assert recording.names[0] == first_read
    if first_read == "scan":  # all candidates' groups at once, then the page's
        assert recording.names[1:] == ["group_documents_of", "group_documents_of"]
    assert list(directory.repository.all(constants.USER_TYPE)) == before


def test_a_filters_copy_of_a_user_is_presented_with_its_version_once(
    directory: Directory,
) -> None:
    """A copy made for a filter on meta.version holds the shown version already: presenting
    it adds the groups' digest to the stored version, not to that (and a user who left its
    groups meanwhile shows the stored one)."""
    _group_with_members(directory)
    repository = directory.repository
    user = next(iter(repository.all(constants.USER_TYPE)))
    shown = directory.version(constants.USER_TYPE, user["id"])
    [copy] = derived_documents(repository, [user], BASE, frozenset({VERSION}))

    assert copy["meta"]["version"] == shown != user["meta"]["version"]
    assert present(repository, copy, BASE)["meta"]["version"] == shown
    assert present(repository, copy, BASE, groups=[])["meta"]["version"] == user["meta"]["version"]
