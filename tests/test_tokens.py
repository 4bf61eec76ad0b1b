"""Bearer tokens and the User Provisioning switch, kept in the control file."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from scim.tokens import ProvisioningSwitch, TokenCheck, TokenStore
from storage.controlfile import ControlFile
from storage.errors import CorruptStore, DamagedDocument
from tests.storage_contract import START, FixedClock

CREATED = START.replace(microsecond=0)  # the control file keeps whole seconds


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "control.json"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


class ManualTimers:
    """Timers that fire when the test says so (scim.tokens.start_timer's fake)."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Callable[[], None]]] = []
        self.cancelled = 0

    def start(self, delay: float, call: Callable[[], None]) -> ManualTimers:
        self.scheduled.append((delay, call))
        return self

    def cancel(self) -> None:
        self.cancelled += 1
        self.scheduled.clear()

    def fire(self) -> float:
        """Run the one scheduled call; returns the delay it was scheduled with."""
        assert len(self.scheduled) == 1, self.scheduled
        delay, call = self.scheduled.pop()
        call()
        return delay


@pytest.fixture
def timers() -> ManualTimers:
    return ManualTimers()


@pytest.fixture
def store(path: Path, clock: FixedClock, timers: ManualTimers) -> TokenStore:
    """The server's view of the tokens."""
    return TokenStore(ControlFile(path), clock, timer=timers.start)


@pytest.fixture
def cli(path: Path, clock: FixedClock) -> TokenStore:
    """The command line's view of the same file, through its own ControlFile."""
    return TokenStore(ControlFile(path), clock)


def on_disk(path: Path) -> dict:
    return json.loads(path.read_text())


# -- create ---------------------------------------------------------------------------------


def test_create_returns_a_short_url_safe_secret_and_the_token_info(store: TokenStore) -> None:
    secret, info = store.create("entra", created_by="admin")

    assert re.fullmatch(r"pw_[A-Za-z0-9_-]{43}", secret)  # 32 random bytes = 256 bits
    assert len(secret) <= 64
    assert (info.name, info.scope, info.created_by) == ("entra", "read-write", "admin")
    assert (info.created, info.expires, info.last_used, info.revoked) == (
        CREATED,
        None,
        None,
        None,
    )
    assert (info.status, info.read_only) == ("active", False)


def test_every_secret_is_different(store: TokenStore) -> None:
    secrets = {store.create(f"token {n}")[0] for n in range(20)}

    assert len(secrets) == 20


def test_the_secret_is_stored_only_as_its_sha256(store: TokenStore, path: Path) -> None:
    secret, _ = store.create("entra", expires_in_days=30)

    raw = path.read_bytes()
    assert secret.encode() not in raw
    assert secret[3:].encode() not in raw  # not even without its prefix
    assert on_disk(path) == {
        "format": 1,
        "tokens": [
            {
                "name": "entra",
                "hash": hashlib.sha256(secret.encode()).hexdigest(),
                "scope": "read-write",
                "created": "2026-11-26T10:54:52Z",
                "created_by": "cli",
                "expires": "2026-12-26T10:54:52Z",
                "last_used": None,
                "revoked": None,
            }
        ],
    }


@pytest.mark.parametrize(
    "name",
    ["entra", "a", "Entra prod 2026", "svc_entra-01.v2", "x" * 64],
    ids=["word", "one-char", "spaces", "punctuation", "64-chars"],
)
def test_allowed_token_names(store: TokenStore, name: str) -> None:
    assert store.create(name)[1].name == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, " entra", "entra ", "entra/prod", "entra\tprod", "ëntra", "entra\n"],
    ids=["empty", "65-chars", "leading-space", "trailing-space", "slash", "tab", "non-ascii",
         "newline"],
)  # fmt: skip
def test_malformed_token_names_are_refused(store: TokenStore, path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        store.create(name)

    assert not path.exists()


def test_a_name_in_use_by_an_unrevoked_token_is_refused(
    store: TokenStore, clock: FixedClock
) -> None:
    store.create("entra", expires_in_days=1)
    clock.advance(days=2)  # expired, but not revoked

    with pytest.raises(ValueError, match="a token named 'entra' already exists"):
        store.create("entra")


def test_a_revoked_tokens_name_can_be_used_again(store: TokenStore) -> None:
    old_secret, _ = store.create("entra")
    store.revoke("entra")

    new_secret, _ = store.create("entra")

    assert store.verify(new_secret).outcome == "ok"
    assert store.verify(old_secret).outcome == "revoked"


@pytest.mark.parametrize("days", [0, -1, 3651, 3_000_000])
def test_expiry_must_be_from_one_day_to_ten_years(store: TokenStore, days: int) -> None:
    """3,000,000 days lies past the year 9999, which datetime cannot hold."""
    with pytest.raises(ValueError, match="from 1 to 3650"):
        store.create("entra", expires_in_days=days)

    assert store.list() == []


def test_an_expiry_of_ten_years_is_allowed(store: TokenStore) -> None:
    _, info = store.create("entra", expires_in_days=3650)

    assert info.expires is not None


def test_a_read_only_token_has_read_only_scope(store: TokenStore) -> None:
    secret, info = store.create("audit", read_only=True)

    assert (info.scope, info.read_only) == ("read-only", True)
    check = store.verify(secret)
    assert check.outcome == "ok" and check.token is not None and check.token.read_only


# -- verify ---------------------------------------------------------------------------------


def test_the_right_secret_verifies_ok(store: TokenStore) -> None:
    secret, info = store.create("entra")

    assert store.verify(secret) == TokenCheck("ok", info)


def test_a_secret_differing_only_in_its_last_character_is_unknown(store: TokenStore) -> None:
    secret, _ = store.create("entra")
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    assert store.verify(tampered) == TokenCheck("unknown", None)


@pytest.mark.parametrize(
    "presented",
    ["", "pw_", "Bearer", "ünïcödé-sëcret", "x" * 10_000],
    ids=["empty", "prefix-only", "word", "non-ascii", "huge"],
)
def test_other_secrets_are_unknown(store: TokenStore, presented: str) -> None:
    store.create("entra")

    assert store.verify(presented) == TokenCheck("unknown", None)


def test_presenting_the_stored_hash_does_not_authenticate(store: TokenStore, path: Path) -> None:
    store.create("entra")
    stored_hash = on_disk(path)["tokens"][0]["hash"]

    assert store.verify(stored_hash).outcome == "unknown"


def test_a_token_expires_at_its_expiry_time(store: TokenStore, clock: FixedClock) -> None:
    secret, info = store.create("entra", expires_in_days=30)
    assert info.expires == CREATED + timedelta(days=30)

    clock.now = CREATED + timedelta(days=30, seconds=-1)
    assert store.verify(secret).outcome == "ok"

    clock.now = CREATED + timedelta(days=30)
    check = store.verify(secret)
    assert check.outcome == "expired"
    assert check.token is not None and check.token.status == "expired"


def test_verify_on_an_empty_control_file_says_unknown(store: TokenStore, path: Path) -> None:
    assert store.verify("pw_anything").outcome == "unknown"
    assert not path.exists()


# -- revoke and list ------------------------------------------------------------------------


def test_revoke_keeps_the_record_and_later_uses_are_reported_revoked(
    store: TokenStore, clock: FixedClock
) -> None:
    secret, _ = store.create("entra")
    clock.advance(minutes=5)

    revoked = store.revoke("entra")

    assert revoked.revoked == CREATED + timedelta(minutes=5)
    assert revoked.status == "revoked"
    check = store.verify(secret)
    assert check.outcome == "revoked"
    assert check.token is not None and check.token.name == "entra"
    assert [token.status for token in store.list()] == ["revoked"]


@pytest.mark.parametrize("revoke_twice", [False, True], ids=["unknown-name", "already-revoked"])
def test_revoking_without_an_unrevoked_token_of_that_name_raises_key_error(
    store: TokenStore, path: Path, revoke_twice: bool
) -> None:
    store.create("entra")
    if revoke_twice:
        store.revoke("entra")
    before = path.read_bytes()

    with pytest.raises(KeyError, match="no token named"):
        store.revoke("entra" if revoke_twice else "other")

    assert path.read_bytes() == before


def test_list_shows_every_token_newest_first(store: TokenStore, clock: FixedClock) -> None:
    store.create("first")
    clock.advance(hours=1)
    store.create("second", read_only=True)
    store.create("third")  # same second as "second": later in the file counts as newer
    store.revoke("first")

    assert [(token.name, token.status) for token in store.list()] == [
        ("third", "active"),
        ("second", "active"),
        ("first", "revoked"),
    ]


def test_server_and_cli_see_each_others_changes_at_once(store: TokenStore, cli: TokenStore) -> None:
    assert store.verify("pw_unknown").outcome == "unknown"  # the server has read the file

    secret, _ = cli.create("entra")
    assert store.verify(secret).outcome == "ok"

    cli.revoke("entra")
    assert store.verify(secret).outcome == "revoked"

    server_secret, _ = store.create("second")
    assert [token.name for token in cli.list()] == ["second", "entra"]
    assert cli.verify(server_secret).outcome == "ok"


# -- last use -------------------------------------------------------------------------------


def test_last_use_is_saved_at_most_once_a_minute(
    store: TokenStore, path: Path, clock: FixedClock, timers: ManualTimers
) -> None:
    _, entra = store.create("entra")

    def saved_last_use() -> str | None:
        return on_disk(path)["tokens"][0]["last_used"]

    store.record_use(entra)  # the first use is saved at once (on a thread of its own)
    store.wait_for_save()
    assert saved_last_use() == "2026-11-26T10:54:52Z"
    assert not timers.scheduled

    clock.advance(seconds=20)
    store.record_use(entra)
    clock.advance(seconds=39)
    store.record_use(entra)
    store.wait_for_save()
    assert saved_last_use() == "2026-11-26T10:54:52Z"
    assert store.list()[0].last_used == CREATED + timedelta(seconds=59)  # known in memory
    assert len(timers.scheduled) == 1  # one save scheduled for the end of the minute

    clock.advance(seconds=1)
    store.record_use(entra)  # a minute after the last save: saved at once
    store.wait_for_save()
    assert saved_last_use() == "2026-11-26T10:55:52Z"


def test_uses_within_the_minute_reach_the_file_when_it_is_up_without_more_requests(
    store: TokenStore, cli: TokenStore, clock: FixedClock, timers: ManualTimers
) -> None:
    """After one Test Connection and nothing else, ``token list`` is at most a minute behind."""
    _, entra = store.create("entra")
    _, other = store.create("other")
    store.record_use(other)  # saved at once: the minute starts
    store.wait_for_save()
    clock.advance(seconds=15)

    store.record_use(entra)  # Test Connection, then no traffic
    store.wait_for_save()
    assert {t.name: t.last_used for t in cli.list()}["entra"] is None

    clock.advance(seconds=45)
    assert timers.fire() == 45  # the end of the minute the last save started
    store.wait_for_save()

    assert {t.name: t.last_used for t in cli.list()}["entra"] == CREATED + timedelta(seconds=15)
    assert not timers.scheduled


def test_flush_calls_off_the_scheduled_save(
    store: TokenStore, clock: FixedClock, timers: ManualTimers
) -> None:
    _, entra = store.create("entra")
    store.record_use(entra)
    store.wait_for_save()
    clock.advance(seconds=5)
    store.record_use(entra)

    store.flush()

    assert timers.cancelled == 1 and not timers.scheduled


def test_a_new_token_with_a_revoked_ones_name_has_no_use_history(
    store: TokenStore, cli: TokenStore, clock: FixedClock, timers: ManualTimers
) -> None:
    _, other = store.create("other")
    store.record_use(other)  # a save in this minute: the next uses wait for its end
    store.wait_for_save()
    _, old = store.create("rot")
    clock.advance(seconds=5)
    store.record_use(old)
    store.revoke("rot")
    _, new = store.create("rot")

    timers.fire()
    store.wait_for_save()

    for view in (store, cli):
        uses = {t.status: t.last_used for t in view.list() if t.name == "rot"}
        assert uses == {"revoked": CREATED + timedelta(seconds=5), "active": None}


def test_the_request_that_finds_the_minute_up_does_not_wait_for_the_save(
    store: TokenStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save (a file rewritten with two fsyncs) runs on a thread of its own."""
    _, entra = store.create("entra")
    started, release = threading.Event(), threading.Event()
    update = ControlFile.update

    def slow_update(self: ControlFile, change: Callable[[dict], None]) -> dict:
        started.set()
        assert release.wait(10)
        return update(self, change)

    monkeypatch.setattr(ControlFile, "update", slow_update)
    store.record_use(entra)  # returns while the save waits
    assert started.wait(10)
    assert on_disk(path)["tokens"][0]["last_used"] is None
    release.set()
    store.wait_for_save()
    assert on_disk(path)["tokens"][0]["last_used"] == "2026-11-26T10:54:52Z"


def test_flush_saves_uses_not_saved_yet(store: TokenStore, path: Path, clock: FixedClock) -> None:
    _, entra = store.create("entra")
    store.record_use(entra)
    store.wait_for_save()
    clock.advance(seconds=10)
    store.record_use(entra)
    before_flush = path.read_bytes()

    store.flush()
    store.flush()  # nothing pending: no write

    assert on_disk(path)["tokens"][0]["last_used"] == "2026-11-26T10:55:02Z"
    assert before_flush != path.read_bytes()


def test_uses_that_failed_to_save_are_kept_for_the_next_save(
    store: TokenStore,
    path: Path,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, entra = store.create("entra")

    def disk_full(self: ControlFile, change: object) -> dict:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(ControlFile, "update", disk_full)
        store.record_use(entra)  # logged, not raised: the request goes on
        store.wait_for_save()
        with pytest.raises(OSError):
            store.flush()
    assert "could not save token last-use times" in caplog.text
    clock.advance(seconds=5)
    store.flush()

    assert on_disk(path)["tokens"][0]["last_used"] == "2026-11-26T10:54:52Z"


def test_saving_last_use_keeps_a_revocation_made_meanwhile(
    store: TokenStore, cli: TokenStore, path: Path, clock: FixedClock
) -> None:
    secret, entra = store.create("entra")
    store.record_use(entra)
    store.wait_for_save()
    clock.advance(seconds=5)
    store.record_use(entra)  # pending in the server's memory
    cli.revoke("entra")

    store.flush()

    record = on_disk(path)["tokens"][0]
    assert record["revoked"] is not None
    assert record["last_used"] == "2026-11-26T10:54:57Z"  # the use before the revocation
    assert store.verify(secret).outcome == "revoked"


# -- the control file's format --------------------------------------------------------------


def test_a_newer_control_file_format_is_refused(store: TokenStore, path: Path) -> None:
    path.write_text('{"format": 2, "tokens": []}')

    with pytest.raises(DamagedDocument, match=r"format 2 is newer than .* reads \(1\)"):
        store.verify("pw_x")
    with pytest.raises(CorruptStore):
        store.create("entra")
    assert on_disk(path) == {"format": 2, "tokens": []}


# -- User Provisioning switch ---------------------------------------------------------------


def test_provisioning_is_off_on_a_fresh_install(path: Path) -> None:
    switch = ProvisioningSwitch(ControlFile(path))

    assert switch.enabled() is False
    assert switch.status() == {"enabled": False, "changed": None, "changed_by": None}


def test_setting_the_switch_records_who_and_when_for_every_reader(
    path: Path, clock: FixedClock
) -> None:
    admin = ProvisioningSwitch(ControlFile(path), clock)
    server = ProvisioningSwitch(ControlFile(path), clock)

    admin.set(True, by="admin@proware")
    assert server.enabled() is True
    assert server.status() == {
        "enabled": True,
        "changed": "2026-11-26T10:54:52Z",
        "changed_by": "admin@proware",
    }

    clock.advance(minutes=1)
    admin.set(False)
    assert server.status() == {
        "enabled": False,
        "changed": "2026-11-26T10:55:52Z",
        "changed_by": "cli",
    }


def test_setting_the_state_the_switch_is_in_keeps_when_and_by_whom(
    path: Path, clock: FixedClock
) -> None:
    """A second "enable" is not a new start: the status keeps the first one's time and author."""
    switch = ProvisioningSwitch(ControlFile(path), clock)
    switch.set(True, by="admin:alice")

    clock.advance(minutes=5)
    switch.set(True, by="cli")

    assert switch.status() == {
        "enabled": True,
        "changed": "2026-11-26T10:54:52Z",
        "changed_by": "admin:alice",
    }


def test_the_switch_and_the_tokens_share_the_file(store: TokenStore, path: Path) -> None:
    store.create("entra")
    ProvisioningSwitch(ControlFile(path)).set(True)

    document = on_disk(path)
    assert document["format"] == 1
    assert document["provisioning"]["enabled"] is True
    assert [token["name"] for token in document["tokens"]] == ["entra"]
