"""The control panel's state that several server processes share through one document.

Two objects over one document stand for two processes: a setup link printed by one works
in the other and only once in all; a sign-out in one holds in the other.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from admin.sessions import RevokedSessions
from admin.setup_link import EARLIER_KEPT, LINK_LIFETIME, LinkCheck, SetupLinks
from storage.controlfile import ControlFile
from tests.storage_contract import FixedClock

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def test_a_setup_link_issued_by_one_process_is_used_once_by_any(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    printing = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    serving = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    third = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    secret = printing.issue()

    assert third.check(secret) == LinkCheck("valid", NOW + LINK_LIFETIME)
    assert serving.use(secret).state == "valid"  # this process holds it now

    assert third.use(secret) == LinkCheck("used", NOW)  # spent everywhere
    assert printing.check(secret).state == "used"


def test_links_printed_by_several_starts_work_until_one_is_used(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    one = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    other = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    first = one.issue(keep_earlier=True)
    clock.advance(minutes=10)
    second = other.issue(keep_earlier=True)

    assert one.check(first) == LinkCheck("valid", NOW + LINK_LIFETIME)
    assert one.use(second).state == "valid"
    assert other.use(first).state == "unknown"  # spent with the other: one first admin


def test_setup_link_command_ends_the_links_starts_printed(tmp_path: Path) -> None:
    """``python app.py admin setup-link``: the way to end a link that leaked."""
    links = SetupLinks(ControlFile(tmp_path / "setup.json"), FixedClock(NOW))
    leaked = links.issue(keep_earlier=True)
    links.issue(keep_earlier=True)
    newest = links.issue()
    assert links.check(leaked).state == "unknown"
    assert links.check(newest).state == "valid"


def test_starts_keep_only_unexpired_links_and_a_few(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    document = ControlFile(tmp_path / "setup.json")
    links = SetupLinks(document, clock)
    oldest = links.issue(keep_earlier=True)
    clock.advance(minutes=50)
    kept = [links.issue(keep_earlier=True) for _ in range(EARLIER_KEPT + 3)]
    clock.advance(minutes=15)  # the oldest has expired
    links.issue(keep_earlier=True)

    assert len(document.read()["earlier"]) == EARLIER_KEPT
    assert links.check(oldest).state == "unknown"
    assert links.check(kept[-1]).state == "valid"
    assert links.check(kept[0]).state == "unknown"  # beyond the few kept


def test_of_setup_posts_racing_in_several_threads_one_gets_the_link(tmp_path: Path) -> None:
    secret = SetupLinks(ControlFile(tmp_path / "setup.json"), FixedClock(NOW)).issue()
    processes = [SetupLinks(ControlFile(tmp_path / "setup.json"), FixedClock(NOW)) for _ in "1234"]
    start = threading.Barrier(len(processes))
    states: list[str] = []

    def post(links: SetupLinks) -> None:
        start.wait()
        states.append(links.use(secret).state)

    threads = [threading.Thread(target=post, args=(links,)) for links in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(states) == ["used", "used", "used", "valid"]


def test_a_link_given_back_works_again_unless_a_newer_one_was_issued(tmp_path: Path) -> None:
    links = SetupLinks(ControlFile(tmp_path / "setup.json"), FixedClock(NOW))
    secret = links.issue()
    links.use(secret)
    links.give_back(secret)  # creating the admin failed
    assert links.check(secret).state == "valid"

    links.use(secret)
    newer = links.issue()
    links.give_back(secret)
    assert links.check(secret).state == "unknown"
    assert links.check(newer).state == "valid"


def test_an_expired_setup_link_is_not_spent(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    links = SetupLinks(ControlFile(tmp_path / "setup.json"), clock)
    secret = links.issue()
    clock.advance(hours=2)

    assert links.use(secret) == LinkCheck("expired", NOW + LINK_LIFETIME)
    assert links.check("a guess") == LinkCheck("unknown")


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
