"""The PostgreSQL repository beyond the shared contract: several processes on one database.

Two repository objects on one database stand for two server processes: each has its own
pool of connections, and nothing in Python is shared between them.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from storage.errors import Conflict, NotFound, Unavailable
from storage.postgres.connection import Database
from storage.postgres.repository import PostgresRepository
from tests import pgserver
from tests.storage_contract import INDEXES, CounterIds, FixedClock, group, user


@pytest.fixture
def dsn() -> str:
    return pgserver.clean_database()


@pytest.fixture
def processes(dsn: str) -> Iterator[tuple[PostgresRepository, PostgresRepository]]:
    """Two repositories on one database, as two server processes would have."""
    first = PostgresRepository(dsn, INDEXES, pool_size=4)
    second = PostgresRepository(dsn, INDEXES, pool_size=4)
    yield first, second
    first.close()
    second.close()


def in_parallel(*work: Callable[[], None]) -> None:
    """Run each function in its own thread, all released at once; re-raise the first error."""
    start = threading.Barrier(len(work))
    errors: list[BaseException] = []

    def run(function: Callable[[], None]) -> None:
        start.wait()
        try:
            function()
        except BaseException as error:  # re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(function,)) for function in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def insert(repository: PostgresRepository, kind: str, document: dict) -> dict:
    with repository.transaction() as tx:
        return tx.insert(kind, document)


# -- two processes --------------------------------------------------------------------------


def test_two_processes_inserting_a_name_in_different_cases_leave_one_winner(
    processes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    """The database's unique index decides, so neither process can see "no holder" and win."""
    for round in range(20):
        outcomes: dict[str, object] = {}

        def attempt(
            repository: PostgresRepository, name: str, outcomes: dict = outcomes
        ) -> Callable[[], None]:
            def run() -> None:
                try:
                    outcomes[name] = insert(repository, "User", user(name))["id"]
                except Conflict as conflict:
                    outcomes[name] = conflict

            return run

        first, second = processes
        in_parallel(attempt(first, f"Ann{round}"), attempt(second, f"ANN{round}"))

        winners = [value for value in outcomes.values() if isinstance(value, str)]
        refused = [value for value in outcomes.values() if isinstance(value, Conflict)]
        assert len(winners) == 1 and len(refused) == 1
        assert refused[0].holder == winners[0]
        assert first.find("User", "userName", f"ann{round}") == winners


