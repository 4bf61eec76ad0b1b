"""The sign-in lockout holds against attempts that run at once, in one process or several.

Each password check waits until every attempt has either reached its own check or been
answered, so all the attempts that a lockout let through are checking at the same moment:
the count of checks is then exactly what the lockout allowed, with no timing involved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import admin.accounts
from admin.accounts import AdminAccounts
from storage.postgres.connection import Database
from storage.postgres.documents import PostgresDocument
from storage.postgres.failures import PostgresFailureLog
from tests import pgserver
from tests.storage_contract import FixedClock
from tests.test_admin_accounts import PASSWORD, POLICY

ATTEMPTS = 12
HASH = "pbkdf2:sha256:1000"  # fast; the server uses werkzeug's scrypt default


class CheckGate:
    """Stands in for ``check_password_hash``: counts the checks, and holds each until
    every attempt is checking or answered."""

    def __init__(self, attempts: int, check: Callable[[str, str], bool]) -> None:
        self._attempts = attempts
        self._check = check
        self._changed = threading.Condition()
        self.checks = 0
        self.answered = 0

    def __call__(self, password_hash: str, password: str) -> bool:
        with self._changed:
            self.checks += 1
            self._changed.notify_all()
            # A bound only so that a broken lockout fails the test instead of hanging it.
            self._changed.wait_for(lambda: self.checks + self.answered >= self._attempts, 60)
        return self._check(password_hash, password)

    def answer(self) -> None:
        with self._changed:
            self.answered += 1
            self._changed.notify_all()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> CheckGate:
    gate = CheckGate(ATTEMPTS, admin.accounts.check_password_hash)
    monkeypatch.setattr(admin.accounts, "check_password_hash", gate)
    return gate


def attempt_all_at_once(processes: list[AdminAccounts], username: str, gate: CheckGate) -> list:
    """``ATTEMPTS`` wrong passwords at once, spread over ``processes``; their outcomes."""
    outcomes: list[str] = []
    start = threading.Barrier(ATTEMPTS)

    def attempt(number: int) -> None:
        start.wait()
        try:
            outcomes.append(
                processes[number % len(processes)].sign_in(username, f"x{number}").outcome
            )
        finally:
            gate.answer()

    threads = [threading.Thread(target=attempt, args=(number,)) for number in range(ATTEMPTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.fixture(params=["file", "postgresql"])
def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[AdminAccounts]]:
    """Two AdminAccounts on one shared document, as two server processes have."""
    clock = FixedClock()
    if request.param == "file":
        yield [
            AdminAccounts(tmp_path / "admins.json", clock=clock, policy=POLICY, hash_method=HASH)
            for _ in range(2)
        ]
        return
    yield from postgres_processes(clock)


def postgres_processes(clock: FixedClock) -> Iterator[list[AdminAccounts]]:
    """Two AdminAccounts on one database, as two server processes have (the failures of
    unknown names in its table)."""
    dsn = pgserver.clean_database()
    databases = [Database(dsn), Database(dsn)]
    yield [
        AdminAccounts(
            PostgresDocument(database, "admins.json"),
            clock=clock,
            policy=POLICY,
            hash_method=HASH,
            unknown_failures=PostgresFailureLog(database),
        )
        for database in databases
    ]
    for database in databases:
        database.close()


@pytest.fixture
def on_postgresql() -> Iterator[list[AdminAccounts]]:
    yield from postgres_processes(FixedClock())


def test_concurrent_wrong_passwords_from_two_processes_get_only_the_allowed_checks(
    processes: list[AdminAccounts], gate: CheckGate
) -> None:
    processes[0].create("alice", PASSWORD)

    outcomes = attempt_all_at_once(processes, "alice", gate)

    assert gate.checks == POLICY.max_failures
    assert outcomes.count("invalid") == POLICY.max_failures - 1
    assert processes[1].sign_in("alice", PASSWORD).outcome == "locked"


def test_concurrent_guesses_at_an_unknown_name_get_only_the_allowed_checks(
    processes: list[AdminAccounts], gate: CheckGate
) -> None:
    """Unknown names lock alike: in one process, the same number of checks."""
    outcomes = attempt_all_at_once(processes[:1], "mallory", gate)

    assert gate.checks == POLICY.max_failures
    assert outcomes.count("invalid") == POLICY.max_failures - 1


def test_a_right_password_among_the_allowed_attempts_signs_in_and_clears_the_count(
    processes: list[AdminAccounts],
) -> None:
    first, second = processes
    first.create("alice", PASSWORD)
    for number in range(POLICY.max_failures - 1):
        assert second.sign_in("alice", f"wrong {number}").outcome == "invalid"
    assert first.sign_in("alice", PASSWORD).outcome == "ok"
    assert [second.sign_in("alice", f"again {n}").outcome for n in range(3)] == [
        "invalid",
        "invalid",
        "locked",
    ]


def test_concurrent_guesses_at_an_unknown_name_from_two_processes_get_only_the_allowed_checks(
    on_postgresql: list[AdminAccounts], gate: CheckGate
) -> None:
    """On PostgreSQL an unknown name's failures are counted once for every process."""
    outcomes = attempt_all_at_once(on_postgresql, "mallory", gate)

    assert gate.checks == POLICY.max_failures
    assert outcomes.count("invalid") == POLICY.max_failures - 1
    assert on_postgresql[1].sign_in("MALLORY", "again").outcome == "locked"


def test_an_unknown_name_locks_after_the_allowed_failures_spread_over_two_processes(
    on_postgresql: list[AdminAccounts],
) -> None:
    first, second = on_postgresql
    outcomes = [
        (first if number % 2 else second).sign_in("mallory", f"guess {number}").outcome
        for number in range(POLICY.max_failures)
    ]

    assert outcomes == ["invalid"] * (POLICY.max_failures - 1) + ["locked"]
    assert first.sign_in("mallory", "one more").outcome == "locked"
    assert second.sign_in("Mallory", "one more").outcome == "locked"
