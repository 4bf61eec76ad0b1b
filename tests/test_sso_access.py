"""Who may use the control panel through single sign-on, and the policy the panel (or a
changed config.toml) can change."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from admin.settings import SsoSettings
from admin.sso_access import (
    CONFIG_KEYS,
    DISABLED,
    LOCAL,
    NO_GROUP,
    NOT_IN_GROUP,
    NOT_PROVISIONED,
    PROVIDER,
    SSO,
    Attempt,
    ConfigChange,
    Endings,
    Policy,
    SsoState,
    access_by_id,
    access_by_name,
)
from scim.service import INDEXES
from storage.controlfile import ControlFile
from storage.documents import SharedDocument
from storage.memory import MemoryRepository
from storage.postgres.connection import Database
from storage.postgres.documents import PostgresDocument
from tests import pgserver

GROUP = "Proware Admins"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@dataclass
class People:
    """A directory and the ids in it."""

    repository: MemoryRepository
    ids: dict[str, str]
    group_id: str


@pytest.fixture
def people() -> People:
    """Ann (active, admin), Bob (active, not admin), Cy (disabled admin), Dee (no active)."""
    repository = MemoryRepository(INDEXES)
    with repository.transaction() as tx:
        ids = {
            name: tx.insert("User", {"userName": user_name, **extra})["id"]
            for name, user_name, extra in [
                ("ann", "Ann@Contoso.example", {"active": True}),
                ("bob", "bob@contoso.example", {"active": True}),
                ("cy", "cy@contoso.example", {"active": False}),
                ("dee", "dee@contoso.example", {}),
            ]
        }
        group = tx.insert("Group", {"displayName": GROUP})["id"]
        tx.add_members(group, [ids["ann"], ids["cy"], ids["dee"]])
    return People(repository, ids, group)


def test_an_active_member_of_the_admin_group_may_sign_in(people: People) -> None:
    access = access_by_name(people.repository, "ann@contoso.example", GROUP)

    assert access.allowed
    assert access.user_id == people.ids["ann"]
    assert access.user_name == "Ann@Contoso.example"


def test_the_username_and_the_group_name_match_case_insensitively(
    people: People,
) -> None:
    assert access_by_name(people.repository, "ANN@CONTOSO.EXAMPLE", "proware admins").allowed


@pytest.mark.parametrize(
    ("user", "reason", "words"),
    [
        ("nobody@contoso.example", NOT_PROVISIONED, "not a provisioned user"),
        ("cy@contoso.example", DISABLED, "is disabled in Proware's directory (Entra set"),
        ("dee@contoso.example", DISABLED, "is not active in Proware's directory (the provis"),
        ("bob@contoso.example", NOT_IN_GROUP, "not a member of the admin group"),
    ],
)
def test_everyone_else_is_refused_with_a_reason(
    people: People, user: str, reason: str, words: str
) -> None:
    access = access_by_name(people.repository, user, GROUP)

    assert not access.allowed
    assert access.reason == reason
    assert words in access.message


def test_an_admin_group_that_is_not_provisioned_refuses_everyone(
    people: People,
) -> None:
    access = access_by_name(people.repository, "ann@contoso.example", "Other Admins")

    assert (access.allowed, access.reason) == (False, NO_GROUP)
    assert "not a provisioned group" in access.message


def test_access_by_id_follows_deprovisioning(people: People) -> None:
    ann = people.ids["ann"]
    assert access_by_id(people.repository, ann, GROUP).allowed

    with people.repository.transaction() as tx:
        tx.remove_members(people.group_id, [ann])
    assert access_by_id(people.repository, ann, GROUP).reason == NOT_IN_GROUP

    with people.repository.transaction() as tx:
        tx.delete("User", ann)
    assert access_by_id(people.repository, ann, GROUP).reason == NOT_PROVISIONED


# -- the policy the control panel changes --------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> SsoState:
    defaults = Policy(enabled=True, admin_group=GROUP, local_sign_in=True)
    return SsoState(ControlFile(tmp_path / "sso.json"), defaults, lambda: NOW)


def test_without_changes_the_policy_is_the_config_files(state: SsoState) -> None:
    policy = state.policy()

    assert (policy.enabled, policy.admin_group, policy.local_sign_in) == (True, GROUP, True)
    assert policy.overridden == frozenset()
    assert policy.changed is None


def test_a_change_overrides_only_its_key_until_reset(state: SsoState) -> None:
    state.change_policy("admin:ann", local_sign_in=False)

    changed = state.policy()
    assert (changed.enabled, changed.admin_group, changed.local_sign_in) == (True, GROUP, False)
    assert changed.overridden == {"local_sign_in"}
    assert (changed.changed, changed.changed_by) == ("2026-12-04T12:00:00Z", "admin:ann")

    assert state.reset_policy() == state.defaults


def test_a_change_made_elsewhere_is_seen_at_once(tmp_path: Path, state: SsoState) -> None:
    """Another process (or the CLI) changing the file changes this process's policy."""
    other = SsoState(ControlFile(tmp_path / "sso.json"), state.defaults, lambda: NOW)
    assert state.policy().admin_group == GROUP

    other.change_policy("admin:ann", admin_group="Ops")

    assert state.policy().admin_group == "Ops"


