"""Proware's control panel at ``/admin``, served by the same process as the SCIM API.

A client of the same service and storage layers as the SCIM blueprints (``Services``): it
reads the directory through :class:`scim.service.Directory`, tokens and the User
Provisioning switch through :mod:`scim.tokens`, and never touches TinyDB.

``register(app, services, ...)`` wires it into an app: the blueprint (pages, static files), the
session secret and cookie, the audit log fed by ``services.listeners`` (and, for refusals
without a valid token, by the digest that counts a client's repeats), the connection
status fed by every SCIM request, HTML error pages for ``/admin`` paths, and the serve hook
that prints the first-run setup link.

Views live in ``views_*.py``; sessions, CSRF, accounts, the audit log, the connection status
and single sign-on (:mod:`admin.sso`, :mod:`admin.sso_access`) have a module each. May
import :mod:`scim` and :mod:`storage`; never ``server`` or ``app``.
"""

from __future__ import annotations

import atexit
import logging
import sys
from collections.abc import Callable
from functools import partial
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, g, request, session
from flask.blueprints import BlueprintSetupState
from werkzeug.datastructures import MultiDict

from admin import (
    activity,
    csrf,
    pages,
    sessions,
    views_activity,
    views_auth,
    views_directory,
    views_settings,
    views_sso,
)
from admin.accounts import FILE_NAME as ACCOUNTS_FILE
from admin.accounts import AdminAccounts
from admin.activity import admin_event, printable
from admin.audit import activity_log
from admin.connection import FILE_NAME as CONNECTION_FILE
from admin.connection import ConnectionStatus, Observation
from admin.context import (
    EXTENSION,
    PATH,
    SETUP_PATH,
    AdminContext,
    Provider,
    SingleSignOn,
    context,
    setup_url,
    utcnow,
)
from admin.refusals import RefusalDigest
from admin.sessions import RevokedSessions, SessionPolicy
from admin.settings import ClientSecret, SsoSettings
from admin.setup_link import FILE_NAME as SETUP_FILE
from admin.setup_link import SetupLinks
from admin.sso import RelyingParty
from admin.sso_access import FILE_NAME as SSO_FILE
from admin.sso_access import LOCAL, PROVIDER, SSO, Policy, SsoState
from scim.api.auth import Refused
from scim.api.context import Services
from scim.api.responses import register_html_errors
from scim.tokens import propagation
from storage.backend import Backend
from storage.documents import SharedDocument
from storage.errors import WriteFailed
from storage.repository import Clock
from storage.settings import POSTGRESQL

log = logging.getLogger("proware.sso")


def register(
    app: Flask,
    services: Services,
    *,
    backend: Backend,
    sso: SsoSettings | None = None,
    sso_secret: ClientSecret | None = None,
    clock: Clock = utcnow,
) -> AdminContext:
    """Serve the control panel from ``app``; returns its context.

    :param backend: where its state lives (accounts, sessions, activity, ...): documents
        every server process shares, or files of the data directory.
    :param sso: the ``[sso]`` settings, and :param sso_secret: the client secret the process
        read for them (None: none configured, single sign-on cannot be turned on).
    """
    sso = sso or SsoSettings()
    sessions.configure(app, backend.secret(sessions.KEY_FILE), PATH)
    admin = AdminContext(
        services=services,
        accounts=AdminAccounts(
            backend.document(ACCOUNTS_FILE), clock=clock, unknown_failures=backend.failure_log()
        ),
        audit=activity_log(backend),
        connection=ConnectionStatus(backend.document(CONNECTION_FILE), clock=clock),
        setup=SetupLinks(backend.document(SETUP_FILE), clock),
        revoked=RevokedSessions(backend.document(sessions.REVOKED_FILE), clock),
        session_policy=SessionPolicy(),
        sso=single_sign_on(sso, sso_secret, backend.document(SSO_FILE), clock),
        clock=clock,
        refusals=RefusalDigest(clock=clock),
        propagation=propagation(backend.name),
        shared_storage=backend.name == POSTGRESQL,
    )
    # Change events arrive after their commit (the store made them durable with the change);
    # refusals and failures as the SCIM blueprint answers them, those for want of a valid
    # token through the digest (a client's repeats become one count).
    services.listeners.append(admin.audit.append)
    services.refusal_listener = partial(admin.refusals.offer, write=services.emit)
    # The store calls this before it discards journal records that carry events, so the
    # audit log is on disk before the store's own copy of those events goes (no fsync per
    # request). Stores without a journal never call it.
    services.repository.add_compaction_hook(admin.audit.sync)
    # Events committed before a crash but never appended here are still in the journal
    # (JournalRepository.recent_events, beyond the Repository interface).
    recent_events = getattr(services.repository, "recent_events", None)
    if callable(recent_events):
        admin.audit.catch_up(recent_events)
    note_config_change(admin)
    app.extensions[EXTENSION] = admin
    app.register_blueprint(create_blueprint())
    app.after_request(_connection_observer(services.scim.prefix, admin.connection))
    register_html_errors(app, PATH, pages.error_page)
    # server.commands.serve calls these with the command prefix, e.g. "python app.py".
    app.extensions.setdefault("serve_hooks", []).append(
        lambda command, base_url, note="": on_serve(app, command, base_url, note=note)
    )
    return admin


