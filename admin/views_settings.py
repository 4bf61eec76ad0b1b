"""Control panel > Admin > Control panel settings: the User Provisioning section.

The switch, Create bearer token (the token shown once), the tokens table with Revoke, the
Tenant URL and the Connection status. Tokens and the switch go through :mod:`scim.tokens`,
the same objects the SCIM API authenticates with, so a change applies to the next request.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)

from admin import views_sso
from admin.connection import REASONS, TokenStatus
from admin.context import AdminContext, context
from scim.api.context import base_url
from scim.tokens import MAX_EXPIRY_DAYS, TokenInfo

log = logging.getLogger("proware.admin")

# An expired token sends Entra's job into quarantine: warn this long before.
EXPIRY_WARNING = timedelta(days=14)
# The first token's name, as the README and the banner's `token create --name entra` call it.
DEFAULT_TOKEN_NAME = "entra"


@dataclass(frozen=True)
class TokenRow:
    """A row of the tokens table."""

    info: TokenInfo
    days_left: int | None  # until expiry, for active tokens that expire
    expiring_soon: bool


@dataclass(frozen=True)
class ConnectionSection:
    """The connection status of one token, or of requests with no valid token (name None)."""

    name: str | None
    token: TokenInfo | None
    status: TokenStatus


def register(blueprint: Blueprint) -> None:
    """Add the control panel home and the settings routes."""
    blueprint.add_url_rule("/", "home", home)
    blueprint.add_url_rule("/settings", "settings", settings)
    blueprint.add_url_rule(
        "/settings/provisioning", "set_provisioning", set_provisioning, methods=["POST"]
    )
    blueprint.add_url_rule("/settings/tokens", "create_token", create_token, methods=["POST"])
    blueprint.add_url_rule(
        "/settings/tokens/revoke", "revoke_token", revoke_token, methods=["GET", "POST"]
    )


def home() -> str:
    """Control panel: where everything is."""
    return render_template("admin/home.html", provisioning=context().services.switch.status())


def settings() -> str:
    """Control panel settings, with the User Provisioning section."""
    return _settings_page()


def set_provisioning() -> Response:
    """Turn User Provisioning on or off (the same flag as ``python app.py provisioning``)."""
    admin = context()
    enable = request.form.get("enabled") == "1"
    admin.services.switch.set(enable, by=f"admin:{g.admin}")
    admin.note("enable provisioning" if enable else "disable provisioning")
    if enable:
        flash(
            "User Provisioning is enabled: SCIM requests with a valid token are served, "
            f"{admin.propagation}.",
            "success",
        )
    else:
        flash(
            f"User Provisioning is disabled: every SCIM request gets 403, {admin.propagation}.",
            "info",
        )
    return redirect(url_for("admin.settings", _anchor="user-provisioning"))  # type: ignore[return-value]


def create_token() -> Response | str:
    """Create bearer token: the secret is in this response only, never stored or logged."""
    admin = context()
    name = request.form.get("name", "").strip()
    read_only = request.form.get("scope") == "read-only"
    days_text = request.form.get("expires_days", "").strip()
    form = {"name": name, "scope": "read-only" if read_only else "read-write", "days": days_text}
    field = "days"  # the field a refusal is about, marked invalid and focused on the page
    try:
        days = _expiry_days(days_text)
        field = "name"
        secret, info = admin.services.tokens.create(
            name, read_only=read_only, expires_in_days=days, created_by=f"admin:{g.admin}"
        )
    except ValueError as exc:
        body = _settings_page(token_error=str(exc), token_error_field=field, form=form)
        return Response(body, status=400, mimetype="text/html")
    admin.note("create token", token=info.name)
    log.info("admin %s created %s token %r", g.admin, info.scope, info.name)
    return _settings_page(new_token=secret, new_token_info=info)


def revoke_token() -> Response | str:
    """GET: ask for confirmation. POST: revoke; requests with the token get 401 (at once on
    this server process, within a quarter of a second on the others on PostgreSQL)."""
    admin = context()
    name = request.values.get("name", "")
    if request.method != "POST":  # GET, and HEAD (Flask routes it here too)
        active = [t for t in admin.services.tokens.list() if t.name == name and not t.revoked]
        if not active:
            flash(f"There is no active token named {name!r}.", "error")
            return redirect(url_for("admin.settings", _anchor="tokens"))  # type: ignore[return-value]
        return render_template("admin/revoke.html", token=active[0], propagation=admin.propagation)
    try:
        admin.services.tokens.revoke(name)
    except KeyError:
        flash(f"There is no active token named {name!r}; nothing was revoked.", "error")
        return redirect(url_for("admin.settings", _anchor="tokens"))  # type: ignore[return-value]
    admin.note("revoke token", token=name)
    log.info("admin %s revoked token %r", g.admin, name)
    flash(f"Token {name!r} revoked: requests with it get 401, {admin.propagation}.", "success")
    return redirect(url_for("admin.settings", _anchor="tokens"))  # type: ignore[return-value]


def _settings_page(**extra: object) -> str:
    admin = context()
    services = admin.services
    tokens = services.tokens.list()
    return render_template(
        "admin/settings.html",
        provisioning=services.switch.status(),
        tokens=[_row(admin, info) for info in tokens],
        tenant_url=base_url(),  # the rule meta.location uses: [server] public_url, else request
        connection=_connection_sections(admin, tokens),
        shared_storage=admin.shared_storage,
        sso=views_sso.sso_section(admin),
        reasons=REASONS,
        max_expiry_days=MAX_EXPIRY_DAYS,
        form=extra.pop("form", None) or _blank_form(tokens),
        **extra,
    )


def _blank_form(tokens: list[TokenInfo]) -> dict[str, str]:
    """Create bearer token as first shown: named "entra" while that name is free.

    Pressing the button is then the whole step. An empty field showing "entra" as its grey
    placeholder looked filled in, and the press got only "Please fill out this field".
    """
    taken = any(t.name == DEFAULT_TOKEN_NAME and t.revoked is None for t in tokens)
    return {"name": "" if taken else DEFAULT_TOKEN_NAME, "scope": "read-write", "days": ""}


def _row(admin: AdminContext, info: TokenInfo) -> TokenRow:
    days_left = None
    soon = False
    if info.expires is not None and info.status == "active":
        left = info.expires - admin.clock()
        days_left = max(0, math.ceil(left / timedelta(days=1)))
        soon = left <= EXPIRY_WARNING
    return TokenRow(info=info, days_left=days_left, expiring_soon=soon)


def _connection_sections(admin: AdminContext, tokens: list[TokenInfo]) -> list[ConnectionSection]:
    """Active tokens first (even without requests yet), then others seen, then no token.

    Each token has its own history, even beside a revoked token of the same name.
    """
    statuses = {status.token_id: status for status in admin.connection.synced().tokens()}
    sections: list[ConnectionSection] = []
    for info in tokens:  # newest first
        status = statuses.pop(info.id, None)
        if status is None and info.status != "active":
            continue
        sections.append(
            ConnectionSection(info.name, info, status or TokenStatus(info.name, info.id))
        )
    for token_id, status in statuses.items():
        if token_id is not None:
            sections.append(ConnectionSection(status.name, None, status))
    if None in statuses:
        sections.append(ConnectionSection(None, None, statuses[None]))
    return sections


def _expiry_days(text: str) -> int | None:
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_EXPIRY_DAYS:
        raise ValueError(
            f"expiry must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}, or empty for "
            "a token that does not expire"
        )
    return int(text)
