"""Sign-in, sign-out and the first-run setup pages."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from admin import sessions
from admin.accounts import (
    MIN_DISTINCT_CHARACTERS,
    MIN_PASSWORD_LENGTH,
    check_password,
    check_username,
)
from admin.activity import printable
from admin.context import PATH, context
from admin.setup_link import LinkCheck
from storage.wording import counted

log = logging.getLogger("proware.admin")

# What the setup page says of a password (admin.accounts.check_password enforces it).
_PASSWORD_RULE = {"min_length": MIN_PASSWORD_LENGTH, "min_distinct": MIN_DISTINCT_CHARACTERS}


def register(blueprint: Blueprint) -> None:
    """Add the sign-in, sign-out and setup routes."""
    blueprint.add_url_rule("/sign-in", "sign_in", sign_in, methods=["GET", "POST"])
    blueprint.add_url_rule("/sign-out", "sign_out", sign_out, methods=["POST"])
    blueprint.add_url_rule("/setup/<secret>", "setup", setup, methods=["GET", "POST"])
    blueprint.add_url_rule("/setup", "setup_missing", setup_missing)


def to_sign_in(ended: str | None) -> Response:
    """Redirect to the sign-in page, saying why the session ended (if it did)."""
    if ended:
        flash(sessions.ended_message(ended, context().session_policy), "info")
    target = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("admin.sign_in", next=target))  # type: ignore[return-value]


def sign_in() -> Response | str:
    """GET: the form. POST: check the password, lock after repeated failures."""
    admin = context()
    target = safe_next(request.values.get("next"))
    if request.method != "POST":  # GET, and HEAD (Flask routes it here too)
        username, _ = admin.current_admin()
        if username is not None:
            return redirect(target)  # type: ignore[return-value]
        return sign_in_page(next=target)
    if not admin.sso.local_allowed():
        return sign_in_page(
            next=target,
            error="Local sign-in is turned off on this server: sign in with Microsoft.",
            status=403,
        )
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    if not username.isprintable():
        # No account has such a name (admin.accounts allows none); recorded escaped, so the
        # activity log and `activity tail` never carry a terminal escape or a forged line.
        log.warning("sign-in refused for a name with control characters %r", username)
        admin.note_refused_sign_in(
            status=400,
            name=printable(username)[:200],
            reason="unprintable-username",
            source="password",
        )
        return sign_in_page(
            next=target,
            error="A username has no control characters or invisible formatting characters: "
            "type it again.",
            status=400,
        )
    if not admin.password_checks.admit():
        # Not checked, so not counted against the name: a flood of attempts gets this
        # instead of taking the CPU that SCIM requests need (admin.throttle).
        log.warning(
            "sign-in refused from %s: more attempts than this server checks", request.remote_addr
        )
        admin.note_refused_sign_in(status=429, name=username[:64], reason="busy", source="password")
        return sign_in_page(
            next=target,
            error="This server is receiving more sign-in attempts than it checks: wait a few "
            "seconds and sign in again.",
            username=username,
            status=429,
        )
    cpu = time.thread_time()
    verdict = admin.accounts.sign_in(username, password)
    admin.password_checks.spent(time.thread_time() - cpu)
    if verdict.outcome == "ok" and verdict.account is not None:
        sessions.start(verdict.account, admin.clock())
        log.info("admin %s signed in from %s", verdict.account.username, request.remote_addr)
        name = verdict.account.username
        admin.note("sign in", admin=name, name=name, source="password")
        return redirect(target)  # type: ignore[return-value]
    if verdict.outcome == "locked" and verdict.locked_until is not None:
        minutes = max(1, round((verdict.locked_until - admin.clock()).total_seconds() / 60))
        log.warning("sign-in refused for locked account %r from %s", username, request.remote_addr)
        error = (
            f"Too many failed sign-ins: this account is locked until "
            f"{verdict.locked_until:%H:%M} UTC (about {counted(minutes, 'minute')}). Try again "
            f"then, or reset the password on the server: python app.py admin reset-password NAME"
        )
        status = 429
    else:
        log.warning("failed sign-in for %r from %s", username, request.remote_addr)
        error = "Wrong username or password."
        status = 401
    admin.note_refused_sign_in(
        status=status,
        name=username[:64],
        reason="locked" if status == 429 else "wrong-password",
        source="password",
    )
    return sign_in_page(next=target, error=error, username=username, status=status)


def sign_in_page(*, status: int = 200, next: str | None = None, **fields: object) -> Response:
    """The sign-in page: "Sign in with Microsoft" when single sign-on is on, the password form
    while local sign-in is allowed; ``fields`` fill in errors and the typed username.

    With no local account, the page says how to make the first one: as the first step
    while single sign-on is off, and as a note for the server's administrator while it is
    on (there no local account is usual, and everyone signing out would read it)."""
    admin = context()
    target = next if next is not None else safe_next(request.values.get("next"))
    body = render_template(
        "admin/sign_in.html",
        next=target,
        first_run=not admin.accounts.any() and admin.sso.local_allowed(),
        sso_enabled=admin.sso.enabled(),
        local_allowed=admin.sso.local_allowed(),
        **fields,
    )
    return Response(body, status=status, mimetype="text/html")


def sign_out() -> Response:
    """End the session (its cookie stops working even if replayed)."""
    admin = context()
    sessions.end(admin.revoked, admin.session_policy, admin.clock())
    flash("You have signed out.", "info")
    return redirect(url_for("admin.sign_in"))  # type: ignore[return-value]


def setup_missing() -> Response:
    """``/admin/setup`` without the link's secret: say where the link comes from."""
    return _setup_refused(LinkCheck("unknown"))


