"""SCIM errors (RFC 7644 §3.12): one class per error type, status and scimType as attributes.

Views and services raise these; one app-level handler renders them as
``{"schemas": [ERROR], "status": "400", "scimType": ..., "detail": ...}``
(:func:`error_document`), and so does the HTTP server for what it refuses itself.
"""

from __future__ import annotations

from scim import constants


def error_document(status: int, detail: str, scim_type: str | None = None) -> dict:
    """The RFC 7644 §3.12 error body: status as a string, scimType when there is one."""
    body: dict = {"schemas": [constants.ERROR], "status": str(status)}
    if scim_type:
        body["scimType"] = scim_type
    body["detail"] = detail
    return body


# How much of a value the client sent a detail repeats: a GUID or an Entra object id whole, a
# 5,000-character id or query parameter not (each was repeated whole, and a detail is also
# logged and kept in the activity log).
SHOWN_CHARACTERS = 64


def shortened(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """``text`` cut to ``limit`` characters, ``...`` marking the cut."""
    return text if len(text) <= limit else text[:limit] + "..."


def quoted(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """A value the client sent as a detail shows it: quoted, escaped (``'a\\x00b'``), cut."""
    return repr(shortened(text, limit))


def too_large_detail(limit: int | None) -> str:
    """The detail of a 413 for a body over ``[server] max_body_bytes``."""
    return f"request body too large: the limit is {limit} bytes ([server] max_body_bytes)"


class ScimError(Exception):
    """Base class: an error the client can act on, rendered as a SCIM error body."""

    status: int = 400
    scim_type: str | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidFilter(ScimError):
    """The filter syntax was invalid or the filter could not be evaluated (§3.4.2.2)."""

    scim_type = "invalidFilter"


class TooMany(ScimError):
    """The filter would return more results than the server can process."""

    scim_type = "tooMany"


class Uniqueness(ScimError):
    """A value that must be unique is already taken (409).

    :param attribute: the top-level attribute whose value is taken (``userName``), for a
        PATCH to name the operation that set it.
    """

    status = 409
    scim_type = "uniqueness"

    def __init__(self, detail: str, attribute: str | None = None) -> None:
        super().__init__(detail)
        self.attribute = attribute


class Mutability(ScimError):
    """The request tried to change an immutable or read-only attribute."""

    scim_type = "mutability"


class InvalidSyntax(ScimError):
    """The request body could not be parsed or violates the message schema."""

    scim_type = "invalidSyntax"


class InvalidPath(ScimError):
    """A PATCH path (or attribute name) is malformed or names nothing."""

    scim_type = "invalidPath"


class NoTarget(ScimError):
    """A PATCH path matched no value where one was required."""

    scim_type = "noTarget"


class InvalidValue(ScimError):
    """A required value was missing, or a value has the wrong type or form."""

    scim_type = "invalidValue"


class InvalidVersion(ScimError):
    """The SCIM protocol version is not supported."""

    scim_type = "invalidVers"


class Sensitive(ScimError):
    """The request carried sensitive data in the URI."""

    status = 403
    scim_type = "sensitive"


class BadRequest(ScimError):
    """A 400 with no more specific scimType (e.g. a bad query parameter)."""


class Unauthorized(ScimError):
    """Authentication failed or was missing (401)."""

    status = 401


class Forbidden(ScimError):
    """Authenticated, but not allowed to do this (403)."""

    status = 403


class NotFound(ScimError):
    """The resource or endpoint does not exist (404)."""

    status = 404


class MethodNotAllowed(ScimError):
    """The endpoint exists but not for this HTTP method (405)."""

    status = 405


class PreconditionFailed(ScimError):
    """If-Match named a version that is no longer current (412)."""

    status = 412


class PayloadTooLarge(ScimError):
    """The request body exceeds the configured limit (413)."""

    status = 413


class NotImplementedHere(ScimError):
    """A part of SCIM this server does not implement, such as the ``/Me`` alias (501)."""

    status = 501


class InternalError(ScimError):
    """Something failed on our side; the detail never carries exception text (500)."""

    status = 500


class ServiceUnavailable(ScimError):
    """The directory's database cannot be reached just now: retry later (503).

    RFC 7644 §3.12 lists 503 for a service that is temporarily overloaded or down; Entra
    retries such requests, where a 500 on a write could make it give up on the resource.
    """

    status = 503


class InsufficientStorage(ScimError):
    """The server's disk is full: the change was not made, and is accepted again once an
    operator frees space (507, RFC 4918 §11.5). Like a 503, a 5xx that Entra retries."""

    status = 507


# The classes http_status_error picks by status; any other status is a BadRequest carrying it.
_BY_STATUS: dict[int, type[ScimError]] = {
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    501: NotImplementedHere,
}


def http_status_error(status: int, detail: str) -> ScimError:
    """The error for a refusal that has only an HTTP status: werkzeug's routing and body
    errors, and what the HTTP server refuses before the app (a malformed chunk, a body
    over the limit)."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls(detail)
    error = BadRequest(detail)
    error.status = status
    return error
