"""The sign-in form's brake (admin.throttle): password checks take a bounded share of the CPU."""

from __future__ import annotations

from flask import Flask

from admin.throttle import PasswordChecks
from tests.admin_support import PASSWORD, USERNAME, AdminClient, create_admin


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_admits_until_spent_and_refills_at_its_share() -> None:
    clock = Clock()
    checks = PasswordChecks(share=0.25, burst_seconds=0.5, clock=clock)

    def drain() -> int:
        admitted = 0
        while checks.admit():
            checks.spent(0.125)
            admitted += 1
        return admitted

    assert drain() == 4
    clock.now += 0.5  # refills 0.125 s: one more check
    assert drain() == 1
    clock.now += 3600  # never more than the burst in hand
    assert drain() == 4


def test_a_flood_of_sign_ins_with_new_names_is_braked(app: Flask) -> None:
    """Each unknown name costs a real scrypt check (no account's hash to compare with): with
    16 connections trying new names, a SCIM GET took 1.5-1.7 s instead of a few ms. Past
    the budget, attempts are refused as busy without a check.

    The clock is frozen, so the budget never refills: what the checks took of it is their
    measured CPU time, and once it is spent every attempt is refused, however fast the
    machine (the refill's pace is the first test's)."""
    create_admin(app)
    admin = app.extensions["proware.admin"]
    admin.password_checks = PasswordChecks(burst_seconds=0.05, clock=Clock())
    client = AdminClient(app.test_client())

    statuses = [client.sign_in(username=f"x{n}", password="p" * 14).status_code for n in range(60)]

    checked = statuses.count(401)
    assert 1 <= checked < 60
    assert statuses == [401] * checked + [429] * (60 - checked)
    assert "more sign-in attempts than it checks" in client.sign_in(username="y").get_data(
        as_text=True
    )


def test_an_attempt_refused_as_busy_counts_against_no_account(app: Flask) -> None:
    create_admin(app)
    admin = app.extensions["proware.admin"]
    admin.password_checks = PasswordChecks(share=0.0, burst_seconds=0.0)
    client = AdminClient(app.test_client())

    refused = [client.sign_in(password=f"guess {n}") for n in range(8)]

    assert {response.status_code for response in refused} == {429}
    event = next(admin.audit.newest_first())
    assert (event["operation"], event["reason"], event["name"]) == (
        "sign-in refused",
        "busy",
        USERNAME,
    )
    admin.password_checks = PasswordChecks()
    assert client.sign_in(username=USERNAME, password=PASSWORD).status_code == 302