def test_concurrent_member_adds_to_one_group_from_two_processes_lose_nothing(
    processes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    first, second = processes
    with first.transaction() as tx:
        users = [tx.insert("User", user(f"u{number}"))["id"] for number in range(100)]
        group_id = tx.insert("Group", group("Everyone"))["id"]

    def add(repository: PostgresRepository, ids: list[str]) -> Callable[[], None]:
        def run() -> None:
            for user_id in ids:
                with repository.transaction() as tx:
                    assert tx.add_members(group_id, [user_id]) == [user_id]

        return run

    in_parallel(add(first, users[0::2]), add(second, users[1::2]))

    assert sorted(second.members(group_id)) == sorted(users)
    assert first.get("Group", group_id)["meta"]["version"] == f'W/"{1 + len(users)}"'


def test_concurrent_read_modify_write_from_two_processes_loses_no_update(
    processes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    """As a PATCH does: get, change, replace. get locks the row, so the two take turns."""
    first, second = processes
    counter_id = insert(first, "User", user("counter", counter=0))["id"]
    rounds = 30

    def increment(repository: PostgresRepository) -> Callable[[], None]:
        def run() -> None:
            for _ in range(rounds):
                with repository.transaction() as tx:
                    current = tx.get("User", counter_id)
                    current["counter"] += 1
                    tx.replace("User", counter_id, current, if_version=current["meta"]["version"])

        return run

    in_parallel(increment(first), increment(second))

    stored = second.get("User", counter_id)
    assert stored["counter"] == 2 * rounds
    assert stored["meta"]["version"] == f'W/"{1 + 2 * rounds}"'


def test_a_user_deleted_while_another_process_adds_it_leaves_no_dangling_member(
    processes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    first, second = processes
    for round in range(10):
        user_id = insert(first, "User", user(f"leaving{round}"))["id"]
        group_id = insert(first, "Group", group(f"g{round}"))["id"]

        def add(group_id: str = group_id, user_id: str = user_id) -> None:
            with second.transaction() as tx:
                tx.add_members(group_id, [user_id])

        def delete(user_id: str = user_id) -> None:
            with first.transaction() as tx:
                tx.delete("User", user_id)

        in_parallel(add, delete)

        assert second.members(group_id) == []
        assert second.groups_of(user_id) == []


def test_waiting_too_long_for_another_processs_row_lock_is_unavailable(dsn: str) -> None:
    """A request does not hang behind a transaction that keeps a document locked."""
    holder = PostgresRepository(dsn, INDEXES)
    waiter = PostgresRepository(Database(dsn, lock_timeout=0.3), INDEXES)
    try:
        id = insert(holder, "User", user("ann"))["id"]
        with holder.transaction() as tx:
            tx.get("User", id)  # locked until this block ends
            with pytest.raises(Unavailable, match="held a row lock for too long"):
                with waiter.transaction() as waiting:
                    waiting.get("User", id)
    finally:
        waiter.database.close()
        holder.close()


# -- lock order between a user's deletion and its groups ------------------------------------


def wait_until_blocked(dsn: str, waiting: int = 1) -> None:
    """Return once ``waiting`` sessions of this database wait for a lock (polled, no timing)."""
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while True:
            blocked = watcher.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if blocked and blocked[0] >= waiting:
                return
            threading.Event().wait(0.01)


def in_background(work: Callable[[], None]) -> Callable[[], None]:
    """Start ``work`` in a thread; returns a function that joins it and re-raises its error."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as error:  # re-raised by join, in the test's thread
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()

    def join() -> None:
        thread.join()
        if errors:
            raise errors[0]

    return join


def delete_user(repository: PostgresRepository, user_id: str) -> Callable[[], None]:
    """What the service's DELETE does: read (and lock) the user, then delete it."""

    def run() -> None:
        with repository.transaction() as tx:
            tx.get("User", user_id)
            tx.delete("User", user_id)

    return run


def test_adding_a_member_to_a_group_while_that_user_is_deleted_does_not_deadlock(
    dsn: str, processes: tuple[PostgresRepository, PostgresRepository]
) -> None:
    """The audit's race: the PATCH holds the group and then needs the user; the deletion must
    not hold the user (FOR UPDATE) while it waits for the group."""
    first, second = processes
    user_id = insert(first, "User", user("leaving"))["id"]
    other_id = insert(first, "User", user("staying"))["id"]
    group_id = insert(first, "Group", group("Team"))["id"]
    with first.transaction() as tx:
        tx.add_members(group_id, [user_id])

    with second.transaction() as patch:
        patch.get("Group", group_id)  # the PATCH has read (and locked) the group
        join_delete = in_background(delete_user(first, user_id))
        wait_until_blocked(dsn)  # the deletion waits for the group
        assert patch.add_members(group_id, [other_id, user_id]) == [other_id]
    join_delete()

    assert second.members(group_id) == [other_id]
    assert second.find("User", "userName", "leaving") == []
    assert second.get("Group", group_id)["meta"]["version"] == 'W/"4"'


def test_a_group_joined_while_the_user_is_being_deleted_gets_a_new_version(
    dsn: str, processes: tuple[PostgresRepository, PostgresRepository]
) -> None:
    """A membership committed after the deletion listed the user's groups is still left with
    a new version of its group, not dropped silently by the cascade."""
    first, second = processes
    user_id = insert(first, "User", user("leaving"))["id"]
    group_id = insert(first, "Group", group("Late"))["id"]

    with second.transaction() as patch:
        assert patch.add_members(group_id, [user_id]) == [user_id]
        join_delete = in_background(delete_user(first, user_id))
        wait_until_blocked(dsn)  # the deletion waits for the new member's lock on the user
    join_delete()

    assert second.members(group_id) == []
    assert second.get("Group", group_id)["meta"]["version"] == 'W/"3"'


def test_a_user_deleted_while_one_of_its_groups_is_deleted_is_deleted(
    dsn: str, processes: tuple[PostgresRepository, PostgresRepository]
) -> None:
    """A group gone by the time the deletion locks it is no reason to fail (it was a 404)."""
    first, second = processes
    user_id = insert(first, "User", user("leaving"))["id"]
    group_id = insert(first, "Group", group("Gone"))["id"]
    with first.transaction() as tx:
        tx.add_members(group_id, [user_id])

    with second.transaction() as group_delete:
        group_delete.get("Group", group_id)
        group_delete.delete("Group", group_id)
        join_delete = in_background(delete_user(first, user_id))
        wait_until_blocked(dsn)
    join_delete()

    assert second.find("User", "userName", "leaving") == []
    assert second.find("Group", "displayName", "gone") == []


def test_a_user_deleted_while_a_group_it_just_joined_is_deleted_is_deleted(
    dsn: str,
    processes: tuple[PostgresRepository, PostgresRepository],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A group the user joined after its deletion listed its groups, on the deletion's last
    attempt (here its first), is locked only after the user: one deleted by a third process
    by then is passed over, not a NotFound (a 500) for the user's DELETE."""
    monkeypatch.setattr("storage.postgres.transaction._LEAVING_ATTEMPTS", 1)
    first, second = processes
    user_id = insert(first, "User", user("leaving"))["id"]
    group_id = insert(first, "Group", group("Doomed"))["id"]

    with psycopg.connect(dsn) as key_holder, psycopg.connect(dsn) as third:
        # Holds the user's key as a member add does: the deletion, having found no group,
        # waits for it to take the user. (Not the join itself: when the join committed, the
        # deletion could take the group before the group's deletion, woken with it, did.)
        key_holder.execute(
            "SELECT FROM resources WHERE kind = 'User' AND id = %s FOR KEY SHARE", (user_id,)
        )
        join_delete = in_background(delete_user(first, user_id))
        wait_until_blocked(dsn)
        with second.transaction() as join:
            join.add_members(group_id, [user_id])  # shares the key: no wait
        third.execute("DELETE FROM resources WHERE kind = 'Group' AND id = %s", (group_id,))
        key_holder.commit()
        # The deletion takes the user, finds the group joined and waits for its deletion.
        with psycopg.connect(dsn, autocommit=True) as watcher:
            pgserver.wait_until_blocked_by(watcher, third.info.backend_pid)
        third.commit()
        join_delete()

    assert second.find("User", "userName", "leaving") == []
    assert second.find("Group", "displayName", "doomed") == []


# -- behaviour a database store adds ------------------------------------------------------


@pytest.fixture
def repository(dsn: str) -> Iterator[PostgresRepository]:
    opened = PostgresRepository(dsn, INDEXES, FixedClock(), CounterIds())
    yield opened
    opened.close()


def test_commit_listeners_get_the_events_with_their_rows_seq_in_commit_order(
    repository: PostgresRepository, dsn: str
) -> None:
    received: list[list[dict]] = []
    repository.add_commit_listener(received.append)

    for name in ("ann", "bob"):
        with repository.transaction() as tx:
            tx.insert("User", user(name))
            tx.note({"operation": "create", "name": name})
            tx.note({"operation": "audit", "password": "never stored"})
    with pytest.raises(ZeroDivisionError), repository.transaction() as tx:
        tx.note({"operation": "rolled back"})
        raise ZeroDivisionError

    seqs = [event["seq"] for events in received for event in events]
    assert [len(events) for events in received] == [2, 2]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    with psycopg.connect(dsn) as connection:
        rows = connection.execute("SELECT seq, event FROM activity ORDER BY seq").fetchall()
    assert [seq for seq, _ in rows] == seqs
    assert [event["operation"] for _, event in rows] == ["create", "audit"] * 2
    assert all("password" not in event for _, event in rows)  # kept out of the table


def test_a_membership_change_writes_rows_only_not_the_member_list(
    repository: PostgresRepository,
) -> None:
    """A group of 2,000: one add, one remove; the group's version moves, nothing else."""
    with repository.transaction() as tx:
        group_id = tx.insert("Group", group("Big"))["id"]
        ids = [tx.insert("User", user(f"m{number}"))["id"] for number in range(2000)]
        tx.add_members(group_id, ids[:-1])
    with repository.transaction() as tx:
        assert tx.add_members(group_id, [ids[-1], ids[0]]) == [ids[-1]]
        assert tx.remove_members(group_id, [ids[5]]) == [ids[5]]

    members = repository.members(group_id)
    assert len(members) == 1999 and members[-1] == ids[-1] and ids[5] not in members
    assert repository.get("Group", group_id)["meta"]["version"] == 'W/"2"'


def test_a_transaction_cannot_be_read_after_its_block(repository: PostgresRepository) -> None:
    """Its connection is back in the pool by then, perhaps in another thread's transaction."""
    with repository.transaction() as tx:
        id = tx.insert("User", user("ann"))["id"]

    for read in (tx.get, tx.exists):
        with pytest.raises(RuntimeError, match="has ended"):
            read("User", id)
    with pytest.raises(RuntimeError, match="has ended"):
        tx.members(id)


def test_ids_no_database_can_hold_are_simply_not_there(repository: PostgresRepository) -> None:
    """A NUL or a lone surrogate in a URL's id must be a 404, not a database error."""
    group_id = insert(repository, "Group", group("Sales"))["id"]
    for strange in ("a\x00b", "\udc80"):
        with pytest.raises(NotFound):
            repository.get("User", strange)
        assert not repository.exists("User", strange)
        assert repository.find("User", "userName", strange) == []
        assert repository.members(strange) == []
        with repository.transaction() as tx:
            assert tx.add_members(group_id, [strange]) == []
            with pytest.raises(NotFound):
                tx.replace("User", strange, user("x"))


def test_a_value_the_database_cannot_store_is_refused_and_the_transaction_goes_on(
    repository: PostgresRepository,
) -> None:
    with repository.transaction() as tx:
        with pytest.raises(ValueError, match="cannot store"):
            tx.insert("User", user("nul\x00inside"))
        fine = tx.insert("User", user("fine"))["id"]
        # Refused by PostgreSQL itself, not before: an index key past its size limit
        # (random, so that compression cannot make it fit).
        long = secrets.token_hex(10_000)
        with pytest.raises(ValueError, match="cannot store"):
            tx.insert("User", user(long))
        with pytest.raises(ValueError, match="cannot store"):
            tx.replace("User", fine, user(long))
        # Refused before it is sent (PostgreSQL would refuse it and the whole transaction).
        with pytest.raises(ValueError, match="cannot store"):
            tx.insert("User", user("surrogate", title="a\udc80b"))
        with pytest.raises(ValueError, match="cannot store"):
            tx.replace("User", fine, user("fine", **{"nul\x00key": "x"}))
        tx.insert("User", user("after"))

    assert [document["userName"] for document in repository.all("User")] == ["fine", "after"]
    assert repository.get("User", fine)["meta"]["version"] == 'W/"1"'


def test_scan_reads_in_batches_and_holds_no_connection_between_them(
    repository: PostgresRepository,
) -> None:
    with repository.transaction() as tx:
        for number in range(250):
            tx.insert("User", user(f"s{number:03}"))

    scans = [repository.scan("User") for _ in range(10)]  # more than the pool's 4
    firsts = [next(scan) for scan in scans]
    rest = list(scans[0])

    assert all(document["userName"] == "s000" for document in firsts)
    assert [document["userName"] for document in rest] == [f"s{n:03}" for n in range(1, 250)]


def test_the_sessions_compile_no_statement_just_in_time(dsn: str) -> None:
    """A control-panel search over 50,000 users cost enough to be compiled: 250 ms of 485."""
    database = Database(dsn)
    try:
        with database.connection() as connection:
            assert connection.execute("SHOW jit").fetchone() == ("off",)
    finally:
        database.close()


# -- a frozen process -----------------------------------------------------------------------


def wait_until_unlocked(dsn: str, id: str) -> None:
    """Return once nobody holds a lock on the document's row (a bounded wait)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as monitor:
        while time.monotonic() < deadline:
            try:
                with monitor.transaction():
                    monitor.execute("SELECT FROM resources WHERE id = %s FOR UPDATE NOWAIT", (id,))
                return
            except psycopg.errors.LockNotAvailable:
                time.sleep(0.05)
    raise AssertionError(f"the row of {id!r} stayed locked")


def test_a_transaction_whose_process_froze_lets_go_of_its_locks_after_the_idle_timeout(
    dsn: str,
) -> None:
    """A process frozen mid-transaction (SIGSTOP, a paused VM) no longer blocks every other
    process's writes to the rows it locked for as long as it stays frozen: once the server
    has waited ``idle_timeout`` for it, the session ends and the locks go. The frozen
    transaction commits nothing, and its process carries on with a new connection."""
    frozen = PostgresRepository(Database(dsn, idle_timeout=1), INDEXES)
    other = PostgresRepository(Database(dsn, lock_timeout=1), INDEXES)
    try:
        ann = insert(other, "User", user("ann"))
        with pytest.raises(Unavailable), frozen.transaction() as tx:
            tx.replace("User", ann["id"], user("ann", displayName="frozen"))
            tx.insert("User", user("bob"))  # a read: the replace was sent before it
            # Frozen from here on: the transaction waits for this process alone.
            wait_until_unlocked(dsn, ann["id"])
            with other.transaction() as tx2:
                tx2.replace("User", ann["id"], user("ann", displayName="other"))

        assert [document.get("displayName") for document in other.all("User")] == ["other"]
        assert other.find("User", "userName", "bob") == []
        with frozen.transaction() as tx:
            assert tx.get("User", ann["id"])["meta"]["version"] == 'W/"2"'
    finally:
        frozen.close()
        other.close()
