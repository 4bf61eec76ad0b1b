"""Repeated refusals: a client's first in the activity log in full, its repeats as one count.

The digest alone with a hand-turned clock, then the app over Flask's test client: many
refused SCIM requests and sign-ins grow the log by a bounded number of events, the counts add
up exactly, and the Connection status still counts every request.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from admin import activity, views_activity
from admin.refusals import RefusalDigest
from tests.admin_support import USERNAME, create_admin, csrf_of
from tests.conftest import PREFIX

START = datetime(2026, 12, 7, 18, 10, 21, tzinfo=UTC)
WINDOW = timedelta(minutes=10)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def refusal(client: str = "203.0.113.9", reason: str = "unknown-token", **fields) -> dict:
    return {
        "time": "t",
        "client": client,
        "operation": "refused",
        "reason": reason,
        "status": 401,
        "token": None,
        "path": "/scim/v2/Users",
        **fields,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def written() -> list[dict]:
    return []


@pytest.fixture
def digest(clock: Clock) -> RefusalDigest:
    return RefusalDigest(clock=clock, window=WINDOW, max_kinds=3)


def test_the_first_refusal_is_written_in_full_and_its_repeats_only_counted(
    digest: RefusalDigest, clock: Clock, written: list[dict]
) -> None:
    first = refusal(request_id="abc", detail="the bearer token is not known")
    digest.offer(first, written.append)
    for _ in range(37):
        clock.advance(seconds=10)
        digest.offer(refusal(request_id="def"), written.append)

    assert written == [first]
    assert digest.pending() == 37


def test_a_single_repeat_is_one_more_request_not_requests(
    digest: RefusalDigest, clock: Clock, written: list[dict]
) -> None:
    digest.offer(refusal(), written.append)
    clock.advance(seconds=1)
    digest.offer(refusal(), written.append)
    clock.advance(minutes=15)

    digest.offer(refusal(), written.append)

    assert written[1]["repeated"] == 1
    assert written[1]["detail"].startswith("1 more request refused from 203.0.113.9 ")


def test_the_count_is_written_when_the_client_shows_up_after_its_window(
    digest: RefusalDigest, clock: Clock, written: list[dict]
) -> None:
    """Then the new refusal is a first again, written in full after the count."""
    digest.offer(refusal(), written.append)
    clock.advance(seconds=1)
    for _ in range(37):
        digest.offer(refusal(), written.append)
    clock.advance(minutes=15)

    digest.offer(refusal(request_id="again"), written.append)

    _, count, again = written
    assert count == {
        "operation": "refused",
        "client": "203.0.113.9",
        "reason": "unknown-token",
        "status": 401,
        "token": None,
        "time": "2026-12-07T18:25:22+00:00",
        "request_id": None,
        "repeated": 37,
        "first": "2026-12-07T18:10:21+00:00",
        "last": "2026-12-07T18:10:22+00:00",
        "detail": "37 more requests refused from 203.0.113.9 (unknown token) between "
        "18:10:21 and 18:10:22 UTC, counted rather than logged one by one",
    }
    assert again["request_id"] == "again"
    assert digest.pending() == 0


def test_a_window_ended_by_anothers_refusal_or_flush_due_is_written(
    digest: RefusalDigest, clock: Clock, written: list[dict]
) -> None:
    digest.offer(refusal("198.51.100.1"), written.append)
    digest.offer(refusal("198.51.100.1"), written.append)
    clock.advance(minutes=5)
    digest.offer(refusal("198.51.100.2"), written.append)
    digest.offer(refusal("198.51.100.2"), written.append)
    assert digest.flush_due() == 0

    clock.advance(minutes=5)
    digest.offer(refusal("198.51.100.3"), written.append)  # ends the first window
    clock.advance(minutes=5)
    assert digest.flush_due() == 1  # the second

    assert [(e["client"], e.get("repeated")) for e in written] == [
        ("198.51.100.1", None),
        ("198.51.100.2", None),
        ("198.51.100.1", 1),
        ("198.51.100.3", None),
        ("198.51.100.2", 1),
    ]


def test_kinds_differ_by_reason_token_and_status(clock: Clock, written: list[dict]) -> None:
    digest = RefusalDigest(clock=clock, window=WINDOW)
    for _ in range(2):
        digest.offer(refusal(), written.append)
        digest.offer(refusal(reason="no-header"), written.append)
        digest.offer(refusal(reason="revoked-token", token="old"), written.append)
        digest.offer(refusal(reason="revoked-token", token="older"), written.append)
        digest.offer(refusal(status=413), written.append)

    assert len(written) == 5
    digest.close()
    details = [e["detail"] for e in written[5:]]
    assert "1 more request refused from 203.0.113.9 (revoked token, token 'old') " in details[2]


def test_an_odd_value_in_a_key_field_is_counted_by_its_text(
    digest: RefusalDigest, written: list[dict]
) -> None:
    """A list where a name belongs (no writer sends one) neither raises nor escapes counting."""
    for _ in range(3):
        digest.offer(refusal(name=["ann", "bob"]), written.append)

    assert len(written) == 1
    assert digest.pending() == 2


def test_kinds_beyond_the_cap_are_folded_into_one_count(
    digest: RefusalDigest, clock: Clock, written: list[dict]
) -> None:
    """An attacker rotating addresses grows neither memory nor the log: past max_kinds (3)
    every further refusal goes into one count per operation, written when its window ends."""
    for number in range(1000):
        reason = "no-header" if number % 4 else "unknown-token"
        digest.offer(refusal(f"2001:db8::{number:x}", reason), written.append)
    assert len(written) == 3
    assert digest.pending() == 997

    clock.advance(minutes=10)
    digest.flush_due()

    [folded] = written[3:]
    assert folded["repeated"] == 997
    assert folded["reasons"] == {"no-header": 748, "unknown-token": 249}
    assert (folded["operation"], folded["reason"], folded["client"]) == (
        "refused",
        "many-clients",
        None,
    )
    assert folded["detail"] == (
        "997 requests refused from clients beyond the 3 counted one by one (no header 748, "
        "unknown token 249) between 18:10:21 and 18:10:21 UTC; none of them was logged on "
        "its own"
    )
    assert activity.outcome(folded) == "refused"


def test_close_writes_every_count_and_then_every_refusal(
    digest: RefusalDigest, clock: Clock, written: list[dict]
) -> None:
    for number in range(10):
        digest.offer(refusal(f"192.0.2.{number % 5}"), written.append)
    digest.close()
    digest.offer(refusal("192.0.2.1"), written.append)
    digest.offer(refusal("192.0.2.1"), written.append)

    assert sum(activity.requests_of(event) for event in written) == 12
    # Clients .0-.2 fill the cap (3 in full, then a count each); .3 and .4 are folded.
    assert [e.get("repeated") for e in written] == [None] * 3 + [1, 1, 1, 4] + [None] * 2
    assert digest.pending() == 0


def test_serving_writes_a_count_when_its_window_ends_without_more_traffic(
    clock: Clock, written: list[dict]
) -> None:
    """The thread sleeps until the window ends by the digest's clock. Moved by hand: on the
    wall clock a pause of 0.2 s between the two refusals (a busy machine) ended the window
    before the second, which then opened a window of its own instead of being counted."""
    digest = RefusalDigest(clock=clock, window=timedelta(seconds=0.2))
    arrived = threading.Event()

    def write(event: dict) -> None:
        written.append(event)
        if event.get("repeated"):
            arrived.set()

    digest.write_on_time()
    digest.offer(refusal(), write)
    digest.offer(refusal(), write)
    assert [e.get("repeated") for e in written] == [None]  # the window has not ended
    clock.advance(seconds=0.2)

    assert arrived.wait(timeout=30), "no count was written after the window"
    assert [e.get("repeated") for e in written] == [None, 1]
    deadline = time.monotonic() + 30
    while any(t.name == "proware-refusal-counts" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the thread outlived what it had to count"
        time.sleep(0.01)
    digest.close()


# -- the app --------------------------------------------------------------------------------

REQUESTS = 600
ADDRESSES = [f"203.0.113.{n}" for n in range(1, 4)]


def _log(app: Flask) -> list[dict]:
    return list(app.extensions["proware.admin"].audit.newest_first())


def test_many_refused_requests_grow_the_log_by_a_bounded_number_of_events(
    app: Flask, client: FlaskClient, token: str
) -> None:
    """600 refusals from three addresses and three reasons: nine events in full, nine counts
    at the stop, 600 requests between them; the Connection status counts every one; an
    authenticated refusal (read-only token writing) is written every time, as before."""
    services = app.extensions["proware"]
    services.tokens.revoke("entra")
    reader, _ = services.tokens.create("reader", read_only=True)
    before = len(_log(app))
    headers = [{}, {"Authorization": "Bearer pw_guess"}, {"Authorization": f"Bearer {token}"}]
    for number in range(REQUESTS):
        response = client.get(
            f"{PREFIX}/Users",
            headers=headers[number % 3],
            environ_base={"REMOTE_ADDR": ADDRESSES[number // 3 % 3]},
        )
        assert response.status_code == 401
    for _ in range(3):
        response = client.post(
            f"{PREFIX}/Groups", headers={"Authorization": f"Bearer {reader}"}, json={}
        )
        assert response.status_code == 403

    assert len(_log(app)) - before == 9 + 3
    app.extensions["proware.admin"].refusals.close()  # as the server does when it stops

    events = _log(app)[: -before or None]
    refused = [e for e in events if e.get("reason") != "read-only-token"]
    assert len(refused) == 18
    assert sum(activity.requests_of(e) for e in refused) == REQUESTS
    assert sorted({(e["client"], e["reason"]) for e in refused if e.get("repeated")}) == sorted(
        (address, reason)
        for address in ADDRESSES
        for reason in ("no-header", "unknown-token", "revoked-token")
    )
    assert [e["token"] for e in events if e.get("reason") == "read-only-token"] == ["reader"] * 3
    assert token not in str(events) and "pw_guess" not in str(events)
    status = app.extensions["proware.admin"].connection.synced()
    counted = sum(r.count for s in status.tokens() for r in s.refusals)
    assert counted == REQUESTS + 3


def test_the_activity_summary_counts_every_refused_request(app: Flask, client: FlaskClient) -> None:
    """The strip's "refused or failed in 24 hours" adds up the counts; the page writes the
    counts whose window has ended before it reads the log."""
    admin = app.extensions["proware.admin"]
    create_admin(app)
    for _ in range(50):
        client.get(f"{PREFIX}/Users", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    admin.refusals.clock = lambda: datetime.now(UTC) + WINDOW + timedelta(seconds=1)

    with app.test_request_context():
        admin.refusals.flush_due()
        summary = views_activity.summary(admin)

    assert len(_log(app)) == 2
    assert summary.errors_24h == 50


def test_the_summary_counts_the_refusals_still_being_counted(
    app: Flask, client: FlaskClient
) -> None:
    """A client refused 50 times showed as 1 in the strip until its count was written, up
    to 10 minutes later; sign-ins refused meanwhile stay apart."""
    admin = app.extensions["proware.admin"]
    create_admin(app)
    for _ in range(50):
        client.get(f"{PREFIX}/Users", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    csrf = csrf_of(client.get("/admin/sign-in"))
    for _ in range(3):
        client.post(
            "/admin/sign-in",
            data={"username": "mallory", "password": "wrong password!", "csrf_token": csrf},
        )

    with app.test_request_context():
        summary = views_activity.summary(admin)

    assert len(_log(app)) == 2  # the first of each; the repeats are still counted
    assert (summary.errors_24h, summary.sign_in_refusals_24h) == (50, 3)


def test_repeated_failed_sign_ins_are_counted_and_the_strip_adds_them_up(
    app: Flask, client: FlaskClient
) -> None:
    admin = app.extensions["proware.admin"]
    create_admin(app)
    csrf = csrf_of(client.get("/admin/sign-in"))
    for _ in range(40):
        response = client.post(
            "/admin/sign-in",
            data={"username": USERNAME, "password": "wrong password!", "csrf_token": csrf},
            environ_base={"REMOTE_ADDR": "198.51.100.66"},
        )
        assert response.status_code in (401, 429)
    admin.refusals.close()

    events = _log(app)
    assert {e["operation"] for e in events} == {"sign-in refused"}
    assert len(events) == 4  # wrong password and locked: the first of each, and a count each
    assert sum(activity.requests_of(e) for e in events) == 40
    with app.test_request_context():
        assert views_activity.summary(admin).sign_in_refusals_24h == 40
    [count] = [e for e in events if e.get("repeated") and e["reason"] == "locked"]
    assert count["source"] == "password" and count["name"] == USERNAME
    assert f"from 198.51.100.66 (locked, username {USERNAME!r})" in count["detail"]
