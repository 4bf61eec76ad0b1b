"""Single sign-on: "Sign in with Microsoft", its callback, and the settings section.

The sign-in: :mod:`admin.sso` completes the OpenID Connect flow, :mod:`admin.sso_access`
decides from the directory whether the person may use the control panel. Every refusal gets a
page that says why, an activity event and the "last sign-in attempt" record, and leaves no
session behind. Policy changes made here are refused when they would end the session of the
admin making them (turning local sign-in off is only possible from a single sign-on session,
which shows that single sign-on works).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from flask import Blueprint, Response, flash, g, redirect, request, session, url_for

from admin import sessions, views_auth
from admin.activity import printable
from admin.context import AdminContext, Provider, context
from admin.sso import NO_CLAIM, SignInFailed
from admin.sso_access import (
    DISABLED,
    NOT_IN_GROUP,
    NOT_PROVISIONED,
    Attempt,
    Policy,
    access_by_id,
    access_by_name,
)
from scim import constants

log = logging.getLogger("proware.sso")

CALLBACK_PATH = "/sso/callback"

# The HTTP status of each refusal's page.
_STATUS = {
    "idp-unreachable": 502,
    "discovery-unreadable": 502,
    "keys-unreadable": 502,
    "token-unreadable": 502,
    "bad-state": 400,
    "code-refused": 400,
    "bad-token": 400,
}

# Refusals of the account the provider signed in: the provider would sign the same one in
# again, without asking, so the page offers to sign in with another.
_ACCOUNT_REFUSALS = frozenset({NOT_PROVISIONED, DISABLED, NOT_IN_GROUP, NO_CLAIM})


@dataclass(frozen=True)
class SsoSection:
    """What the settings page shows under Single sign-on."""

    provider: Provider
    configured: bool  # issuer, client id and secret are set
    policy: Policy
    enabled: bool
    redirect_uri: str
    group_id: str | None  # the provisioned admin group's id (its page lists the members)
    group_members: int
    last_attempt: Attempt | None
    last_success: Attempt | None
    signed_in_with_sso: bool
    started_elsewhere: list[str]  # [sso] keys a process started since sees otherwise


def register(blueprint: Blueprint) -> None:
    """Add the single sign-on routes."""
    blueprint.add_url_rule("/sso/start", "sso_start", start)
    blueprint.add_url_rule(CALLBACK_PATH, "sso_callback", callback)
    blueprint.add_url_rule("/settings/sso", "set_sso", set_policy, methods=["POST"])
    blueprint.add_url_rule("/settings/sso/check", "check_sso", check, methods=["POST"])


def redirect_uri() -> str:
    """The callback URL to register in Entra: ``public_url`` + path, else this request's URL."""
    public_url = context().services.public_url
    if public_url:
        return public_url.rstrip("/") + url_for("admin.sso_callback")
    return url_for("admin.sso_callback", _external=True)


def start() -> Response | str:
    """Send the browser to the identity provider ("Sign in with Microsoft")."""
    admin = context()
    relying_party = admin.sso.relying_party
    if relying_party is None or not admin.sso.enabled():
        flash("Single sign-on is not enabled on this server.", "info")
        return redirect(url_for("admin.sign_in"))  # type: ignore[return-value]
    target = views_auth.safe_next(request.args.get("next"))
    another = request.args.get("account") == "another"
    try:
        url = relying_party.authorization_url(redirect_uri(), target, another_account=another)
    except SignInFailed as failure:
        return _refused(admin, failure.reason, failure.message)
    return redirect(url)  # type: ignore[return-value]


def callback() -> Response | str:
    """Where the identity provider sends the browser back: check everything, then sign in."""
    admin = context()
    relying_party = admin.sso.relying_party
    if relying_party is None or not admin.sso.enabled():
        return _refused(admin, "sso-off", "Single sign-on is not enabled on this server.", 404)
    try:
        identity = relying_party.finish(request.args)
    except SignInFailed as failure:
        return _refused(
            admin,
            failure.reason,
            failure.message,
            informative=failure.informative,
            next=failure.next,
        )
    claim = admin.sso.provider.username_claim
    user_name = identity.claims.get(claim)
    if not isinstance(user_name, str) or not user_name.strip():
        return _refused(
            admin,
            NO_CLAIM,
            f"The ID token has no {claim!r} claim to find you in the directory by. Set [sso] "
            "username_claim to a claim Entra sends (preferred_username holds the UPN), or add "
            "the claim to the app's token configuration in Entra.",
            403,
            next=identity.next,
        )
    access = access_by_name(admin.services.repository, user_name, admin.sso.policy().admin_group)
    if not access.allowed or access.user_id is None:
        return _refused(
            admin,
            access.reason or "refused",
            access.message,
            403,
            user=user_name,
            next=identity.next,
        )
    name = access.user_name or user_name
    sessions.start_sso(name, access.user_id, admin.clock())
    admin.sso.state.record(
        Attempt(admin.sso.state.now(), "success", user=name, client=request.remote_addr)
    )
    admin.note("sign in", admin=name, name=name, id=access.user_id, source="sso")
    log.info("%s signed in with single sign-on from %s", printable(name), request.remote_addr)
    return redirect(views_auth.safe_next(identity.next))  # type: ignore[return-value]


