"""The SCIM HTTP interface: one blueprint under the configured prefix (default /scim/v2).

Thin views (:mod:`scim.api.resources`, :mod:`scim.api.discovery`) turn a request into one
:class:`scim.service.Directory` call and its result into a response; :mod:`scim.api.auth`
checks the bearer token, :mod:`scim.api.responses` reads bodies and renders errors, and
:mod:`scim.api.context` holds the objects an app works with. Imports the rest of
:mod:`scim` and Flask, nothing of ``admin`` or ``server``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from flask import Blueprint, Response, g, request

from scim import constants
from scim.api import discovery, resources
from scim.api.auth import Refused, authenticate, server_refusal
from scim.api.context import request_context, services

# The WSGI environ key under which the HTTP server hands the app a request it refused before
# the app read it (server.httpserver.ScimErrorTask): ``(status, detail)``, the body left out.
# The app answers and records it as its own refusals; only a server sets environ keys.
SERVER_REFUSAL = "proware.server_refusal"


def create_blueprint(prefix: str) -> Blueprint:
    """The SCIM routes, every one behind bearer-token authentication.

    Requests under ``prefix`` that match no route (404) or no method of their route (405)
    belong to no blueprint, so Flask runs none of the blueprint's hooks for them: the
    app-wide hooks below authenticate them and log them in the same way. A catch-all
    ``/<path:...>`` route would do the first, but it answers every path for every method and
    so turns each 405 into a 404.
    """
    blueprint = Blueprint("scim", __name__, url_prefix=prefix)
    blueprint.before_request(authenticate)
    resources.register(blueprint)
    discovery.register(blueprint)
    blueprint.after_request(_emit_event)
    blueprint.after_request(_scim_media_type)

    def unrouted() -> bool:
        path = request.path
        return request.url_rule is None and (path == prefix or path.startswith(prefix + "/"))

    @blueprint.before_app_request
    def refused_by_server() -> None:
        # First of the hooks: the view (and the rest of the authentication) must not run.
        refusal = request.environ.get(SERVER_REFUSAL)
        if refusal is not None:
            raise server_refusal(*refusal)

    @blueprint.before_app_request
    def authenticate_unrouted() -> None:
        if unrouted():
            authenticate()

    @blueprint.after_app_request
    def emit_unrouted(response: Response) -> Response:
        return _emit_event(response) if unrouted() else response

    return blueprint


def _scim_media_type(response: Response) -> Response:
    """application/scim+json on every SCIM response (Entra Q8), Flask's own OPTIONS answer too."""
    if response.status_code != 304:
        response.mimetype = constants.SCIM_MEDIA_TYPE
    return response


def _emit_event(response: Response) -> Response:
    """An activity event for every refused or failed request (a client's repeated refusals
    for want of a valid token are counted by the refusal listener).

    Successful changes are not emitted here: the service commits their events with the
    change itself, and the repository hands them on after the commit.
    """
    if response.status_code < 400:
        return response
    event = request_context(response.status_code)
    error = g.get("scim_error")
    if error is not None:
        event["detail"] = error.detail
        event["operation"] = "refused" if isinstance(error, Refused) else "failed"
        if isinstance(error, Refused):
            event["reason"] = error.reason
            if g.get("token") is None:
                # No valid token: a scanner's or a misconfigured client's retries are
                # counted, not written one by one (admin.refusals).
                services().emit_refusal(event)
                return response
    services().emit(event)
    return response


_REPEATED_SLASHES = re.compile(r"/{2,}")


def collapse_slashes(path: str) -> str:
    """``path`` with each run of slashes made one, as the SCIM routes see it."""
    return _REPEATED_SLASHES.sub("/", path)


class NormalizeSlashes:
    """WSGI middleware: answer Entra's URL forms directly, without a redirect.

    Entra appends "/Users" to the Tenant URL, so a Tenant URL ending in "/" gives
    "/scim/v2//Users"; some clients add a trailing slash. Werkzeug would redirect both.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        normalized = collapse_slashes(environ.get("PATH_INFO", ""))
        if len(normalized) > 1:
            normalized = normalized.rstrip("/") or "/"
        environ["PATH_INFO"] = normalized
        return self.app(environ, start_response)


class CanonicalEndpoints:
    """WSGI middleware: resource endpoint names in any case, ``/users`` as ``/Users``.

    RFC 7644 spells them ``/Users`` and ``/Groups``, but Microsoft's own reference service
    matches them case-insensitively and several clients send ``/users``. Only the segment
    right after the SCIM prefix is respelled (and ``.search`` after it); ``meta.location``
    and ``Location`` keep the canonical spelling. Runs after :class:`NormalizeSlashes`, on a
    path without repeated slashes.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], prefix: str) -> None:
        self.app = app
        self.prefix = prefix + "/"
        names = (*resources.ENDPOINTS, resources.ME_ENDPOINT, *discovery.ENDPOINTS, ".search")
        self.canonical = {name.casefold(): name for name in names}

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(self.prefix):
            segment, slash, rest = path[len(self.prefix) :].partition("/")
            name = self.canonical.get(segment.casefold(), segment)
            if rest.casefold() == ".search":  # /Users/.search
                rest = ".search"
            environ["PATH_INFO"] = f"{self.prefix}{name}{slash}{rest}"
        return self.app(environ, start_response)
