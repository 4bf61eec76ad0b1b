"""Concurrency: 16 clients writing at once to one real server (waitress, 8 threads), and to
two servers sharing one PostgreSQL database.

Every thread, each round: creates a user of its own; sets *its* attribute on three shared
users (16 threads, 16 attributes: a lost update shows as another thread's value vanishing);
renames a user of its own to a case-only variant; races every other thread to create the same
userName, to rename a user onto the same name, and to create the same group, each in its own
letter case; adds and removes its users in three shared groups; and sometimes deletes a user.
Then the server must hold exactly what was acknowledged: each thread's last value, one owner
per case-folded name, consistent group/user cross-references, and the totals.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest
from serverproc import ScimConnection, ServerProcess

from scim import constants
from tests.pgserver import empty_database

pytestmark = pytest.mark.slow

THREADS = 16
ROUNDS = 8
SHARED_USERS = 3
SHARED_GROUPS = 3
ENTERPRISE = constants.ENTERPRISE_USER
# One attribute per thread, as Entra's new dialect names them (entra-provisioning.md A5.4).
ATTRIBUTES = [
    "displayName",
    "nickName",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "name.formatted",
    "name.familyName",
    "name.givenName",
    "name.middleName",
    "name.honorificPrefix",
    "name.honorificSuffix",
    f"{ENTERPRISE}:employeeNumber",
    f"{ENTERPRISE}:costCenter",
    f"{ENTERPRISE}:organization",
]


def cased(name: str, thread: int) -> str:
    """``name`` in the letter case of ``thread``: 16 threads, 16 different spellings."""
    return "".join(
        char.upper() if (thread >> (i % 4)) & 1 else char.lower() for i, char in enumerate(name)
    )


def attribute_of(resource: dict, path: str) -> object:
    """The value at a dotted or URN-prefixed path in a returned resource."""
    if path.startswith(ENTERPRISE + ":"):
        return resource.get(ENTERPRISE, {}).get(path[len(ENTERPRISE) + 1 :])
    head, _, sub = path.partition(".")
    value = resource.get(head)
    return value.get(sub) if sub and isinstance(value, dict) else value


def _patch(*operations: Mapping[str, object]) -> dict:
    return {"schemas": [constants.PATCH_OP], "Operations": list(operations)}


@dataclass
class ThreadLog:
    """What one thread had acknowledged, to compare with the server at the end."""

    number: int
    user_names: dict[str, str] = field(default_factory=dict)  # own user id -> last userName
    deleted: set[str] = field(default_factory=set)
    shared_values: dict[str, str] = field(default_factory=dict)  # shared user id -> last value
    memberships: dict[str, set[str]] = field(default_factory=dict)  # group id -> own user ids
    created_users: int = 0
    created_groups: int = 0
    race_wins: list[str] = field(default_factory=list)  # names won in the create race
    failures: list[str] = field(default_factory=list)


class Writer:
    """One thread's client: sends writes and keeps its :class:`ThreadLog`."""

    def __init__(self, number: int, connection: ScimConnection, shared: dict) -> None:
        self.log = ThreadLog(number, memberships={g: set() for g in shared["groups"]})
        self.connection = connection
        self.shared = shared
        self.rng = random.Random(number)

    def send(self, method: str, path: str, body: dict | None, *allowed: int):
        reply = self.connection.request(method, path, body)
        if reply.status not in allowed:
            self.log.failures.append(f"{method} {path} {body} -> {reply.status} {reply.body}")
        return reply

    def create_user(self, name: str, *allowed: int) -> str | None:
        body = {"schemas": [constants.USER], "userName": name}
        reply = self.send("POST", "/Users", body, *(allowed or (201,)))
        if reply.status != 201:
            return None
        self.log.created_users += 1
        self.log.user_names[reply.body["id"]] = name
        return reply.body["id"]

    def rename(self, id: str, name: str, *allowed: int) -> None:
        op = {"op": "Replace", "path": "userName", "value": name}
        if self.send("PATCH", f"/Users/{id}", _patch(op), *allowed).status == 200:
            self.log.user_names[id] = name

    def run(self) -> None:
        t, log = self.log.number, self.log
        case_id = self.create_user(f"t{t}-case")
        clash_id = self.create_user(f"t{t}-clash")
        for round in range(ROUNDS):
            own = self.create_user(f"t{t}-u{round}")
            value = f"t{t}-r{round}"
            for shared_id in self.shared["users"]:
                op = {"op": "replace", "value": {ATTRIBUTES[t]: value}}
                if self.send("PATCH", f"/Users/{shared_id}", _patch(op), 200).status == 200:
                    log.shared_values[shared_id] = value
            if case_id:  # a case-only rename is no clash with itself (Entra Q11)
                self.rename(case_id, log.user_names[case_id].swapcase(), 200)
            if self.create_user(cased(f"race-{round}", t), 201, 409):
                log.race_wins.append(f"race-{round}")
            if clash_id:
                self.rename(clash_id, cased(f"clash-{round}", t), 200, 409)
            body = {"schemas": [constants.GROUP], "displayName": cased(f"squad-{round}", t)}
            if self.send("POST", "/Groups", body, 201, 409).status == 201:
                log.created_groups += 1
            self.change_memberships(own)
            if own and round % 3 == 2:
                if self.send("DELETE", f"/Users/{own}", None, 204).status == 204:
                    log.deleted.add(own)
                    del log.user_names[own]
                    for members in log.memberships.values():
                        members.discard(own)

    def change_memberships(self, own: str | None) -> None:
        """Add users of this thread to a shared group, and remove one from another."""
        group = self.rng.choice(self.shared["groups"])
        candidates = [own] if own else []
        candidates += self.rng.sample(sorted(self.log.user_names), min(1, len(self.log.user_names)))
        op = {"op": "Add", "path": "members", "value": [{"value": id} for id in candidates]}
        if self.send("PATCH", f"/Groups/{group}", _patch(op), 204).status == 204:
            self.log.memberships[group].update(candidates)
        group = self.rng.choice(self.shared["groups"])
        members = sorted(self.log.memberships[group])
        if members:
            gone = self.rng.choice(members)
            op = {"op": "Remove", "path": "members", "value": [{"value": gone}]}
            if self.send("PATCH", f"/Groups/{group}", _patch(op), 204).status == 204:
                self.log.memberships[group].discard(gone)