def sso_section(admin: AdminContext) -> SsoSection:
    """The Single sign-on section of the settings page."""
    sso = admin.sso
    policy = sso.policy()
    repository = admin.services.repository
    group_ids = (
        repository.find(constants.GROUP_TYPE, "displayName", policy.admin_group)
        if policy.admin_group
        else []
    )
    members = len(repository.members(group_ids[0])) if group_ids else 0
    return SsoSection(
        provider=sso.provider,
        configured=sso.relying_party is not None,
        policy=policy,
        enabled=sso.enabled(),
        redirect_uri=redirect_uri(),
        group_id=group_ids[0] if group_ids else None,
        group_members=members,
        last_attempt=sso.state.last_attempt(),
        last_success=sso.state.last_success(),
        signed_in_with_sso=sessions.is_sso(),
        started_elsewhere=sso.started_elsewhere(),
    )


def set_policy() -> Response:
    """Turn single sign-on or local sign-in on or off, change the admin group, or revert."""
    admin = context()
    sso = admin.sso
    current = sso.policy()
    action = request.form.get("action", "")
    changes: dict[str, Any] = dict(_CHANGES.get(action, {}))
    if action == "admin-group":
        group = request.form.get("admin_group", "").strip()
        if not group or len(group) > 256:
            return _back("Give the displayName of the admin group (at most 256 characters).")
        changes = {"admin_group": group}
    elif action not in _CHANGES and action != "reset":
        return _back(f"Unknown action {action!r}.")
    proposed = sso.state.defaults if action == "reset" else replace(current, **changes)
    problem = _refusal(admin, proposed, turns_local_off=action == "local-off")
    if problem:
        return _back(problem)
    if action == "reset":
        sso.state.reset_policy()
        operation, done = "reset single sign-on", "The control panel's changes are undone: "
        done += "config.toml's [sso] applies again."
    else:
        sso.state.change_policy(f"admin:{g.admin}", **changes)
        operation, done = _DONE[action]
        if action == "admin-group":
            done = done.format(group=changes["admin_group"])
    admin.note(operation, **changes, source="sso")
    log.info("admin %s: %s", printable(g.admin), operation)
    # As for tokens and the switch: other server processes trust their copy of the policy for
    # up to a quarter of a second (measured behind nginx: 5 to 270 ms).
    flash(f"{done} This applies {admin.propagation}.", "success")
    if action == "admin-group" and not _group_exists(admin, str(changes["admin_group"])):
        flash(
            f"No provisioned group is called {changes['admin_group']!r} yet: assign it to the "
            "Proware app in Entra so that provisioning creates it.",
            "warning",
        )
    return redirect(url_for("admin.settings", _anchor="single-sign-on"))  # type: ignore[return-value]


def check() -> Response:
    """Read the identity provider's discovery document and signing keys now, ask whether its
    token endpoint refuses the client secret, and say what came of it."""
    relying_party = context().sso.relying_party
    if relying_party is None:
        return _back("Single sign-on is not configured: set [sso] in config.toml first.")
    try:
        metadata = relying_party.check_discovery()
        algorithms = relying_party.check_signing_keys()
        secret = relying_party.check_client_secret(redirect_uri())
    except SignInFailed as failure:
        return _back(failure.message)
    flash(
        f"The identity provider answers: {relying_party.discovery_url} names the issuer "
        f"{metadata['issuer']} and its sign-in page {metadata['authorization_endpoint']}; "
        f"its signing keys verify {', '.join(algorithms)}. Client secret: {secret}.",
        "success",
    )
    return redirect(url_for("admin.settings", _anchor="single-sign-on"))  # type: ignore[return-value]


