"""Single sign-on against a real OpenID provider (panva's oidc-provider behind a test proxy).

The app runs in-process (Flask's test client plays the browser on Proware's side); the
provider runs as a node process, and :func:`tests.oidc_browser.sign_in` plays the browser on
its side. Every failure case has its own test, built so that removing the check it covers
lets the sign-in through. Without node or the node modules the tests skip locally and fail
in CI.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc.jwk import ECKey

from admin.sessions import COOKIE_NAME
from admin.sso import QUIET, RelyingParty, SignInFailed
from admin.sso_access import Attempt
from app import create_app, main
from server.config import ServerSettings, Settings, SsoSettings, StorageSettings, load_settings
from storage.postgres.documents import STAMP_TTL
from tests.admin_support import PASSWORD, USERNAME, AdminClient, create_admin, csrf_of, signed_in
from tests.conftest import ScimClient
from tests.oidc_browser import abort_sign_in, sign_in
from tests.oidc_proxy import (
    DISCOVERY_PATH,
    JWKS_PATH,
    TOKEN_PATH,
    Exchange,
    Signature,
    TamperingProxy,
)
from tests.oidc_support import OidcProvider, require_provider
from tests.pgserver import clean_database

PUBLIC_URL = "http://proware.test"
CALLBACK = f"{PUBLIC_URL}/admin/sso/callback"
GROUP = "Proware Admins"


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """One provider for the module (starting node costs half a second); reset per test."""
    require_provider()
    with OidcProvider(tmp_path_factory.mktemp("oidc")) as running:
        running.start(
            [CALLBACK],
            accounts={"ann": {"sub": "ann-sub", "preferred_username": "Ann@Contoso.example"}},
        )
        yield running


@pytest.fixture
def idp(provider: OidcProvider) -> OidcProvider:
    provider.proxy.reset()
    return provider


def sso_settings(tmp_path: Path, provider: OidcProvider, **sso: object) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "sso-secret"
    secret.write_text(provider.client_secret + "\n")
    options: dict = {
        "enabled": True,
        "issuer": provider.issuer,
        "client_id": provider.client_id,
        "client_secret_file": str(secret),
        "admin_group": GROUP,
        **sso,
    }
    return Settings(
        server=ServerSettings(public_url=PUBLIC_URL),
        storage=StorageSettings(path=tmp_path / "data"),
        sso=SsoSettings(**options),
        source="test",
    )


@pytest.fixture
def make_app(tmp_path: Path, idp: OidcProvider) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def make(**sso: object) -> Flask:
        app = create_app(sso_settings(tmp_path / f"app{len(apps)}", idp, **sso))
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["proware"].repository.close()


@pytest.fixture
def sso_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@dataclass
class Entra(ScimClient):
    """Entra's side of SCIM, with the ids of what it provisioned."""

    ids: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def entra(sso_app: Flask, scim_for: Callable[[Flask], ScimClient]) -> Entra:
    """Entra's provisioning of the directory: ann is an active admin, bob an active non-admin,
    cy a disabled admin."""
    provisioned = scim_for(sso_app)
    scim = Entra(provisioned.client, provisioned.token)
    ids = {
        name: scim.create_user(user_name, active=active)["id"]
        for name, user_name, active in [
            ("ann", "ann@contoso.example", True),
            ("bob", "bob@contoso.example", True),
            ("cy", "cy@contoso.example", False),
        ]
    }
    group = scim.create_group(GROUP, [ids["ann"], ids["cy"]])
    scim.ids = {**ids, "group": group["id"]}
    return scim


def start_flow(browser: FlaskClient, next: str = "/admin/settings") -> str:
    """Press "Sign in with Microsoft": the provider's authorization URL."""
    response = browser.get("/admin/sso/start", query_string={"next": next})
    assert response.status_code == 302, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location.startswith(browser.application.extensions["proware.admin"].sso.provider.issuer)
    return location


def callback(browser: FlaskClient, redirect: str):
    """Follow the provider's redirect back to Proware."""
    parts = urlsplit(redirect)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK
    return browser.get(parts.path, query_string=parts.query)


def sign_in_as(browser: FlaskClient, login: str, next: str = "/admin/settings"):
    return callback(browser, sign_in(start_flow(browser, next), login))


def signed_in_page(browser: FlaskClient) -> bool:
    response = browser.get("/admin/settings")
    return response.status_code == 200 and "Signed in as" in response.get_data(as_text=True)


def events(app: Flask) -> list[dict]:
    return list(app.extensions["proware.admin"].audit.newest_first())


def text(response) -> str:
    """The page as a person reads it (entities such as &#39; decoded)."""
    return html.unescape(response.get_data(as_text=True))


# -- signing in ----------------------------------------------------------------------------


def test_the_sign_in_page_offers_microsoft_and_the_local_form(sso_app: Flask) -> None:
    page = text(sso_app.test_client().get("/admin/sign-in"))

    assert "Sign in with Microsoft" in page
    assert 'id="local-sign-in"' in page


def test_an_sso_admin_who_signs_out_is_not_shown_the_first_run_setup(
    sso_app: Flask, entra: Entra
) -> None:
    """With single sign-on on, no local account is the usual state: the page after signing
    out does not tell the person that no admin exists and to open a setup link, only notes
    for the server's administrator how to add a local way in."""
    browser = sso_app.test_client()
    sign_in_as(browser, "ann")

    signed_out = browser.post(
        "/admin/sign-out", data={"csrf_token": csrf_of(browser.get("/admin/settings"))}
    )
    page = text(browser.get(signed_out.headers["Location"]))

    assert "You have signed out." in page
    assert "No admin account exists yet" not in page
    assert 'id="no-local-account"' in page and "admin create USERNAME" in page
    create_admin(sso_app)
    assert 'id="no-local-account"' not in text(browser.get("/admin/sign-in"))


def test_an_active_admin_group_member_signs_in_and_lands_where_they_were_going(
    sso_app: Flask, entra: Entra, idp: OidcProvider
) -> None:
    browser = sso_app.test_client()
    authorization = start_flow(browser, next="/admin/activity")
    query = parse_qs(urlsplit(authorization).query)
    # The flow Proware asks for: code with PKCE (S256), state and nonce.
    assert query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == [CALLBACK]

    response = callback(browser, sign_in(authorization, "ann"))

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/activity"
    page = text(browser.get("/admin/activity"))
    assert "Signed in as <strong>ann@contoso.example</strong>" in page
    newest = events(sso_app)[0]
    assert (newest["operation"], newest["name"], newest["source"]) == (
        "sign in",
        "ann@contoso.example",
        "sso",
    )
    settings = text(browser.get("/admin/settings"))
    assert "signed in</span>" in settings and "ann@contoso.example" in settings


def test_a_control_character_in_next_lands_on_the_home_page(sso_app: Flask, entra: Entra) -> None:
    """A decoded %0A cannot go in the Location header: the sign-in still completes."""
    browser = sso_app.test_client()

    response = sign_in_as(browser, "ann", next="/admin/\n")

    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    assert signed_in_page(browser)


@pytest.mark.parametrize("next", ["/admin/sso/callback", "/admin/sso/start"])
def test_a_next_into_the_sign_in_flow_itself_lands_on_the_home_page(
    sso_app: Flask, entra: Entra, next: str
) -> None:
    """A link whose next is the callback would land the new session on a "did not sign you
    in" page, recorded as the last attempt over the sign-in that worked."""
    browser = sso_app.test_client()

    response = sign_in_as(browser, "ann", next=next)

    assert response.status_code == 302 and response.headers["Location"] == "/admin/"
    attempt = sso_app.extensions["proware.admin"].sso.state.last_attempt()
    assert attempt is not None and attempt.outcome == "success"


@pytest.mark.parametrize(
    ("login", "reason", "words"),
    [
        ("nobody@contoso.example", "not-provisioned", "is not a provisioned user"),
        ("cy@contoso.example", "disabled", "is disabled"),
        ("bob@contoso.example", "not-in-admin-group", "is not a member of the admin group"),
    ],
)
def test_people_provisioning_does_not_make_admins_are_refused(
    sso_app: Flask, entra: Entra, login: str, reason: str, words: str
) -> None:
    browser = sso_app.test_client()

    response = sign_in_as(browser, login)

    assert response.status_code == 403
    assert words in text(response)
    assert "Single sign-on did not sign you in" in text(response)
    assert not signed_in_page(browser)
    newest = events(sso_app)[0]
    assert (newest["operation"], newest["reason"], newest["name"]) == (
        "sign-in refused",
        reason,
        login,
    )


