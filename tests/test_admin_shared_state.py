"""The control panel's state that several server processes share through one document.

Two objects over one document stand for two processes: a setup link printed by one works
in the other and only once in all; a sign-out in one holds in the other.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from admin.sessions import RevokedSessions
from admin.setup_link import SetupLinks
from storage.controlfile import ControlFile
from tests.storage_contract import FixedClock

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_a_setup_link_issued_by_one_process_is_redeemed_once_by_any(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    printing = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    serving = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    third = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    secret = printing.issue()

    grant = serving.redeem(secret)

    assert grant is not None
    assert third.redeem(secret) is None  # spent everywhere
    assert printing.grant_valid(grant) and third.grant_valid(grant)
    third.use_grant(grant)
    assert not serving.grant_valid(grant)


def test_an_expired_setup_link_grants_nothing(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    links = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    secret = links.issue()
    clock.advance(hours=2)

    assert links.redeem(secret) is None
    assert links.expires() is None


def test_a_sign_out_in_one_process_holds_in_another(tmp_path: Path) -> None:
    one = RevokedSessions(ControlFile(tmp_path / "sessions.json"), FixedClock(NOW))
    other = RevokedSessions(ControlFile(tmp_path / "sessions.json"), FixedClock(NOW))

    one.revoke("sid-1", NOW + timedelta(hours=12))

    assert other.revoked("sid-1", NOW)
    assert not other.revoked("sid-2", NOW)
    assert not other.revoked("sid-1", NOW + timedelta(hours=13))  # the cookie is dead anyway


def test_expired_sign_outs_are_forgotten(tmp_path: Path) -> None:
    document = ControlFile(tmp_path / "sessions.json")
    revoked = RevokedSessions(document, FixedClock(NOW))
    revoked.revoke("old", NOW - timedelta(minutes=1))
    revoked.revoke("new", NOW + timedelta(hours=1))

    assert set(document.read()["revoked"]) == {"new"}
