"""The one-time setup link printed on first start, where the first admin chooses a password.

There is never a default password. While no admin exists, ``python app.py serve`` prints
``<base>/admin/setup/<secret>``; the secret lives only in the server's memory (as a hash),
expires after :data:`LINK_LIFETIME`, and works once: opening it trades it for a grant kept
in that browser's session, so the link in the console or the access log is spent by then.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from datetime import datetime, timedelta

from storage.repository import Clock

LINK_LIFETIME = timedelta(hours=1)


class SetupLinks:
    """Issue and redeem the setup link's secret, and the grants it is traded for."""

    def __init__(self, clock: Clock, lifetime: timedelta = LINK_LIFETIME) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._link: tuple[str, datetime] | None = None  # (sha256 of the secret, expiry)
        self._grants: dict[str, datetime] = {}  # sha256 of a grant -> expiry

    def issue(self) -> str:
        """A new link secret; any earlier one stops working."""
        secret = secrets.token_urlsafe(24)
        with self._lock:
            self._link = (_digest(secret), self.clock() + self.lifetime)
        return secret

    def redeem(self, secret: str) -> str | None:
        """Trade a valid, unexpired link secret for a grant (once); None if it is not one."""
        with self._lock:
            link = self._link
            if link is None or not hmac.compare_digest(link[0], _digest(secret)):
                return None
            self._link = None  # valid once, whatever happens next
            if self.clock() >= link[1]:
                return None
            grant = secrets.token_urlsafe(24)
            self._grants[_digest(grant)] = link[1]
            return grant

    def grant_valid(self, grant: str | None) -> bool:
        """Whether ``grant`` came from :meth:`redeem` and has not expired or been used."""
        if not grant:
            return False
        with self._lock:
            expiry = self._grants.get(_digest(grant))
            return expiry is not None and self.clock() < expiry

    def use_grant(self, grant: str) -> None:
        """Spend a grant (the first admin was created with it)."""
        with self._lock:
            self._grants.pop(_digest(grant), None)

    def expires(self) -> datetime | None:
        """When the current link expires (None if there is none)."""
        with self._lock:
            return None if self._link is None else self._link[1]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()