def test_a_refused_account_is_offered_a_sign_in_with_another(sso_app: Flask, entra: Entra) -> None:
    """The provider remembers bob and would sign him in again without asking: the refusal
    page's button asks it to let the person sign in anew (prompt=login)."""
    browser = sso_app.test_client()
    assert "prompt" not in parse_qs(urlsplit(start_flow(browser)).query)

    refused = text(sign_in_as(browser, "bob@contoso.example"))

    link = re.search(
        r'id="sso-start" href="([^"]+)">Sign in with another Microsoft account', refused
    )
    assert link is not None
    again = browser.get(link.group(1))
    assert parse_qs(urlsplit(again.headers["Location"]).query)["prompt"] == ["login"]
    assert callback(browser, sign_in(again.headers["Location"], "ann")).status_code == 302
    assert signed_in_page(browser)


def test_signing_in_after_a_refusal_still_lands_where_the_person_was_going(
    sso_app: Flask, entra: Entra
) -> None:
    """The refusal page is the callback, which carries no next: the flow's next is kept on
    it, in the other-account button and the password form, not lost for the home page."""
    browser = sso_app.test_client()

    refused = text(sign_in_as(browser, "bob@contoso.example", next="/admin/activity"))

    assert '<input type="hidden" name="next" value="/admin/activity">' in refused
    link = re.search(
        r'id="sso-start" href="([^"]+)">Sign in with another Microsoft account', refused
    )
    assert link is not None
    again = browser.get(link.group(1))
    landed = callback(browser, sign_in(again.headers["Location"], "ann"))
    assert (landed.status_code, landed.headers["Location"]) == (302, "/admin/activity")


def test_a_provider_refusal_keeps_where_the_person_was_going(sso_app: Flask, entra: Entra) -> None:
    """A refusal inside the flow (here the person cancelled) keeps its next as well."""
    browser = sso_app.test_client()

    refused = text(callback(browser, abort_sign_in(start_flow(browser, next="/admin/users"))))

    assert "did not sign you in: access_denied" in refused
    assert '<input type="hidden" name="next" value="/admin/users">' in refused


def test_a_callback_of_no_pending_sign_in_offers_no_next_of_its_own(
    sso_app: Flask, entra: Entra
) -> None:
    """Without a flow there is no next to keep; one added to the callback's URL is checked
    like any other (no open redirect)."""
    browser = sso_app.test_client()

    refused = browser.get("/admin/sso/callback?state=forged&code=x&next=https://evil.example/")

    assert refused.status_code == 400
    assert '<input type="hidden" name="next" value="/admin/">' in text(refused)


@pytest.mark.parametrize("login", ["bob@contoso.example", "ann"], ids=["refused", "signed-in"])
def test_reloading_the_callback_keeps_the_attempt_the_admin_needs(
    sso_app: Flask, entra: Entra, login: str
) -> None:
    """The reload is refused as a bad state (and logged as one), but the settings page still
    shows why bob was refused, or that ann signed in."""
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), login)
    callback(browser, redirect)
    attempt = sso_app.extensions["proware.admin"].sso.state.last_attempt()

    reload = callback(browser, redirect)

    assert reload.status_code == 400
    assert events(sso_app)[0]["reason"] == "bad-state"
    assert attempt is not None and attempt.reason != "bad-state"
    assert sso_app.extensions["proware.admin"].sso.state.last_attempt() == attempt


def test_an_admin_group_that_is_not_provisioned_yet_is_named(
    make_app: Callable[..., Flask], scim_for: Callable[[Flask], ScimClient]
) -> None:
    app = make_app(admin_group="Not There Yet")
    scim_for(app).create_user("ann@contoso.example", active=True)
    browser = app.test_client()

    response = sign_in_as(browser, "ann")

    assert response.status_code == 403
    assert "is not a provisioned group" in text(response)
    assert not signed_in_page(browser)


def test_a_token_without_the_username_claim_is_refused(
    make_app: Callable[..., Flask], scim_for: Callable[[Flask], ScimClient]
) -> None:
    app = make_app(username_claim="upn")  # oidc-provider sends no upn claim
    scim_for(app).create_user("ann@contoso.example", active=True)
    browser = app.test_client()

    response = sign_in_as(browser, "ann")

    assert response.status_code == 403
    assert "The ID token has no 'upn' claim" in text(response)
    assert events(app)[0]["reason"] == "no-claim"
    assert not signed_in_page(browser)


# -- the identity provider's answers that must not sign anyone in --------------------------


def test_the_user_cancelling_at_the_provider_is_an_idp_refusal(
    sso_app: Flask, entra: Entra
) -> None:
    browser = sso_app.test_client()

    response = callback(browser, abort_sign_in(start_flow(browser)))

    assert response.status_code == 403
    assert "did not sign you in: access_denied" in text(response)
    assert events(sso_app)[0]["reason"] == "idp-refused"
    assert not signed_in_page(browser)


FORGED = "\x1b[2J\n2026-01-01 00:00:00 WARNING proware.sso forged line"


def sso_log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "proware.sso"]


@pytest.mark.parametrize("state", [None, "not-a-pending-state"], ids=["no-state", "unknown"])
def test_an_error_response_without_a_pending_state_is_a_bad_state(
    sso_app: Flask, caplog: pytest.LogCaptureFixture, state: str | None
) -> None:
    """Anyone can send this URL: none of its text reaches the log, the page or the records."""
    caplog.set_level(logging.INFO)
    query = {"error": "access_denied" + FORGED, "error_description": FORGED}
    if state is not None:
        query["state"] = state

    response = sso_app.test_client().get("/admin/sso/callback", query_string=query)

    assert response.status_code == 400
    assert "does not belong to a sign-in started in this browser" in text(response)
    assert "forged" not in text(response)
    newest = events(sso_app)[0]
    assert newest["reason"] == "bad-state" and "forged" not in str(newest)
    attempt = sso_app.extensions["proware.admin"].sso.state.last_attempt()
    assert attempt is not None and attempt.reason == "bad-state"
    assert "forged" not in attempt.message
    assert not any("forged" in line for line in sso_log_lines(caplog))


