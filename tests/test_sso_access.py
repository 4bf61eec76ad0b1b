"""Who may use the control panel through single sign-on, and the policy the panel can change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from admin.sso_access import (
    DISABLED,
    NO_GROUP,
    NOT_IN_GROUP,
    NOT_PROVISIONED,
    Attempt,
    Endings,
    Policy,
    SsoState,
    access_by_id,
    access_by_name,
)
from scim.service import INDEXES
from storage.controlfile import ControlFile
from storage.memory import MemoryRepository

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
        ("cy@contoso.example", DISABLED, "disabled"),
        ("dee@contoso.example", DISABLED, "disabled"),
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
