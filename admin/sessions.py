"""Control panel sessions: the signing secret, the cookie's flags, idle timeout and sign-out.

The session is Flask's signed cookie. Its secret is generated on first start and kept in
``<data>/session.key`` (mode 0600), never a built-in default, so sessions survive a restart
and nobody can forge one without the data directory. The cookie is HttpOnly, SameSite=Lax,
limited to ``/admin``, and Secure whenever the request came over https (directly, or through
a trusted proxy whose X-Forwarded-Proto waitress applied).

What the cookie holds: the admin's name, a random session id, when the session started and
when it was last used, and the CSRF token; for a local account its ``password_changed`` stamp
(a password reset signs every session out), for a single sign-on its directory user id,
whose access is checked again on every request (:mod:`admin.sso_access`).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import Flask, Request, request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from admin import csrf
from admin.accounts import AdminAccount, AdminAccounts

log = logging.getLogger("proware.admin")

KEY_FILE = "session.key"
COOKIE_NAME = "proware_admin"
_KEY_BYTES = 32


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
    "not-provisioned": "You were signed out: your account is no longer provisioned in "
    "Proware (Entra removed it).",
    "disabled": "You were signed out: Entra disabled your account.",
    "not-in-admin-group": "You were signed out: you are no longer a member of the admin group.",
    "no-admin-group": "You were signed out: the admin group is no longer in Proware's directory.",
}

# Reasons that come from the directory: provisioning ended a single sign-on session.
DEPROVISIONED = frozenset({"not-provisioned", "disabled", "not-in-admin-group", "no-admin-group"})

# Checks a single sign-on session's directory user: None while it may stay, else why not.
SsoCheck = Callable[[str], str | None]


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


def configure(app: Flask, data_dir: Path, path: str) -> None:
    """Give ``app`` the session secret from ``data_dir`` and the admin cookie's flags."""
    app.secret_key = load_or_create_secret(data_dir / KEY_FILE)
    app.session_interface = _AdminSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH=path,
    )


def load_or_create_secret(path: Path) -> bytes:
    """The session secret in ``path``, created (mode 0600) if there is none.

    Creation is atomic: the key is written to a temporary file and hard-linked into place,
    so two processes starting at once agree on one key. A key readable by others is made
    private again, with a warning.
    """
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as temp:  # mkstemp: mode 0600
            temp.write(secrets.token_hex(_KEY_BYTES) + "\n")
            temp.flush()
            os.fsync(temp.fileno())
        try:
            os.link(temp_name, path)
        except FileExistsError:
            pass  # another process won the race: use its key
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        log.warning("%s was readable by others (mode %o); setting mode 0600", path, mode)
        os.chmod(path, 0o600)
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 2 * _KEY_BYTES:
        raise ValueError(
            f"{path} holds no valid session key; delete it and restart to generate a new one "
            "(every admin will have to sign in again)"
        )
    return bytes.fromhex(key)


class RevokedSessions:
    """Session ids signed out before their cookie would expire (in memory, bounded)."""

    def __init__(self) -> None:
        self._ids: dict[str, datetime] = {}  # session id -> when its cookie is useless anyway
        self._lock = threading.Lock()

    def revoke(self, session_id: str, useless_after: datetime) -> None:
        """Refuse ``session_id`` from now on."""
        with self._lock:
            self._ids[session_id] = useless_after

    def revoked(self, session_id: str, now: datetime) -> bool:
        """Whether ``session_id`` was signed out; forgets entries that expired anyway."""
        with self._lock:
            for stale in [sid for sid, until in self._ids.items() if until <= now]:
                del self._ids[stale]
            return session_id in self._ids


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
) -> tuple[str | None, str | None]:
    """``(username, None)`` for a live session, else ``(None, why it ended or None)``.

    A live session's last-use time moves to ``now``.

    :param sso: checks a single sign-on session's user; None while single sign-on is off
        (its sessions then end).
    :param local_allowed: whether sessions of local accounts may go on.
    """
    username = session.get("admin")
    if not username:
        return None, None
    reason = _ended(accounts, revoked, policy, now, sso, local_allowed)
    if reason is not None:
        session.clear()
        return None, reason
    session["seen"] = now.timestamp()
    return username, None


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
) -> str | None:
    stamp = now.timestamp()
    if stamp - float(session.get("seen", 0)) > policy.idle.total_seconds():
        return "idle"
    if stamp - float(session.get("started", 0)) > policy.max_age.total_seconds():
        return "expired"
    if revoked.revoked(str(session.get("sid", "")), now):
        return "signed-out"
    user_id = session.get("sso")
    if user_id is not None:
        return "sso-off" if sso is None else sso(str(user_id))
    if not local_allowed:
        return "local-off"
    account = accounts.get(session["admin"])
    if account is None:
        return "gone"
    if account.password_changed != session.get("auth"):
        return "password"
    return None
