"""Control panel sessions: the signing secret, the cookie's flags, idle timeout and sign-out.

The session is Flask's signed cookie. Its secret is generated on first start and kept by the
storage backend (``<data>/session.key``, mode 0600, or the database), never a built-in
default, so sessions survive a restart, every server process accepts them, and nobody can
forge one without the data. The cookie is HttpOnly, SameSite=Lax,
limited to ``/admin``, and Secure whenever the request came over https (directly, or through
a trusted proxy whose X-Forwarded-Proto waitress applied).

What the cookie holds: the admin's name, a random session id, when the session started and
when it was last used, and the CSRF token; for a local account its ``password_changed`` stamp
(a password reset signs every session out), for a single sign-on its directory user id,
whose access is checked again on every request (:mod:`admin.sso_access`). When it started
decides whether turning local sign-in off, or single sign-on off, or (in config.toml) moving
to another identity provider ended it (those moments are kept with the SSO policy, so a
session stays ended when the policy flips back).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from admin import csrf
from admin.accounts import AdminAccount, AdminAccounts
from admin.sso_access import Access, Endings
from storage.documents import SharedDocument
from storage.repository import Clock
from storage.shapes import MOMENT, DocumentShape, map_of, nullable

log = logging.getLogger("proware.admin")

KEY_FILE = "session.key"  # the backend's secret of that name signs the cookies
REVOKED_FILE = "sessions.json"  # the shared document of signed-out sessions
COOKIE_NAME = "proware_admin"


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lasts: ``idle`` without a request, ``max_age`` in all."""

    idle: timedelta = timedelta(minutes=30)
    max_age: timedelta = timedelta(hours=12)


# Why a session ended, as told on the sign-in page.
ENDED = {
    "idle": "You were signed out after {idle} minutes without activity. Sign in again.",
    "expired": "Your session lasted {hours} hours and has ended. Sign in again.",
    "password": "The password of this account was changed. Sign in with the new one.",
    "gone": "This admin account no longer exists.",
    "signed-out": "This session was signed out. Sign in again.",
    "local-off": "Local sign-in is turned off: sign in with Microsoft.",
    "sso-off": "Single sign-on is turned off. Sign in with a local account.",
    "local-was-off": "Your session ended when local sign-in was turned off. Sign in again.",
    "sso-was-off": "Your session ended when single sign-on was turned off. Sign in again.",
    "provider-changed": "Your session ended when the server was set up with another identity "
    "provider (issuer or client id). Sign in again.",
    "not-provisioned": "You were signed out: your account is no longer provisioned in "
    "Proware (Entra removed it).",
    "disabled": "You were signed out: Entra disabled your account.",
    "not-in-admin-group": "You were signed out: you are no longer a member of the admin group.",
    "no-admin-group": "You were signed out: the admin group is no longer in Proware's directory.",
}

# Reasons that come from the directory: provisioning ended a single sign-on session.
DEPROVISIONED = frozenset({"not-provisioned", "disabled", "not-in-admin-group", "no-admin-group"})

# Checks a single sign-on session's directory user: may it stay, and its userName now.
SsoCheck = Callable[[str], Access]


class _AdminSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions for the control panel, with Secure decided per request.

    Only the control panel has sessions: the cookie is limited to its path, and every other
    request (SCIM, health) gets Flask's null session without reading a cookie. Building the
    signer for each SCIM request was about 3 % of the server's time under Entra's load.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith(self.get_cookie_path(app)):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:  # type: ignore[override]
        # Called while saving the session, inside the request: over https the cookie must
        # never travel over plain http again; over plain http (a laptop demo) Secure would
        # make the browser drop it.
        return request.is_secure


def configure(app: Flask, secret_key: bytes, path: str) -> None:
    """Give ``app`` the session signing key and the admin cookie's flags."""
    app.secret_key = secret_key
    app.session_interface = _AdminSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH=path,
    )


# Session id -> when its cookie would have expired anyway (checked once a version:
# storage.shapes).
SHAPE = DocumentShape(optional={"revoked": nullable(map_of(MOMENT))})


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RevokedSessions:
    """Session ids signed out before their cookie would expire, in a shared document, so
    that a sign-out holds in every server process (entries go once the cookie would have
    expired anyway)."""

    def __init__(self, document: SharedDocument, clock: Clock = _utcnow) -> None:
        self.document = document
        document.declare(SHAPE)
        self.clock = clock

    def revoke(self, session_id: str, useless_after: datetime) -> None:
        """Refuse ``session_id`` from now on."""
        now = self.clock()

        def add(document: dict) -> None:
            kept = {
                sid: until
                for sid, until in (document.get("revoked") or {}).items()
                if datetime.fromisoformat(until) > now
            }
            kept[session_id] = useless_after.isoformat()
            document["revoked"] = kept

        self.document.update(add)

    def revoked(self, session_id: str, now: datetime) -> bool:
        """Whether ``session_id`` was signed out (and its cookie could still be valid)."""
        until = self.document.derived(_revocations).get(session_id)
        return until is not None and until > now


