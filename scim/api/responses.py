"""Reading SCIM request bodies and writing SCIM responses and errors (RFC 7644 §3.12)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from scim import constants, errors
from storage.errors import DamagedDocument, DiskFull, Unavailable, Unstorable
from storage.jsontext import utf8_json

log = logging.getLogger("proware")


def scim_response(
    body: dict | None, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A response with ``application/scim+json`` (Entra Q8), never content-negotiated."""
    data = b"" if body is None else utf8_json(body)
    response = Response(data, status=status, mimetype=constants.SCIM_MEDIA_TYPE)
    if body is None:
        response.mimetype = constants.SCIM_MEDIA_TYPE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    # Directory data, and errors that repeat what a client sent: never stored by a browser
    # or a proxy, never sniffed as a page (what the control panel's pages send too).
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def error_response(error: errors.ScimError) -> Response:
    """The RFC 7644 §3.12 error body: status as a string, scimType when there is one."""
    body = errors.error_document(error.status, error.detail, error.scim_type)
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="Proware SCIM"'
    return scim_response(body, error.status, headers)


def read_json() -> object:
    """The request body as JSON, whatever its Content-Type (Entra Q8: scim+json; charset).

    :raises errors.InvalidSyntax: for an empty, non-UTF-8 or malformed body.
    """
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise errors.InvalidSyntax("request body: expected a JSON object, got an empty body")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise errors.InvalidSyntax(f"request body: not valid UTF-8 at byte {exc.start}") from None
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_bounded_integer,
            object_pairs_hook=_object_without_repeats,
        )
    except json.JSONDecodeError as exc:
        raise errors.InvalidSyntax(
            f"request body: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise errors.InvalidSyntax("request body: JSON nested too deeply") from None


def _refuse_constant(name: str) -> object:
    # Python reads NaN and Infinity; JSON has neither (RFC 8259 §6), nor has any SCIM type.
    raise errors.InvalidSyntax(f"request body: {name} is not a JSON number")


def _object_without_repeats(pairs: list[tuple[str, object]]) -> dict:
    # A repeated key would silently keep the last value; like a key repeated in another case
    # (scim.schemas.tolerance), we cannot tell which one is meant.
    found = dict(pairs)
    if len(found) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise errors.InvalidSyntax(
                    f"request body: {errors.quoted(key)} is given more than once in one object"
                )
            seen.add(key)
    return found


def _bounded_integer(digits: str) -> int:
    if len(digits.lstrip("-")) > constants.MAX_INTEGER_DIGITS:
        raise errors.InvalidSyntax(
            f"request body: a number has more than {constants.MAX_INTEGER_DIGITS} digits"
        )
    return int(digits)


def http_error(exc: HTTPException) -> errors.ScimError:
    """A routing or protocol error from werkzeug as a SCIM error with a useful detail."""
    status = exc.code or 500
    if status == 404:
        detail = f"no such endpoint: {request.method} {_shown_path()}" + _tenant_url_hint()
    elif status == 405:
        allowed = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
        detail = f"{request.method} is not allowed on {_shown_path()} (allowed: {allowed})"
    elif status == 413:
        detail = errors.too_large_detail(request.max_content_length)
    else:
        detail = exc.description or exc.name
    return errors.http_status_error(status, detail)


def _shown_path() -> str:
    # A path is the client's too: cut like any value it sent (errors.SHOWN_CHARACTERS), but
    # long enough for the prefix, the endpoint and an id.
    return errors.shortened(request.path, 2 * errors.SHOWN_CHARACTERS)


# The most segments a SCIM route has under the prefix (/Users/{id}, /Schemas/{id}).
_ROUTE_DEPTH = 3


def _tenant_url_hint() -> str:
    """For a SCIM endpoint asked for outside the SCIM prefix, where the prefix is.

    That is what Entra sends when its Tenant URL lacks the prefix (the bare address ngrok or
    a proxy prints, ``https://host/Users``, or ``/scim/Users``): the detail says what to fix
    instead of only the path that failed.
    """
    blueprint = current_app.blueprints.get("scim")
    prefix = (blueprint.url_prefix or "") if blueprint else ""
    path = request.path
    if not prefix or path == prefix or path.startswith(prefix + "/"):
        return ""
    routes = current_app.url_map.bind("localhost")
    segments = [segment for segment in path.split("/") if segment]
    # Only the last few: a SCIM route is at most /Type/id/... deep, and a client-made path
    # of thousands of segments must not cost a route test each.
    for start in range(max(0, len(segments) - _ROUTE_DEPTH), len(segments)):
        if routes.test(f"{prefix}/{'/'.join(segments[start:])}", request.method):
            return (
                f"; the SCIM API is under {prefix}: the Tenant URL in Entra must end in "
                f"{prefix} (https://<your host>{prefix})"
            )
    return ""


# What a 503 asks clients to wait before retrying (RFC 9110 §10.2.3), in seconds.
RETRY_AFTER_SECONDS = "5"

# Renders an error as a page for people: (status, message) -> response.
HtmlErrorPage = Callable[[int, str], Response]


def register_html_errors(app: Flask, prefix: str, render: HtmlErrorPage) -> None:
    """Answer errors under ``prefix`` (the control panel) with ``render``, not SCIM JSON."""
    app.extensions.setdefault("html_error_pages", []).append((prefix, render))


def _html_error(status: int, message: str) -> Response | None:
    for prefix, render in current_app.extensions.get("html_error_pages", ()):
        if request.path == prefix or request.path.startswith(prefix + "/"):
            return render(status, message)
    return None


def register_error_handlers(app: Flask) -> None:
    """App-level handlers: routing 404/405 never reach a blueprint's own handlers."""

    @app.errorhandler(errors.ScimError)
    def handle_scim_error(error: errors.ScimError) -> Response:
        g.scim_error = error
        return _html_error(error.status, error.detail) or error_response(error)

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException) -> Response:
        error = http_error(exc)
        g.scim_error = error
        response = _html_error(error.status, exc.description or error.detail) or error_response(
            error
        )
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))  # RFC 9110 §15.5.6
        return response

    @app.errorhandler(Unavailable)
    def handle_unavailable(exc: Unavailable) -> Response:
        # The message names the database without its password (storage redacts it), or the
        # journal's file; the client gets the exception's own detail. A damaged document is
        # logged once, when first refused, not on every request it refuses.
        if isinstance(exc, DamagedDocument):
            exc.report(log)
        else:
            log.warning("request %s: %s", getattr(g, "request_id", "-"), exc)
        full = isinstance(exc, DiskFull)
        error: errors.ScimError = (
            errors.InsufficientStorage(exc.detail)
            if full
            else errors.ServiceUnavailable(exc.detail)
        )
        g.scim_error = error
        response = _html_error(error.status, error.detail) or error_response(error)
        # A full disk lasts until someone frees space, a damaged file until someone repairs
        # it: no time to promise.
        if not isinstance(exc, DiskFull | DamagedDocument):
            response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        return response

    @app.errorhandler(Unstorable)
    def handle_unstorable(exc: Unstorable) -> Response:
        # Input checks refuse what the stores cannot hold (scim.schemas.fields); this is the
        # net under them, e.g. a NUL in a resource id in the URL.
        error = errors.InvalidValue(
            "a value holds a character the directory cannot store (U+0000 or an unpaired "
            "surrogate) or is too long to index"
        )
        g.scim_error = error
        return _html_error(error.status, error.detail) or error_response(error)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        request_id = getattr(g, "request_id", "-")
        log.exception("unhandled error in request %s", request_id)
        detail = (
            f"internal server error; the server log has the details under request id {request_id}"
        )
        return _html_error(500, detail) or error_response(errors.InternalError(detail))