def test_the_provider_s_error_text_is_logged_escaped(
    sso_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """With a pending state (an attacker can start a flow of their own), the error is shown
    and recorded, and its log line has no raw control character."""
    caplog.set_level(logging.INFO)
    browser = sso_app.test_client()
    state = parse_qs(urlsplit(start_flow(browser)).query)["state"][0]

    response = browser.get(
        "/admin/sso/callback",
        query_string={"state": state, "error": "access_denied", "error_description": FORGED},
    )

    assert response.status_code == 403
    assert events(sso_app)[0]["reason"] == "idp-refused"
    lines = [line for line in sso_log_lines(caplog) if "forged" in line]
    assert lines and all(line.isprintable() for line in lines)
    assert "\\x1b[2J\\n2026" in lines[0]


def test_a_callback_without_state_is_refused(sso_app: Flask, entra: Entra) -> None:
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    code = parse_qs(urlsplit(redirect).query)["code"][0]

    response = browser.get("/admin/sso/callback", query_string={"code": code})

    assert response.status_code == 400
    assert "does not belong to a sign-in started in this browser" in text(response)
    assert not signed_in_page(browser)


def test_many_started_sign_ins_keep_the_cookie_small(sso_app: Flask, entra: Entra) -> None:
    """Each start keeps its flow (state, nonce, verifier) in the cookie: only the newest few
    stay, so pressing the button again and again never pushes it past a browser's 4 KB."""
    local = signed_in(sso_app)
    browser = local.client
    first = start_flow(browser)
    for _ in range(30):
        latest = start_flow(browser)

    cookie = browser.get_cookie(COOKIE_NAME, path="/admin")
    assert cookie is not None and len(cookie.value) < 2048
    assert signed_in_page(browser)  # the password session is still in the cookie
    assert callback(browser, sign_in(first, "ann")).status_code == 400  # long forgotten
    assert callback(browser, sign_in(latest, "ann")).status_code == 302


def test_a_replayed_callback_is_refused(sso_app: Flask, entra: Entra) -> None:
    """The state works once: the same redirect a second time (say, from history) fails."""
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    assert callback(browser, redirect).status_code == 302
    browser.post("/admin/sign-out", data={"csrf_token": csrf_of(browser.get("/admin/settings"))})

    response = callback(browser, redirect)

    assert response.status_code == 400
    assert "already used" in text(response)
    assert not signed_in_page(browser)


def test_a_state_is_used_up_by_a_failed_callback_too(sso_app: Flask, entra: Entra) -> None:
    """The flow's record goes before anything is checked: after an error response under a
    state, the provider's real response under it is refused too. (A successful sign-in
    clears the whole session anyway, so the replay above cannot tell.)"""
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    state = parse_qs(urlsplit(redirect).query)["state"][0]
    refused = browser.get(
        "/admin/sso/callback", query_string={"state": state, "error": "access_denied"}
    )
    assert refused.status_code == 403

    response = callback(browser, redirect)

    assert response.status_code == 400
    assert "already used" in text(response)
    assert not signed_in_page(browser)


def test_a_callback_in_another_browser_is_refused(sso_app: Flask, entra: Entra) -> None:
    """Login CSRF: an attacker's own code and state, delivered to a victim's browser."""
    attacker = sso_app.test_client()
    redirect = sign_in(start_flow(attacker), "ann")
    victim = sso_app.test_client()

    response = callback(victim, redirect)

    assert response.status_code == 400
    assert not signed_in_page(victim)


def test_a_code_the_token_endpoint_refuses_signs_no_one_in(
    sso_app: Flask, entra: Entra, idp: OidcProvider
) -> None:
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    idp.proxy.corrupt_next_token_code()

    response = callback(browser, redirect)

    assert response.status_code == 400
    assert "refused the sign-in code: invalid_grant" in text(response)
    assert events(sso_app)[0]["reason"] == "code-refused"
    assert not signed_in_page(browser)


def test_a_wrong_or_expired_client_secret_is_named_with_the_provider_s_words(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    """The token endpoint says invalid_client: the page says the secret is wrong or expired,
    with the provider's description (Entra's tells AADSTS7000222, expired, from
    AADSTS7000215, a Secret ID pasted for the Value)."""
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret\n")
    app = make_app(client_secret_file=str(wrong))
    browser = app.test_client()

    response = sign_in_as(browser, "ann")

    assert response.status_code == 400
    page = text(response)
    assert "invalid_client (client authentication failed)" in page
    assert "The client secret is wrong or has expired" in page
    assert events(app)[0]["reason"] == "code-refused"


def test_a_used_code_is_refused_by_the_provider(sso_app: Flask, entra: Entra) -> None:
    """A code replayed under a fresh state: the real provider refuses a code used before."""
    browser = sso_app.test_client()
    first = sign_in(start_flow(browser), "ann")
    assert callback(browser, first).status_code == 302
    browser.post("/admin/sign-out", data={"csrf_token": csrf_of(browser.get("/admin/settings"))})
    fresh_state = parse_qs(urlsplit(start_flow(browser)).query)["state"][0]
    used_code = parse_qs(urlsplit(first).query)["code"][0]

    response = browser.get(
        "/admin/sso/callback", query_string={"code": used_code, "state": fresh_state}
    )

    assert response.status_code == 400
    assert "refused the sign-in code" in text(response)
    assert not signed_in_page(browser)


def _later(seconds: int) -> Callable[[dict, dict], dict]:
    def edit(header: dict, claims: dict) -> dict:
        return {**claims, "iat": claims["iat"] + seconds, "exp": claims["exp"] + seconds}

    return edit


@pytest.mark.parametrize(
    ("edit", "signature", "words"),
    [
        pytest.param(
            lambda h, c: {**c, "aud": "another-app"},
            Signature.PROVIDER_KEY,
            "issued for another application",
            id="aud-of-another-app",
        ),
        pytest.param(
            # azp names us, so only the aud check can catch it (Authlib alone lets it pass).
            lambda h, c: {**c, "aud": "another-app", "azp": "proware"},
            Signature.PROVIDER_KEY,
            "issued for another application (aud",
            id="aud-of-another-app-azp-ours",
        ),
        pytest.param(
            lambda h, c: {**c, "iss": "https://evil.example"},
            Signature.PROVIDER_KEY,
            "issued by another identity provider",
            id="iss-of-another-provider",
        ),
        pytest.param(
            lambda h, c: {**c, "nonce": "not-the-one-we-sent"},
            Signature.PROVIDER_KEY,
            "does not belong to this sign-in (nonce)",
            id="nonce-of-another-sign-in",
        ),
        pytest.param(
            lambda h, c: {k: v for k, v in c.items() if k != "nonce"},
            Signature.PROVIDER_KEY,
            "lacks the nonce claim",
            id="nonce-missing",
        ),
        pytest.param(
            lambda h, c: {**c, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
            Signature.PROVIDER_KEY,
            "it has expired",
            id="expired",
        ),
        pytest.param(
            _later(600), Signature.PROVIDER_KEY, "issued in the future", id="issued-in-the-future"
        ),
        pytest.param(None, Signature.FOREIGN_KEY, "signature does not match", id="wrong-key"),
        pytest.param(None, Signature.STALE, "signature does not match", id="tampered-payload"),
    ],
)
def test_an_id_token_that_fails_a_check_signs_no_one_in(
    sso_app: Flask,
    entra: Entra,
    idp: OidcProvider,
    edit: Callable | None,
    signature: Signature,
    words: str,
) -> None:
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    idp.proxy.forge_next_id_token(edit, signature)

    response = callback(browser, redirect)

    assert idp.proxy.errors == []
    assert response.status_code == 400, text(response)
    assert words in text(response)
    assert events(sso_app)[0]["reason"] == "bad-token"
    assert not signed_in_page(browser)


def test_a_small_clock_difference_is_tolerated(
    sso_app: Flask, entra: Entra, idp: OidcProvider
) -> None:
    """A provider clock 30 s ahead (iat in our future) still signs in."""
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    idp.proxy.forge_next_id_token(_later(30))

    assert callback(browser, redirect).status_code == 302
    assert signed_in_page(browser)


# -- the identity provider unreachable or unreadable ---------------------------------------


def test_an_unreachable_provider_leaves_local_sign_in_on_offer(
    sso_app: Flask, idp: OidcProvider
) -> None:
    idp.proxy.go_down()
    browser = sso_app.test_client()

    response = browser.get("/admin/sso/start")

    assert response.status_code == 502
    page = text(response)
    assert re.search(r'role="alert" id="sso-error">\s*<p><strong>Single sign-on did not', page)
    assert "could not reach the identity provider" in page
    assert "Try again in a few minutes. If it keeps failing, an administrator can" in page
    assert 'id="local-sign-in"' in page
    assert events(sso_app)[0]["reason"] == "idp-unreachable"
    create_admin(sso_app)
    assert AdminClient(browser).sign_in().status_code == 302


@pytest.mark.parametrize(
    ("break_it", "words"),
    [
        (lambda proxy: proxy.garble_discovery(), "is not valid JSON"),
        (lambda proxy: proxy.fail_discovery(500), "and it failed (HTTP 500)"),
        (
            lambda proxy: proxy.replace_response(
                "/.well-known/openid-configuration",
                200,
                b'{"issuer": "https://other.example", "authorization_endpoint": "x"}',
                "application/json",
            ),
            "names the issuer 'https://other.example'",
        ),
        (lambda proxy: _discovery(proxy, b"[]"), "is not a JSON object"),
        (lambda proxy: _discovery(proxy, b'"x"'), "is not a JSON object"),
        (lambda proxy: _discovery(proxy, b"null"), "is not a JSON object"),
    ],
    ids=["not-json", "http-500", "another-issuer", "array", "string", "null"],
)
def test_an_unusable_discovery_document_is_named(
    sso_app: Flask, idp: OidcProvider, break_it: Callable, words: str
) -> None:
    break_it(idp.proxy)

    response = sso_app.test_client().get("/admin/sso/start")

    assert response.status_code == 502
    assert words in text(response)
    assert events(sso_app)[0]["reason"] in ("discovery-unreadable", "idp-unreachable")


class _Trickle(socketserver.BaseRequestHandler):
    """An HTTP server that sends its discovery document a header line at a time, each in
    less than the timeout, so that only a limit on the whole answer can end the wait."""

    document = b""

    def handle(self) -> None:
        self.request.recv(65536)
        head = ["HTTP/1.1 200 OK", "Content-Type: application/json"]
        head += [f"X-Slow-{n}: {n}" for n in range(20)]
        head += [f"Content-Length: {len(self.document)}", "Connection: close"]
        try:
            for line in head:
                self.request.sendall(line.encode() + b"\r\n")
                time.sleep(0.1)
            self.request.sendall(b"\r\n" + self.document)
        except OSError:
            pass


def test_an_answer_that_trickles_in_is_given_up_after_the_timeout() -> None:
    """Each read is quicker than the timeout; the answer as a whole is not (it would come
    complete and usable two seconds later)."""
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Trickle) as server:
        issuer = f"http://127.0.0.1:{server.server_address[1]}"
        _Trickle.document = json.dumps(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/auth",
                "token_endpoint": f"{issuer}/token",
                "jwks_uri": f"{issuer}/jwks",
            }
        ).encode()
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        relying_party = RelyingParty(
            issuer=issuer, client_id="proware", client_secret="s", scopes="openid", timeout=0.5
        )
        try:
            with pytest.raises(SignInFailed, match="could not reach the identity provider"):
                relying_party.check_discovery()
        finally:
            server.shutdown()


def test_a_provider_that_did_not_answer_is_not_asked_again_for_a_minute() -> None:
    """With the embedded store one thread serves every request: a sign-in waiting on a
    silent provider holds Entra's SCIM requests, so the next ones do not wait again."""
    connections: list[socket.socket] = []
    silent = socket.create_server(("127.0.0.1", 0))
    now = [1_800_000_000.0]

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                connections.append(silent.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    relying_party = RelyingParty(
        issuer=f"http://127.0.0.1:{silent.getsockname()[1]}",
        client_id="proware",
        client_secret="s",
        scopes="openid",
        clock=lambda: now[0],
        timeout=0.2,
    )
    try:
        with pytest.raises(SignInFailed, match=r"\(no answer within"):
            relying_party.check_discovery()
        with pytest.raises(SignInFailed, match="Proware asks it again from 08:01:00 UTC"):
            relying_party.check_discovery()
        asked = len(connections)
        now[0] += QUIET
        with pytest.raises(SignInFailed, match=r"\(no answer within"):
            relying_party.check_discovery()
    finally:
        silent.close()
    assert asked == 1 and len(connections) == 2


def _discovery(proxy: TamperingProxy, body: bytes) -> None:
    proxy.replace_response(DISCOVERY_PATH, 200, body, "application/json")


@pytest.mark.parametrize(
    "body",
    [b"[]", b'"x"', b'{"issuer": "x"}'],
    ids=["array", "string", "no-endpoints"],
)
def test_check_names_an_unusable_discovery_document(
    sso_app: Flask, entra: Entra, idp: OidcProvider, tmp_path: Path, body: bytes, capsys
) -> None:
    """The settings page's Check button and `sso status --check` say what is wrong."""
    browser = _sso_panel(sso_app)
    sso_app.extensions["proware.admin"].sso.relying_party._forget_metadata()
    _discovery(idp.proxy, body)

    done = browser.submit("/admin/settings", "/admin/settings/sso/check")
    code = main(["--config", str(_config_file(tmp_path, idp)), "sso", "status", "--check"])

    assert "The discovery document at" in text(browser.get(done.headers["Location"]))
    assert code == 1 and "Discovery:      The discovery document at" in capsys.readouterr().out


def _token_requests(proxy: TamperingProxy) -> list[Exchange]:
    return [e for e in proxy.exchanges if e.method == "POST" and e.path == TOKEN_PATH]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"scope": "openid offline_access everything"}, id="scope"),
        pytest.param({"token_endpoint_auth_method": "client_secret_post"}, id="auth-method"),
        pytest.param({"code_challenge_method": "plain"}, id="pkce-method"),
        pytest.param(
            {"client_id": "someone-else", "redirect_uri": "https://elsewhere.example/cb"},
            id="client-id",
        ),
    ],
)
def test_client_options_in_the_discovery_document_change_nothing_the_client_sends(
    sso_app: Flask, entra: Entra, idp: OidcProvider, options: dict
) -> None:
    """Authlib takes its server metadata as client options: only the endpoints reach it."""
    idp.proxy.edit_response(DISCOVERY_PATH, lambda document: {**document, **options})
    browser = sso_app.test_client()

    location = start_flow(browser)
    response = callback(browser, sign_in(location, "ann"))

    query = parse_qs(urlsplit(location).query)
    assert query["scope"] == ["openid profile email"]
    assert query["code_challenge_method"] == ["S256"]
    assert (query["client_id"], query["redirect_uri"]) == ([idp.client_id], [CALLBACK])
    (token_request,) = _token_requests(idp.proxy)
    assert token_request.headers["authorization"].startswith("Basic ")  # as registered
    assert b"client_secret" not in token_request.body
    assert response.status_code == 302, text(response)
    assert signed_in_page(browser)


