"""Who may use the control panel through single sign-on: provisioning decides.

A person signed in by the identity provider gets in when the ID token's username claim names
a **provisioned, active** user (``userName``, compared as the directory compares it,
case-insensitively) who is a **member of the admin group** (a provisioned group's
``displayName``). The same check runs again on every request of a signed-in session, so a
user whom Entra disables, deletes or removes from the group loses access on their next
request, not at their next sign-in.

The policy (SSO on or off, the admin group, whether local passwords still work) starts from
``[sso]`` in config.toml and can be changed in the control panel; those changes, and the last
sign-in attempts, live in one small shared document (:class:`SsoState`), like the tokens.
So does when a change last ended a kind of session (:class:`Endings`): a session of that
kind that started before then stays ended when the policy flips back. A change of ``[sso]``
itself is found at start-up, against the ``[sso]`` the last start recorded there
(:meth:`SsoState.note_config`), and ends sessions the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from scim import constants
from storage.documents import SharedDocument, Unchanged
from storage.errors import NotFound
from storage.repository import Clock, Reader
from storage.shapes import FLAG, MOMENT, TEXT, DocumentShape, Record, nullable

FILE_NAME = "sso.json"
FORMAT = 1

# Why access was refused (activity events, the last-attempt record, session endings).
NOT_PROVISIONED = "not-provisioned"
DISABLED = "disabled"
NOT_IN_GROUP = "not-in-admin-group"
NO_GROUP = "no-admin-group"

# The policy settings the control panel may change; the rest of [sso] is config.toml's.
POLICY_KEYS = ("enabled", "admin_group", "local_sign_in")
# How the page and ``sso status`` name them.
POLICY_NAMES = {
    "enabled": "single sign-on",
    "admin_group": "admin group",
    "local_sign_in": "local sign-in",
}
# What of config.toml's [sso] decides who may sign in: the policy, and the identity provider
# ("configured": issuer, client id and secret are all set, so that single sign-on can be on).
CONFIG_KEYS = (*POLICY_KEYS, "issuer", "client_id", "configured")

# What no record of [sso] stands for: config.toml without [sso] (SsoSettings' defaults).
UNSET_CONFIG = {
    "enabled": False,
    "admin_group": "",
    "local_sign_in": True,
    "issuer": "",
    "client_id": "",
    "configured": False,
}
# Seconds an attempt stays the last one against a sign-in response with a bad state: a
# pending sign-in lives this long (Authlib keeps its state an hour), so a bad state sooner
# is most likely the same browser going back to or reloading the callback.
BAD_STATE_GRACE = 3600
# What a server's start writes in the document without its being used (a fresh install is
# still a target for `storage migrate`).
START_UP_KEYS = ("format", "config", "ended")

# The kinds of session a policy change can end (Endings' fields).
LOCAL, SSO, PROVIDER = "local", "sso", "provider"

_ATTEMPT = Record(
    optional={
        "time": TEXT,
        "outcome": TEXT,
        "reason": nullable(TEXT),
        "message": TEXT,
        "user": nullable(TEXT),
        "client": nullable(TEXT),
        "informative": nullable(FLAG),
    }
)
# What SsoState's readers rely on (checked once a version: storage.shapes). A recorded
# ``config`` this version cannot read is no record (_config_policy), so it is any object.
SHAPE = DocumentShape(
    FORMAT,
    optional={
        "policy": Record(
            optional={
                "enabled": nullable(FLAG),
                "admin_group": nullable(TEXT),
                "local_sign_in": nullable(FLAG),
                "changed": nullable(TEXT),
                "changed_by": nullable(TEXT),
            }
        ),
        "config": Record(),
        "ended": Record(optional={kind: MOMENT for kind in (LOCAL, SSO, PROVIDER)}),
        "last_attempt": _ATTEMPT,
        "last_success": _ATTEMPT,
    },
)


@dataclass(frozen=True)
class Policy:
    """The SSO access policy in force: config.toml's ``[sso]``, then the control panel's changes.

    ``overridden`` names the keys the control panel changed (their config.toml value no
    longer applies); ``changed``/``changed_by`` say when and by whom.
    """

    enabled: bool
    admin_group: str
    local_sign_in: bool
    overridden: frozenset[str] = frozenset()
    changed: str | None = None
    changed_by: str | None = None

    @property
    def overridden_names(self) -> str:
        """The overridden settings as a person names them ("admin group, local sign-in"): a
        bare "changed" beside "Single sign-on is enabled" reads as if that one was."""
        return ", ".join(POLICY_NAMES[key] for key in POLICY_KEYS if key in self.overridden)


@dataclass(frozen=True)
class Endings:
    """When a policy change last ended every session of a kind (None: never)."""

    local: datetime | None = None  # local sign-in stopped being allowed
    sso: datetime | None = None  # single sign-on was disabled
    provider: datetime | None = None  # config.toml named another issuer or client id


def local_allowed(policy: Policy) -> bool:
    """Whether ``policy`` lets local accounts sign in (always while SSO is off)."""
    return not policy.enabled or policy.local_sign_in


@dataclass(frozen=True)
class ConfigChange:
    """A change of config.toml's ``[sso]`` between two starts, as this start recorded it.

    :param before: and ``after``: the :data:`CONFIG_KEYS` of the two starts.
    :param ended: the kinds of session it ended (:data:`LOCAL`, :data:`SSO`, :data:`PROVIDER`).
    """

    before: Mapping[str, object]
    after: Mapping[str, object]
    ended: tuple[str, ...]

    @property
    def changed(self) -> list[str]:
        """The keys whose value changed, in :data:`CONFIG_KEYS` order."""
        return [key for key in CONFIG_KEYS if self.before.get(key) != self.after.get(key)]


@dataclass(frozen=True)
class Access:
    """The verdict on one directory user: allowed, or refused with a reason and a sentence."""

    allowed: bool
    user_id: str | None = None
    user_name: str | None = None
    reason: str | None = None
    message: str = ""


def access_by_name(reader: Reader, user_name: str, admin_group: str) -> Access:
    """May the directory user called ``user_name`` use the control panel?"""
    ids = reader.find(constants.USER_TYPE, "userName", user_name)
    if not ids:
        return Access(
            False,
            user_name=user_name,
            reason=NOT_PROVISIONED,
            message=f"{user_name!r} is not a provisioned user of this Proware: Entra has not "
            "created it here. Assign the user (or a group holding it) to the Proware app in "
            "Entra, and let provisioning run.",
        )
    return access_by_id(reader, ids[0], admin_group)


def access_by_id(reader: Reader, user_id: str, admin_group: str) -> Access:
    """May the directory user with ``user_id`` (still) use the control panel?"""
    try:
        user = reader.get(constants.USER_TYPE, user_id)
    except NotFound:
        return Access(
            False,
            user_id=user_id,
            reason=NOT_PROVISIONED,
            message="This account is no longer provisioned: Entra removed it from Proware.",
        )
    name = user.get("userName")
    # Only provisioning's "active": true lets a user in. RFC 7643 §4.1.1 gives active no
    # default and Entra always sends it, so a user created without it (by another client)
    # is not active: the control panel shows it so, and SCIM returns no active.
    if user.get("active") is not True:
        said = (
            "is not active in Proware's directory (the provisioning client never sent "
            "active = true)"
            if user.get("active") is None
            else "is disabled in Proware's directory (Entra set active to false)"
        )
        return Access(
            False, user_id=user_id, user_name=name, reason=DISABLED, message=f"{name!r} {said}."
        )
    group_ids = reader.find(constants.GROUP_TYPE, "displayName", admin_group)
    if not group_ids:
        return Access(
            False,
            user_id=user_id,
            user_name=name,
            reason=NO_GROUP,
            message=f"The admin group {admin_group!r} is not a provisioned group: assign it to "
            "the Proware app in Entra so that provisioning creates it, or change the admin "
            "group.",
        )
    if group_ids[0] not in reader.groups_of(user_id):
        return Access(
            False,
            user_id=user_id,
            user_name=name,
            reason=NOT_IN_GROUP,
            message=f"{name!r} is not a member of the admin group {admin_group!r}. Add the "
            "user to that group in Entra; provisioning brings the change here.",
        )
    return Access(True, user_id=user_id, user_name=name)


@dataclass(frozen=True)
class Attempt:
    """One SSO sign-in attempt, as the settings page and ``sso status`` show it."""

    time: str
    outcome: str  # "success" or "refused"
    reason: str | None = None
    message: str = ""
    user: str | None = None
    client: str | None = None


class SsoState:
    """The control panel's changes to the SSO policy, and the last sign-in attempts.

    Layout, format 1::

        {"format": 1,
         "policy": {"admin_group": "Proware Admins", "changed": "...", "changed_by": "admin:ann"},
         "last_attempt": {"time": "...", "outcome": "refused", "reason": "disabled", ...},
         "last_success": {...},
         "ended": {"local": "2026-12-04T12:00:00.250000+00:00", "sso": "..."}}

    ``ended`` keeps full precision: a session that started a moment before the change must
    not pass for one started after it.

    :param defaults: the policy from config.toml, which keys absent from ``policy`` keep.
    """

    def __init__(self, control: SharedDocument, defaults: Policy, clock: Clock) -> None:
        self._control = control
        control.declare(SHAPE)
        self.defaults = defaults
        self._clock = clock

    def policy(self) -> Policy:
        """The policy in force now (one ``stat`` of the file, re-read only when it changed)."""
        return self._control.derived(self._policy)

    def change_policy(self, by: str, **changes: object) -> Policy:
        """Record the control panel's change of some of :data:`POLICY_KEYS`.

        A value equal to config.toml's is stored too: it was chosen, and stays if the file
        changes later.
        """
        unknown = set(changes) - set(POLICY_KEYS)
        if unknown:
            raise ValueError(f"not a policy setting: {', '.join(sorted(unknown))}")

        def apply(document: dict) -> None:
            before = self._policy(document)
            policy = self._section(document, "policy")
            policy.update(changes)
            policy["changed"] = self._now()
            policy["changed_by"] = by
            document["policy"] = policy
            self._note_endings(document, before)

        self._control.update(apply)
        return self.policy()

    def reset_policy(self) -> Policy:
        """Forget the control panel's changes: config.toml's ``[sso]`` applies again."""

        def apply(document: dict) -> None:
            before = self._policy(document)
            document.pop("policy", None)
            self._note_endings(document, before)

        self._control.update(apply)
        return self.policy()

    def note_config(self, config: Mapping[str, object]) -> ConfigChange | None:
        """Compare config.toml's ``[sso]`` (:data:`CONFIG_KEYS`, as this process read it) with
        the one recorded at the last start, and record it.

        A change ends the sessions the policy now in force would not allow, at this moment,
        as a control panel change does: local ones when local sign-in stops being allowed,
        single sign-on ones when single sign-on stops being on or names another issuer or
        client id. The control panel's overrides apply on both sides, so a config.toml value
        they hide ends nothing. No record stands for :data:`UNSET_CONFIG`: a start without
        ``[sso]`` writes nothing.

        :returns: the change; None when there is none, when another process of the same
            start recorded it first, and when no start recorded one before (an install's
            first start, or an older Proware's): then it is not known to be a change.
        """
        recorded: list[ConfigChange] = []
        config = {key: config[key] for key in CONFIG_KEYS}

        def apply(document: dict) -> None:
            recorded.clear()  # a store may run this again
            section = self._section(document, "config")
            previous = _config_policy(section)
            before = section if previous is not None else UNSET_CONFIG
            if before == config:
                raise Unchanged
            document["config"] = config
            old = _effective(self._policy(document, _config_policy(before)), before)
            new = _effective(self._policy(document), config)
            ended = self._note_endings(document, old, new)
            provider = ("issuer", "client_id")
            if old.enabled and new.enabled and any(before[k] != config[k] for k in provider):
                self._end(document, PROVIDER)
                ended.append(PROVIDER)
            if previous is not None:
                recorded.append(ConfigChange(before, config, tuple(ended)))

        try:
            self._control.update(apply)
        except Unchanged:
            return None
        return recorded[0] if recorded else None

    def recorded_config(self) -> Mapping[str, object] | None:
        """The ``[sso]`` (:data:`CONFIG_KEYS`) the last server start recorded; None when no
        start did (none yet, or only starts without ``[sso]``)."""
        section = self._section(self._control.read(), "config")
        return section if _config_policy(section) is not None else None

    def started_with(self, config: Mapping[str, object]) -> list[str]:
        """The :data:`CONFIG_KEYS` in which the ``[sso]`` the last server start recorded
        differs from ``config``: another process started since with another config.toml, or
        config.toml changed since the last start."""
        recorded = self.recorded_config() or UNSET_CONFIG
        return ConfigChange(recorded, config, ()).changed

    def endings(self) -> Endings:
        """When a policy change last ended local or single sign-on sessions."""
        return self._control.derived(self._endings)

    def record(self, attempt: Attempt, *, informative: bool = True) -> None:
        """Keep ``attempt`` as the last one (and as the last success, if it is one).

        :param informative: False for a response that belongs to no pending sign-in (a bad
            state: a reload, the back button, an old tab, or anyone's URL). It replaces only
            an attempt of its kind, or one older than :data:`BAD_STATE_GRACE`, so the admin
            still sees the refusal (or the success) that the person met just before.
        """
        record = {key: value for key, value in vars(attempt).items() if value is not None}
        if not informative:
            record["informative"] = False

        def apply(document: dict) -> None:
            self._stamp_format(document)
            if not informative and not _replaceable(document.get("last_attempt"), attempt.time):
                raise Unchanged
            document["last_attempt"] = record
            if attempt.outcome == "success":
                document["last_success"] = record

        try:
            self._control.update(apply)
        except Unchanged:
            pass

    def last_attempt(self) -> Attempt | None:
        """The newest sign-in attempt through SSO, if there was one."""
        return self._attempt("last_attempt")

    def last_success(self) -> Attempt | None:
        """The newest successful sign-in through SSO, if there was one."""
        return self._attempt("last_success")

    def now(self) -> str:
        """The current time as the records keep it."""
        return self._now()

    # -- internals ------------------------------------------------------------------------

    def _policy(self, document: dict, defaults: Policy | None = None) -> Policy:
        """The policy in force: ``defaults`` (config.toml's) with the control panel's changes."""
        section = self._section(document, "policy")
        policy = defaults or self.defaults
        overridden = set()
        for key in POLICY_KEYS:
            value = section.get(key)
            expected = type(getattr(policy, key))
            if isinstance(value, expected):
                policy = replace(policy, **{key: value})
                overridden.add(key)
        return replace(
            policy,
            overridden=frozenset(overridden),
            changed=section.get("changed") if overridden else None,
            changed_by=section.get("changed_by") if overridden else None,
        )

    def _note_endings(
        self, document: dict, before: Policy, after: Policy | None = None
    ) -> list[str]:
        """Record the moment the change from ``before`` to ``after`` (the policy ``document``
        now makes) ended a kind of session; returns the kinds it ended."""
        after = after or self._policy(document)
        ended = []
        if local_allowed(before) and not local_allowed(after):
            ended.append(LOCAL)
        if before.enabled and not after.enabled:
            ended.append(SSO)
        for kind in ended:
            self._end(document, kind)
        return ended

    def _end(self, document: dict, kind: str) -> None:
        """Record that every session of ``kind`` that started until now has ended."""
        ended = self._section(document, "ended")
        ended[kind] = self._clock().astimezone(UTC).isoformat()
        document["ended"] = ended

    def _endings(self, document: dict) -> Endings:
        section = self._section(document, "ended")
        return Endings(**{kind: _moment(section.get(kind)) for kind in (LOCAL, SSO, PROVIDER)})

    def _attempt(self, key: str) -> Attempt | None:
        record = self._section(self._control.read(), key)
        if not record.get("time") or not record.get("outcome"):
            return None
        known = {name: record.get(name) for name in Attempt.__dataclass_fields__}
        return Attempt(**{name: value for name, value in known.items() if value is not None})

    def _section(self, document: dict, key: str) -> dict:
        self._stamp_format(document)
        return dict(document.get(key) or {})  # an object when there (SHAPE)

    def _stamp_format(self, document: dict) -> None:
        document.setdefault("format", FORMAT)  # another is refused as damage (SHAPE)

    def _now(self) -> str:
        moment = self._clock().astimezone(UTC).replace(microsecond=0)
        return moment.isoformat().replace("+00:00", "Z")


def _replaceable(last: object, now: str) -> bool:
    """Whether an uninformative attempt at ``now`` may replace the recorded ``last`` one."""
    if not isinstance(last, dict) or last.get("informative") is False:
        return True
    try:
        age = datetime.fromisoformat(now) - datetime.fromisoformat(str(last.get("time")))
    except ValueError:
        return True
    return age.total_seconds() >= BAD_STATE_GRACE


def _config_policy(config: Mapping[str, object]) -> Policy | None:
    """The policy defaults a recorded ``[sso]`` made; None when there is no record (or one
    this version cannot read)."""
    enabled, group, local = (config.get(key) for key in POLICY_KEYS)
    if set(config) != set(CONFIG_KEYS) or not (
        isinstance(enabled, bool) and isinstance(group, str) and isinstance(local, bool)
    ):
        return None
    return Policy(enabled=enabled, admin_group=group, local_sign_in=local)


def _effective(policy: Policy, config: Mapping[str, object]) -> Policy:
    """``policy`` as it acts: single sign-on is off while the identity provider is not set."""
    return replace(policy, enabled=policy.enabled and config.get("configured") is True)


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None  # MOMENT (SHAPE)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)