# action -> the policy change it makes ("admin-group" takes its value from the form)
_CHANGES: dict[str, dict[str, bool]] = {
    "enable": {"enabled": True},
    "disable": {"enabled": False},
    "local-on": {"local_sign_in": True},
    "local-off": {"local_sign_in": False},
}

# action -> (activity operation, what the page then says)
_DONE = {
    "enable": (
        "enable single sign-on",
        "Single sign-on is enabled: the sign-in page offers Sign in with Microsoft.",
    ),
    "disable": (
        "disable single sign-on",
        "Single sign-on is disabled: its sessions have ended "
        "and local accounts sign in with their passwords.",
    ),
    "local-on": ("enable local sign-in", "Local accounts may sign in with their passwords."),
    "local-off": (
        "disable local sign-in",
        "Local sign-in is off: everyone signs in with "
        "Microsoft, and local accounts' sessions have ended.",
    ),
    "admin-group": (
        "change admin group",
        "The admin group is now {group!r}: its active members may use the control panel.",
    ),
}


def _refusal(admin: AdminContext, proposed: Policy, *, turns_local_off: bool) -> str | None:
    """Why ``proposed`` must not be applied now, or None.

    :param turns_local_off: the change asked for is "Turn local sign-in off".
    """
    sso = admin.sso
    # Whatever single sign-on's state: an override stored now from a password session would
    # lock every local (break-glass) account out the day single sign-on is turned on.
    if turns_local_off and not sessions.is_sso():
        if not sso.enabled():
            return (
                "Local sign-in can be turned off only from a session signed in with Microsoft, "
                "and single sign-on is not enabled: enable it and sign in with Microsoft first. "
                "Nothing was changed."
            )
        return (
            "Sign in with Microsoft first: local sign-in can be turned off only from a single "
            "sign-on session, which shows that single sign-on works. Nothing was changed."
        )
    if proposed.enabled and sso.relying_party is None:
        return (
            "Single sign-on needs [sso] issuer, client_id and client_secret_file in "
            "config.toml, and a restart, before it can be enabled."
        )
    if proposed.enabled and not proposed.admin_group:
        return "Set the admin group before enabling single sign-on."
    enabled = proposed.enabled and sso.relying_party is not None
    if sessions.is_sso():
        if not enabled:
            if not admin.accounts.any():
                return (
                    "You are signed in with single sign-on and no local admin account exists: "
                    "turning it off would lock everyone out. Create a local admin first "
                    "(python app.py admin create USERNAME)."
                )
            return None
        access = access_by_id(
            admin.services.repository, str(session.get("sso")), proposed.admin_group
        )
        if not access.allowed:
            return f"That would sign you out: {access.message}"
        return None
    if enabled and not proposed.local_sign_in:
        return (
            "Sign in with Microsoft first: local sign-in can be turned off only from a single "
            "sign-on session, which shows that single sign-on works."
        )
    return None


def _refused(
    admin: AdminContext,
    reason: str,
    message: str,
    status: int | None = None,
    *,
    informative: bool = True,
    next: str | None = None,
    **fields: object,
) -> Response:
    """The sign-in page saying why, with the attempt recorded; no session is started.

    :param informative: see :meth:`admin.sso_access.SsoState.record`.
    :param next: where the refused sign-in was headed (its flow's ``next``), kept on the page
        so that signing in from it goes there; None on a request that carries ``next``
        itself (the start), where the page reads it.
    """
    client = request.remote_addr
    user = fields.get("user")
    admin.sso.state.record(
        Attempt(
            admin.sso.state.now(),
            "refused",
            reason=reason,
            message=message,
            user=str(user) if user else None,
            client=client,
        ),
        informative=informative,
    )
    admin.note_refused_sign_in(
        status=status or _STATUS.get(reason, 403),
        name=user,
        reason=reason,
        detail=message,
        source="sso",
    )
    # The message can carry the provider's or the user's text: escaped, it forges no line.
    log.warning("single sign-on refused (%s) from %s: %s", reason, client, printable(message))
    return views_auth.sign_in_page(
        next=None if next is None else views_auth.safe_next(next),
        sso_error=message,
        sso_another_account=reason in _ACCOUNT_REFUSALS,
        status=status or _STATUS.get(reason, 403),
    )


def _back(message: str) -> Response:
    flash(message, "error")
    return redirect(url_for("admin.settings", _anchor="single-sign-on"))  # type: ignore[return-value]


def _group_exists(admin: AdminContext, name: str) -> bool:
    return bool(admin.services.repository.find(constants.GROUP_TYPE, "displayName", name))
