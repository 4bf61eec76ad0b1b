"""CSRF protection for the control panel: one random token per session, on every POST.

Every form carries the session's token in a hidden ``csrf_token`` field; a POST without it,
or with another session's, changes nothing (the synchronizer token pattern). The sign-in and
setup forms are covered too: an anonymous visitor gets a token with the form, so a
cross-site page cannot sign a victim's browser into an attacker's account. SameSite=Lax on
the cookie is a second fence, not the only one.
"""

from __future__ import annotations

import hmac
import secrets

from flask import request, session

FIELD = "csrf_token"
_KEY = "csrf"

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def issue() -> str:
    """Give the session a new token (at sign-in) and return it."""
    value = secrets.token_urlsafe(32)
    session[_KEY] = value
    return value


def token() -> str:
    """The session's token, issued on first use (templates call this for each form)."""
    value = session.get(_KEY)
    return value if isinstance(value, str) and value else issue()


def request_is_forged() -> bool:
    """Whether this state-changing request lacks the session's token."""
    if request.method not in _UNSAFE_METHODS:
        return False
    expected = session.get(_KEY)
    sent = request.form.get(FIELD, "")
    if not isinstance(expected, str) or not expected or not sent:
        return True
    return not hmac.compare_digest(expected.encode(), sent.encode())