def single_sign_on(
    settings: SsoSettings, secret: ClientSecret | None, state: SharedDocument, clock: Clock
) -> SingleSignOn:
    """Single sign-on from ``[sso]``: a relying party once issuer, client id and secret are set."""
    relying_party = None
    if settings.issuer and settings.client_id and secret is not None:
        relying_party = RelyingParty(
            issuer=settings.issuer,
            client_id=settings.client_id,
            client_secret=secret.value,
            scopes=settings.scopes,
        )
    provider = Provider(
        issuer=settings.issuer,
        client_id=settings.client_id,
        scopes=settings.scopes,
        username_claim=settings.username_claim,
        secret_source=secret.source if secret is not None else "",
    )
    defaults = Policy(
        enabled=settings.enabled,
        admin_group=settings.admin_group,
        local_sign_in=settings.local_sign_in,
    )
    config = {
        "enabled": settings.enabled,
        "admin_group": settings.admin_group,
        "local_sign_in": settings.local_sign_in,
        "issuer": settings.issuer,
        "client_id": settings.client_id,
        "configured": relying_party is not None,
    }
    return SingleSignOn(provider, relying_party, SsoState(state, defaults, clock), config)


def note_config_change(admin: AdminContext) -> None:
    """At start-up: a change of config.toml's ``[sso]`` since the last start ends the sessions
    the new policy would not allow, as a control panel change does, and is recorded in the
    activity log, once, by whichever process of the start records it first."""
    sso = admin.sso
    change = sso.state.note_config(sso.config)
    if change is None:
        return
    changes = "; ".join(
        f"{key} {_shown(change.before.get(key))} -> {_shown(change.after.get(key))}"
        for key in change.changed
    )
    ended = [_ENDED_BY_CONFIG[kind] for kind in change.ended]
    overridden = sorted(set(change.changed) & sso.policy().overridden)
    detail = f"config.toml's [sso] changed since the last start: {changes}."
    if overridden:
        detail += f" The control panel's change of {', '.join(overridden)} still applies."
    detail += f" Ended: {', '.join(ended)}." if ended else " No session ended."
    admin.audit.append(
        admin_event(
            admin.clock(),
            "config.toml",
            "single sign-on changed in config.toml",
            changed=change.changed,
            ended=list(change.ended),
            detail=detail,
        )
    )
    log.warning("%s", printable(detail))


# Kind of session -> what the activity log says a config.toml change ended.
_ENDED_BY_CONFIG = {
    LOCAL: "every local (password) session",
    SSO: "every single sign-on session",
    PROVIDER: "every single sign-on session of the previous identity provider",
}


