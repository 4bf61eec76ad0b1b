"""What the panel and the CLI say about when a token or switch change takes effect is what
the code guarantees: at once on the process that made it, within STAMP_TTL elsewhere."""

from __future__ import annotations

from flask import Flask

from scim.tokens import CLI_PROPAGATION, PROPAGATION
from storage.postgres.documents import STAMP_TTL
from tests.admin_support import signed_in


def test_the_promised_quarter_of_a_second_is_how_long_a_document_version_is_trusted() -> None:
    assert STAMP_TTL <= 0.25
    assert "within a quarter of a second" in PROPAGATION
    assert "within a quarter of a second" in CLI_PROPAGATION


def test_revoking_in_the_panel_promises_401_at_once_only_on_this_server(app: Flask) -> None:
    panel = signed_in(app)
    panel.create_token("entra")

    page = panel.get("/admin/settings/tokens/revoke?name=entra").get_data(as_text=True)
    confirm = "/admin/settings/tokens/revoke?name=entra"
    panel.submit(confirm, "/admin/settings/tokens/revoke", {"name": "entra"})
    settings = panel.get("/admin/settings").get_data(as_text=True)

    assert "from now on" not in page
    assert f"gets 401, {PROPAGATION}" in page
    assert f"revoked: requests with it get 401, {PROPAGATION}." in settings


def test_switching_provisioning_off_in_the_panel_says_when_it_applies(app: Flask) -> None:
    panel = signed_in(app)

    panel.submit("/admin/settings", "/admin/settings/provisioning", {"enabled": "0"})
    settings = panel.get("/admin/settings").get_data(as_text=True)

    assert f"every SCIM request gets 403, {PROPAGATION}." in settings