def test_only_policy_keys_can_be_changed(state: SsoState) -> None:
    with pytest.raises(ValueError, match="issuer"):
        state.change_policy("admin:ann", issuer="https://elsewhere.example")


def test_the_last_attempt_and_the_last_success_are_kept_apart(state: SsoState) -> None:
    assert state.last_attempt() is None and state.last_success() is None
    state.record(Attempt("2026-12-04T11:00:00Z", "success", user="ann"))
    state.record(Attempt("2026-12-04T11:30:00Z", "refused", reason=DISABLED, message="no"))

    assert state.last_attempt() == Attempt(
        "2026-12-04T11:30:00Z", "refused", reason=DISABLED, message="no"
    )
    assert state.last_success() == Attempt("2026-12-04T11:00:00Z", "success", user="ann")


def test_a_bad_state_does_not_replace_the_attempt_just_before_it(state: SsoState) -> None:
    """The refusal the admin needs (here: not in the admin group) stays the last attempt when
    the browser then reloads the callback; bad states replace one another."""
    refused = Attempt("2026-12-04T11:30:00Z", "refused", reason=NOT_IN_GROUP, message="no")
    state.record(refused)

    state.record(Attempt("2026-12-04T11:30:05Z", "refused", reason="bad-state"), informative=False)

    assert state.last_attempt() == refused


def test_a_bad_state_replaces_an_attempt_older_than_a_pending_sign_in_lives(
    state: SsoState,
) -> None:
    state.record(Attempt("2026-12-04T10:00:00Z", "success", user="ann"))
    first = Attempt("2026-12-04T11:00:00Z", "refused", reason="bad-state", message="1")
    second = Attempt("2026-12-04T11:00:01Z", "refused", reason="bad-state", message="2")

    state.record(first, informative=False)
    assert state.last_attempt() == first
    state.record(second, informative=False)
    assert state.last_attempt() == second
    assert state.last_success() == Attempt("2026-12-04T10:00:00Z", "success", user="ann")


def test_a_change_that_ends_a_kind_of_session_is_remembered_after_it_is_undone(
    state: SsoState,
) -> None:
    assert state.endings() == Endings()
    state.change_policy("admin:ann", admin_group="Ops")  # ends nothing
    assert state.endings() == Endings()

    state.change_policy("admin:ann", local_sign_in=False)
    state.change_policy("cli", local_sign_in=True)
    state.change_policy("admin:ann", enabled=False)
    state.reset_policy()

    assert state.endings() == Endings(local=NOW, sso=NOW)
    assert state.policy() == state.defaults


def test_disabling_sso_ends_nothing_local_and_enabling_it_with_local_off_does(
    tmp_path: Path,
) -> None:
    """Local sign-in is allowed whenever SSO is off, so turning SSO on with local sign-in off
    is what ends the local sessions."""
    defaults = Policy(enabled=False, admin_group=GROUP, local_sign_in=False)
    state = SsoState(ControlFile(tmp_path / "sso.json"), defaults, lambda: NOW)

    state.change_policy("admin:ann", enabled=True)

    assert state.endings() == Endings(local=NOW)


# -- config.toml's [sso] changed between two starts ----------------------------------------

LATER = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
EVEN_LATER = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


def _config(**changes: object) -> dict:
    """[sso] as a server process read it (CONFIG_KEYS)."""
    return {
        "enabled": True,
        "admin_group": GROUP,
        "local_sign_in": True,
        "issuer": "https://login.example/tenant/v2.0",
        "client_id": "proware",
        "configured": True,
        **changes,
    }


def _started(document: SharedDocument, config: dict, now: datetime = NOW) -> SsoState:
    """The SSO state of a server process started with ``config`` at ``now``."""
    defaults = Policy(
        enabled=config["enabled"],
        admin_group=config["admin_group"],
        local_sign_in=config["local_sign_in"],
    )
    return SsoState(document, defaults, lambda: now)


def test_a_start_without_sso_settings_writes_nothing(tmp_path: Path) -> None:
    """No record stands for config.toml without [sso] (a fresh install stays empty)."""
    settings = SsoSettings()
    config = {key: getattr(settings, key) for key in CONFIG_KEYS if key != "configured"}
    document = ControlFile(tmp_path / "sso.json")

    assert (
        _started(document, {**config, "configured": False}).note_config(
            {**config, "configured": False}
        )
        is None
    )

    assert document.read() == {}


def test_the_first_recorded_start_reports_no_change(tmp_path: Path) -> None:
    """Nothing says what an older Proware started with; the sessions its policy refuses
    anyway (here: local ones) end, so that they stay ended if it changes back."""
    document = ControlFile(tmp_path / "sso.json")
    config = _config(local_sign_in=False)

    assert _started(document, config).note_config(config) is None
    stamp = document.stamp()
    assert _started(document, config, LATER).note_config(config) is None

    assert document.read()["config"] == config
    assert document.stamp() == stamp  # the same config again writes nothing
    assert _started(document, config).endings() == Endings(local=NOW)


