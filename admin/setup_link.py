"""The one-time setup link printed on first start, where the first admin chooses a password.

There is never a default password. While no admin exists, ``python app.py serve`` prints
``<base>/admin/setup/<secret>``; the secret is kept only as a hash (in the shared document
``setup.json``, so any server process accepts it) and expires after :data:`LINK_LIFETIME`.

Opening the link only shows the form: chat apps, mail scanners (Safe Links) and browsers'
prefetch open links before the person does, so a GET checks the link and changes nothing.
The form's POST spends it, atomically, before the admin is created: of two POSTs at once,
one gets the link, the other is told it was used.

Each server start prints a link of its own and leaves the ones before it working (until
they expire, or one is used): with several server processes on one database (PostgreSQL),
a start that replaced the link made the one another process printed earlier a dead link
("This setup link is not valid"), and so did any restart. ``python app.py admin setup-link``
still replaces every earlier link: it is the way to kill one that leaked.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from storage.documents import SharedDocument
from storage.repository import Clock
from storage.shapes import MOMENT, TEXT, DocumentShape, Record, list_of

LINK_LIFETIME = timedelta(hours=1)
FILE_NAME = "setup.json"  # the shared document
# Links that server starts printed before the newest, kept working beside it at most.
EARLIER_KEPT = 8

_LINK = Record(required={"digest": TEXT, "expires": MOMENT})
# The newest link and those printed before it still working, or the one used on the first
# admin (checked once a version: storage.shapes); what earlier versions kept beside them is
# left alone. An earlier version reads only "link": the newest works there.
SHAPE = DocumentShape(
    optional={
        "link": _LINK,
        "earlier": list_of(_LINK),
        "used": Record(required={"digest": TEXT, "expires": MOMENT, "at": MOMENT}),
    }
)

# What a link is: usable, past its expiry, spent on the first admin, or none this server made
# (mistyped, or replaced by the link a later start printed).
State = Literal["valid", "expired", "used", "unknown"]


@dataclass(frozen=True)
class LinkCheck:
    """What a secret is worth now, and the moment that says so: when it expires (valid),
    expired (expired), or was used (used); None for an unknown one."""

    state: State
    when: datetime | None = None


class SetupLinks:
    """Issue, check and spend the setup link's secret.

    Kept (as hashes) in a shared document, so that the link one server process printed
    works in whichever process a request reaches, and is spent once in all of them.
    """

    def __init__(
        self, document: SharedDocument, clock: Clock, lifetime: timedelta = LINK_LIFETIME
    ) -> None:
        self.document = document
        document.declare(SHAPE)
        self.clock = clock
        self.lifetime = lifetime

    @property
    def minutes(self) -> int:
        """How long a link lasts, in whole minutes (what the pages and commands say)."""
        return int(self.lifetime.total_seconds() // 60)

    def issue(self, *, keep_earlier: bool = False) -> str:
        """A new link secret; any earlier one stops working, unless ``keep_earlier`` (a
        server's start: another process's link, printed before, must not die with it)."""
        secret = secrets.token_urlsafe(24)
        now = self.clock()
        expiry = _iso(now + self.lifetime)

        def store(document: dict) -> None:
            working = _links(document) if keep_earlier else []
            working = [link for link in working if now < _parse(link["expires"])]
            # A new link replaces the used one (and what earlier versions traded a link for):
            # issued while no admin exists, so none was set up with a used one.
            document.clear()
            document["link"] = {"digest": _digest(secret), "expires": expiry}
            if working:
                document["earlier"] = working[:EARLIER_KEPT]

        self.document.update(store)
        return secret

    def check(self, secret: str) -> LinkCheck:
        """What ``secret`` is worth now; changes nothing (a preview may be asking)."""
        return _check(self.document.read(), _digest(secret), self.clock())

    def use(self, secret: str) -> LinkCheck:
        """Spend ``secret`` if it is valid (state "valid": the caller now holds it, and no
        other request will); else say what it is, and change nothing."""
        digest = _digest(secret)
        now = self.clock()
        verdict: list[LinkCheck] = []

        def spend(document: dict) -> None:
            found = _check(document, digest, now)
            verdict.append(found)
            if found.state == "valid":
                link = next(link for link in _links(document) if link["digest"] == digest)
                # One first admin: every other link is spent with this one.
                document.pop("link", None)
                document.pop("earlier", None)
                document["used"] = {**link, "at": _iso(now)}

        self.document.update(spend)
        return verdict[-1]

    def give_back(self, secret: str) -> None:
        """Make a link spent by :meth:`use` valid again (creating the admin failed), unless
        a newer link has been issued since (the links spent with it stay spent)."""
        digest = _digest(secret)

        def restore(document: dict) -> None:
            used = document.get("used")
            if "link" in document or not isinstance(used, dict) or used["digest"] != digest:
                return
            document["link"] = {"digest": digest, "expires": used["expires"]}
            document.pop("used")

        self.document.update(restore)


def _links(document: dict) -> list[dict]:
    """The links not used yet, newest first (records of SHAPE when there)."""
    newest = document.get("link")
    return ([newest] if newest is not None else []) + list(document.get("earlier") or [])


def _check(document: dict, digest: str, now: datetime) -> LinkCheck:
    for link in _links(document):
        if hmac.compare_digest(link["digest"], digest):
            expires = _parse(link["expires"])
            if now < expires:
                return LinkCheck("valid", expires)
            return LinkCheck("expired", expires)
    used = document.get("used")
    if used is not None and hmac.compare_digest(used["digest"], digest):
        return LinkCheck("used", _parse(used["at"]))
    return LinkCheck("unknown")


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()
