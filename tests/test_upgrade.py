"""An install an earlier Proware wrote opens in this one with everything it held.

``tests/old_installs/<commit>/data`` is a data directory that version wrote itself (how:
the ``README.md`` beside it), and ``expected.json`` what its SCIM API showed just before it
was killed. Each test opens a copy, never the fixture itself: opening replays the journal
and rewrites the files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from server.config import Settings, StorageSettings
from tests.admin_support import AdminClient
from tests.conftest import PREFIX

OLD_INSTALLS = Path(__file__).parent / "old_installs"
# The first version with the journal store, `make run` and the control panel.
FIRST_JOURNAL = OLD_INSTALLS / "6b51fd3"


@pytest.fixture
def expected() -> dict:
    return json.loads((FIRST_JOURNAL / "expected.json").read_text(encoding="utf-8"))


@pytest.fixture
def upgraded(tmp_path: Path) -> Iterator[Flask]:
    """This version's app on a copy of the old data directory."""
    data_dir = tmp_path / "data"
    shutil.copytree(FIRST_JOURNAL / "data", data_dir)
    app = create_app(Settings(storage=StorageSettings(path=data_dir), source="test"))
    app.config["TESTING"] = True
    yield app
    app.extensions["proware"].tokens.flush()
    app.extensions["proware.backend"].close()


def _without_links(value: object) -> object:
    """``value`` without ``meta.location`` and ``$ref``: they name the server's address."""
    if isinstance(value, dict):
        return {k: _without_links(v) for k, v in value.items() if k not in ("location", "$ref")}
    if isinstance(value, list):
        return [_without_links(item) for item in value]
    return value


def test_every_resource_keeps_its_id_attributes_and_meta(upgraded: Flask, expected: dict) -> None:
    """The journal's records written after the last compaction (a kill -9 left them) are
    replayed too: a user, two member adds, a PATCH and a delete."""
    client = upgraded.test_client()
    auth = {"Authorization": f"Bearer {expected['token']}"}

    for id, old in expected["resources"].items():
        kind = "Users" if old["body"]["meta"]["resourceType"] == "User" else "Groups"
        response = client.get(f"{PREFIX}/{kind}/{id}", headers=auth)
        assert response.status_code == 200, id
        body = _without_links(response.get_json())
        etag = response.headers["ETag"]
        if old["body"].get("groups"):
            # A user's version follows its groups since 234638a: the old one, extended.
            assert etag.startswith(old["etag"][:-1] + "."), (id, etag)
            body["meta"]["version"] = old["body"]["meta"]["version"]
        else:
            assert etag == old["etag"], id
        assert body == old["body"], id
    listed = client.get(f"{PREFIX}/Users?attributes=userName", headers=auth).get_json()
    assert listed["totalResults"] == 4  # user5 was deleted in the journal


def test_tokens_the_switch_and_the_admin_carry_over(upgraded: Flask, expected: dict) -> None:
    client = upgraded.test_client()

    def bearer(secret: str) -> dict:
        return {"Authorization": f"Bearer {secret}"}

    # A 200: the token verifies and User Provisioning is still on.
    assert client.get(f"{PREFIX}/Users", headers=bearer(expected["token"])).status_code == 200
    refused = client.get(f"{PREFIX}/Users", headers=bearer(expected["revoked"]))
    assert refused.status_code == 401
    assert "revoked" in refused.get_json()["detail"]

    admin = AdminClient(upgraded.test_client())
    username, password = expected["admin"]
    signed_in = admin.sign_in(username, password)
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"].endswith("/admin/")
    activity = admin.get("/admin/activity").get_data(as_text=True)
    assert "user1@contoso.com" in activity  # an event the old version recorded