def list_all(connection: ScimConnection, endpoint: str) -> list[dict]:
    """Every resource of an endpoint, page by page."""
    resources: list[dict] = []
    while True:
        reply = connection.get(f"/{endpoint}?startIndex={len(resources) + 1}&count=500")
        assert reply.status == 200, reply.body
        page = reply.body["Resources"]
        resources += page
        if not page or len(resources) >= reply.body["totalResults"]:
            return resources


@pytest.fixture(scope="module", params=["embedded", "postgresql"])
def outcome(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """Run the 16 threads once per deployment; the tests below check what they left.

    ``embedded``: one server with 8 worker threads on the embedded store. ``postgresql``:
    two servers (as on two machines) on one PostgreSQL database, each thread talking to one
    of them: what must hold across processes is then the database's doing.
    """
    root = Path(tmp_path_factory.mktemp("concurrency"))
    if request.param == "postgresql":
        dsn = empty_database()
        servers = [ServerProcess(root / f"server-{n}", threads=4, dsn=dsn) for n in range(2)]
    else:
        servers = [ServerProcess(root, threads=8)]
    token = servers[0].create_token("concurrency")
    servers[0].enable_provisioning()
    for server in servers:
        server.start()
    try:
        setup = servers[0].connect(token)
        shared: dict[str, list[str]] = {"users": [], "groups": []}
        for n in range(SHARED_USERS):
            reply = setup.post("/Users", {"schemas": [constants.USER], "userName": f"shared-{n}"})
            shared["users"].append(reply.body["id"])
        for n in range(SHARED_GROUPS):
            reply = setup.post(
                "/Groups", {"schemas": [constants.GROUP], "displayName": f"team-{n}"}
            )
            shared["groups"].append(reply.body["id"])
        writers = [
            Writer(t, servers[t % len(servers)].connect(token), shared) for t in range(THREADS)
        ]
        threads = [threading.Thread(target=writer.run) for writer in writers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=180)
        assert not any(thread.is_alive() for thread in threads), "writers still running"
        for writer in writers:
            writer.connection.close()
        views = []
        for server in servers:
            reader = server.connect(token)
            views.append(
                (
                    {user["id"]: user for user in list_all(reader, "Users")},
                    {group["id"]: group for group in list_all(reader, "Groups")},
                )
            )
            reader.close()
        users, groups = views[0]
        yield shared, [writer.log for writer in writers], users, groups, setup, views
        setup.close()
    finally:
        for server in servers:
            server.stop()


def test_every_write_got_an_expected_answer(outcome) -> None:
    _, logs, *_ = outcome
    failures = [failure for log in logs for failure in log.failures]
    assert not failures, "\n".join(failures[:10])


def test_no_lost_update_on_shared_users(outcome) -> None:
    """Each thread's last acknowledged value of its attribute is what GET returns."""
    shared, logs, _, _, connection, _ = outcome
    for id in shared["users"]:
        resource = connection.get(f"/Users/{id}").body
        for log in logs:
            assert attribute_of(resource, ATTRIBUTES[log.number]) == log.shared_values[id], (
                f"thread {log.number}'s {ATTRIBUTES[log.number]} on {id} was lost"
            )


def test_each_thread_last_acknowledged_user_name_is_kept(outcome) -> None:
    _, logs, users, _, _, _ = outcome
    for log in logs:
        for id, name in log.user_names.items():
            assert users.get(id, {}).get("userName") == name, f"thread {log.number}'s user {id}"
        assert not log.deleted & users.keys(), "a deleted user is still listed"


def test_no_two_user_names_differ_only_by_case(outcome) -> None:
    _, _, users, groups, _, _ = outcome
    folded = Counter(user["userName"].casefold() for user in users.values())
    assert [name for name, count in folded.items() if count > 1] == []
    folded = Counter(group["displayName"].casefold() for group in groups.values())
    assert [name for name, count in folded.items() if count > 1] == []


def test_each_contested_create_had_exactly_one_winner(outcome) -> None:
    _, logs, users, _, _, _ = outcome
    wins = Counter(name for log in logs for name in log.race_wins)
    assert wins == Counter({f"race-{round}": 1 for round in range(ROUNDS)})
    names = {user["userName"].casefold() for user in users.values()}
    assert all(f"race-{round}" in names for round in range(ROUNDS))


def test_group_members_are_what_the_threads_acknowledged(outcome) -> None:
    shared, logs, _, groups, _, _ = outcome
    for id in shared["groups"]:
        expected = set().union(*(log.memberships[id] for log in logs))
        assert {member["value"] for member in groups[id].get("members", [])} == expected


def test_group_and_user_cross_references_agree(outcome) -> None:
    """Every member exists, and each user's ``groups`` lists exactly the groups listing it."""
    _, _, users, groups, _, _ = outcome
    listed_in: dict[str, set[str]] = {id: set() for id in users}
    for group in groups.values():
        for member in group.get("members", []):
            assert member["value"] in users, f"member {member['value']} is no user"
            listed_in[member["value"]].add(group["id"])
    for id, user in users.items():
        assert {group["value"] for group in user.get("groups", [])} == listed_in[id]


def test_totals_match_acknowledged_creates_minus_deletes(outcome) -> None:
    _, logs, users, groups, connection, _ = outcome
    created = SHARED_USERS + sum(log.created_users for log in logs)
    deleted = sum(len(log.deleted) for log in logs)
    filter_ = quote("userName pr")
    assert connection.get("/Users?count=1").body["totalResults"] == created - deleted
    assert connection.get(f"/Users?filter={filter_}&count=1").body["totalResults"] == len(users)
    assert len(users) == created - deleted
    assert len(groups) == SHARED_GROUPS + sum(log.created_groups for log in logs)


def test_every_server_sees_the_same_directory(outcome) -> None:
    """With two servers on one database, both list exactly the same users and groups."""
    *_, views = outcome
    # Each server writes its own address into meta.location and $ref.
    first = re.sub(r"127\.0\.0\.1:\d+", "HOST", json.dumps(views[0], sort_keys=True))
    for other in views[1:]:
        assert re.sub(r"127\.0\.0\.1:\d+", "HOST", json.dumps(other, sort_keys=True)) == first