def setup(secret: str) -> Response | str:
    """The printed one-time link. GET: the form, nothing spent (a chat app's or mail
    scanner's preview may be asking). POST: spend the link and create the first admin."""
    admin = context()
    if admin.accounts.any():
        return _setup_refused(LinkCheck("used"))
    if request.method != "POST":  # GET, and HEAD (Flask routes it here too)
        found = admin.setup.check(secret)
        if found.state != "valid":
            return _setup_refused(found)
        return _setup_form(secret, "admin")
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    try:
        if password != request.form.get("confirm", ""):
            raise ValueError("the two passwords differ")
        check_username(username)
        check_password(password, username)
    except ValueError as exc:  # checked before the link is spent: a typo keeps it
        found = admin.setup.check(secret)
        if found.state != "valid":
            return _setup_refused(found)
        return _setup_form(secret, username, error=str(exc).capitalize() + ".", status=400)
    found = admin.setup.use(secret)  # from here on, no other request can use it
    if found.state != "valid":
        return _setup_refused(found)
    try:
        admin.accounts.create(username, password, created_by="setup")
    except Exception as exc:
        admin.setup.give_back(secret)  # the link works again (unless this write fails too)
        if not isinstance(exc, ValueError):  # a storage failure: the app's error page says it
            raise
        # The name was taken meanwhile (python app.py admin create).
        return _setup_form(secret, username, error=str(exc).capitalize() + ".", status=400)
    log.info("first admin %s created through the setup link", username)
    flash(f"Admin account {username!r} created. Sign in with your new password.", "success")
    return redirect(url_for("admin.sign_in"))  # type: ignore[return-value]


_REFUSED_HEADINGS = {
    "used": "This setup link has been used",
    "expired": "This setup link has expired",
    "unknown": "This setup link is not valid",
}


def _setup_form(
    secret: str, username: str, *, error: str | None = None, status: int = 200
) -> Response:
    body = render_template(
        "admin/setup.html", secret=secret, username=username, error=error, **_PASSWORD_RULE
    )
    return Response(body, status=status, mimetype="text/html")


def _setup_refused(found: LinkCheck) -> Response:
    """The page for a link that cannot set anything up: used (or an admin exists), expired,
    or unknown; each says what to do instead."""
    body = render_template(
        "admin/setup_invalid.html",
        heading=_REFUSED_HEADINGS[found.state],
        state=found.state,
        when=found.when,
        minutes=context().setup.minutes,
    )
    return Response(body, status=404 if found.state == "unknown" else 410, mimetype="text/html")


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only a control panel path of this site (no open redirect),
    without control or invisible characters (a decoded ``%0A`` cannot go in a Location
    header, and a path a person cannot read is no place to send them), and not back into
    signing in: the sign-in pages, or single sign-on's start and callback (landing a new
    session on the callback refuses it as a bad state and records that over the sign-in)."""
    if (
        target
        and (target == PATH or target.startswith(PATH + "/"))
        and "\\" not in target
        and target.isprintable()
        and not target.startswith((f"{PATH}/sign-", f"{PATH}/sso/"))
    ):
        return target
    return url_for("admin.home")