def test_the_code_goes_only_to_the_token_endpoint_of_the_configured_issuer(
    sso_app: Flask, entra: Entra, idp: OidcProvider
) -> None:
    """A discovery document read again between the sign-in and its callback is checked before
    its token endpoint gets the code and the client secret."""
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    sso_app.extensions["proware.admin"].sso.relying_party._forget_metadata()
    idp.proxy.edit_response(
        DISCOVERY_PATH,
        lambda document: {
            **document,
            "issuer": "https://elsewhere.example",
            "token_endpoint": idp.issuer + "/stolen",
        },
    )

    response = callback(browser, redirect)

    assert response.status_code == 502
    assert "names the issuer 'https://elsewhere.example'" in text(response)
    assert not [e for e in idp.proxy.exchanges if e.path == "/stolen"]
    assert not _token_requests(idp.proxy)
    assert not signed_in_page(browser)


# Answers of a JWKS endpoint that are not a JWK Set (RFC 7517 §5).
_BAD_KEY_SETS = [
    pytest.param(b'{"error": "temporarily_unavailable"}', id="error-object"),
    pytest.param(b"[]", id="array"),
    pytest.param(b"<html>busy</html>", id="not-json"),
    pytest.param(b'{"keys": "x"}', id="keys-not-a-list"),
    pytest.param(b'{"keys": [{"kty": "RSA", "n": "x"}]}', id="unusable-key"),
]


@pytest.mark.parametrize("body", _BAD_KEY_SETS)
def test_unreadable_signing_keys_are_named_and_not_kept(
    sso_app: Flask, entra: Entra, idp: OidcProvider, body: bytes
) -> None:
    idp.proxy.replace_response(JWKS_PATH, 200, body, "application/json")
    browser = sso_app.test_client()

    response = sign_in_as(browser, "ann")

    assert response.status_code == 502, text(response)
    assert "could not read the identity provider's signing keys" in text(response)
    assert events(sso_app)[0]["reason"] == "keys-unreadable"
    assert not signed_in_page(browser)
    idp.proxy.restore_response(JWKS_PATH)  # the provider recovers
    assert sign_in_as(browser, "ann").status_code == 302
    assert signed_in_page(browser)


@pytest.mark.parametrize("body", _BAD_KEY_SETS[:2])
def test_unreadable_keys_after_a_key_rotation_are_not_kept(
    sso_app: Flask, entra: Entra, idp: OidcProvider, body: bytes
) -> None:
    """A token under a kid the cached keys lack makes Proware read them again."""
    assert sign_in_as(sso_app.test_client(), "ann").status_code == 302  # keys cached
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    idp.proxy.replace_response(JWKS_PATH, 200, body, "application/json")
    idp.proxy.forge_next_id_token(signature=Signature.UNKNOWN_KEY)

    response = callback(browser, redirect)

    assert response.status_code == 502, text(response)
    assert "could not read the identity provider's signing keys" in text(response)
    idp.proxy.restore_response(JWKS_PATH)
    assert sign_in_as(browser, "ann").status_code == 302


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>Service Unavailable</html>", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"access_token": "a", "expires_in": [1]}', id="expires-in-a-list"),
        pytest.param(b'{"access_token": "a", "expires_in": "soon"}', id="expires-in-a-word"),
        pytest.param(b'{"access_token": ["a"], "id_token": "x"}', id="access-token-a-list"),
    ],
)
def test_a_token_response_that_is_not_one_is_named(
    sso_app: Flask, entra: Entra, idp: OidcProvider, body: bytes
) -> None:
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    idp.proxy.replace_response(TOKEN_PATH, 200, body, "application/json")

    response = callback(browser, redirect)

    assert response.status_code == 502, text(response)
    assert "token endpoint answered with something that is not a token response" in text(response)
    assert events(sso_app)[0]["reason"] == "token-unreadable"
    assert not signed_in_page(browser)


def test_the_provider_going_down_during_the_sign_in_is_refused_cleanly(
    sso_app: Flask, entra: Entra, idp: OidcProvider
) -> None:
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    idp.proxy.go_down()

    response = callback(browser, redirect)

    assert response.status_code == 502
    assert "could not reach the identity provider's token endpoint" in text(response)
    assert not signed_in_page(browser)


