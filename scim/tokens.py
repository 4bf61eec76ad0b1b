"""Bearer tokens for SCIM clients, and the User Provisioning switch, kept in the control file.

Entra sends one long-lived secret verbatim in every request (``Authorization: Bearer``,
entra-provisioning.md A0). Proware stores only the SHA-256 of each secret: the secret is a
random 256-bit string, so a fast hash is enough (nothing to brute-force) and a slow password
hash would only cost time on every request. The server and the command line share the
control document (:class:`storage.documents.SharedDocument`: ``control.json`` in the data
directory, or the database's), so a token created or revoked by the CLI, or by another server
process, takes effect on the server's next request: at once on the process that made the
change, within a quarter of a second on the others on PostgreSQL (:func:`propagation`).

Control file layout, format 1::

    {"format": 1,
     "provisioning": {"enabled": true, "changed": "2026-11-26T10:54:52Z", "changed_by": "cli"},
     "tokens": [{"name": "entra", "hash": "<sha256 hex>", "scope": "read-write",
                 "created": "...", "created_by": "cli", "expires": null,
                 "last_used": null, "revoked": null}]}
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storage import saving
from storage.documents import SharedDocument, Unchanged
from storage.errors import DamagedDocument, StorageError, log_background_failure
from storage.repository import Clock
from storage.saving import BackgroundSave, PacedSave, Timer
from storage.settings import POSTGRESQL
from storage.shapes import FLAG, MOMENT, TEXT, DocumentShape, Record, list_of, nullable, one_of

log = logging.getLogger("proware.tokens")

FILE_NAME = "control.json"  # in the data directory
FORMAT = 1

# When a change to the control document (a token created or revoked, the provisioning switch)
# reaches the servers: the process that wrote it has the new content at once; another one
# re-reads a file's stamp on every request, and trusts a PostgreSQL document's version for
# at most storage.postgres.documents.STAMP_TTL (0.25 s). What the panel and the CLI say.
PROPAGATION = "at once on this server process, within a quarter of a second on the others"
CLI_PROPAGATION = "within a quarter of a second on every server process"
# The embedded store has one server, which stats the control file on every request.
ONE_SERVER_PROPAGATION = "from the next request on"


def propagation(backend: str, *, from_cli: bool = False) -> str:
    """When a token or switch change applies, as the panel (``from_cli`` False: said by a
    server process) or the command line says it, for the ``[storage] backend`` named."""
    if backend != POSTGRESQL:
        return ONE_SERVER_PROPAGATION
    return CLI_PROPAGATION if from_cli else PROPAGATION


READ_WRITE = "read-write"
READ_ONLY = "read-only"

# "pw_" + 43 URL-safe characters (32 random bytes = 256 bits): 46 ASCII characters, well
# inside the 1 KB Entra keeps for all of an app's credentials (entra-provisioning.md,
# "Token size").
SECRET_PREFIX = "pw_"
_SECRET_BYTES = 32

_NAME = re.compile(r"[A-Za-z0-9._ -]{1,64}")
# The longest expiry a token may be given, in days (ten years): the control panel's and the
# command line's limit.
MAX_EXPIRY_DAYS = 3650

# What the readers below rely on (checked once a version: storage.shapes). A scope but
# these two would be read as read-write.
TOKEN_RECORD = Record(
    required={
        "name": TEXT,
        "hash": TEXT,
        "scope": one_of(READ_WRITE, READ_ONLY),
        "created": MOMENT,
        "created_by": TEXT,
        "expires": nullable(MOMENT),
        "last_used": nullable(MOMENT),
        "revoked": nullable(MOMENT),
    }
)
SHAPE = DocumentShape(
    FORMAT,
    optional={
        "provisioning": nullable(
            Record(
                optional={
                    "enabled": nullable(FLAG),
                    "changed": nullable(TEXT),
                    "changed_by": nullable(TEXT),
                }
            )
        ),
        "tokens": list_of(TOKEN_RECORD),
    },
)

# Saving last_used on every request would rewrite the control file per request; a use
# noted in between reaches the file at the end of the interval, with or without more traffic.
USE_SAVE_INTERVAL = timedelta(minutes=1)
# How many hex digits of a token's hash make its id: unique among an install's tokens, and
# no help in finding the secret (which is 256 random bits).
_ID_DIGITS = 16


TIMER_THREAD = "proware-token-uses-timer"


def start_timer(delay: float, call: Callable[[], None]) -> Timer:
    """Run ``call`` after ``delay`` seconds on a timer thread of the token uses' own name
    (:func:`storage.saving.start_timer`; tests replace this)."""
    return saving.start_timer(delay, call, TIMER_THREAD)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token: everything but its secret.

    ``clock`` is the store's, so :attr:`status` agrees with the store that made this.
    """

    name: str
    # Tells this token from every other, even one of the same name created after it was
    # revoked: what its use history (last use, connection status) is kept under.
    id: str
    scope: str
    created: datetime
    created_by: str
    expires: datetime | None
    last_used: datetime | None
    revoked: datetime | None
    clock: Clock = field(default=utcnow, repr=False, compare=False)

    @property
    def status(self) -> str:
        """ "active", "expired" or "revoked", as of now by ``clock``."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.clock() >= self.expires:
            return "expired"
        return "active"

    @property
    def read_only(self) -> bool:
        """Whether the token may only read (GET and POST /.search)."""
        return self.scope == READ_ONLY


@dataclass(frozen=True)
class TokenCheck:
    """The verdict on a presented secret: "ok", "unknown", "revoked" or "expired".

    ``token`` is set for every outcome but "unknown", so a refusal can name the token.
    """

    outcome: str
    token: TokenInfo | None


class TokenStore:
    """Create, list, revoke and verify bearer tokens kept in the control file."""

    def __init__(
        self,
        control: SharedDocument,
        clock: Clock = utcnow,
        *,
        timer: Callable[[float, Callable[[], None]], Timer] | None = None,
    ) -> None:
        self._control = control
        control.declare(SHAPE)
        self._clock = clock
        self._timer = timer  # None: start_timer (looked up when needed)
        # token id -> last use not yet saved.
        self._uses: dict[str, datetime] = {}
        self._uses_lock = threading.Lock()
        # Off the request path (storage.saving): the request only asks for the save.
        self._saving = BackgroundSave(self._save_uses, "proware-token-uses")
        self._pacing = PacedSave(self._saving, USE_SAVE_INTERVAL, self._now, self._schedule)

    def create(
        self,
        name: str,
        *,
        read_only: bool = False,
        expires_in_days: int | None = None,
        created_by: str = "cli",
    ) -> tuple[str, TokenInfo]:
        """Make a new token; returns ``(secret, info)``. The secret is shown once, never stored.

        :raises ValueError: if the name is malformed or taken by a token that is not revoked,
            or ``expires_in_days`` is not from 1 to :data:`MAX_EXPIRY_DAYS`.
        """
        if not _NAME.fullmatch(name) or name != name.strip():
            raise ValueError(
                f"token name {name!r} is not allowed: use 1-64 letters, digits, spaces, '-', "
                "'_' or '.', not starting or ending with a space"
            )
        if expires_in_days is not None and (
            not isinstance(expires_in_days, int) or not 1 <= expires_in_days <= MAX_EXPIRY_DAYS
        ):
            raise ValueError(
                f"expires_in_days must be a whole number from 1 to {MAX_EXPIRY_DAYS}, "
                f"not {expires_in_days!r}"
            )
        secret = SECRET_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
        now = self._now()
        record = {
            "name": name,
            "hash": _digest(secret),
            "scope": READ_ONLY if read_only else READ_WRITE,
            "created": _iso(now),
            "created_by": created_by,
            "expires": _iso(now + timedelta(days=expires_in_days)) if expires_in_days else None,
            "last_used": None,
            "revoked": None,
        }

        def add(document: dict) -> None:
            tokens = self._tokens(document)
            if any(t["name"] == name and t["revoked"] is None for t in tokens):
                raise ValueError(
                    f"a token named {name!r} already exists; revoke it first or pick another name"
                )
            tokens.append(record)

        self._control.update(add)
        return secret, self._info(record)

    def list(self) -> builtins.list[TokenInfo]:
        """Every token, newest first, revoked ones included."""
        records = self._tokens(self._control.read())
        newest_first = sorted(reversed(records), key=lambda t: t["created"], reverse=True)
        return [self._info(record) for record in newest_first]

    def revoke(self, name: str) -> TokenInfo:
        """Revoke the token called ``name``; the record stays so later uses say "revoked".

        :raises KeyError: if no token of that name is unrevoked.
        """
        revoked: builtins.list[dict] = []

        def mark(document: dict) -> None:
            for record in self._tokens(document):
                if record["name"] == name and record["revoked"] is None:
                    record["revoked"] = _iso(self._now())
                    revoked.append(record)
                    return
            raise KeyError(f"no token named {name!r} that is not already revoked")

        self._control.update(mark)
        return self._info(revoked[0])

    def verify(self, secret: str) -> TokenCheck:
        """Which token ``secret`` is, and whether it may be used now.

        Expiry takes effect at once. A revocation made by this process too; one made by
        another process shows once the control document's stamp is checked again: at once
        for a file (re-stat'ed per call), within 0.25 s on PostgreSQL.
        """
        digest = _digest(secret)
        record = self._control.derived(self._by_hash).get(digest)
        # The dict lookup found a candidate; confirm it without a timing side channel.
        if record is None or not hmac.compare_digest(record["hash"], digest):
            return TokenCheck("unknown", None)
        token = self._info(record)
        status = token.status
        return TokenCheck("ok" if status == "active" else status, token)

    def record_use(self, token: TokenInfo) -> None:
        """Note that ``token`` was just used.

        Kept in memory and saved at most once a minute, on a thread of its own
        (:meth:`wait_for_save`): at once when the last save is a minute old, else when that
        minute is up (a timer), so ``python app.py token list`` is at most a minute behind
        even when no request follows. :meth:`flush` saves at once. A failed save is logged,
        not raised.
        """
        with self._uses_lock:
            self._uses[token.id] = self._now()
        self._pacing.request()

    def _schedule(self, delay: float, call: Callable[[], None]) -> Timer:
        return (self._timer or start_timer)(delay, call)  # looked up now: tests replace it

    def wait_for_save(self) -> None:
        """Return once the save :meth:`record_use` started (if any) is over."""
        self._saving.wait()

    def flush(self) -> None:
        """Save the uses noted since the last save into the control file (after the save
        :meth:`record_use` started, if one is going on), and call off the scheduled one."""
        self._pacing.call_off()
        self._saving.wait()
        self._write_uses()

    def _save_uses(self) -> None:
        try:
            self._write_uses()
        except DamagedDocument as exc:  # the uses stay pending until it is repaired
            exc.report(log)
        except (OSError, StorageError) as exc:
            # Bookkeeping must not fail anything; the uses stay pending for the next save.
            log_background_failure(log, "could not save token last-use times", exc)

    def _write_uses(self) -> None:
        # The uses stay pending (and shown by list()) until they are written; one noted again
        # meanwhile stays pending for the next save.
        with self._uses_lock:
            uses = dict(self._uses)
        if not uses:
            return

        def merge(document: dict) -> None:
            changed = False
            for record in self._tokens(document):
                # A revoked token's use came before its revocation: it is kept too.
                used = uses.get(_token_id(record))
                if used is None:
                    continue
                if record["last_used"] is None or _parse(record["last_used"]) < used:
                    record["last_used"] = _iso(used)
                    changed = True
            if not changed:
                raise Unchanged  # no saved token needed the pending uses

        try:
            self._control.update(merge)
        except Unchanged:
            pass
        with self._uses_lock:
            for name, used in uses.items():
                if self._uses.get(name) == used:
                    del self._uses[name]

    # -- internals ------------------------------------------------------------------------

    def _now(self) -> datetime:
        """The clock's time in whole seconds, as precise as the control file keeps it."""
        return self._clock().replace(microsecond=0)

    def _by_hash(self, document: dict) -> dict[str, dict]:
        """hash -> token record (``verify``'s index, rebuilt when the control file changes)."""
        return {record["hash"]: record for record in self._tokens(document)}

    def _tokens(self, document: dict) -> builtins.list[dict]:
        """The token records of a control-file document (creating the list if missing)."""
        _stamp_format(document)
        return document.setdefault("tokens", [])

    def _info(self, record: dict) -> TokenInfo:
        token_id = _token_id(record)
        last_used = _parse_optional(record["last_used"])
        pending = self._uses.get(token_id)
        if pending is not None and (last_used is None or pending > last_used):
            last_used = pending
        return TokenInfo(
            name=record["name"],
            id=token_id,
            scope=record["scope"],
            created=_parse(record["created"]),
            created_by=record["created_by"],
            expires=_parse_optional(record["expires"]),
            last_used=last_used,
            revoked=_parse_optional(record["revoked"]),
            clock=self._clock,
        )


class ProvisioningSwitch:
    """Proware's "User Provisioning" switch: while off, every SCIM request gets a 403."""

    def __init__(self, control: SharedDocument, clock: Clock = utcnow) -> None:
        self._control = control
        control.declare(SHAPE)
        self._clock = clock

    def enabled(self) -> bool:
        """Whether SCIM requests are served; False on a fresh install."""
        return self._control.derived(self._status)["enabled"]

    def set(self, enabled: bool, by: str = "cli") -> None:
        """Turn provisioning on or off, recording who did it and when.

        Setting the state it is already in changes nothing: "enabled since" keeps the moment
        provisioning really started (a second ``provisioning enable``, or a stale page's
        button, is not a new start).
        """
        change = {"enabled": bool(enabled), "changed": _iso(self._clock()), "changed_by": by}

        def apply(document: dict) -> None:
            _stamp_format(document)
            if (document.get("provisioning") or {}).get("enabled") is change["enabled"]:
                return
            document["provisioning"] = change

        self._control.update(apply)

    def status(self) -> dict:
        """``{"enabled": bool, "changed": ISO time or None, "changed_by": str or None}``."""
        return dict(self._control.derived(self._status))

    def _status(self, document: dict) -> dict:
        _stamp_format(document)
        section = document.get("provisioning") or {}
        return {
            "enabled": section.get("enabled") is True,
            "changed": section.get("changed"),
            "changed_by": section.get("changed_by"),
        }


def _token_id(record: dict) -> str:
    """The id of a token record (:attr:`TokenInfo.id`)."""
    return str(record["hash"])[:_ID_DIGITS]


def _stamp_format(document: dict) -> None:
    """Stamp a new document with our format (the control file refuses another as damage:
    ``SHAPE``)."""
    document.setdefault("format", FORMAT)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _parse_optional(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
