"""Proware provisioning: compose the app from its settings, and the operator command line.

    python app.py serve
    python app.py token create --name entra [--read-only] [--expires DAYS]
    python app.py token list | token revoke NAME
    python app.py provisioning enable | disable | status
    python app.py backup PATH | restore PATH
    python app.py admin create USERNAME | admin reset-password USERNAME | admin setup-link
    python app.py activity tail [-n N] [--follow]
    python app.py sso status [--check]

Every command takes ``--config FILE`` (or ``$PROWARE_CONFIG``); with neither, ./config.toml
if it exists, else the built-in defaults (data under ./data/, 127.0.0.1:8000).
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, g, request

import admin
from admin.activity import printable
from scim.api import CanonicalEndpoints, NormalizeSlashes, create_blueprint
from scim.api.auth import Refused
from scim.api.context import Services
from scim.api.responses import register_error_handlers
from scim.service import INDEXES, Directory
from scim.tokens import FILE_NAME as TOKENS_FILE
from scim.tokens import ProvisioningSwitch, TokenStore
from server import cli
from server.config import Settings, client_secret
from server.requestcost import QUEUED_AT, Meter, describe, watch_gc
from storage.backend import Backend, open_backend
from storage.repository import Repository

access_log = logging.getLogger("proware.access")
slow_log = logging.getLogger("proware.slow")


class ProwareFlask(Flask):
    """Flask, without its per-call check for ``async def`` views and hooks.

    Flask asks ``inspect.iscoroutinefunction`` of every view and hook it calls, nine times a
    SCIM request (23 us); this app has no coroutine functions, so each is returned as it is.
    """

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return func


def create_app(settings: Settings | None = None, *, repository: Repository | None = None) -> Flask:
    """Build the Flask app: SCIM blueprint, error handlers, access log.

    :param repository: a store to use instead of the one under ``[storage] path`` (tests).
    :raises ConfigError: the single sign-on client secret cannot be read.
    :raises StorageError: the store cannot be opened (locked, damaged, unreachable).
    """
    settings = settings or Settings()
    sso_secret = client_secret(settings.sso)  # first: a bad secret file opens nothing
    backend = open_backend(settings.storage, INDEXES, repository=repository)
    control = backend.document(TOKENS_FILE)
    repository = backend.repository

    app = ProwareFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.url_map.merge_slashes = False
    app.url_map.strict_slashes = False
    services = Services(
        scim=settings.scim,
        public_url=settings.server.public_url,
        repository=repository,
        directory=Directory(repository, max_results=settings.scim.max_results),
        tokens=TokenStore(control),
        switch=ProvisioningSwitch(control),
    )
    repository.add_commit_listener(services.emit_all)
    app.extensions["proware"] = services
    app.extensions["proware.backend"] = backend
    # First, so that every other hook (authentication included) sees the request id.
    app.before_request(_start_request)
    # Then nothing is served while a restore may be replacing the store under this process.
    app.before_request(partial(_check_serving, backend))
    app.register_blueprint(create_blueprint(settings.scim.prefix))
    register_error_handlers(app)
    # The control panel at /admin.
    admin.register(app, services, backend=backend, sso=settings.sso, sso_secret=sso_secret)
    slow = settings.log.slow_request_ms / 1000
    if slow:
        watch_gc()
    app.after_request(partial(_log_request, slow=slow))
    app.add_url_rule("/healthz", "healthz", _healthz)
    # Outermost first: slashes are normalized, then endpoint names respelled.
    app.wsgi_app = NormalizeSlashes(  # type: ignore[method-assign]
        CanonicalEndpoints(app.wsgi_app, settings.scim.prefix)
    )
    return app


def _start_request() -> None:
    # Unique enough to find a request in logs and events, and no secret: so no system call
    # (uuid4 reads the kernel's random source, which hands the GIL to another thread).
    g.request_id = f"{random.getrandbits(64):016x}"
    g.request_meter = Meter.now(request.environ.get(QUEUED_AT))
    g.request_started_at = datetime.now(UTC).isoformat(timespec="milliseconds")


# Served whatever the store's state: the control panel's stylesheet, which its error page uses.
_SERVED_ANYWAY = frozenset({"admin.static"})


def _check_serving(backend: Backend) -> None:
    """Refuse the request (a 503: a SCIM error, or the control panel's error page) while the
    process does not hold its store (:meth:`storage.backend.Backend.check_serving`)."""
    if request.endpoint not in _SERVED_ANYWAY:
        backend.check_serving()


def _log_request(response: Response, *, slow: float) -> Response:
    """One access-log line per request, and a warning for one that took ``slow`` seconds or
    more from its queue to its answer (0: never), saying what it spent them on
    (:mod:`server.requestcost`); never the Authorization header."""
    request_id = g.get("request_id", "-")
    response.headers["X-Request-Id"] = request_id
    started = g.get("request_meter")
    if started is None:  # a hook before _start_request failed
        return response
    # One clock read for a request that is neither logged nor slow; the rest only if slow.
    total = started.elapsed()
    is_slow = slow and total >= slow
    logged = access_log.isEnabledFor(logging.INFO)
    if not (logged or is_slow):
        return response
    token = g.get("token") or g.get("presented_token")
    name = token.name if token else "-"
    path = _loggable_path()
    if logged:
        # Why a request was refused (no header, unknown token, ...): what an admin watching
        # the log during Entra's Test Connection needs; the response's detail says it too.
        refusal = g.get("scim_error")
        access_log.info(
            '%s "%s %s" %s %.1fms token=%s id=%s%s',
            request.remote_addr,
            request.method,
            path,
            response.status_code,
            (total - started.queued()) * 1000,  # the request's own time, as before
            name,
            request_id,
            f" reason={refusal.reason}" if isinstance(refusal, Refused) else "",
        )
    if is_slow:
        cost = Meter.now().since(started)
        slow_log.warning(
            "%s", describe(request.method, path, response.status_code, cost, name, request_id)
        )
    return response


def _loggable_path() -> str:
    """The request's path and query, with secret path segments and the values of secret
    parameters left out, and characters that are not printable (a decoded %0A, an escape
    sequence) escaped, so that no request can forge or colour a log line."""
    path = request.path
    for prefix in admin.SECRET_PATHS:
        if path.startswith(prefix) and len(path) > len(prefix):
            path = prefix + "[redacted]"
    if not request.query_string:
        return printable(path)
    if not any(name in request.args for name in admin.SECRET_PARAMETERS):
        return printable(path + request.full_path[len(request.path) :])
    shown = [
        f"{name}={admin.REDACTED}" if name in admin.SECRET_PARAMETERS else f"{name}={quote(value)}"
        for name, value in request.args.items(multi=True)
    ]
    return printable(f"{path}?{'&'.join(shown)}")


def _healthz() -> Response:
    return Response('{"status":"ok"}', mimetype="application/json")


def main(argv: list[str] | None = None) -> int:
    """Run one operator command (``python app.py --help``); returns the exit code."""
    return cli.main(argv, create_app)


if __name__ == "__main__":
    sys.exit(main())
