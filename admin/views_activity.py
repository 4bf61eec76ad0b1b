"""Provisioning activity: the audit log's events, newest first, filtered and paged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from itertools import islice

from flask import Blueprint, render_template, request

from admin import activity, pages
from admin.connection import RequestRecord
from admin.context import AdminContext, context
from scim import constants
from scim.activity import OPERATIONS
from scim.pagination import Page
from scim.service import Query, parse_query_filter

# Control panel actions, recorded next to SCIM events (admin/views_settings.py).
ADMIN_OPERATIONS = (
    "create token",
    "revoke token",
    "enable provisioning",
    "disable provisioning",
    "sign in",
    "sign-in refused",
    "session ended",
    "enable single sign-on",
    "disable single sign-on",
    "enable local sign-in",
    "disable local sign-in",
    "change admin group",
    "reset single sign-on",
)


@dataclass(frozen=True)
class Summary:
    """The strip above the events."""

    users: int
    active: int  # active = true: may sign in (sso_access)
    disabled: int  # active = false
    without_status: int  # no active sent (a client other than Entra or Okta): not active
    groups: int
    last_request: RequestRecord | None
    last_request_token: str | None
    errors_24h: int  # SCIM requests that were refused or failed (counted repeats included)
    sign_in_refusals_24h: int  # control panel sign-ins refused (counted repeats included)


def register(blueprint: Blueprint) -> None:
    """Add the activity route."""
    blueprint.add_url_rule("/activity", "activity", activity_page)


def activity_page() -> str:
    """Events newest first; filter by outcome, operation, token and text."""
    admin = context()
    # Counts of repeated refusals whose window has ended belong on the page now.
    admin.refusals.flush_due()
    args = request.args
    wanted = activity.ActivityFilter(
        outcome=args.get("outcome", "") if args.get("outcome") in activity.OUTCOMES else "",
        operation=args.get("operation", ""),
        token=args.get("token", ""),
        text=args.get("q", "").strip()[:200],
    )
    number = pages.page_number(args.get("page"))
    skip = activity.skippable(wanted, number)
    page = activity.page_of(
        admin.audit.newest_first(wanted.containing(), wanted.preselect(), skip=skip),
        wanted,
        number,
        skipped=skip,
    )
    filters = {
        key: value
        for key, value in {
            "outcome": wanted.outcome,
            "operation": wanted.operation,
            "token": wanted.token,
            "q": wanted.text,
        }.items()
        if value
    }
    return render_template(
        "admin/activity.html",
        summary=summary(admin),
        page=page,
        wanted=wanted,
        filters=filters,
        outcomes=activity.OUTCOMES,
        operations=OPERATIONS + ADMIN_OPERATIONS,
        token_names=sorted({info.name for info in admin.services.tokens.list()}),
        audit_failures=admin.audit.failures,
    )


def summary(admin: AdminContext) -> Summary:
    """Users, active, disabled, groups, the last provisioning request, and in the last 24
    hours the provisioning errors and, apart, the refused control panel sign-ins."""
    directory = admin.services.directory
    repository = admin.services.repository
    users = repository.count(constants.USER_TYPE)

    def count(filter_text: str) -> int:
        query = Query(filter=parse_query_filter(filter_text, 64), page=Page(1, 0))
        return directory.query(constants.USER_TYPE, query, "").total

    # RFC 7643 §4.1.1 gives "active" no default, and Entra and Okta always send it; a user
    # created without it is counted apart, as single sign-on refuses it (sso_access).
    active = count("active eq true")
    disabled = count("active eq false")
    connection = admin.connection.synced()  # with the other server processes' requests
    last = connection.last_request()
    last_token = None
    if last is not None:
        for status in connection.tokens():
            if status.recent and status.recent[0].time == last.time:
                last_token = status.name
                break
    # Only the lines that may count are read: the successes of a busy day are most of them
    # (28,000 events decoded on every visit to this page).
    counted = admin.audit.newest_first(preselect=activity.refusals_and_failures)
    recent = activity.since(counted, admin.clock() - timedelta(hours=24))
    # Repeats still being counted are refusals of the last 10 minutes too: a client refused
    # 50 times in a row showed as 1 until its count was written.
    errors, refusals = admin.refusals.pending_apart()
    for event in recent:
        if activity.from_control_panel(event):
            if event.get("operation") == "sign-in refused":
                refusals += activity.requests_of(event)
        elif activity.outcome(event) != "success":
            errors += activity.requests_of(event)
    return Summary(
        users=users,
        active=active,
        disabled=disabled,
        without_status=users - active - disabled,
        groups=repository.count(constants.GROUP_TYPE),
        last_request=last,
        last_request_token=last_token,
        errors_24h=errors,
        sign_in_refusals_24h=refusals,
    )


def events_about(admin: AdminContext, resource_id: str, limit: int = 20) -> list[dict]:
    """The newest events that name a resource (the directory's detail pages)."""
    return list(islice(admin.audit.newest_first(about=resource_id), limit))