def _shown(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower()


def _finalize_shown_values(state: BlueprintSetupState) -> None:
    """Pass every value the app's templates show through :func:`admin.pages.shown` (the
    control panel's are the app's only templates)."""
    state.app.jinja_env.finalize = pages.shown


def create_blueprint() -> Blueprint:
    """The control panel's pages and static files, every page but sign-in behind a session."""
    blueprint = Blueprint(
        "admin",
        __name__,
        url_prefix=PATH,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    blueprint.before_request(_guard)
    blueprint.after_request(_security_headers)
    blueprint.app_template_global("csrf_token")(csrf.token)
    blueprint.record_once(_finalize_shown_values)
    blueprint.app_template_filter("when")(pages.when)
    blueprint.app_template_filter("date")(pages.date)
    blueprint.app_template_global("outcome_of")(activity.outcome)
    for views in (views_auth, views_sso, views_settings, views_activity, views_directory):
        views.register(blueprint)
    return blueprint


def on_serve(
    app: Flask,
    command: str,
    base_url: str,
    out: Callable[[str], None] = print,
    *,
    note: str = "",
) -> None:
    """At ``python app.py serve``: print the setup link while no admin exists; close cleanly.

    :param note: said after the link, e.g. that ``base_url`` is the server's own address
        behind a proxy (:meth:`server.config.Settings.own_address_note`).
    """
    admin: AdminContext = app.extensions[EXTENSION]
    atexit.register(admin.close)
    base = base_url.rstrip("/")
    after = f"\n    {note}" if note else ""
    if admin.sso.enabled():
        out(f"  Single sign-on: {admin.sso.provider.issuer}")
    if admin.accounts.any() or not admin.sso.local_allowed():
        out(f"  Control panel: {base}{PATH}{after}")
        return
    who = "No local admin (the break-glass account) yet" if admin.sso.enabled() else "No admin yet"
    try:
        secret = admin.setup.issue(keep_earlier=True)  # another process's link stays
    except WriteFailed as exc:
        # A full or read-only disk: the directory still serves what it holds, so say what
        # is missing rather than refuse to start.
        out(
            f"  {who}, and no setup link could be saved ({exc}).\n"
            f"  Once the disk accepts writes again, restart to get one, or run: "
            f"{command} admin create USERNAME"
        )
        return
    out(
        f"  {who}. Set up the control panel (the link creates one admin, for "
        f"{admin.setup.minutes} minutes):\n"
        f"    {setup_url(base, secret)}{after}\n"
        f"  or run: {command} admin create USERNAME"
    )
    sys.stdout.flush()


# Paths whose last segment is a secret (the setup link): the access log leaves it out.
SECRET_PATHS = (SETUP_PATH,)

# Query parameters whose values are secrets: the single sign-on callback's code and state,
# and a bearer token sent as RFC 6750's ``access_token`` (refused, but a real token). The
# access log and the Connection status show them as REDACTED.
SECRET_PARAMETERS = frozenset({"code", "state", "id_token", "access_token", "session_state"})
REDACTED = "[redacted]"


def query_without_secrets(query: str, args: MultiDict[str, str]) -> str:
    """The raw ``query`` string, or, when it holds a secret parameter, the same parameters
    (``args``, parsed from it) encoded again with the secrets' values REDACTED."""
    if not any(name in args for name in SECRET_PARAMETERS):
        return query
    return urlencode(
        [
            (name, REDACTED if name in SECRET_PARAMETERS else value)
            for name, value in args.items(multi=True)
        ]
    )


# Pages anyone may open: signing in, first-run setup, the stylesheet and script.
_PUBLIC = frozenset(
    {
        "admin.sign_in",
        "admin.setup",
        "admin.setup_missing",
        "admin.static",
        "admin.sso_start",
        "admin.sso_callback",
    }
)


def _guard() -> Response | None:
    """CSRF check on every POST, then a signed-in session for everything but _PUBLIC."""
    if csrf.request_is_forged():
        return pages.forged_form()
    if request.endpoint in _PUBLIC:
        return None
    admin = context()
    name = session.get("admin")
    username, ended = admin.current_admin()
    if username is None:
        if ended in sessions.DEPROVISIONED:
            # Entra's change ended this session: the activity log says whose and why.
            admin.note("session ended", status=401, name=name, reason=ended, source="sso")
        return views_auth.to_sign_in(ended)
    g.admin = username
    return None


def _security_headers(response: Response) -> Response:
    """Pages that show tokens and personal data: never cached, framed or sniffed."""
    if request.endpoint != "admin.static":
        response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # The setup link's secret is in its URL: not even this site's own pages get it.
    secret_url = request.endpoint == "admin.setup"
    response.headers["Referrer-Policy"] = "no-referrer" if secret_url else "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    return response


def _connection_observer(
    prefix: str, connection: ConnectionStatus
) -> Callable[[Response], Response]:
    """The after-request hook feeding every SCIM request to the connection status.

    It runs on every request, so it reads the request once (the proxies ``request`` and
    ``g`` cost a microsecond each time they are touched, and this hook touched them 15 times).
    """
    under = prefix + "/"

    def observe(response: Response) -> Response:
        current = request._get_current_object()  # type: ignore[attr-defined]
        path = current.path
        if not (path == prefix or path.startswith(under)):
            return response
        state = vars(g._get_current_object())  # type: ignore[attr-defined]
        error = state.get("scim_error")
        # The token this request presented: authenticated, or revoked/expired but named.
        token = state.get("token") or state.get("presented_token")
        event = state.get("scim_event") or {}
        raw_query = current.environ.get("QUERY_STRING", "")
        status = response.status_code
        connection.record(
            Observation(
                time=state.get("request_started_at") or utcnow().isoformat(timespec="milliseconds"),
                client=current.remote_addr or "-",
                token=token.name if token is not None else None,
                method=current.method,
                path=path,
                query=query_without_secrets(
                    current.query_string.decode("utf-8", "replace"), current.args
                )
                if raw_query
                else "",
                filter=current.args.get("filter") if "filter" in raw_query else None,
                status=status,
                reason=error.reason if isinstance(error, Refused) else None,
                detail=error.detail if error is not None and status >= 400 else None,
                matched=event.get("matched") if event.get("operation") == "query" else None,
                token_id=token.id if token is not None else None,
                skipped=tuple(event.get("skipped", ())),
                skipped_members=tuple(event.get("skipped_members", ())),
            )
        )
        return response

    return observe
