"""The OpenID Connect relying party: signing in to the control panel with Microsoft Entra ID.

The authorization code flow with PKCE (S256), ``state`` and ``nonce`` (OpenID Connect Core
§3.1), built on Authlib: its Flask client makes the authorization URL, keeps the flow's
``state``, ``nonce`` and ``code_verifier`` in the signed session cookie, fetches the
discovery document and the JWKS, and exchanges the code; joserfc (Authlib's JOSE library)
checks the ID token's signature, and Authlib's ``CodeIDToken`` its claims. None of the JOSE or
discovery code is written here. What is added:

- the discovery document's ``issuer`` must be the configured issuer (OpenID Connect
  Discovery §4.3), so that a mistyped tenant cannot pass for another, and of the document
  only the endpoints and algorithms this module uses (:data:`DISCOVERY_KEYS`) reach Authlib,
  whose client takes any other key (``scope``, ``token_endpoint_auth_method``,
  ``code_challenge_method``...) as an option of its own;
- ``aud`` must contain the client id: Authlib's Flask client checks only ``azp`` against it,
  which lets a token issued to another client through when it names us as ``azp``;
- every failure is a :class:`SignInFailed` with a reason a person can act on, and nothing
  secret (code, tokens, the client secret) in its message.

Who may then use the control panel is decided from the directory (:mod:`admin.sso_access`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import FlaskIntegration, FlaskOAuth2App
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from flask import session
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import Key, KeySet
from joserfc.jws import JWSRegistry

from storage.wording import counted

log = logging.getLogger("proware.sso")

DISCOVERY_PATH = "/.well-known/openid-configuration"
# Seconds of clock difference tolerated on exp, iat and nbf (OpenID Connect Core §3.1.3.7).
CLOCK_SKEW = 60
# Seconds a request to the identity provider may take in all: requests' own timeout bounds
# each connection attempt and each read, so a host name with several addresses that all drop
# packets (login.microsoftonline.com has several) took that long per address (40 s for four,
# measured), and an answer trickling in never ended (_BoundedSession).
TIMEOUT = 10
# Seconds Proware asks the identity provider nothing after it did not answer in time: with the
# embedded store requests run on one thread, and a sign-in waiting on a silent provider held
# Entra's SCIM requests as long (9.6 s measured); people pressing the button again during an
# outage would hold them again and again (_Quiet).
QUIET = 60
# Sign-ins started and not finished whose flow the session keeps (tabs, or the button pressed
# again): each adds about 130 bytes to the cookie, which browsers drop past 4 KB.
PENDING_FLOWS = 5
# What is kept of the discovery document (OpenID Connect Discovery §3): the rest never
# reaches Authlib's client, which would take it as its own options.
DISCOVERY_KEYS = (
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "id_token_signing_alg_values_supported",
)
# The ID token's algorithm when the discovery document names none (OpenID Connect Core §3.1.3.7).
DEFAULT_ALGORITHMS = ("RS256",)
# Seconds a discovery document is reused before it is read again (its keys are read again at
# once when a token names a key they lack).
DISCOVERY_LIFETIME = 24 * 3600

# The code `sso status --check` asks the token endpoint to redeem (check_client_secret): no
# provider issued it, and its name says where it came from in the provider's sign-in logs.
CHECK_CODE = "proware-client-secret-check"

# Why a sign-in failed (machine-readable; in activity events and the last-attempt record).
IDP_UNREACHABLE = "idp-unreachable"
DISCOVERY_UNREADABLE = "discovery-unreadable"
KEYS_UNREADABLE = "keys-unreadable"
TOKEN_UNREADABLE = "token-unreadable"
IDP_REFUSED = "idp-refused"
BAD_STATE = "bad-state"
CODE_REFUSED = "code-refused"
BAD_TOKEN = "bad-token"
NO_CLAIM = "no-claim"

# Characters kept of the provider's error and error_description (a browser brought them).
_ERROR_LENGTH = 300

# What each claim check means, for the sign-in page.
_CLAIMS = {
    "iss": "it was issued by another identity provider (iss)",
    "aud": "it was issued for another application (aud is not this client id)",
    "azp": "it was issued for another application (azp is not this client id)",
    "exp": "it has expired (exp); check that this server's clock is right",
    "iat": "it was issued in the future (iat); check that this server's clock is right",
    "nbf": "it is not valid yet (nbf); check that this server's clock is right",
    "nonce": "it does not belong to this sign-in (nonce); start again",
    "sub": "it names no subject (sub)",
    "at_hash": "its at_hash does not match the access token",
}


class SignInFailed(Exception):
    """A sign-in that did not complete.

    :param reason: one of the constants above.
    :param message: what happened and what to do, for the admin on the sign-in page.
    :param informative: False when the response belongs to no sign-in pending in this
        browser: it says nothing of the attempts that are (see ``SsoState.record``).

    ``next`` is where the failed sign-in was headed, once its flow is known: the refusal
    page keeps it, so that signing in from there (another account, the password form)
    still lands where the person was going.
    """

    def __init__(self, reason: str, message: str, *, informative: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.informative = informative
        self.next = ""


@dataclass(frozen=True)
class Identity:
    """A verified ID token: its claims, and where to go after signing in."""

    claims: Mapping[str, object]
    next: str


class RelyingParty:
    """Proware as an OpenID Connect client of one issuer.

    Call :meth:`authorization_url` inside the request that starts the sign-in and
    :meth:`finish` inside the callback request: the flow's secrets travel in the session.

    :param clock: seconds since the epoch, for checking ``exp``/``iat`` (tests move it).
    """

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        scopes: str,
        clock: Callable[[], float] = time.time,
        timeout: float = TIMEOUT,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._clock = clock
        self._app = _AuthlibClient(
            self._checked_discovery,
            _Quiet(clock),
            FlaskIntegration("sso"),
            name="sso",
            client_id=client_id,
            client_secret=client_secret,
            server_metadata_url=issuer.rstrip("/") + DISCOVERY_PATH,
            client_kwargs={
                "scope": scopes,
                "code_challenge_method": "S256",
                "default_timeout": timeout,
            },
        )

    @property
    def discovery_url(self) -> str:
        """Where the discovery document is read."""
        return self.issuer.rstrip("/") + DISCOVERY_PATH

    def check_discovery(self) -> dict:
        """Read the discovery document (cached after the first success): what is kept of it.

        :raises SignInFailed: the provider cannot be reached, or its document is unusable;
            then nothing of it is kept.
        """
        loaded_at = self._app.server_metadata.get("_loaded_at")
        if isinstance(loaded_at, float) and time.time() - loaded_at > DISCOVERY_LIFETIME:
            self._forget_metadata()
        try:
            return self._app.load_server_metadata()
        except requests.JSONDecodeError:
            raise SignInFailed(
                DISCOVERY_UNREADABLE,
                f"The identity provider's discovery document at {self.discovery_url} is not "
                "valid JSON. Check [sso] issuer.",
            ) from None
        except requests.RequestException as exc:
            raise SignInFailed(
                IDP_UNREACHABLE,
                _unreachable(f"the identity provider at {self.discovery_url}", exc),
            ) from None

    def check_signing_keys(self) -> list[str]:
        """Read the provider's signing keys now, as a sign-in would after a key rotation.

        :returns: the announced ID token algorithms that one of the keys can verify.
        :raises SignInFailed: the keys cannot be fetched, are no JWK Set, or none of them
            verifies any algorithm the discovery document announces (then none is kept).
        """
        algorithms = id_token_algorithms(self.check_discovery())
        keys = self._key_set(force=True)
        usable = [name for name in algorithms if any(_verifies(k, name) for k in keys.keys)]
        if usable:
            return usable
        self._app.server_metadata.pop("jwks", None)
        count = counted(len(keys.keys), "key")
        raise SignInFailed(
            KEYS_UNREADABLE,
            f"The identity provider's signing keys at {self._app.server_metadata['jwks_uri']} "
            f"({count}) hold none that verifies {' or '.join(algorithms)}, the ID token "
            "algorithms its discovery document announces (a key of the matching type, with "
            'no other "use" than sig and no other "alg"). Check [sso] issuer.',
        )

    def check_client_secret(self, redirect_uri: str) -> str:
        """Ask the token endpoint to redeem a made-up code with Proware's client credentials,
        authenticated as a sign-in is: a wrong or expired secret is refused as
        ``invalid_client`` (RFC 6749 §5.2; Entra: AADSTS7000215 wrong, AADSTS7000222
        expired), a right one gets the code refused (``invalid_grant``). Only the refusal is
        conclusive: a provider may look at the code before it authenticates the client.

        :returns: what the answer says of the secret, for a person (it was not refused).
        :raises SignInFailed: the credentials were refused (:data:`CODE_REFUSED`), the
            provider cannot be reached, or its answer is no OAuth 2.0 error or token.
        """
        try:
            self._redeem(redirect_uri=redirect_uri, code=CHECK_CODE)
        except OAuthError as exc:
            if exc.error == "invalid_client":
                raise SignInFailed(CODE_REFUSED, _code_refused(exc)) from None
            answer = str(exc.error or "an error")[:_ERROR_LENGTH]
        else:
            answer = "a token"  # a provider that takes any code
        return (
            f"not refused: the token endpoint answered {answer} to a made-up sign-in code, not "
            "invalid_client (a provider that looks at the code first would refuse a wrong "
            "secret only at sign-in)"
        )

    def _checked_discovery(self, document: object) -> dict:
        """What is kept of a discovery document, once it is found usable.

        :raises SignInFailed: it is no JSON object, names another issuer, or lacks what a
            sign-in needs.
        """
        if not isinstance(document, dict):
            raise SignInFailed(
                DISCOVERY_UNREADABLE,
                f"The discovery document at {self.discovery_url} is not a JSON object "
                "(OpenID Connect Discovery §4.2). Check [sso] issuer.",
            )
        if document.get("issuer") != self.issuer:
            raise SignInFailed(
                DISCOVERY_UNREADABLE,
                f"The discovery document at {self.discovery_url} names the issuer "
                f"{document.get('issuer')!r}, not {self.issuer!r}: set [sso] issuer to exactly "
                "the issuer it names (for Entra, https://login.microsoftonline.com/<tenant-id>"
                "/v2.0).",
            )
        missing = [
            key
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if not isinstance(document.get(key), str)
        ]
        algorithms = document.get("id_token_signing_alg_values_supported")
        if algorithms is not None and not (
            isinstance(algorithms, list)
            and all(isinstance(a, str) for a in algorithms)
            and id_token_algorithms(document)
        ):
            missing.append(
                "a list of strings other than none in id_token_signing_alg_values_supported"
            )
        if missing:
            raise SignInFailed(
                DISCOVERY_UNREADABLE,
                f"The discovery document at {self.discovery_url} lacks {', '.join(missing)}.",
            )
        return {key: document[key] for key in DISCOVERY_KEYS if key in document}

    def authorization_url(
        self, redirect_uri: str, next: str, *, another_account: bool = False
    ) -> str:
        """Where to send the browser to sign in; remembers the flow in the session.

        :param another_account: ask the provider to let the person sign in anew
            (``prompt=login``, OpenID Connect Core §3.1.2.1), not with the account it
            remembers: after a refusal of that account, it would only be refused again.
            Entra takes ``select_account`` too, which other providers may refuse.
        :raises SignInFailed: the provider cannot be reached or its discovery document read.
        """
        self.check_discovery()
        extra = {"prompt": "login"} if another_account else {}
        flow = self._app.create_authorization_url(redirect_uri, **extra)
        # url, state, nonce and code_verifier, under the state; kept until the callback.
        self._app.save_authorize_data(redirect_uri=redirect_uri, next=next, **flow)
        self._forget_older_flows()
        return flow["url"]

    def finish(self, params: Mapping[str, str]) -> Identity:
        """Complete the sign-in from the callback's query parameters.

        The flow's record is removed from the session first, so a state works once.

        :raises SignInFailed: for every way the callback, the code or the ID token fails.
        """
        framework = self._app.framework
        state = params.get("state") or ""
        flow = framework.get_state_data(session, state) if state else None
        if state:
            framework.clear_state_data(session, state)
        # The state first, even for an error response (RFC 6749 §4.1.2.1 sends it back there
        # too): without it anyone could make this server record and log a text of their own.
        if not isinstance(flow, dict):
            raise SignInFailed(
                BAD_STATE,
                "This sign-in response does not belong to a sign-in started in this browser "
                "(its state is missing, expired or already used). Start again.",
                informative=False,
            )
        try:
            return self._complete(flow, params)
        except SignInFailed as failure:
            failure.next = flow.get("next") or ""
            raise

    def _complete(self, flow: dict, params: Mapping[str, str]) -> Identity:
        """:meth:`finish` once the callback's state has found its flow."""
        error = params.get("error")
        if error:
            description = params.get("error_description")
            raise SignInFailed(
                IDP_REFUSED,
                f"The identity provider did not sign you in: {error[:_ERROR_LENGTH]}"
                + (f" ({description[:_ERROR_LENGTH]})" if description else "")
                + ".",
            )
        code = params.get("code")
        if not code:
            raise SignInFailed(BAD_STATE, "The identity provider's response has no code.")
        try:
            token = self._redeem(
                redirect_uri=flow["redirect_uri"],
                code=code,
                code_verifier=flow.get("code_verifier"),
            )
        except OAuthError as exc:
            raise SignInFailed(CODE_REFUSED, _code_refused(exc)) from None
        if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
            raise _unreadable_token()  # RFC 6749 §5.1: access_token is a string
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed(
                BAD_TOKEN, "The identity provider answered without an ID token (id_token)."
            )
        claims = self._verify(
            id_token, nonce=flow.get("nonce"), access_token=token.get("access_token")
        )
        return Identity(claims=claims, next=flow.get("next") or "")

    # -- internals ------------------------------------------------------------------------

    def _redeem(self, **params: Any) -> object:
        """The token endpoint's answer to redeeming a code (``params``: ``redirect_uri``,
        ``code``, ``code_verifier``).

        :raises OAuthError: the provider refused (RFC 6749 §5.2).
        :raises SignInFailed: it cannot be reached, or answered with no token or error.
        """
        self.check_discovery()  # the token endpoint comes from a checked document only
        try:
            return self._app.fetch_access_token(**params)
        except requests.RequestException as exc:
            raise SignInFailed(
                IDP_UNREACHABLE,
                _unreachable("the identity provider's token endpoint", exc),
            ) from None
        except (ValueError, TypeError):
            # Authlib raises ValueError for a 200 that is not a JSON object, and its
            # OAuth2Token int()s expires_in/expires_at (ValueError or TypeError when they are
            # not numbers): what the provider sent, not a fault of ours.
            raise _unreadable_token() from None

    def _verify(self, id_token: str, *, nonce: object, access_token: object) -> dict:
        """The ID token's claims, once its signature and claims are checked."""
        registry = JWSRegistry(algorithms=id_token_algorithms(self.check_discovery()))
        keys = self._key_set()
        try:
            try:
                decoded = jwt.decode(id_token, keys, registry=registry)
            except InvalidKeyIdError:  # the provider rotated its keys: read them again
                decoded = jwt.decode(id_token, self._key_set(force=True), registry=registry)
        except (BadSignatureError, InvalidKeyIdError):
            raise SignInFailed(
                BAD_TOKEN,
                "The ID token's signature does not match the identity provider's keys.",
            ) from None
        except (JoseError, ValueError):
            raise SignInFailed(BAD_TOKEN, "The ID token is not a well-formed signed JWT.") from None
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "values": [self.issuer]},
                "aud": {"essential": True, "values": [self.client_id]},
            },
            {"nonce": nonce, "client_id": self.client_id, "access_token": access_token},
        )
        try:
            claims.validate(now=int(self._clock()), leeway=CLOCK_SKEW)
        except ExpiredTokenError:
            raise SignInFailed(BAD_TOKEN, f"The ID token was refused: {_CLAIMS['exp']}.") from None
        except (InvalidClaimError, MissingClaimError) as exc:
            name = str(getattr(exc, "claim", "") or "").split(",")[0]
            what = _CLAIMS.get(name, f"its {name or 'claims'} claim is not valid")
            if isinstance(exc, MissingClaimError):
                what = f"it lacks the {name} claim"
            raise SignInFailed(BAD_TOKEN, f"The ID token was refused: {what}.") from None
        return dict(claims)

    def _key_set(self, *, force: bool = False) -> KeySet:
        """The provider's signing keys (cached; read again with ``force``).

        :raises SignInFailed: they cannot be fetched, or the answer is not a usable JWK Set;
            then nothing is kept, so the next sign-in reads them again.
        """
        where = self._app.server_metadata.get("jwks_uri")
        problem: str | None
        try:
            document = self._app.fetch_jwk_set(force=force)
        except requests.JSONDecodeError:
            problem = "the answer is not JSON"
        except requests.RequestException as exc:
            raise SignInFailed(
                IDP_UNREACHABLE,
                _unreachable(f"the identity provider's signing keys at {where}", exc),
            ) from None
        else:
            problem = _jwk_set_problem(document)
            if problem is None:
                try:
                    return KeySet.import_key_set(document)
                except JoseError as exc:
                    problem = f"its keys cannot be used ({exc.error})"
        # Authlib keeps what it fetched in the server metadata, where every later sign-in
        # would find it: an unusable answer must not stay there.
        self._app.server_metadata.pop("jwks", None)
        raise SignInFailed(
            KEYS_UNREADABLE,
            f"Proware could not read the identity provider's signing keys at {where}: "
            f"{problem}. Try again in a while; if it keeps failing, check [sso] issuer.",
        )

    def _forget_older_flows(self) -> None:
        """Keep the newest :data:`PENDING_FLOWS` flows in the session. Authlib keeps each one
        for an hour (``_state_sso_<state>``, with its expiry), so they would pile up."""
        prefix = f"_state_{self._app.framework.name}_"
        flows = [key for key in session if key.startswith(prefix)]
        if len(flows) <= PENDING_FLOWS:
            return
        flows.sort(key=lambda key: float((session.get(key) or {}).get("exp") or 0))
        for key in flows[:-PENDING_FLOWS]:
            session.pop(key, None)

    def _forget_metadata(self) -> None:
        """Read the discovery document again next time."""
        self._app.server_metadata.pop("_loaded_at", None)


