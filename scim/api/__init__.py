"""The SCIM HTTP interface: one blueprint under the configured prefix (default /scim/v2)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, g, request

from scim import errors
from scim.api import discovery, resources
from scim.api.auth import Refused, authenticate
from scim.api.context import services


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
    """One activity event per data-changing or refused request (issue: monitor deployment)."""
    event = getattr(g, "scim_event", None)
    changed = request.method in ("POST", "PUT", "PATCH", "DELETE") and not request.path.endswith(
        "/.search"
    )
    if response.status_code < 400 and not changed:
        return response
    token = getattr(g, "token", None)
    record: dict[str, Any] = {
        "time": g.get("request_started_at"),
        "request_id": g.get("request_id"),
        "client": request.remote_addr,
        "token": token.name if token else None,
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
    }
    if event:
        record.update(event)
    error = g.get("scim_error")
    if error is not None:
        record["detail"] = error.detail
        if isinstance(error, Refused):
            record["reason"] = error.reason
    services().emit(record)
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