def test_nothing_secret_reaches_the_log(
    sso_app: Flask, entra: Entra, idp: OidcProvider, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    browser = sso_app.test_client()
    redirect = sign_in(start_flow(browser), "ann")
    idp.proxy.forge_next_id_token(lambda h, c: {**c, "aud": "x"})
    callback(browser, redirect)
    query = parse_qs(urlsplit(redirect).query)

    ours = [r.getMessage() for r in caplog.records if r.name.startswith("proware")]
    logged = "\n".join(ours) + "".join(str(event) for event in events(sso_app))
    for secret in (query["code"][0], query["state"][0], idp.client_secret):
        assert secret not in logged
    access = [r.getMessage() for r in caplog.records if r.name == "proware.access"]
    assert any("/admin/sso/callback?code=[redacted]&state=[redacted]" in line for line in access)


# -- deprovisioning ends access at once ----------------------------------------------------


def _deactivate(scim: Entra) -> None:
    response = scim.patch_ops(
        f"/Users/{scim.ids['ann']}",
        {"op": "Replace", "path": "active", "value": "False"},  # Entra's dialect
    )
    assert response.status_code == 200


def _delete(scim: Entra) -> None:
    assert scim.delete(f"/Users/{scim.ids['ann']}").status_code == 204


def _leave_group(scim: Entra) -> None:
    ids = scim.ids
    response = scim.patch_ops(
        f"/Groups/{ids['group']}",
        {"op": "Remove", "path": "members", "value": [{"value": ids["ann"]}]},
    )
    assert response.status_code == 204


@pytest.mark.parametrize(
    ("change", "reason", "words"),
    [
        (_deactivate, "disabled", "Entra disabled your account"),
        (_delete, "not-provisioned", "no longer provisioned"),
        (_leave_group, "not-in-admin-group", "no longer a member of the admin group"),
    ],
    ids=["disabled", "deleted", "removed-from-group"],
)
def test_entra_deprovisioning_ends_the_session_on_its_next_request(
    sso_app: Flask, entra: Entra, change: Callable, reason: str, words: str
) -> None:
    browser = sso_app.test_client()
    assert sign_in_as(browser, "ann").status_code == 302
    assert signed_in_page(browser)

    change(entra)

    response = browser.get("/admin/settings")
    assert response.status_code == 302
    assert urlsplit(response.headers["Location"]).path == "/admin/sign-in"
    assert words in text(browser.get(response.headers["Location"]))
    assert not signed_in_page(browser)
    ended = events(sso_app)[0]
    assert (ended["operation"], ended["reason"], ended["name"]) == (
        "session ended",
        reason,
        "ann@contoso.example",
    )


def test_a_user_renamed_in_entra_is_named_by_the_new_user_name_from_their_next_request(
    sso_app: Flask, entra: Entra
) -> None:
    """Entra renames the UPN (same id): the session goes on, and the page and the activity
    log name the user as the directory does now, not by the name they signed in with."""
    browser = _sso_panel(sso_app)
    renamed = entra.patch_ops(
        f"/Users/{entra.ids['ann']}",
        {"op": "Replace", "path": "userName", "value": "ann.new@contoso.example"},
    )
    assert renamed.status_code == 200

    page = text(browser.client.get("/admin/settings"))
    assert "Signed in as <strong>ann.new@contoso.example</strong>" in page
    browser.submit(
        "/admin/settings", "/admin/settings/sso", {"action": "admin-group", "admin_group": GROUP}
    )
    assert events(sso_app)[0]["admin"] == "ann.new@contoso.example"


# -- local sign-in beside single sign-on ----------------------------------------------------


def test_with_local_sign_in_off_passwords_no_longer_work(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(local_sign_in=False)
    create_admin(app)
    browser = app.test_client()

    page = text(browser.get("/admin/sign-in"))
    with browser.session_transaction("/admin/sign-in") as session:
        session["csrf"] = token = "a-valid-csrf-token"  # the old form, posted anyway
    response = browser.post(
        "/admin/sign-in",
        data={"csrf_token": token, "username": USERNAME, "password": PASSWORD},
    )

    assert 'id="local-sign-in"' not in page and "Local sign-in is turned off" in page
    assert response.status_code == 403
    assert not signed_in_page(browser)


def test_turning_local_sign_in_off_ends_local_sessions(sso_app: Flask, entra: Entra) -> None:
    local = signed_in(sso_app)
    admin = sso_app.extensions["proware.admin"]

    admin.sso.state.change_policy("cli", local_sign_in=False)

    response = local.get("/admin/settings")
    assert response.status_code == 302
    assert "Local sign-in is turned off" in text(local.get(response.headers["Location"]))


def _copy_of(browser: FlaskClient) -> Callable[[], FlaskClient]:
    """A thief's copy of the session cookie: a new browser presenting it, each call."""
    cookie = browser.get_cookie(COOKIE_NAME, path="/admin")
    assert cookie is not None

    def replay() -> FlaskClient:
        thief = browser.application.test_client()
        thief.set_cookie(COOKIE_NAME, cookie.value, path="/admin")
        return thief

    return replay


@pytest.mark.parametrize("back_on", ["cli", "reset"])
def test_a_password_session_ended_by_local_sign_in_off_stays_ended(
    sso_app: Flask, entra: Entra, back_on: str
) -> None:
    """Turning local sign-in on again (`sso local-sign-in on`, or Revert to config.toml)
    brings back password sign-in, not the sessions that ended."""
    local = signed_in(sso_app)
    replay = _copy_of(local.client)
    state = sso_app.extensions["proware.admin"].sso.state
    state.change_policy("admin:ann@contoso.example", local_sign_in=False)
    assert not signed_in_page(replay())

    if back_on == "cli":
        state.change_policy("cli", local_sign_in=True)
    else:
        state.reset_policy()

    assert sso_app.extensions["proware.admin"].sso.local_allowed()
    thief = replay()
    response = thief.get("/admin/settings")
    assert response.status_code == 302
    assert "ended when local sign-in was turned off" in text(
        thief.get(response.headers["Location"])
    )
    assert not signed_in_page(replay())
    assert signed_in_page(signed_in(sso_app).client)  # a new password sign-in works


def test_an_sso_session_ended_by_disabling_sso_stays_ended_when_it_is_enabled_again(
    sso_app: Flask, entra: Entra
) -> None:
    browser = sso_app.test_client()
    assert sign_in_as(browser, "ann").status_code == 302
    replay = _copy_of(browser)
    state = sso_app.extensions["proware.admin"].sso.state
    state.change_policy("cli", enabled=False)
    assert not signed_in_page(replay())

    state.change_policy("admin:admin", enabled=True)

    assert not signed_in_page(replay())
    fresh = sso_app.test_client()
    assert sign_in_as(fresh, "ann").status_code == 302 and signed_in_page(fresh)


def test_sessions_started_after_a_policy_flip_are_not_ended_by_it(
    sso_app: Flask, entra: Entra
) -> None:
    state = sso_app.extensions["proware.admin"].sso.state
    state.change_policy("cli", local_sign_in=False)
    state.change_policy("cli", enabled=False)
    state.change_policy("cli", local_sign_in=True, enabled=True)
    local = signed_in(sso_app)
    browser = sso_app.test_client()
    assert sign_in_as(browser, "ann").status_code == 302

    state.change_policy("cli", admin_group=GROUP)  # a change that ends nothing

    assert signed_in_page(local.client) and signed_in_page(browser)


def test_disabling_sso_ends_its_sessions_and_brings_back_local_sign_in(
    make_app: Callable[..., Flask], scim_for: Callable[[Flask], ScimClient]
) -> None:
    app = make_app(local_sign_in=False)
    scim = scim_for(app)
    ann = scim.create_user("ann@contoso.example", active=True)
    scim.create_group(GROUP, [ann["id"]])
    browser = app.test_client()
    assert sign_in_as(browser, "ann").status_code == 302

    app.extensions["proware.admin"].sso.state.change_policy("cli", enabled=False)

    assert not signed_in_page(browser)
    page = text(browser.get("/admin/sign-in"))
    assert "Sign in with Microsoft" not in page and 'id="local-sign-in"' in page


# -- config.toml changed between two starts ------------------------------------------------

CONFIG_CHANGED = "single sign-on changed in config.toml"


def _start(tmp_path: Path, idp: OidcProvider, **sso: object) -> Flask:
    """A server process started on the data under ``tmp_path``, with ``[sso]`` as given."""
    app = create_app(sso_settings(tmp_path, idp, **sso))
    app.config["TESTING"] = True
    return app


def _stop(app: Flask) -> None:
    """Stop the process as `serve` does: save token use and connection status, then close."""
    app.extensions["proware"].tokens.flush()
    app.extensions["proware.admin"].connection.wait_for_save()
    app.extensions["proware.backend"].close()


def _presenting(app: Flask, cookie: str) -> FlaskClient:
    """A browser of ``app`` presenting a session cookie issued before a restart."""
    browser = app.test_client()
    browser.set_cookie(COOKIE_NAME, cookie, path="/admin")
    return browser


def _ended_because(browser: FlaskClient) -> str:
    response = browser.get("/admin/settings")
    assert response.status_code == 302, "the session is still alive"
    return text(browser.get(response.headers["Location"]))


def _config_changes(app: Flask) -> list[dict]:
    return [event for event in events(app) if event["operation"] == CONFIG_CHANGED]


def test_local_sign_in_turned_off_in_config_toml_ends_password_sessions_for_good(
    tmp_path: Path, idp: OidcProvider
) -> None:
    first = _start(tmp_path, idp)
    create_admin(first)
    cookie = signed_in(first).client.get_cookie(COOKIE_NAME, path="/admin")
    assert cookie is not None
    _stop(first)
    _stop(_start(tmp_path, idp, local_sign_in=False))

    third = _start(tmp_path, idp)  # local sign-in on again
    try:
        page = _ended_because(_presenting(third, cookie.value))
        assert "Your session ended when local sign-in was turned off" in page
        assert signed_in_page(signed_in(third).client)  # a new password sign-in works
        back_on, off = _config_changes(third)
    finally:
        _stop(third)
    assert (off["changed"], off["ended"]) == (["local_sign_in"], ["local"])
    assert off["source"] == "config.toml" and off["status"] == 200
    assert "local_sign_in true -> false" in off["detail"]
    assert "every local (password) session" in off["detail"]
    assert (back_on["changed"], back_on["ended"]) == (["local_sign_in"], [])


def _signed_in_with_sso(app: Flask, scim_for: Callable[[Flask], ScimClient]) -> str:
    """ann, provisioned and signed in with Microsoft: her session cookie."""
    scim = scim_for(app)
    ann = scim.create_user("ann@contoso.example", active=True)
    scim.create_group(GROUP, [ann["id"]])
    browser = app.test_client()
    assert sign_in_as(browser, "ann").status_code == 302
    cookie = browser.get_cookie(COOKIE_NAME, path="/admin")
    assert cookie is not None
    return cookie.value


def test_sso_turned_off_in_config_toml_ends_its_sessions_for_good(
    tmp_path: Path, idp: OidcProvider, scim_for: Callable[[Flask], ScimClient]
) -> None:
    first = _start(tmp_path, idp)
    create_admin(first)  # the way in while single sign-on is off
    cookie = _signed_in_with_sso(first, scim_for)
    _stop(first)
    _stop(_start(tmp_path, idp, enabled=False))

    third = _start(tmp_path, idp)
    try:
        page = _ended_because(_presenting(third, cookie))
        fresh = third.test_client()
        assert sign_in_as(fresh, "ann").status_code == 302 and signed_in_page(fresh)
        events_of_third = _config_changes(third)
    finally:
        _stop(third)
    assert "Your session ended when single sign-on was turned off" in page
    assert [event["ended"] for event in events_of_third] == [[], ["sso"]]


@pytest.mark.parametrize(
    "other",
    [{"client_id": "another-app"}, {"issuer": "http://127.0.0.1:9/other-tenant"}],
    ids=["client-id", "issuer"],
)
def test_another_identity_provider_in_config_toml_ends_single_sign_on_sessions(
    tmp_path: Path, idp: OidcProvider, scim_for: Callable[[Flask], ScimClient], other: dict
) -> None:
    first = _start(tmp_path, idp)
    cookie = _signed_in_with_sso(first, scim_for)
    _stop(first)

    second = _start(tmp_path, idp, **other)
    try:
        page = _ended_because(_presenting(second, cookie))
        (change,) = _config_changes(second)
    finally:
        _stop(second)
    assert "Your session ended when the server was set up with another identity provider" in page
    assert change["changed"] == list(other) and change["ended"] == ["provider"]


def test_a_restart_with_the_same_config_ends_nothing_and_records_nothing(
    tmp_path: Path, idp: OidcProvider, scim_for: Callable[[Flask], ScimClient]
) -> None:
    first = _start(tmp_path, idp)
    cookie = _signed_in_with_sso(first, scim_for)
    _stop(first)

    second = _start(tmp_path, idp)
    try:
        assert signed_in_page(_presenting(second, cookie))
        assert _config_changes(second) == []
    finally:
        _stop(second)


def test_server_processes_sharing_postgresql_record_a_config_change_once(
    tmp_path: Path, idp: OidcProvider
) -> None:
    """Every process of a start (and the supervisor's app before the fork) runs the check."""
    storage = StorageSettings(backend="postgresql", dsn=clean_database(), path=tmp_path / "data")

    def start(**sso: object) -> Flask:
        return create_app(replace(sso_settings(tmp_path, idp, **sso), storage=storage))

    _stop(start())
    processes = [start(enabled=False) for _ in range(3)]
    try:
        changes = _config_changes(processes[0])
        assert [event["ended"] for event in changes] == [["sso"]]
        assert all(_config_changes(app) == changes for app in processes)
    finally:
        for app in processes:
            _stop(app)
    again = start(enabled=False)
    try:
        assert len(_config_changes(again)) == 1  # no flapping at the next start
    finally:
        _stop(again)


def test_a_process_started_later_with_another_sso_config_is_named_on_the_settings_page(
    tmp_path: Path, idp: OidcProvider
) -> None:
    """Two processes sharing PostgreSQL, the second started with another admin group: the
    first one's page says they disagree; the second one's has nothing to say."""
    storage = StorageSettings(backend="postgresql", dsn=clean_database(), path=tmp_path / "data")

    def start(**sso: object) -> Flask:
        return create_app(replace(sso_settings(tmp_path, idp, **sso), storage=storage))

    first = start()
    second = start(admin_group="Other Admins")
    time.sleep(STAMP_TTL)  # every process sees the second start's record by then
    try:
        create_admin(first)
        pages = [text(signed_in(app).get("/admin/settings")) for app in (first, second)]
    finally:
        _stop(first)
        _stop(second)
    assert 'id="sso-started-elsewhere"' in pages[0]
    assert "(it differs in admin_group)" in pages[0]
    assert 'id="sso-started-elsewhere"' not in pages[1]


def test_a_sign_in_started_on_one_process_finishes_on_another_and_ends_on_both(
    tmp_path: Path, idp: OidcProvider, scim_for: Callable[[Flask], ScimClient]
) -> None:
    """Behind a load balancer without sticky sessions, the provider's redirect back lands on
    any server process: the state, nonce and PKCE verifier travel in the cookie. Entra's
    change through one process ends the session on the others at their next page."""
    storage = StorageSettings(backend="postgresql", dsn=clean_database(), path=tmp_path / "data")
    one, other = (create_app(replace(sso_settings(tmp_path, idp), storage=storage)) for _ in "12")
    try:
        entra = scim_for(one)
        ann = entra.create_user("ann@contoso.example", active=True)
        entra.create_group(GROUP, [ann["id"]])
        starting = one.test_client()
        redirect = sign_in(start_flow(starting), "ann")
        pending = starting.get_cookie(COOKIE_NAME, path="/admin")
        assert pending is not None
        finishing = _presenting(other, pending.value)
        assert callback(finishing, redirect).status_code == 302
        session = finishing.get_cookie(COOKIE_NAME, path="/admin")
        assert session is not None
        assert signed_in_page(_presenting(one, session.value)) and signed_in_page(finishing)

        disable = {"op": "Replace", "path": "active", "value": "False"}
        assert entra.patch_ops(f"/Users/{ann['id']}", disable).status_code == 200

        assert "Entra disabled your account" in _ended_because(_presenting(other, session.value))
        assert "Entra disabled your account" in _ended_because(_presenting(one, session.value))
    finally:
        _stop(one)
        _stop(other)


# -- the settings section ------------------------------------------------------------------


def _sso_panel(app: Flask) -> AdminClient:
    """ann, signed in with Microsoft."""
    browser = AdminClient(app.test_client())
    assert sign_in_as(browser.client, "ann").status_code == 302
    return browser


def test_the_settings_section_shows_what_entra_needs(
    sso_app: Flask, entra: Entra, idp: OidcProvider
) -> None:
    page = text(_sso_panel(sso_app).get("/admin/settings"))

    assert re.search(
        r'id="sso-redirect-uri"[^>]*value="http://proware.test/admin/sso/callback"', page
    )
    assert 'data-copy="sso-redirect-uri"' in page
    assert idp.issuer in page and idp.client_id in page
    assert f'value="{GROUP}"' in page
    # How many members, and who they are: the group's page in the directory lists them.
    assert f'has <a href="/admin/directory/groups/{entra.ids["group"]}">2 members</a>' in page
    assert idp.client_secret not in page


def test_local_sign_in_can_be_turned_off_only_from_an_sso_session(
    sso_app: Flask, entra: Entra
) -> None:
    local = signed_in(sso_app)
    refused = local.submit("/admin/settings", "/admin/settings/sso", {"action": "local-off"})
    assert "Sign in with Microsoft first" in text(local.get(refused.headers["Location"]))
    assert sso_app.extensions["proware.admin"].sso.policy().local_sign_in is True

    sso = _sso_panel(sso_app)
    done = sso.submit("/admin/settings", "/admin/settings/sso", {"action": "local-off"})
    assert "Local sign-in is off" in text(sso.get(done.headers["Location"]))
    policy = sso_app.extensions["proware.admin"].sso.policy()
    assert policy.local_sign_in is False and policy.changed_by == "admin:ann@contoso.example"
    assert not signed_in_page(local.client)  # the local session ended


@pytest.mark.parametrize("sso", ["not configured", "configured, disabled"])
def test_local_sign_in_cannot_be_turned_off_from_a_password_session_while_sso_is_off(
    make_app: Callable[..., Flask], sso: str
) -> None:
    """The page's button is disabled, and the server refuses the form posted anyway."""
    app = make_app(enabled=False, **({"issuer": ""} if sso == "not configured" else {}))
    local = signed_in(app)

    refused = local.submit("/admin/settings", "/admin/settings/sso", {"action": "local-off"})

    page = text(local.get(refused.headers["Location"]))
    assert "only from a session signed in with Microsoft" in page
    assert "local accounts' sessions have ended" not in page
    policy = app.extensions["proware.admin"].sso.policy()
    assert policy.local_sign_in is True and not policy.overridden
    assert "disable local sign-in" not in [event["operation"] for event in events(app)]


def test_enabling_sso_after_a_refused_local_off_leaves_the_local_account_working(
    make_app: Callable[..., Flask], scim_for: Callable[[Flask], ScimClient]
) -> None:
    app = make_app(enabled=False)
    scim_for(app).create_group(GROUP)
    local = signed_in(app)
    local.submit("/admin/settings", "/admin/settings/sso", {"action": "local-off"})

    local.submit("/admin/settings", "/admin/settings/sso", {"action": "enable"})

    assert app.extensions["proware.admin"].sso.enabled()
    assert signed_in_page(local.client)
    assert signed_in(app)  # a new password sign-in works too


def _password_sign_in(app: Flask) -> int:
    """The status of a password sign-in (posted even when the page offers no form)."""
    browser = app.test_client()
    with browser.session_transaction("/admin/sign-in") as session:
        session["csrf"] = token = "a-valid-csrf-token"
    response = browser.post(
        "/admin/sign-in", data={"csrf_token": token, "username": USERNAME, "password": PASSWORD}
    )
    return response.status_code


def test_the_cli_turns_local_sign_in_back_on_in_the_running_server(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    """The way back from an override that locks the local accounts out (one stored by an
    older Proware, or by an admin signed in with Microsoft), with the server running."""
    config = _config_file(tmp_path, idp)
    app = create_app(load_settings(config))
    try:
        create_admin(app)
        app.extensions["proware.admin"].sso.state.change_policy("admin:ann", local_sign_in=False)
        assert _password_sign_in(app) == 403

        assert main(["--config", str(config), "sso", "local-sign-in", "on"]) == 0

        out = capsys.readouterr().out
        assert "Local sign-in is on" in out
        policy = app.extensions["proware.admin"].sso.policy()
        assert policy.local_sign_in is True and policy.changed_by == "cli"
        assert _password_sign_in(app) == 302

        assert main(["--config", str(config), "sso", "local-sign-in", "off"]) == 0
        assert _password_sign_in(app) == 403
        assert main(["--config", str(config), "sso", "reset-policy"]) == 0
        assert "config.toml's [sso] applies again" in capsys.readouterr().out
        assert not app.extensions["proware.admin"].sso.policy().overridden
        assert _password_sign_in(app) == 302
    finally:
        app.extensions["proware"].repository.close()


def test_the_cli_s_policy_changes_are_in_the_activity_log(
    tmp_path: Path, idp: OidcProvider
) -> None:
    """Turning local sign-in off from the command line ends every password session: it is
    recorded, as the same change made in the control panel or in config.toml is."""
    config = _config_file(tmp_path, idp)
    app = create_app(load_settings(config))
    try:
        for action in (["local-sign-in", "off"], ["local-sign-in", "on"], ["reset-policy"]):
            assert main(["--config", str(config), "sso", *action]) == 0

        recorded = [(e["operation"], e["source"]) for e in events(app)[:3]]
        assert recorded == [
            ("reset single sign-on", "cli"),
            ("enable local sign-in", "cli"),
            ("disable local sign-in", "cli"),
        ]
        assert "sso local-sign-in off" in events(app)[2]["detail"]
    finally:
        app.extensions["proware"].repository.close()


def test_an_override_names_the_settings_it_changed(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    """Only local sign-in was overridden: the page and sso status say so, not a bare "changed
    in the control panel" beside "Single sign-on is enabled", which reads as if that was."""
    config = _config_file(tmp_path, idp)
    app = create_app(load_settings(config))
    try:
        assert main(["--config", str(config), "sso", "local-sign-in", "on"]) == 0
        capsys.readouterr()

        assert main(["--config", str(config), "sso", "status"]) == 0
        out = capsys.readouterr().out
        assert "Single sign-on is enabled (overridden: local sign-in, " in out
        assert "by cli; sso reset-policy returns to config.toml)" in out
        page = text(signed_in(app).get("/admin/settings"))
        assert "(overridden: local sign-in, " in page
    finally:
        app.extensions["proware"].repository.close()


def test_an_admin_group_change_that_would_sign_you_out_is_refused(
    sso_app: Flask, entra: Entra
) -> None:
    entra.create_group("Ops")  # ann is not in it
    browser = _sso_panel(sso_app)

    refused = browser.submit(
        "/admin/settings", "/admin/settings/sso", {"action": "admin-group", "admin_group": "Ops"}
    )

    assert "That would sign you out" in text(browser.get(refused.headers["Location"]))
    assert sso_app.extensions["proware.admin"].sso.policy().admin_group == GROUP
    assert signed_in_page(browser.client)


def test_the_admin_group_can_be_changed_and_reverted(sso_app: Flask, entra: Entra) -> None:
    ops = entra.create_group("Ops", [entra.ids["ann"]])
    browser = _sso_panel(sso_app)

    browser.submit(
        "/admin/settings", "/admin/settings/sso", {"action": "admin-group", "admin_group": "ops"}
    )
    assert sso_app.extensions["proware.admin"].sso.policy().admin_group == "ops"
    assert ops["displayName"] == "Ops"
    browser.submit("/admin/settings", "/admin/settings/sso", {"action": "reset"})

    assert sso_app.extensions["proware.admin"].sso.policy().admin_group == GROUP
    operations = [event["operation"] for event in events(sso_app)[:2]]
    assert operations == ["reset single sign-on", "change admin group"]


def test_sso_cannot_be_turned_off_by_its_only_admins_without_a_local_account(
    sso_app: Flask, entra: Entra
) -> None:
    browser = _sso_panel(sso_app)

    refused = browser.submit("/admin/settings", "/admin/settings/sso", {"action": "disable"})

    assert "would lock everyone out" in text(browser.get(refused.headers["Location"]))
    assert sso_app.extensions["proware.admin"].sso.enabled()


def test_check_the_identity_provider_reads_its_discovery_document(
    sso_app: Flask, entra: Entra, idp: OidcProvider
) -> None:
    browser = _sso_panel(sso_app)

    done = browser.submit("/admin/settings", "/admin/settings/sso/check")

    page = text(browser.get(done.headers["Location"]))
    assert f"names the issuer {idp.issuer}" in page
    assert "its signing keys verify RS256" in page
    assert "Client secret: not refused: the token endpoint answered invalid_grant" in page


# -- python app.py sso status --------------------------------------------------------------


def _config_file(tmp_path: Path, provider: OidcProvider, **sso: str) -> Path:
    (tmp_path / "sso-secret").write_text(provider.client_secret + "\n")
    lines = [
        "[server]",
        f'public_url = "{PUBLIC_URL}"',
        "[sso]",
        "enabled = true",
        f'issuer = "{sso.get("issuer", provider.issuer)}"',
        f'client_id = "{provider.client_id}"',
        'client_secret_file = "sso-secret"',
        f'admin_group = "{GROUP}"',
    ]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sso_status_prints_the_settings_and_checks_the_provider(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    config = _config_file(tmp_path, idp)

    code = main(["--config", str(config), "sso", "status", "--check"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("Single sign-on is enabled")
    assert "Issuer:" in out and idp.issuer in out
    assert f"Client secret:  configured (file {tmp_path / 'sso-secret'})" in out
    assert f"Redirect URI:   {CALLBACK}" in out
    assert f"Admin group:    {GROUP}" in out
    assert "Discovery:      ok, sign-in page" in out
    assert f"Signing keys:   ok, {idp.issuer}{JWKS_PATH} verifies RS256\n" in out
    assert "Secret check:   not refused: the token endpoint answered invalid_grant" in out
    assert "Last attempt:   none" in out
    assert idp.client_secret not in out


def test_sso_status_check_names_a_client_secret_the_provider_refuses(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    """The made-up code goes to the token endpoint with the client authentication a sign-in
    uses (HTTP Basic here); the provider's invalid_client is the answer, the secret is not."""
    config = _config_file(tmp_path, idp)
    (tmp_path / "sso-secret").write_text("the-secret-id-not-its-value\n")

    code = main(["--config", str(config), "sso", "status", "--check"])

    out = capsys.readouterr().out
    assert code == 1
    assert (
        "Secret check:   The identity provider refused Proware's client credentials: "
        "invalid_client (client authentication failed)"
    ) in out
    assert "the-secret-id-not-its-value" not in out
    (exchange,) = _token_requests(idp.proxy)
    assert exchange.headers.get("authorization", "").startswith("Basic ")
    assert parse_qs(exchange.body.decode())["code"] == ["proware-client-secret-check"]


def test_the_check_button_names_a_client_secret_the_provider_refuses(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not-the-secret\n")
    browser = signed_in(make_app(client_secret_file=str(wrong)))

    done = browser.submit("/admin/settings", "/admin/settings/sso/check")

    page = text(browser.get(done.headers["Location"]))
    assert re.search(r'<div class="notice error" role="alert">The identity provider refused', page)
    assert "refused Proware's client credentials: invalid_client" in page
    assert "not-the-secret" not in page


def test_sso_status_says_when_the_servers_started_with_another_sso_config(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    config = _config_file(tmp_path, idp)
    main(["--config", str(config), "sso", "status"])
    assert "Servers:        none has started with this [sso] yet" in capsys.readouterr().out
    _stop(create_app(load_settings(config)))
    main(["--config", str(config), "sso", "status"])
    assert "Servers:" not in capsys.readouterr().out

    (tmp_path / "sso-secret").rename(tmp_path / "elsewhere")  # as for a user who cannot read it
    main(["--config", str(config), "sso", "status"])
    assert "Servers:" not in capsys.readouterr().out
    (tmp_path / "elsewhere").rename(tmp_path / "sso-secret")

    config.write_text(config.read_text().replace(GROUP, "Other Admins"))
    main(["--config", str(config), "sso", "status"])

    out = capsys.readouterr().out
    assert (
        "Servers:        the last one started with another [sso] (it differs in admin_group): "
        "restart every server process, all with this config.toml"
    ) in out


def test_sso_status_shows_the_last_refusal_and_fails_when_the_provider_is_down(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    config = _config_file(tmp_path, idp)
    app = create_app(load_settings(config))
    try:
        browser = app.test_client()
        state = parse_qs(urlsplit(start_flow(browser)).query)["state"][0]
        browser.get("/admin/sso/callback", query_string={"error": "access_denied", "state": state})
    finally:
        app.extensions["proware"].repository.close()
    idp.proxy.go_down()

    code = main(["--config", str(config), "sso", "status", "--check"])

    out = capsys.readouterr().out
    assert code == 1
    assert "refused (idp-refused): The identity provider did not sign you in: access_denied" in out
    assert "Discovery:      Proware could not reach the identity provider" in out


def _public_key(provider: OidcProvider, **changes: object) -> dict:
    """The provider's signing key as its JWKS publishes it, with ``changes``."""
    return {**provider.signing_key.as_dict(private=False), **changes}


def _ec_key() -> dict:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1"}).as_dict(private=False)


def _jwks(*keys: dict) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


def _announce(idp: OidcProvider, algorithms: list[str]) -> None:
    """Make the discovery document announce ``algorithms`` for ID tokens."""
    idp.proxy.edit_response(
        DISCOVERY_PATH,
        lambda document: {**document, "id_token_signing_alg_values_supported": algorithms},
    )


def _status_check(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> tuple[int, str]:
    """`sso status --check`: its exit code and output."""
    code = main(["--config", str(_config_file(tmp_path, idp)), "sso", "status", "--check"])
    return code, capsys.readouterr().out


# Signing keys that `sso status --check` must call unusable for the RS256 the provider
# announces, and the words it names the problem with.
_UNUSABLE_KEYS: list = [
    *[
        pytest.param(
            param.values[0], "could not read the identity provider's signing keys", id=param.id
        )
        for param in _BAD_KEY_SETS
    ],
    pytest.param(b'{"keys": []}', "the JWK Set holds no key", id="no-keys"),
    pytest.param(
        lambda idp: _jwks(_public_key(idp, use="enc")),
        "(1 key) hold none that verifies RS256",
        id="encryption-key",
    ),
    pytest.param(
        lambda idp: _jwks(_public_key(idp, alg="RS512"), _public_key(idp, key_ops=["sign"])),
        "(2 keys) hold none that verifies RS256",
        id="other-alg-or-operation",
    ),
    pytest.param(
        lambda idp: _jwks(_ec_key()), "(1 key) hold none that verifies RS256", id="ec-key"
    ),
]


@pytest.mark.parametrize(("body", "words"), _UNUSABLE_KEYS)
def test_sso_status_check_fails_on_signing_keys_that_cannot_verify_an_id_token(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture, body, words: str
) -> None:
    answer = body(idp) if callable(body) else body
    idp.proxy.replace_response(JWKS_PATH, 200, answer, "application/json")

    code = main(["--config", str(_config_file(tmp_path, idp)), "sso", "status", "--check"])

    out, err = capsys.readouterr()
    assert code == 1, out
    assert "Discovery:      ok" in out
    (line,) = [line for line in out.splitlines() if line.startswith("  Signing keys:")]
    assert words in line and idp.issuer + JWKS_PATH in line
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("announced", "words"),
    [
        (["ES256"], "hold none that verifies ES256"),
        (["ES256", "HS256", "XYZ"], "hold none that verifies ES256 or HS256 or XYZ"),
    ],
    ids=["ec-only", "nothing-known"],
)
def test_sso_status_check_compares_the_keys_with_the_announced_algorithms(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture, announced, words
) -> None:
    _announce(idp, announced)

    code, out = _status_check(tmp_path, idp, capsys)
    assert code == 1 and "Signing keys:   The identity provider's signing keys at" in out
    assert words in out


def test_sso_status_check_accepts_keys_of_which_one_verifies_an_announced_algorithm(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    _announce(idp, ["ES256", "RS256"])
    idp.proxy.replace_response(
        JWKS_PATH,
        200,
        _jwks(_public_key(idp, use="enc", kid="x"), _public_key(idp)),
        "application/json",
    )

    code, out = _status_check(tmp_path, idp, capsys)

    assert code == 0, out
    assert f"Signing keys:   ok, {idp.issuer}{JWKS_PATH} verifies RS256\n" in out


@pytest.mark.parametrize("announced", [["none"], []], ids=["none", "empty"])
def test_a_discovery_document_announcing_no_usable_algorithm_is_named(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture, announced: list
) -> None:
    """An empty list would let joserfc fall back to its own choice of algorithms."""
    _announce(idp, announced)

    code, out = _status_check(tmp_path, idp, capsys)
    assert code == 1
    assert "lacks a list of strings other than none in id_token_signing_alg_values_supported" in out


def test_the_check_button_reads_the_signing_keys_too(
    sso_app: Flask, entra: Entra, idp: OidcProvider
) -> None:
    browser = _sso_panel(sso_app)
    idp.proxy.replace_response(JWKS_PATH, 200, _jwks(_ec_key()), "application/json")

    done = browser.submit("/admin/settings", "/admin/settings/sso/check")

    assert "hold none that verifies RS256" in text(browser.get(done.headers["Location"]))


def test_sso_status_prints_names_from_the_identity_provider_escaped(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    config = _config_file(tmp_path, idp)
    app = create_app(load_settings(config))
    try:
        state = app.extensions["proware.admin"].sso.state
        state.record(Attempt(state.now(), "refused", "disabled", "no", user="ann\x1b[2J\nforged"))
    finally:
        app.extensions["proware"].repository.close()

    main(["--config", str(config), "sso", "status"])

    out = capsys.readouterr().out
    assert "\x1b" not in out and "ann\\x1b[2J\\nforged (disabled): no" in out


def test_serve_stops_with_a_message_when_the_secret_file_is_missing(
    tmp_path: Path, idp: OidcProvider, capsys: pytest.CaptureFixture
) -> None:
    config = _config_file(tmp_path, idp)
    (tmp_path / "sso-secret").unlink()

    assert main(["--config", str(config), "serve"]) == 2

    assert "client_secret_file" in capsys.readouterr().err