@pytest.mark.parametrize(
    ("first", "then", "ended"),
    [
        ({}, {"local_sign_in": False}, (LOCAL,)),
        ({}, {"enabled": False}, (SSO,)),
        ({}, {"configured": False}, (SSO,)),  # the secret, issuer or client id went away
        ({}, {"issuer": "https://login.example/other/v2.0"}, (PROVIDER,)),
        ({}, {"client_id": "another-app"}, (PROVIDER,)),
        ({}, {"admin_group": "Ops"}, ()),  # checked again on every request anyway
        ({}, {"enabled": False, "local_sign_in": False}, (SSO,)),  # SSO off: local allowed
        ({"enabled": False}, {"enabled": True}, ()),
        ({"enabled": False, "local_sign_in": False}, {"enabled": True}, (LOCAL,)),
        ({"enabled": False}, {"issuer": "https://login.example/other/v2.0"}, ()),
        ({"local_sign_in": False}, {"local_sign_in": True}, ()),
    ],
    ids=[
        "local-off",
        "sso-off",
        "sso-unconfigured",
        "other-issuer",
        "other-client",
        "other-group",
        "both-off",
        "sso-on",
        "sso-on-with-local-off",
        "issuer-while-off",
        "local-on",
    ],
)
def test_a_config_change_at_start_up_ends_what_the_new_policy_does_not_allow(
    tmp_path: Path, first: dict, then: dict, ended: tuple[str, ...]
) -> None:
    document = ControlFile(tmp_path / "sso.json")
    _started(document, _config(**first)).note_config(_config(**first))

    state = _started(document, _config(**{**first, **then}), LATER)
    change = state.note_config(_config(**{**first, **then}))

    assert change is not None
    assert change.changed == [key for key in CONFIG_KEYS if key in then]
    assert change.ended == ended
    endings = state.endings()
    assert (
        tuple(kind for kind in (LOCAL, SSO, PROVIDER) if getattr(endings, kind) == LATER) == ended
    )
    assert document.read()["config"] == _config(**{**first, **then})


def test_a_config_change_that_a_control_panel_override_hides_ends_nothing(
    tmp_path: Path,
) -> None:
    document = ControlFile(tmp_path / "sso.json")
    first = _started(document, _config())
    first.note_config(_config())
    first.change_policy("admin:ann", local_sign_in=True)

    state = _started(document, _config(local_sign_in=False), LATER)
    change = state.note_config(_config(local_sign_in=False))

    assert change is not None and change.changed == ["local_sign_in"] and change.ended == ()
    assert state.endings() == Endings()
    assert state.policy().local_sign_in is True


def test_an_ending_is_kept_when_the_config_flips_back(tmp_path: Path) -> None:
    document = ControlFile(tmp_path / "sso.json")
    _started(document, _config()).note_config(_config())
    _started(document, _config(enabled=False), LATER).note_config(_config(enabled=False))

    state = _started(document, _config(), EVEN_LATER)
    change = state.note_config(_config())

    assert change is not None and change.ended == ()
    assert state.endings() == Endings(sso=LATER)


def test_processes_starting_with_the_same_config_record_the_change_once(
    tmp_path: Path,
) -> None:
    """A second process (or the supervisor's app before the fork) finds it recorded."""
    _started(ControlFile(tmp_path / "sso.json"), _config()).note_config(_config())
    new = _config(local_sign_in=False)

    changes = [
        _started(ControlFile(tmp_path / "sso.json"), new, now).note_config(new)
        for now in (LATER, EVEN_LATER, EVEN_LATER)
    ]

    assert [change is not None for change in changes] == [True, False, False]
    state = _started(ControlFile(tmp_path / "sso.json"), new)
    assert state.endings() == Endings(local=LATER)


def test_processes_sharing_a_postgresql_database_record_the_change_once() -> None:
    """Server processes starting at the same moment, each with a connection of its own."""
    dsn = pgserver.clean_database()
    databases = [Database(dsn) for _ in range(4)]
    try:
        _started(PostgresDocument(databases[0], "sso.json"), _config()).note_config(_config())
        new = _config(enabled=False)
        states = [_started(PostgresDocument(db, "sso.json"), new, LATER) for db in databases]
        barrier = threading.Barrier(len(states))
        changes: list[ConfigChange | None] = []

        def start(state: SsoState) -> None:
            barrier.wait()
            changes.append(state.note_config(new))

        threads = [threading.Thread(target=start, args=(state,)) for state in states]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert len(changes) == len(states)
        assert [change for change in changes if change is not None] == [
            ConfigChange(_config(), new, (SSO,))
        ]
        assert states[0].endings() == Endings(sso=LATER)
        assert all(state.note_config(new) is None for state in states)  # no flapping
    finally:
        for database in databases:
            database.close()
