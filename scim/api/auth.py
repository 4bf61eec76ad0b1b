"""Bearer-token authentication and the User Provisioning switch for every SCIM route."""

from __future__ import annotations

import re

from flask import g, request

from scim import errors
from scim.api.context import services

# An Entra-issued JWT: three base64url segments, the header starting with '{"' -> "eyJ".
# Entra sends one when the Secret Token field is left empty (entra-provisioning.md A0).
_JWT = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")

_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Authentication schemes a refusal names back (IANA's HTTP Authentication Scheme Registry,
# and the common unregistered "Token" and "ApiKey"). Any other first word of the header is
# not repeated: "Authorization: pw_..." (the token without "Bearer ") would put the secret in
# the detail, which the response, the Connection status and the activity log all keep.
_NAMED_SCHEMES = {
    scheme.lower(): scheme
    for scheme in (
        "Basic", "Bearer", "Concealed", "Digest", "DPoP", "GNAP", "HOBA", "Mutual",
        "Negotiate", "NTLM", "OAuth", "PrivateToken", "SCRAM-SHA-1", "SCRAM-SHA-256",
        "vapid", "Token", "ApiKey",
    )
}  # fmt: skip

# Why a request was refused, for the activity log and Connection status (machine-readable).
REASON_NO_HEADER = "no-header"
REASON_NOT_BEARER = "not-bearer"
REASON_JWT = "jwt"
REASON_UNKNOWN = "unknown-token"
REASON_REVOKED = "revoked-token"
REASON_EXPIRED = "expired-token"
REASON_DISABLED = "provisioning-disabled"
REASON_READ_ONLY = "read-only-token"


class Refused(errors.ScimError):
    """A 401/403 from authentication, carrying a machine-readable ``reason`` (or a refusal of
    the HTTP server's, with the reason authentication would have given, :func:`server_refusal`)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason


def authenticate() -> None:
    """Check the bearer token, its scope and the provisioning switch; sets ``g.token``.

    :raises Refused: 401 with a detail saying which check failed, or 403.
    """
    header = request.headers.get("Authorization", "")
    if not header.strip():
        raise Refused(
            401,
            REASON_NO_HEADER,
            "no Authorization header: send 'Authorization: Bearer <token>' with a token "
            "created in Proware's control panel (User Provisioning > Create bearer token)",
        )
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise Refused(401, REASON_NOT_BEARER, _not_bearer_detail(scheme))
    if _JWT.match(secret):
        raise Refused(
            401,
            REASON_JWT,
            "the bearer token is a JWT issued by Entra, which means the Secret Token field "
            "in Entra's Provisioning tab was left empty: paste a Proware bearer token there",
        )
    store = services().tokens
    check = store.verify(secret)
    # Named in the refusal's activity event and access-log line (a revoked or expired
    # token still has a name; the secret is never recorded).
    g.presented_token = check.token
    if check.outcome == "revoked":
        assert check.token is not None
        raise Refused(
            401,
            REASON_REVOKED,
            f"the bearer token {check.token.name!r} was revoked; create a new token in "
            "Proware and paste it into Entra's Secret Token field",
        )
    if check.outcome == "expired":
        assert check.token is not None and check.token.expires is not None
        raise Refused(
            401,
            REASON_EXPIRED,
            f"the bearer token {check.token.name!r} expired on "
            f"{check.token.expires.isoformat()}; create a new token and update Entra",
        )
    if check.outcome != "ok" or check.token is None:
        raise Refused(
            401,
            REASON_UNKNOWN,
            "the bearer token is not known to this Proware server: check that Entra's Secret "
            "Token field holds the whole token, with no spaces",
        )
    g.token = check.token
    store.record_use(check.token)
    if not services().switch.enabled():
        raise Refused(
            403,
            REASON_DISABLED,
            "User Provisioning is disabled in Proware's control panel: enable it under "
            "Control panel > Admin > Control panel settings > User Provisioning "
            "(or run 'python app.py provisioning enable')",
        )
    if check.token.read_only and request.method not in _READ_METHODS and not _is_search():
        raise Refused(
            403,
            REASON_READ_ONLY,
            f"the bearer token {check.token.name!r} is read-only and may only read; "
            "use a read-write token to change data",
        )


def _not_bearer_detail(scheme: str) -> str:
    """Why a header that is not ``Bearer <token>`` was refused, naming its scheme only when it
    is a known scheme's name (what else stands first may be the secret itself)."""
    named = _NAMED_SCHEMES.get(scheme.lower())
    if named == "Basic":
        # Okta offers Basic Auth first among its authentication modes; its admin needs the
        # mode that sends a bearer token, not only the header this server wanted.
        return (
            "Authorization header uses the 'Basic' scheme (a username and password), which "
            "Proware does not accept; expected 'Bearer <token>' with a token created in "
            "Proware's control panel (in Okta: Authentication Mode 'HTTP Header')"
        )
    if named is not None:
        return f"Authorization header uses the {named!r} scheme; expected 'Bearer <token>'"
    return (
        "Authorization header does not start with a known scheme; expected 'Bearer <token>' "
        "(is 'Bearer ' missing before the token?)"
    )


def server_refusal(status: int, detail: str) -> errors.ScimError:
    """The error for a request the HTTP server refused before the app read it (a body over
    the limit, a malformed chunk), to be answered and recorded as the app's own refusals are.

    The token is checked as for any request, so the refusal is recorded under the token it
    names (a valid, revoked or expired one; never the secret). A request that authentication
    would refuse keeps that refusal's reason, as every request without a valid token is
    recorded: counted with its twins in the Connection status, and in the activity log as
    any refusal for want of a valid token (a client's repeats counted into one event).
    """
    try:
        authenticate()
    except Refused as refused:
        return Refused(status, refused.reason, detail)
    return errors.http_status_error(status, detail)


def _is_search() -> bool:
    """POST /.search only reads (RFC 7644 §3.4.3)."""
    return request.method == "POST" and request.path.rstrip("/").endswith("/.search")