def _revocations(document: dict) -> dict[str, datetime]:
    return {
        sid: datetime.fromisoformat(until) for sid, until in (document.get("revoked") or {}).items()
    }


def start(account: AdminAccount, now: datetime) -> None:
    """Begin a signed-in session of a local account: a new id and CSRF token (no fixation)."""
    _start(account.username, now)
    session["auth"] = account.password_changed


def start_sso(user_name: str, user_id: str, now: datetime) -> None:
    """Begin a signed-in session of the directory user ``user_id`` (single sign-on)."""
    _start(user_name, now)
    session["sso"] = user_id


def is_sso() -> bool:
    """Whether the current session came from single sign-on."""
    return isinstance(session.get("sso"), str)


def _start(name: str, now: datetime) -> None:
    session.clear()
    session["admin"] = name
    session["sid"] = secrets.token_urlsafe(16)
    session["started"] = now.timestamp()
    session["seen"] = now.timestamp()
    csrf.issue()


def end(revoked: RevokedSessions, policy: SessionPolicy, now: datetime) -> None:
    """Sign out: forget the cookie's content and refuse its id if it is replayed."""
    session_id = session.get("sid")
    if session_id:
        started = datetime.fromtimestamp(session.get("started", now.timestamp()), now.tzinfo)
        revoked.revoke(session_id, started + policy.max_age)
    session.clear()


def current_admin(
    accounts: AdminAccounts,
    revoked: RevokedSessions,
    policy: SessionPolicy,
    now: datetime,
    *,
    sso: SsoCheck | None = None,
    local_allowed: bool = True,
    endings: Endings | None = None,
) -> tuple[str | None, str | None]:
    """``(username, None)`` for a live session, else ``(None, why it ended or None)``.

    A live session's last-use time moves to ``now``; a single sign-on session takes the
    ``userName`` its directory user has now (Entra renamed them: same id, new UPN), so that
    the page and the activity log name them as the directory does.

    :param sso: checks a single sign-on session's user; None while single sign-on is off
        (its sessions then end).
    :param local_allowed: whether sessions of local accounts may go on.
    :param endings: when turning local sign-in off or single sign-on off, or another identity
        provider, last ended every session of its kind: one that started before stays ended
        once it is back on.
    """
    username = session.get("admin")
    if not username:
        return None, None
    reason = _ended(accounts, revoked, policy, now, sso, local_allowed, endings or Endings())
    if reason is not None:
        session.clear()
        return None, reason
    session["seen"] = now.timestamp()
    return str(session["admin"]), None


def ended_message(reason: str, policy: SessionPolicy) -> str:
    """The sentence the sign-in page shows for ``reason``."""
    template = ENDED.get(reason, ENDED["signed-out"])
    return template.format(
        idle=int(policy.idle.total_seconds() // 60),
        hours=int(policy.max_age.total_seconds() // 3600),
    )


def _ended(
    accounts: AdminAccounts,
    revoked: RevokedSessions,
    policy: SessionPolicy,
    now: datetime,
    sso: SsoCheck | None,
    local_allowed: bool,
    endings: Endings,
) -> str | None:
    stamp = now.timestamp()
    started = float(session.get("started", 0))
    if stamp - float(session.get("seen", 0)) > policy.idle.total_seconds():
        return "idle"
    if stamp - started > policy.max_age.total_seconds():
        return "expired"
    if revoked.revoked(str(session.get("sid", "")), now):
        return "signed-out"
    user_id = session.get("sso")
    if user_id is not None:
        if sso is None:
            return "sso-off"
        if endings.sso is not None and started <= endings.sso.timestamp():
            return "sso-was-off"
        if endings.provider is not None and started <= endings.provider.timestamp():
            return "provider-changed"
        access = sso(str(user_id))
        if access.allowed and access.user_name:
            session["admin"] = access.user_name
        return access.reason
    if not local_allowed:
        return "local-off"
    if endings.local is not None and started <= endings.local.timestamp():
        return "local-was-off"
    account = accounts.get(session["admin"])
    if account is None:
        return "gone"
    if account.password_changed != session.get("auth"):
        return "password"
    return None
