"""The unloaded-latency phase: the cost of ONE request, with nothing else running.

Issue 3's latency targets ("matching lookup p99 under 5 ms at 50,000 users; adding one
member to a 10,000-member group under 2 ms p99") are about how one request's cost grows with
the directory. Under load, with 4 clients on a 2-core machine, a request mostly waits behind
the other clients' requests, so its p99 measures queueing. After the loaded phases, once the
server has gone idle (a background compaction finished), this phase sends its requests from
one client on one keep-alive connection, each only after the previous answer:

- matching lookups that find their user (``userName eq``, A2) or group (``displayName eq``
  with ``excludedAttributes=members``, A10), the same requests as the loaded "matching lookups";
- member changes on the first big group, which is full: remove one member (the new dialect's
  ``members[value eq "id"]``, A13), then add it back (A12), so every add takes the group from
  ``big_group_size - 1`` to ``big_group_size`` members and the group keeps its size;
- GETs of a user by id.

The steps are shuffled (a remove stays right before its add). Labels are the loaded phases'
labels; the results keep this phase apart, so the two are reported side by side.

``--repeat K`` sends the member changes alone K - 1 more times (:func:`member_changes_task`),
each once the server is idle again, so that a p99 bound can be checked "in every one of five
runs" (issue 13).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from bench import entra
from bench.client import Task, Worker
from scim import constants

UNLOADED = "unloaded latency (1 client)"  # the phase's name
MODE = "unloaded (1 client)"  # how its rows are labelled next to "under load (N clients)"
REMOVE_ONE = "remove 1 member (big group)"

USER_LOOKUPS = 500
GROUP_LOOKUPS = 200
# Remove-then-add pairs (at most one per member of the group). 1,000 makes the p99 the 10th
# slowest of 1,000, not the 3rd of 300, which moved between 1.9 and 2.2 ms (10,000 users)
# across runs of the same code.
MEMBER_CHANGES = 1000
GETS = 200

# Idle: the server used under 5% of one core over a quarter of a second.
_IDLE_WINDOW = 0.25
_IDLE_CPU_FRACTION = 0.05
# Iterations of machine_speed_ms's loop: about 0.1 s of CPU here.
_SPEED_LOOP = 2_000_000


def machine_speed_ms() -> float:
    """The CPU milliseconds a fixed pure-Python loop takes in this process right now.

    The same server code took 0.75 ms of CPU per member change at 50,000 users in one run
    and 1.05-1.41 ms in another (0.91 between two of them, in one process that did nothing
    else meanwhile), while this loop took 90-106 ms at one moment and 111-163 ms minutes
    later: the machine's speed moves that much, so each unloaded run is reported with it,
    and a slow run can be told from a slower server.
    """
    started = time.thread_time()
    sum(i * i for i in range(_SPEED_LOOP))
    return (time.thread_time() - started) * 1000


def remove_member_body(user_id: str) -> dict:
    """The compliant dialect's member remove: a filter path, no value (A13, Q6)."""
    return {
        "schemas": [constants.PATCH_OP],
        "Operations": [{"op": "remove", "path": f'members[value eq "{user_id}"]'}],
    }


def unloaded_task(workload: entra.Workload) -> Task:
    """One task sending every step of the phase in turn (built before the clock starts)."""
    plan = workload.plan
    rng = random.Random(f"unloaded-{plan.users}")  # apart from the loaded phases' sequence
    request = workload.request
    prefix = entra.PREFIX
    # An op: label, request bytes, expected status, expected totalResults (or None).
    steps: list[list[entra.Op]] = []
    for i in rng.choices(range(plan.users), k=USER_LOOKUPS):
        target = entra.user_filter_target(entra.user_name(i))
        steps.append([(entra.MATCH_USER_HIT, request("GET", target), 200, 1)])
    for j in rng.choices(range(plan.groups), k=GROUP_LOOKUPS):
        target = entra.group_filter_target(entra.group_name(j))
        steps.append([(entra.MATCH_GROUP_HIT, request("GET", target), 200, 1)])
    steps += _member_changes(workload, rng)
    for i in rng.choices(range(plan.users), k=GETS):
        target = f"{prefix}/Users/{workload.user_ids[i]}"
        steps.append([(entra.GET_USER, request("GET", target), 200, None)])
    rng.shuffle(steps)
    return _task(steps)


def member_changes_task(workload: entra.Workload, run: int) -> Task:
    """Only the member removes and adds of the phase, for ``--repeat``'s run ``run`` (2, 3...):
    another sample of the group's members, in another order."""
    rng = random.Random(f"unloaded-{workload.plan.users}-members-{run}")
    steps = _member_changes(workload, rng)
    rng.shuffle(steps)
    return _task(steps)


def repeat_name(run: int) -> str:
    """The name of ``--repeat``'s run ``run`` (the unloaded phase itself is run 1)."""
    return f"unloaded member changes, run {run} (1 client)"


def _member_changes(workload: entra.Workload, rng: random.Random) -> list[list[entra.Op]]:
    """Remove-then-add pairs on the first big group (full before and after each pair)."""
    group = f"{entra.PREFIX}/Groups/{workload.group_ids[0]}"
    members = [str(workload.user_ids[u]) for u in workload.big_group_members(0)]
    steps: list[list[entra.Op]] = []
    for user_id in rng.sample(members, min(MEMBER_CHANGES, len(members))):
        remove = workload.request("PATCH", group, remove_member_body(user_id))
        add = workload.request("PATCH", group, entra.add_members_body([user_id]))
        steps.append([(REMOVE_ONE, remove, 204, None), (entra.ADD_ONE, add, 204, None)])
    return steps


def _task(steps: list[list[entra.Op]]) -> Task:
    """One client sending ``steps`` in turn, each step's requests one after the other."""

    def task(worker: Worker) -> None:
        for step in steps:
            for label, raw, status, total in step:
                reply = worker.call(label, raw, status)
                if total is not None:
                    entra.check_total(worker, label, reply, total)

    return task


def wait_until_idle(cpu_seconds: Callable[[], float], timeout: float = 60.0) -> float:
    """Wait until the server stops working in the background (e.g. a compaction ends).

    :param cpu_seconds: the server process's CPU time so far.
    :returns: the seconds waited (``timeout`` if it never went idle).
    """
    started = time.monotonic()
    before = cpu_seconds()
    while time.monotonic() - started < timeout:
        time.sleep(_IDLE_WINDOW)
        now = cpu_seconds()
        if now - before < _IDLE_WINDOW * _IDLE_CPU_FRACTION:
            break
        before = now
    return time.monotonic() - started
