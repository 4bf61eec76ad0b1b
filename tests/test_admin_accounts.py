"""Admin accounts: hashed passwords, no defaults, lockout after repeated failed sign-ins."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from admin.accounts import AdminAccounts, LockoutPolicy
from tests.storage_contract import FixedClock

PASSWORD = "correct horse battery staple"
POLICY = LockoutPolicy(max_failures=3, window=timedelta(minutes=10), duration=timedelta(minutes=5))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def accounts(tmp_path: Path, clock: FixedClock) -> AdminAccounts:
    # pbkdf2 with few rounds keeps the tests fast; the server uses werkzeug's scrypt default.
    return AdminAccounts(
        tmp_path / "admins.json", clock=clock, policy=POLICY, hash_method="pbkdf2:sha256:1000"
    )


def test_a_fresh_install_has_no_admin_and_no_default_password(accounts: AdminAccounts) -> None:
    assert not accounts.any()
    for username, guess in [("admin", "admin"), ("admin", "password"), ("root", "")]:
        assert accounts.sign_in(username, guess).outcome == "invalid"


def test_the_file_keeps_only_a_salted_hash_in_a_private_file(
    tmp_path: Path, accounts: AdminAccounts
) -> None:
    accounts.create("alice", PASSWORD)
    raw = (tmp_path / "admins.json").read_text()
    assert PASSWORD not in raw
    record = json.loads(raw)["admins"][0]
    assert record["password_hash"].startswith("pbkdf2:sha256:1000$")
    assert stat.S_IMODE((tmp_path / "admins.json").stat().st_mode) == 0o600


def test_the_default_hash_is_scrypt(tmp_path: Path) -> None:
    accounts = AdminAccounts(tmp_path / "admins.json")
    accounts.create("alice", PASSWORD)
    record = json.loads((tmp_path / "admins.json").read_text())["admins"][0]
    assert record["password_hash"].startswith("scrypt:")


def test_sign_in_with_the_right_password_succeeds_case_insensitively_on_the_name(
    accounts: AdminAccounts,
) -> None:
    accounts.create("Alice", PASSWORD)
    verdict = accounts.sign_in("alice", PASSWORD)
    assert verdict.outcome == "ok"
    assert verdict.account is not None and verdict.account.username == "Alice"
    assert accounts.get("ALICE") is not None and accounts.get("ALICE").last_sign_in is not None


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        pytest.param("alice", "short", "at least 12", id="too-short"),
        pytest.param("alice", "x" * 1025, "at most 1024", id="too-long"),
        pytest.param("alice", " " * 12, "not be only spaces", id="spaces"),
        pytest.param("alice", " \t\n\r\x0b\x0c" * 2, "not be only spaces", id="whitespace"),
        pytest.param("alice", "a" * 12, "at least 4 different", id="one-character"),
        pytest.param("alice", "ab" * 6, "at least 4 different", id="two-characters"),
        pytest.param("alice-the-admin", "ALICE-THE-ADMIN", "not be the username", id="username"),
        pytest.param("al ice", PASSWORD, "not allowed", id="bad-username"),
        pytest.param("", PASSWORD, "not allowed", id="empty-username"),
    ],
)
def test_create_refuses_weak_passwords_and_bad_names(
    accounts: AdminAccounts, username: str, password: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        accounts.create(username, password)
    assert not accounts.any()


def test_create_refuses_a_taken_name_whatever_its_case(accounts: AdminAccounts) -> None:
    accounts.create("alice", PASSWORD)
    with pytest.raises(ValueError, match="already exists"):
        accounts.create("ALICE", PASSWORD)


def test_repeated_failures_lock_the_account_even_for_the_right_password(
    accounts: AdminAccounts, clock: FixedClock
) -> None:
    accounts.create("alice", PASSWORD)
    assert accounts.sign_in("alice", "wrong 1").outcome == "invalid"
    assert accounts.sign_in("alice", "wrong 2").outcome == "invalid"
    locked = accounts.sign_in("alice", "wrong 3")
    assert locked.outcome == "locked"
    assert locked.locked_until == clock.now + POLICY.duration
    assert accounts.sign_in("alice", PASSWORD).outcome == "locked"


def test_the_lock_ends_after_its_duration(accounts: AdminAccounts, clock: FixedClock) -> None:
    accounts.create("alice", PASSWORD)
    for attempt in range(3):
        accounts.sign_in("alice", f"wrong {attempt}")
    clock.advance(minutes=5)
    assert accounts.sign_in("alice", PASSWORD).outcome == "ok"


def test_failures_spread_beyond_the_window_do_not_lock(
    accounts: AdminAccounts, clock: FixedClock
) -> None:
    accounts.create("alice", PASSWORD)
    for attempt in range(6):
        assert accounts.sign_in("alice", f"wrong {attempt}").outcome == "invalid"
        clock.advance(minutes=6)


def test_a_success_clears_earlier_failures(accounts: AdminAccounts) -> None:
    accounts.create("alice", PASSWORD)
    accounts.sign_in("alice", "wrong 1")
    accounts.sign_in("alice", "wrong 2")
    assert accounts.sign_in("alice", PASSWORD).outcome == "ok"
    assert accounts.sign_in("alice", "wrong 3").outcome == "invalid"


def test_unknown_names_lock_like_real_ones_so_the_page_tells_nothing(
    accounts: AdminAccounts,
) -> None:
    verdicts = [accounts.sign_in("mallory", f"guess {n}").outcome for n in range(4)]
    assert verdicts == ["invalid", "invalid", "locked", "locked"]


def test_lockout_is_shared_with_another_process_through_the_file(
    tmp_path: Path, accounts: AdminAccounts, clock: FixedClock
) -> None:
    accounts.create("alice", PASSWORD)
    for attempt in range(3):
        accounts.sign_in("alice", f"wrong {attempt}")
    other = AdminAccounts(tmp_path / "admins.json", clock=clock, policy=POLICY)
    assert other.sign_in("alice", PASSWORD).outcome == "locked"


def test_reset_password_unlocks_and_marks_the_change(
    accounts: AdminAccounts, clock: FixedClock
) -> None:
    created = accounts.create("alice", PASSWORD)
    for attempt in range(3):
        accounts.sign_in("alice", f"wrong {attempt}")
    reset = accounts.reset_password("alice", "a brand new passphrase")
    assert reset.password_changed != created.password_changed
    assert accounts.sign_in("alice", PASSWORD).outcome == "invalid"
    assert accounts.sign_in("alice", "a brand new passphrase").outcome == "ok"


def test_reset_password_of_an_unknown_admin_is_a_key_error(accounts: AdminAccounts) -> None:
    with pytest.raises(KeyError):
        accounts.reset_password("nobody", PASSWORD)


def test_the_failures_of_unknown_names_kept_in_memory_are_bounded() -> None:
    """The embedded store's one process keeps them in memory: at most max_keys names."""
    from storage.failures import MemoryFailureLog
    from tests.storage_contract import START

    log = MemoryFailureLog(max_keys=2)
    seen: dict[str, list] = {}

    def add(key: str) -> None:
        def change(moments: list) -> list:
            seen[key] = moments
            return [*moments, START]

        log.update(key, change, now=START, keep_for=timedelta(minutes=1))

    for key in ("a", "b", "c", "a", "c"):
        add(key)

    assert seen == {"a": [], "b": [], "c": [START]}  # "a" was forgotten for "c"
