"""Control panel admin accounts: password hashes and sign-in lockout, in a shared document.

The document (``admins.json``: a file in the data directory, or the database's row) is a
:class:`storage.documents.SharedDocument`, so every server process and ``python app.py
admin ...`` change it safely at the same time. Layout, format 1::

    {"format": 1,
     "admins": [{"username": "alice", "password_hash": "scrypt:32768:8:1$...",
                 "created": "2026-11-26T10:54:52Z", "created_by": "setup",
                 "password_changed": "2026-11-26T10:54:52Z", "last_sign_in": null,
                 "failures": ["2026-11-26T11:00:00Z"], "locked_until": null}]}

Passwords are hashed with werkzeug's scrypt (a memory-hard password hash). There is no
default password: the first admin comes from the one-time setup link or the command line.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from storage.controlfile import ControlFile
from storage.documents import SharedDocument, Unchanged
from storage.failures import FailureLog, MemoryFailureLog
from storage.repository import Clock
from storage.shapes import MOMENT, TEXT, DocumentShape, Record, list_of, nullable

FILE_NAME = "admins.json"
FORMAT = 1

MIN_PASSWORD_LENGTH = 12
# Twelve of one character (or of two or three) is as guessable as a short password.
MIN_DISTINCT_CHARACTERS = 4
# Hashing is deliberately slow; an unbounded password would make it a denial of service.
MAX_PASSWORD_LENGTH = 1024

_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")

# What the readers below rely on (checked once a version: storage.shapes); ``password_changed``
# is only compared with a session's copy, as text.
SHAPE = DocumentShape(
    FORMAT,
    optional={
        "admins": list_of(
            Record(
                required={
                    "username": TEXT,
                    "password_hash": TEXT,
                    "created": MOMENT,
                    "password_changed": TEXT,
                },
                optional={
                    "created_by": TEXT,
                    "last_sign_in": nullable(MOMENT),
                    "failures": nullable(list_of(MOMENT)),
                    "locked_until": nullable(MOMENT),
                },
            )
        )
    },
)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class LockoutPolicy:
    """``max_failures`` failed sign-ins within ``window`` lock an account for ``duration``."""

    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    duration: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class AdminAccount:
    """An admin, without the password hash."""

    username: str
    created: datetime
    created_by: str
    # Changes with every new password; a session records it, so a reset signs out everywhere.
    password_changed: str
    last_sign_in: datetime | None
    locked_until: datetime | None


@dataclass(frozen=True)
class SignIn:
    """The verdict on a sign-in attempt: "ok", "invalid" or "locked".

    ``account`` is set only for "ok"; ``locked_until`` only for "locked".
    """

    outcome: str
    account: AdminAccount | None = None
    locked_until: datetime | None = None


class AdminAccounts:
    """Create admins, change their passwords and check sign-ins."""

    def __init__(
        self,
        document: SharedDocument | Path,
        *,
        clock: Clock = utcnow,
        policy: LockoutPolicy = LockoutPolicy(),
        hash_method: str = "scrypt",
        unknown_failures: FailureLog | None = None,
    ) -> None:
        self._control = ControlFile(document) if isinstance(document, Path) else document
        self._control.declare(SHAPE)
        self.clock = clock
        self.policy = policy
        self._hash_method = hash_method
        # Failed sign-ins for names that are not accounts, so that unknown and known names
        # lock alike: not in the accounts' document (anyone could grow it), but in a bounded
        # log, shared by every server process on PostgreSQL (default: this process's memory).
        self._unknown_failures = unknown_failures or MemoryFailureLog()
        self._dummy_hash: str | None = None

    @property
    def path(self) -> Path | str:
        """Where the accounts are kept (the file, or the database's document)."""
        return self._control.path

    def any(self) -> bool:
        """Whether at least one admin exists (else the setup link is offered)."""
        return bool(self._records(self._control.read()))

    def get(self, username: str) -> AdminAccount | None:
        """The admin called ``username`` (compared case-insensitively), if there is one."""
        record = _find(self._records(self._control.read()), username)
        return None if record is None else _account(record)

    def list(self) -> builtins.list[AdminAccount]:
        """Every admin, in the order they were created."""
        return [_account(record) for record in self._records(self._control.read())]

    def create(self, username: str, password: str, *, created_by: str = "cli") -> AdminAccount:
        """Add an admin.

        :raises ValueError: if the name is malformed or taken, or the password is too weak.
        """
        check_username(username)
        check_password(password, username)
        now = self._stamp()
        record: dict = {
            "username": username,
            "password_hash": self._hash(password),
            "created": now,
            "created_by": created_by,
            "password_changed": now,
            "last_sign_in": None,
            "failures": [],
            "locked_until": None,
        }

        def add(document: dict) -> None:
            records = self._records(document)
            existing = _find(records, username)
            if existing is not None:
                taken = existing["username"]
                raise ValueError(
                    f"an admin named {taken!r} already exists"
                    + ("" if taken == username else " (names are compared ignoring case)")
                )
            records.append(record)

        self._control.update(add)
        return _account(record)

    def reset_password(self, username: str, password: str) -> AdminAccount:
        """Give an admin a new password; unlocks the account and ends its sessions.

        :raises KeyError: if there is no such admin.
        :raises ValueError: if the password is too weak.
        """
        check_password(password, username)
        password_hash = self._hash(password)
        changed: builtins.list[dict] = []

        def apply(document: dict) -> None:
            record = _find(self._records(document), username)
            if record is None:
                raise KeyError(f"no admin named {username!r}")
            record["password_hash"] = password_hash
            record["password_changed"] = self._stamp(unique_after=record["password_changed"])
            record["failures"] = []
            record["locked_until"] = None
            changed.append(record)

        self._control.update(apply)
        return _account(changed[0])

    def sign_in(self, username: str, password: str) -> SignIn:
        """Check a sign-in, counting failures and locking after too many.

        The attempt is counted as a failure before the password is looked at, in the same
        locked update of the shared document that reads the lockout, and the count is
        cleared again on success: so however many attempts run at once, in however many
        processes, at most ``max_failures`` passwords are checked before the account locks
        (reading the lockout, checking, then writing let every concurrent attempt through).
        A locked account is refused without looking at the password, so guessing on stops
        paying off; nothing sleeps, so no server thread is held up. A name that is no account
        costs the same on each path: one password hash, or none while it is locked; and one
        locked update, of its failure log instead of the accounts' document (which names are
        accounts is read first, from the document's cached copy, as for every name).
        """
        now = self.clock()
        if _find(self._records(self._control.read()), username) is None:
            return self._unknown_sign_in(username, password, now)
        # (verdict, until when locked, the password hash to check)
        admitted: builtins.list[tuple[str, datetime | None, str]] = []

        def admit(document: dict) -> None:
            record = _find(self._records(document), username)
            if record is None:
                admitted.append(("unknown", None, ""))
                raise Unchanged
            locked_until = _parse_optional(record.get("locked_until"))
            if locked_until is not None and now < locked_until:
                admitted.append(("locked", locked_until, ""))
                raise Unchanged
            recent = [
                stamp
                for stamp in record.get("failures") or []
                if now - _parse(stamp) < self.policy.window
            ]
            recent.append(_iso(now))
            record["failures"] = recent
            if len(recent) >= self.policy.max_failures:
                # The last check allowed: no other attempt gets one until this one succeeds.
                until = now + self.policy.duration
                record["locked_until"] = _iso(until)
                record["failures"] = []
                admitted.append(("last", until, record["password_hash"]))
            else:
                admitted.append(("counted", None, record["password_hash"]))

        try:
            self._control.update(admit)
        except Unchanged:
            pass
        verdict, until, password_hash = admitted[-1]
        if verdict == "unknown":  # deleted since it was read
            return self._unknown_sign_in(username, password, now)
        if verdict == "locked":
            return SignIn("locked", locked_until=until)
        if check_password_hash(password_hash, password):
            account = self._note_success(username)
            if account is not None:
                return SignIn("ok", account=account)
        # The failure was counted when the attempt was admitted.
        return SignIn("locked", locked_until=until) if verdict == "last" else SignIn("invalid")

    def _note_success(self, username: str) -> AdminAccount | None:
        """Clear the failures (this attempt's too) and any lock; None if the admin is gone."""
        done: builtins.list[dict] = []

        def apply(document: dict) -> None:
            record = _find(self._records(document), username)
            if record is None:  # deleted meanwhile
                raise Unchanged
            record["last_sign_in"] = self._stamp()
            record["failures"] = []
            record["locked_until"] = None
            done.append(record)

        try:
            self._control.update(apply)
        except Unchanged:
            return None
        return _account(done[0])

    def _unknown_sign_in(self, username: str, password: str, now: datetime) -> SignIn:
        # Cost what a real account's attempt costs, so timing tells nothing: no hash while
        # locked (a locked account's password is not looked at), one hash otherwise. As for
        # an account, the failure is counted before the hash, in the update that read the
        # lockout, so attempts at once in several processes get no more checks between them.
        verdicts: builtins.list[datetime | None] = []

        def admit(failures: builtins.list[datetime]) -> builtins.list[datetime]:
            locked = _locked_until(failures, self.policy)
            if locked is not None and now < locked:
                verdicts.append(locked)
                raise Unchanged
            # Only the last max_failures can lock: an older run's lock ended before these.
            failures = [*failures, now][-self.policy.max_failures :]
            verdicts.append(_locked_until(failures, self.policy))
            return failures

        try:
            self._unknown_failures.update(
                username.casefold(),
                admit,
                now=now,
                keep_for=self.policy.window + self.policy.duration,
            )
        except Unchanged:
            return SignIn("locked", locked_until=verdicts[-1])
        locked = verdicts[-1]
        check_password_hash(self._dummy(), password)
        if locked is not None and now < locked:
            return SignIn("locked", locked_until=locked)
        return SignIn("invalid")

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self._hash("not a password of any admin")
        return self._dummy_hash

    def _hash(self, password: str) -> str:
        return generate_password_hash(password, method=self._hash_method)

    def _stamp(self, unique_after: str | None = None) -> str:
        """Now as an ISO stamp with microseconds, distinct from ``unique_after``."""
        moment = self.clock().astimezone(UTC)
        stamp = moment.isoformat(timespec="microseconds")
        if stamp == unique_after:  # a frozen test clock: still mark the change
            stamp = (moment + timedelta(microseconds=1)).isoformat(timespec="microseconds")
        return stamp

    def _records(self, document: dict) -> builtins.list[dict]:
        document.setdefault("format", FORMAT)  # another is refused as damage (SHAPE)
        return document.setdefault("admins", [])


def check_username(username: str) -> None:
    """Refuse a name no admin may have.

    :raises ValueError: saying which characters a name may use.
    """
    if not _USERNAME.fullmatch(username):
        raise ValueError(
            f"username {username!r} is not allowed: use 1-64 letters, digits, '.', '_', '@' or '-'"
        )


def check_password(password: str, username: str) -> None:
    """Refuse passwords that are too short, too long, only whitespace, one character (or a
    few) repeated, or the username itself: the one rule of the setup page, the control
    panel's forms and ``python app.py admin``.

    :raises ValueError: saying what to change.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"the password must be at most {MAX_PASSWORD_LENGTH} characters long")
    if not password.strip():
        raise ValueError("the password must not be only spaces or other whitespace")
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        raise ValueError(
            f"the password must use at least {MIN_DISTINCT_CHARACTERS} different characters, "
            "not one or a few repeated (like 'aaaaaaaaaaaa' or 'abababababab')"
        )
    if password.casefold() == username.casefold():
        raise ValueError("the password must not be the username")


def _locked_until(failures: builtins.list[datetime], policy: LockoutPolicy) -> datetime | None:
    """Until when the latest run of ``max_failures`` failures within ``window`` locks."""
    until = None
    for start in range(len(failures) - policy.max_failures + 1):
        run = failures[start : start + policy.max_failures]
        if run[-1] - run[0] < policy.window:
            until = run[-1] + policy.duration
    return until


def _find(records: builtins.list[dict], username: str) -> dict | None:
    wanted = username.casefold()
    for record in records:
        if record.get("username", "").casefold() == wanted:
            return record
    return None


def _account(record: dict) -> AdminAccount:
    return AdminAccount(
        username=record["username"],
        created=_parse(record["created"]),
        created_by=record.get("created_by", "-"),
        password_changed=record["password_changed"],
        last_sign_in=_parse_optional(record.get("last_sign_in")),
        locked_until=_parse_optional(record.get("locked_until")),
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _parse_optional(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
