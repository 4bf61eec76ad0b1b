"""Single sign-on in headless Chromium: the real server, the real OpenID provider, Entra's SCIM.

Sign-in page -> "Sign in with Microsoft" -> the provider's login -> back in the control panel,
signed in; then Entra-style SCIM traffic disables that user, and the next page load signs
them out. Needs Chromium and Node (tests skip locally without them, fail in CI).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import base_url, new_page
from tests.browser.test_panel_walk import _RING_CONTRAST
from tests.oidc_support import OidcProvider, require_provider
from tests.serverproc import ServerProcess, free_port

pytestmark = pytest.mark.browser

GROUP = "Proware Admins"
UPN = "ann@contoso.example"


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcProvider]:
    require_provider()
    with OidcProvider(tmp_path / "oidc") as running:
        yield running


@pytest.fixture
def server(tmp_path: Path, provider: OidcProvider) -> Iterator[ServerProcess]:
    """The service with [sso] pointing at the provider, local sign-in left on."""
    port = free_port()
    provider.start([f"http://127.0.0.1:{port}/admin/sso/callback"])
    secret = tmp_path / "sso-secret"
    secret.write_text(provider.client_secret + "\n")
    sso = (
        "[sso]\n"
        "enabled = true\n"
        f"issuer = {json.dumps(provider.issuer)}\n"
        f"client_id = {json.dumps(provider.client_id)}\n"
        f"client_secret_file = {json.dumps(str(secret))}\n"
        f"admin_group = {json.dumps(GROUP)}\n"
    )
    process = ServerProcess(tmp_path / "server", port=port, extra_config=sso)
    process.start()
    try:
        yield process
    finally:
        process.stop(timeout=10)


def test_sign_in_with_microsoft_then_entra_disables_the_user(
    chromium, server: ServerProcess, provider: OidcProvider, tmp_path: Path
) -> None:
    # Entra provisions ann and the admin group before anyone signs in.
    server.enable_provisioning()
    entra = server.connect(server.create_token("entra"))
    ann = entra.post("/Users", {"userName": UPN, "active": True})
    assert ann.status == 201, ann.body
    group = entra.post("/Groups", {"displayName": GROUP, "members": [{"value": ann.body["id"]}]})
    assert group.status == 201, group.body

    context, page = new_page(chromium, server)
    page.goto("/admin/settings")
    assert urlsplit(page.url).path == "/admin/sign-in"
    page.get_by_role("link", name="Sign in with Microsoft").click()

    # The provider's own login page (oidc-provider's interaction form).
    page.locator("input[name=login]").wait_for()
    assert urlsplit(page.url).netloc == urlsplit(provider.issuer).netloc
    page.locator("input[name=login]").fill(UPN)
    page.locator("input[name=password]").fill("any password")
    page.locator("button[type=submit]").click()

    # Back in the control panel, where the sign-in was headed, signed in as ann.
    page.get_by_role("heading", name="Control panel settings").wait_for()
    assert urlsplit(page.url).path == "/admin/settings"
    assert f"Signed in as {UPN}" in page.locator("form.signout").inner_text()
    section = page.locator("#single-sign-on")
    assert "signed in" in section.locator("#sso-attempt").inner_text()
    redirect = section.locator("#sso-redirect-uri").input_value()
    assert redirect == f"{base_url(server)}/admin/sso/callback"
    page.screenshot(path=str(tmp_path / "sso-settings.png"), full_page=True)

    # Entra disables ann (its dialect: "Replace" and the string "False").
    disabled = entra.patch(
        f"/Users/{ann.body['id']}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
        },
    )
    assert disabled.status == 200, disabled.body

    page.reload()
    assert urlsplit(page.url).path == "/admin/sign-in"
    assert page.get_by_text("Entra disabled your account").is_visible()
    page.goto("/admin/activity")
    assert urlsplit(page.url).path == "/admin/sign-in"
    page.screenshot(path=str(tmp_path / "sso-signed-out.png"), full_page=True)
    entra.close()
    context.close()


# Facts a screen-reader or keyboard user depends on, for the page as it stands.
_PAGE_FACTS = """() => ({
  h1: document.querySelectorAll('h1').length,
  alerts: [...document.querySelectorAll('[role=alert]')].map(e => e.id),
  unlabelled: [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map(e => e.name || e.id),
})"""


def _weak_focus_rings(page, tabs: int = 25) -> list[str]:
    """Tab through the page: the focused elements whose ring is under 3:1 (WCAG 1.4.11)."""
    weak = []
    for _ in range(tabs):
        page.keyboard.press("Tab")
        ratio, what = page.evaluate(_RING_CONTRAST)
        if ratio < 3:
            weak.append(f"{urlsplit(page.url).path}: {what} {ratio:.2f}")
    return weak


def _tab_to(page, element_id: str, tabs: int = 15) -> None:
    for _ in range(tabs):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} is not reached with the Tab key")


def _keyboard_sign_in(page, login: str) -> None:
    """From the sign-in page to the provider's form and back, with the keyboard alone."""
    _tab_to(page, "sso-start")
    page.keyboard.press("Enter")
    page.locator("input[name=login]").wait_for()
    page.locator("input[name=login]").focus()  # the provider's page, not Proware's
    page.keyboard.type(login)
    page.keyboard.press("Tab")
    page.keyboard.type("any password")
    with page.expect_navigation(url=lambda url: "/admin/" in url):
        page.keyboard.press("Enter")


def test_single_sign_on_by_keyboard_alone_and_its_pages_for_assistive_technology(
    chromium, server: ServerProcess, provider: OidcProvider
) -> None:
    """Sign in with Microsoft and sign out without a mouse; the sign-in page, the refusal and
    the Single sign-on section each have one h1, labelled fields, focus rings of 3:1, and
    the refusal is an alert. The UPN is typed in capitals: the directory's userName is not."""
    server.enable_provisioning()
    entra = server.connect(server.create_token("entra"))
    ann = entra.post("/Users", {"userName": UPN, "active": True}).body
    entra.post("/Groups", {"displayName": GROUP, "members": [{"value": ann["id"]}]})
    context, page = new_page(chromium, server)
    page.goto("/admin/sign-in")
    assert page.evaluate(_PAGE_FACTS) == {"h1": 1, "alerts": [], "unlabelled": []}
    assert _weak_focus_rings(page) == []

    page.goto("/admin/sign-in")
    _keyboard_sign_in(page, "zed@contoso.example")  # not provisioned: refused

    assert page.evaluate(_PAGE_FACTS) == {"h1": 1, "alerts": ["sso-error"], "unlabelled": []}
    assert "is not a provisioned user" in page.locator("#sso-error").inner_text()
    assert _weak_focus_rings(page) == []

    # The provider remembers zed: only "another account" lets the person sign in anew.
    _keyboard_sign_in(page, UPN.upper())

    page.get_by_role("heading", name="Control panel", exact=True).wait_for()
    assert f"Signed in as {UPN}" in page.locator("form.signout").inner_text()
    page.goto("/admin/settings")
    assert page.evaluate(_PAGE_FACTS) == {"h1": 1, "alerts": [], "unlabelled": []}
    page.locator("#single-sign-on").scroll_into_view_if_needed()
    page.locator("#sso-redirect-uri").focus()
    assert _weak_focus_rings(page) == []

    page.locator("form.signout button").focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert urlsplit(page.url).path == "/admin/sign-in"
    assert page.get_by_text("You have signed out.").is_visible()
    page.goto("/admin/settings")
    assert urlsplit(page.url).path == "/admin/sign-in"
    entra.close()
    context.close()
