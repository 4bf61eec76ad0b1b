"""The one-time setup link printed on first start, where the first admin chooses a password.

There is never a default password. While no admin exists, ``python app.py serve`` prints
``<base>/admin/setup/<secret>``; the secret is kept only as a hash (in the shared document
``setup.json``, so any server process accepts it), expires after :data:`LINK_LIFETIME`, and
works once: opening it trades it for a grant kept in that browser's session, so the link in
the console or the access log is spent by then.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from storage.documents import SharedDocument
from storage.repository import Clock

LINK_LIFETIME = timedelta(hours=1)
FILE_NAME = "setup.json"  # the shared document


class SetupLinks:
    """Issue and redeem the setup link's secret, and the grants it is traded for.

    Kept (as hashes) in a shared document, so that the link one server process printed
    works in whichever process a request reaches, and works only once in all of them.
    """

    def __init__(
        self, document: SharedDocument, clock: Clock, lifetime: timedelta = LINK_LIFETIME
    ) -> None:
        self.document = document
        self.clock = clock
        self.lifetime = lifetime

    def issue(self) -> str:
        """A new link secret; any earlier one stops working."""
        secret = secrets.token_urlsafe(24)
        expiry = _iso(self.clock() + self.lifetime)

        def store(document: dict) -> None:
            document["link"] = {"digest": _digest(secret), "expires": expiry}

        self.document.update(store)
        return secret

    def redeem(self, secret: str) -> str | None:
        """Trade a valid, unexpired link secret for a grant (once); None if it is not one."""
        grant = secrets.token_urlsafe(24)
        now = self.clock()
        granted: list[str] = []

        def trade(document: dict) -> None:
            link = document.get("link")
            if not isinstance(link, dict) or not hmac.compare_digest(
                str(link.get("digest")), _digest(secret)
            ):
                return
            document.pop("link")  # valid once, whatever happens next
            if now >= _parse(link["expires"]):
                return
            grants = {
                digest: expiry
                for digest, expiry in (document.get("grants") or {}).items()
                if now < _parse(expiry)
            }
            grants[_digest(grant)] = link["expires"]
            document["grants"] = grants
            granted.append(grant)

        self.document.update(trade)
        return granted[0] if granted else None

    def grant_valid(self, grant: str | None) -> bool:
        """Whether ``grant`` came from :meth:`redeem` and has not expired or been used."""
        if not grant:
            return False
        expiry = (self.document.read().get("grants") or {}).get(_digest(grant))
        return expiry is not None and self.clock() < _parse(expiry)

    def use_grant(self, grant: str) -> None:
        """Spend a grant (the first admin was created with it)."""
        self.document.update(
            lambda document: (document.get("grants") or {}).pop(_digest(grant), None)
        )

    def expires(self) -> datetime | None:
        """When the current link expires (None if there is none)."""
        link = self.document.read().get("link")
        return _parse(link["expires"]) if isinstance(link, dict) else None


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()
