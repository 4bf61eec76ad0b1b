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
