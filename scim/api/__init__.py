"""The SCIM HTTP interface: one blueprint under the configured prefix (default /scim/v2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from flask import Blueprint, Response, g, request

from scim import errors
from scim.api import discovery, resources
from scim.api.auth import Refused, authenticate
from scim.api.context import request_context, services


def create_blueprint(prefix: str) -> Blueprint:
    """The SCIM routes, every one behind bearer-token authentication."""
    blueprint = Blueprint("scim", __name__, url_prefix=prefix)
    blueprint.before_request(authenticate)
    resources.register(blueprint)
    discovery.register(blueprint)
    blueprint.after_request(_emit_event)

    @blueprint.route("/<path:unknown>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def unknown_endpoint(unknown: str) -> Response:
        raise errors.NotFound(f"no such endpoint: {request.method} {request.path}")

    return blueprint


def _emit_event(response: Response) -> Response:
    """An activity event for every refused or failed request.

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
    services().emit(event)
    return response


class NormalizeSlashes:
    """WSGI middleware: answer Entra's URL forms directly, without a redirect.

    Entra appends "/Users" to the Tenant URL, so a Tenant URL ending in "/" gives
    "/scim/v2//Users"; some clients add a trailing slash. Werkzeug would redirect both.
    """

    _REPEATED = re.compile(r"/{2,}")

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        normalized = self._REPEATED.sub("/", path)
        if len(normalized) > 1:
            normalized = normalized.rstrip("/") or "/"
        environ["PATH_INFO"] = normalized
        return self.app(environ, start_response)