class QuietTimeout(requests.Timeout):
    """A request not sent: the identity provider did not answer in time a moment ago."""


class _Quiet:
    """When the identity provider last failed to answer in time, and until when it is
    therefore not asked (:data:`QUIET`)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._since: float | None = None

    def check(self) -> None:
        """:raises QuietTimeout: within :data:`QUIET` seconds of the last timeout."""
        since = self._since
        if since is not None and self._clock() < since + QUIET:
            raise QuietTimeout(
                f"no answer within {TIMEOUT} seconds at {_hms(since)} UTC; Proware asks it "
                f"again from {_hms(since + QUIET)} UTC"
            )

    def timed_out(self) -> None:
        self._since = self._clock()


class _BoundedSession(OAuth2Session):
    """Authlib's requests session, each of whose requests ends within ``default_timeout``
    seconds in all: the request runs in a thread of its own, left to requests' timeouts to
    end when it is given up on (it changes nothing here then). After a timeout, none is
    sent for :data:`QUIET` seconds (``quiet``, set by :class:`_AuthlibClient`)."""

    quiet: _Quiet | None = None

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        if self.quiet is not None:
            self.quiet.check()
        try:
            return self._bounded_request(*args, **kwargs)
        except requests.Timeout:
            if self.quiet is not None:
                self.quiet.timed_out()
            raise

    def _bounded_request(self, *args: Any, **kwargs: Any) -> requests.Response:
        outcome: dict[str, Any] = {}

        def send() -> None:
            try:
                outcome["response"] = OAuth2Session.request(self, *args, **kwargs)
            except BaseException as exc:  # handed to the waiting thread as it is
                outcome["error"] = exc

        worker = threading.Thread(target=send, name="proware-sso-request", daemon=True)
        worker.start()
        worker.join(self.default_timeout)
        if worker.is_alive():
            raise requests.Timeout(f"no complete answer within {self.default_timeout} seconds")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]


class _AuthlibClient(FlaskOAuth2App):
    """Authlib's Flask client, given of the discovery document only what ``check`` keeps.

    Authlib passes every key of its server metadata to its OAuth2 session as an option (it
    does ``OAuth2Session(**client_kwargs, **metadata)``), so a document carrying ``scope`` or
    ``token_endpoint_auth_method`` would change what this client sends, and one carrying
    ``client_id`` would fail every sign-in with a TypeError.

    :param check: turns the parsed document into what is kept, or raises.
    """

    client_cls = _BoundedSession

    def __init__(
        self, check: Callable[[object], dict], quiet: _Quiet, *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._check = check
        self._quiet = quiet

    def _get_session(self) -> _BoundedSession:
        session = super()._get_session()
        session.quiet = self._quiet
        return session

    def _get_oauth_client(self, **metadata: Any) -> _BoundedSession:
        session = super()._get_oauth_client(**metadata)
        session.quiet = self._quiet
        return session

    def load_server_metadata(self) -> dict:
        if "_loaded_at" not in self.server_metadata:
            with self._get_session() as session:
                response = session.request("GET", self._server_metadata_url, withhold_token=True)
                response.raise_for_status()
                kept = self._check(response.json())
            self.server_metadata.clear()  # a new document: its keys are read again as well
            self.server_metadata.update(kept, _loaded_at=time.time())
        return self.server_metadata


def id_token_algorithms(metadata: Mapping[str, object]) -> list[str]:
    """The algorithms an ID token may be signed with: those the provider announces, never
    ``none`` (OpenID Connect Core §3.1.3.7 allows none only without a client secret)."""
    announced = metadata.get("id_token_signing_alg_values_supported")
    names = announced if isinstance(announced, list) else DEFAULT_ALGORITHMS
    return [name for name in names if isinstance(name, str) and name != "none"]


def _verifies(key: Key, algorithm: str) -> bool:
    """Whether ``key`` may verify a signature made with ``algorithm`` (its type, curve,
    ``use``, ``alg`` and ``key_ops`` allow it), as joserfc decides when it verifies one."""
    model = JWSRegistry.algorithms.get(algorithm)
    if model is None:
        return False
    try:
        model.check_key(key)
        key.check_key_op("verify")
    except JoseError:
        return False
    return True


def _jwk_set_problem(document: object) -> str | None:
    """What makes ``document`` no JWK Set (RFC 7517 §5), or None."""
    if not isinstance(document, dict):
        return f"the answer is a JSON {type(document).__name__}, not a JWK Set"
    if isinstance(document.get("keys"), list):
        return None if document["keys"] else "the JWK Set holds no key"
    error = document.get("error")
    if isinstance(error, str):
        return f"it answered {error[:_ERROR_LENGTH]!r} instead of a JWK Set"
    return 'the answer has no "keys" list'


def _code_refused(exc: OAuthError) -> str:
    """What the token endpoint's refusal means, with its own words: Entra's description
    names the cause (AADSTS7000222: the secret expired; AADSTS7000215: a wrong secret, often
    the Secret ID pasted for the Value). It comes from the configured issuer's token
    endpoint, not from the browser."""
    error = str(exc.error or "")[:_ERROR_LENGTH]
    description = str(exc.description or "")[:_ERROR_LENGTH]
    said = f": {error}" + (f" ({description})" if description else "") if error else ""
    if error == "invalid_client":  # RFC 6749 §5.2: client authentication failed
        return (
            f"The identity provider refused Proware's client credentials{said}. The client "
            "secret is wrong or has expired, or [sso] client_id is not the app's Application "
            "(client) ID: create a new client secret (Certificates & secrets), put its Value "
            "in [sso] client_secret_file, and restart."
        )
    return (
        f"The identity provider refused the sign-in code{said}. Start again; if it keeps "
        "failing, check [sso] client_id and the client secret, and that the redirect URI is "
        "registered."
    )


def _unreadable_token() -> SignInFailed:
    return SignInFailed(
        TOKEN_UNREADABLE,
        "The identity provider's token endpoint answered with something that is not a token "
        "response (a JSON object with an access_token, RFC 6749 §5.1). Try again in a while; "
        "if it keeps failing, check [sso] issuer.",
    )


def _unreachable(what: str, exc: requests.RequestException) -> str:
    """What failed in reaching ``what``, and what to do, for the person signing in and the
    admin (the last attempt, ``sso status``): nothing of the answer but its status."""
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        failed = f"Proware reached {what}, and it failed (HTTP {exc.response.status_code})"
    else:
        failed = f"Proware could not reach {what} ({_network_error(exc)})"
    return (
        f"{failed}. Try again in a few minutes. If it keeps failing, an administrator can "
        "check that this server reaches the identity provider: python app.py sso status "
        "--check."
    )


def _network_error(exc: requests.RequestException) -> str:
    """A short, secret-free description of why a request to the provider failed."""
    if isinstance(exc, QuietTimeout):
        return str(exc)
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT} seconds"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _hms(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M:%S")
