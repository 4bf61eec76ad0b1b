"""The Entra-shaped workload: requests as Entra sends them, grouped into the benchmark's phases.

Bodies follow /work/shared/entra-provisioning.md: the matching query (A2, URL-encoded with
``+`` and ``%22``), the create with Proware's mapping (A3), group match and create (A8, A10),
member adds in chunks (A12), the new-dialect PATCH (A5.4), the disable with the string
``"False"`` (A6). Every request is built before its phase's clock starts; only what depends
on an earlier answer (the ids from ``Location``) is built between phases.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus

from bench.client import Reply, Task, Worker, build_request
from scim import constants

PREFIX = "/scim/v2"

# The loaded phases, in the order they run (the smoke test checks each one is reported);
# the unloaded phase follows them (bench.unloaded).
INITIAL = "initial cycle"
GROUPS_CREATE = "groups: match and create"
GROUPS_MEMBERS = "groups: add members"
GROUPS_ONE = "groups: add 1 member"
INCREMENTAL = "incremental cycle"
LOOKUPS = "matching lookups"
PHASES = [INITIAL, GROUPS_CREATE, GROUPS_MEMBERS, GROUPS_ONE, INCREMENTAL, LOOKUPS]

# Operation labels (latency is reported per label).
MATCH_USER_MISS = "match user (miss)"
CREATE_USER = "create user"
MATCH_GROUP_MISS = "match group (miss)"
CREATE_GROUP = "create group"
ADD_CHUNK = "add members (chunk)"
ADD_SMALL = "add members (small group)"
ADD_ONE = "add 1 member to big group"
PATCH_USER = "patch user (new dialect)"
DISABLE_USER = 'disable user ("False")'
GET_USER = "get user by id"
MATCH_USER_HIT = "match user (hit)"
MATCH_GROUP_HIT = "match group (hit)"

_TOTAL = re.compile(rb'"totalResults":\s*(\d+)')
_FAMILIES = ["Vance", "Wilber", "Brown", "Garcia", "Nakamura", "Okafor", "Novak", "Silva"]
_DEPARTMENTS = [f"Department {n:02d}" for n in range(24)]
_TITLES = ["Engineer", "Analyst", "Manager", "Consultant", "Designer", "Technician"]
_ID_NAMESPACE = uuid.UUID("6f1c3e0a-2b7d-4c1e-9a53-0d1f2e3c4b5a")


@dataclass(frozen=True)
class Plan:
    """How much of everything one directory size does.

    ``groups`` is N/25 (2,000 at 50,000 users: the issue's start-up case); ``big_groups``
    hold min(N, 10,000) members each, one per 10,000 users; the rest are teams of
    ``small_group_size``. The last ``single_adds`` members of the first big group are added
    one per PATCH once it is nearly full: "add one member to a 10,000-member group".
    """

    users: int
    groups: int
    big_groups: int
    big_group_size: int
    small_group_size: int
    chunk: int
    single_adds: int
    user_lookups: int
    group_lookups: int

    @classmethod
    def for_size(cls, users: int, chunk: int = 50) -> Plan:
        big_size = min(users, 10_000)
        groups = max(4, users // 25)
        return cls(
            users=users,
            groups=groups,
            big_groups=max(1, users // 10_000),
            big_group_size=big_size,
            small_group_size=min(10, users),
            chunk=chunk,
            single_adds=min(300, big_size // 4),
            user_lookups=max(100, users // 5),
            group_lookups=max(200, min(groups, 2_000)),
        )


def user_name(index: int) -> str:
    """The userName (a UPN) of bench user ``index``."""
    return f"Given{index:06d}.{_FAMILIES[index % len(_FAMILIES)]}@proware.example"


def group_name(index: int) -> str:
    return f"Team {index:05d}"


def user_body(index: int) -> dict:
    """Entra's create-user body with Proware's mapping (entra-provisioning.md A3)."""
    given, family = f"Given{index:06d}", _FAMILIES[index % len(_FAMILIES)]
    return {
        "schemas": [constants.USER, constants.ENTERPRISE_USER],
        "externalId": str(uuid.uuid5(_ID_NAMESPACE, f"user-{index}")),
        "userName": user_name(index),
        "active": True,
        "meta": {"resourceType": "User"},
        "name": {"formatted": f"{given} {family}", "familyName": family, "givenName": given},
        "title": _TITLES[index % len(_TITLES)],
        constants.ENTERPRISE_USER: {"department": _DEPARTMENTS[index % len(_DEPARTMENTS)]},
    }


def group_body(index: int) -> dict:
    """Entra's create-group body, with its private schema URI (A8, Q17)."""
    return {
        "schemas": [constants.GROUP, constants.MICROSOFT_GROUP],
        "externalId": str(uuid.uuid5(_ID_NAMESPACE, f"group-{index}")),
        "displayName": group_name(index),
        "meta": {"resourceType": "Group"},
    }


def add_members_body(user_ids: list[str]) -> dict:
    """Entra's add-members PATCH, ``$ref`` null (A12)."""
    return _patch_op(
        [{"op": "Add", "path": "members", "value": [{"$ref": None, "value": u} for u in user_ids]}]
    )


def new_dialect_patch_body(index: int) -> dict:
    """The SCIM-compliant dialect: lowercase op, one path-less value, dotted/URN keys (A5.4)."""
    given = f"Given{index:06d}b"
    family = _FAMILIES[index % len(_FAMILIES)]
    return _patch_op(
        [
            {
                "op": "replace",
                "value": {
                    "title": "Senior " + _TITLES[index % len(_TITLES)],
                    "name.givenName": given,
                    "name.formatted": f"{given} {family}",
                    f"{constants.ENTERPRISE_USER}:department": _DEPARTMENTS[(index + 1) % 24],
                },
            }
        ]
    )


def disable_body() -> dict:
    """The default client's disable: ``"False"`` as a string (A6, Q2)."""
    return _patch_op([{"op": "Replace", "path": "active", "value": "False"}])


def _patch_op(operations: list[dict]) -> dict:
    return {"schemas": [constants.PATCH_OP], "Operations": operations}


def user_filter_target(name: str) -> str:
    """GET /Users?filter=userName eq "name", encoded as Entra does (A1, A2)."""
    return f"{PREFIX}/Users?filter=" + quote_plus(f'userName eq "{name}"')


def group_filter_target(name: str) -> str:
    """GET /Groups?excludedAttributes=members&filter=displayName eq "name" (A10, Q9)."""
    return f"{PREFIX}/Groups?excludedAttributes=members&filter=" + quote_plus(
        f'displayName eq "{name}"'
    )


# What Worker.found notes ids of.
USERS = "users"
GROUPS = "groups"

# An operation: label, request bytes, expected status, expected totalResults (or None).
Op = tuple[str, bytes, int, int | None]


class Workload:
    """The phases for one plan against one server, keeping the ids the server hands out."""

    def __init__(self, plan: Plan, port: int, token: str, clients: int) -> None:
        self.plan = plan
        self.port = port
        self.token = token
        self.clients = clients
        self.user_ids: list[str | None] = [None] * plan.users
        self.group_ids: list[str | None] = [None] * plan.groups
        self._rng = random.Random(plan.users)

    def request(self, method: str, target: str, body: dict | None = None) -> bytes:
        """The bytes of one request to this server, with the bearer token."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        return build_request(method, target, token=self.token, body=data, port=self.port)

    # -- phases --------------------------------------------------------------------------

    def initial_cycle(self) -> list[Task]:
        """For every user: the matching query (nothing found), then the create."""
        pairs = [
            (
                self.request("GET", user_filter_target(user_name(i))),
                self.request("POST", f"{PREFIX}/Users", user_body(i)),
            )
            for i in range(self.plan.users)
        ]
        return self._split(
            list(range(self.plan.users)),
            lambda worker, i: self._match_then_create(
                worker, pairs[i], (MATCH_USER_MISS, CREATE_USER), USERS, i
            ),
        )

    def create_groups(self) -> list[Task]:
        """For every group: the matching query (nothing found), then the create."""
        pairs = [
            (
                self.request("GET", group_filter_target(group_name(j))),
                self.request("POST", f"{PREFIX}/Groups", group_body(j)),
            )
            for j in range(self.plan.groups)
        ]
        return self._split(
            list(range(self.plan.groups)),
            lambda worker, j: self._match_then_create(
                worker, pairs[j], (MATCH_GROUP_MISS, CREATE_GROUP), GROUPS, j
            ),
        )

    def add_members(self) -> list[Task]:
        """Big groups filled in chunks (all but the last few members), teams in one PATCH."""
        plan, ops = self.plan, []
        for b in range(plan.big_groups):
            members = self.big_group_members(b)
            if b == 0:
                members = members[: len(members) - plan.single_adds]
            for start in range(0, len(members), plan.chunk):
                chunk = members[start : start + plan.chunk]
                ops.append(self._patch_group(ADD_CHUNK, b, chunk))
        for j in range(plan.big_groups, plan.groups):
            first = (j * plan.small_group_size) % plan.users
            members = [(first + k) % plan.users for k in range(plan.small_group_size)]
            ops.append(self._patch_group(ADD_SMALL, j, members))
        return self.tasks_for(ops)

    def add_single_members(self) -> list[Task]:
        """The first big group's last members, one PATCH each."""
        members = self.big_group_members(0)[-self.plan.single_adds :]
        return self.tasks_for([self._patch_group(ADD_ONE, 0, [u]) for u in members])

    def incremental_cycle(self) -> list[Task]:
        """PATCH 20% of users (new dialect), disable 5% ("False"), GET 20% by id."""
        n, rng = self.plan.users, self._rng
        ops: list[Op] = []
        for i in rng.sample(range(n), n // 5):
            target = f"{PREFIX}/Users/{self.user_ids[i]}"
            ops.append(
                (PATCH_USER, self.request("PATCH", target, new_dialect_patch_body(i)), 200, None)
            )
        for i in rng.sample(range(n), max(1, n // 20)):
            target = f"{PREFIX}/Users/{self.user_ids[i]}"
            ops.append((DISABLE_USER, self.request("PATCH", target, disable_body()), 200, None))
        for i in rng.sample(range(n), n // 5):
            ops.append(
                (GET_USER, self.request("GET", f"{PREFIX}/Users/{self.user_ids[i]}"), 200, None)
            )
        rng.shuffle(ops)
        return self.tasks_for(ops)

    def lookups(self) -> list[Task]:
        """Matching queries that find their user or group (Entra's next cycles)."""
        plan, rng = self.plan, self._rng
        ops: list[Op] = [
            (MATCH_USER_HIT, self.request("GET", user_filter_target(user_name(i))), 200, 1)
            for i in rng.choices(range(plan.users), k=plan.user_lookups)
        ]
        ops += [
            (MATCH_GROUP_HIT, self.request("GET", group_filter_target(group_name(j))), 200, 1)
            for j in rng.choices(range(plan.groups), k=plan.group_lookups)
        ]
        rng.shuffle(ops)
        return self.tasks_for(ops)

    def phases(self) -> list[tuple[str, Callable[[], list[Task]]]]:
        """(name, builder) in running order; each builder returns the phase's tasks."""
        return [
            (INITIAL, self.initial_cycle),
            (GROUPS_CREATE, self.create_groups),
            (GROUPS_MEMBERS, self.add_members),
            (GROUPS_ONE, self.add_single_members),
            (INCREMENTAL, self.incremental_cycle),
            (LOOKUPS, self.lookups),
        ]

    def absorb(self, workers: list[Worker]) -> None:
        """Keep the ids the server handed out in the last phase (see :attr:`Worker.found`)."""
        lists = {USERS: self.user_ids, GROUPS: self.group_ids}
        for worker in workers:
            for (kind, index), id in worker.found.items():
                lists[kind][index] = id

    # -- helpers -------------------------------------------------------------------------

    def big_group_members(self, b: int) -> list[int]:
        """The user indexes of big group ``b`` once it is full."""
        size, n = self.plan.big_group_size, self.plan.users
        return [(b * size + k) % n for k in range(size)]

    def _patch_group(self, label: str, group: int, users: list[int]) -> Op:
        body = add_members_body([str(self.user_ids[u]) for u in users])
        return (
            label,
            self.request("PATCH", f"{PREFIX}/Groups/{self.group_ids[group]}", body),
            204,
            None,
        )

    def _match_then_create(
        self,
        worker: Worker,
        requests: tuple[bytes, bytes],
        labels: tuple[str, str],
        kind: str,
        index: int,
    ) -> None:
        match, create = requests
        check_total(worker, labels[0], worker.call(labels[0], match, 200), 0)
        reply = worker.call(labels[1], create, 201)
        if reply.status == 201:
            # The id from Location: no JSON decoding on the client (its CPU is shared).
            worker.found[(kind, index)] = reply.location.rpartition(b"/")[2].decode("ascii")

    def tasks_for(self, ops: list[Op]) -> list[Task]:
        """Independent operations spread over the clients; each checks its status (and total)."""

        def run(worker: Worker, op: Op) -> None:
            label, raw, status, total = op
            reply = worker.call(label, raw, status)
            if total is not None:
                check_total(worker, label, reply, total)

        return self._split(ops, run)

    def _split(self, items: list, run) -> list[Task]:
        """One task per client, taking every ``clients``-th item (interleaved in time)."""

        def task_for(share: list) -> Task:
            def task(worker: Worker) -> None:
                for item in share:
                    run(worker, item)

            return task

        return [task_for(items[k :: self.clients]) for k in range(self.clients)]


def check_total(worker: Worker, label: str, reply: Reply, expected: int) -> None:
    """Count a wrong answer when a ListResponse's totalResults is not ``expected``."""
    if reply.status != 200:
        return  # already counted
    found = _TOTAL.search(reply.body)
    if found is None or int(found.group(1)) != expected:
        worker.fail(label, f"totalResults {found and int(found.group(1))} (expected {expected})")


def baseline_tasks(port: int, requests: int, clients: int) -> list[Task]:
    """The initial cycle's request bytes, as a load for the trivial app (everything is 200)."""
    workload = Workload(Plan.for_size(max(1, requests // 2)), port, "trivial", clients)
    ops: list[Op] = []
    for i in range(requests // 2):
        ops.append(
            (MATCH_USER_MISS, workload.request("GET", user_filter_target(user_name(i))), 200, None)
        )
        ops.append(
            (CREATE_USER, workload.request("POST", f"{PREFIX}/Users", user_body(i)), 200, None)
        )
    return workload.tasks_for(ops)
