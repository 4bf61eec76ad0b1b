"""Shared documents of the data directory (control.json, admins.json, ...) broken by a hand
edit while the server runs: a clear 503, one error line in the log, nothing written over
them, and everything works again once the file is repaired, without a restart."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask

from scim.tokens import TokenStore
from tests.admin_support import USERNAME, AdminClient, csrf_of, data_dir_of, signed_in
from tests.conftest import ScimClient

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


def detail(name: str) -> str:
    return (
        f"the server's control file {name} is damaged: repair it or restore it (the server "
        "log says where the damage is); nothing was changed"
    )


def problems(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The warnings and errors logged, but for slow requests (a busy machine's)."""
    return [
        record
        for record in caplog.records
        if record.levelno >= logging.WARNING and record.name != "proware.slow"
    ]


def assert_one_clear_line(caplog: pytest.LogCaptureFixture, path: Path) -> None:
    """One error line naming the file and where it is damaged, and no traceback."""
    (line,) = problems(caplog)
    assert line.levelname == "ERROR" and line.exc_info is None
    assert line.getMessage().startswith(f"{path} is not valid JSON: ")
    assert " at line " in line.getMessage()


@pytest.fixture
def quiet_app(app: Flask) -> Flask:
    """The app answering unexpected errors as a client sees them (a 500), not raising them."""
    app.config["PROPAGATE_EXCEPTIONS"] = False
    return app


def test_scim_requests_get_a_503_while_the_control_file_is_damaged_and_work_once_repaired(
    quiet_app: Flask, scim: ScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The operator revokes the token by hand and leaves a stray comma: the token must not go
    on working from the last good copy, nor may anything be written over the file."""
    scim.create_user("ann")
    control = settled(quiet_app) / "control.json"
    good = control.read_bytes()
    damaged = good.replace(b'"revoked": null', b'"revoked": "2026-12-07T10:00:00Z",', 1)
    control.write_bytes(damaged)

    with caplog.at_level(logging.WARNING):
        responses = [scim.get("/Users"), scim.post("/Users", {"userName": "bob"})]
        responses += [scim.get("/Users") for _ in range(3)]

    for response in responses:
        assert response.status_code == 503, response.get_data(as_text=True)
        assert response.get_json() == {
            "schemas": [ERROR_SCHEMA],
            "status": "503",
            "detail": detail("control.json"),
        }
        assert "Retry-After" not in response.headers  # it lasts until someone repairs it
    assert_one_clear_line(caplog, control)
    assert control.read_bytes() == damaged

    control.write_bytes(good)  # repaired: served again, without a restart
    listed = scim.get("/Users")
    assert listed.status_code == 200
    assert [user["userName"] for user in listed.get_json()["Resources"]] == ["ann"]


def test_each_new_damage_is_logged_once(
    quiet_app: Flask, scim: ScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    control = settled(quiet_app) / "control.json"
    good = control.read_bytes()
    with caplog.at_level(logging.INFO, logger="proware.storage"):
        for damaged in (good[:-3], good[:-3] + b"]"):  # a second edit, still broken
            control.write_bytes(damaged)
            assert [scim.get("/Users").status_code for _ in range(2)] == [503, 503]
        control.write_bytes(good)
        assert scim.get("/Users").status_code == 200

    logged = [record for record in caplog.records if record.name != "proware.slow"]
    assert [record.levelname for record in logged] == ["ERROR", "ERROR", "INFO"]
    assert logged[-1].getMessage() == f"{control} can be read again and is used again"


def settled(app: Flask) -> Path:
    """The app's data directory, once the background saves (token uses, the connection
    status) are over: one would replace its file under a hand edit."""
    app.extensions["proware"].tokens.wait_for_save()
    app.extensions["proware.admin"].connection.wait_for_save()
    return data_dir_of(app)


def _broken(path: Path) -> bytes:
    """Break the shared document at ``path`` as a hand edit would; returns what it held."""
    before = path.read_bytes() if path.exists() else b""
    path.write_bytes(before[: len(before) // 2] if before else b'{"revoked": {')
    return before


def _restore(path: Path, before: bytes) -> None:
    if before:
        path.write_bytes(before)
    else:
        path.unlink()


@pytest.mark.parametrize("name", ["control.json", "admins.json", "sessions.json", "sso.json"])
def test_the_control_panel_shows_a_page_saying_which_file_is_damaged(
    quiet_app: Flask, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    admin = signed_in(quiet_app)
    path = settled(quiet_app) / name
    before = _broken(path)
    damaged = path.read_bytes()

    with caplog.at_level(logging.WARNING):
        pages = [admin.get("/admin/settings"), admin.get("/admin/")]

    for page in pages:
        assert page.status_code == 503, (name, page.status_code)
        text = page.get_data(as_text=True)
        assert f"control file {name} is damaged: repair it or restore it" in text
        assert "nothing was changed" in text and "Traceback" not in text
    assert not [record for record in problems(caplog) if record.exc_info]
    assert path.read_bytes() == damaged

    _restore(path, before)
    assert admin.get("/admin/settings").status_code == 200


def test_control_panel_changes_are_refused_while_a_control_file_is_damaged(
    quiet_app: Flask,
) -> None:
    admin = signed_in(quiet_app)
    csrf = csrf_of(admin.get("/admin/settings"))
    control = settled(quiet_app) / "control.json"
    before = _broken(control)
    damaged = control.read_bytes()

    refused = [
        admin.client.post("/admin/settings/tokens", data={"csrf_token": csrf, "name": "new"}),
        admin.client.post(
            "/admin/settings/provisioning", data={"csrf_token": csrf, "enabled": "1"}
        ),
    ]
    admins = control.with_name("admins.json")
    accounts = _broken(admins)
    refused.append(AdminClient(quiet_app.test_client()).get("/admin/sign-in"))

    for response, name in zip(refused, ["control.json"] * 2 + ["admins.json"], strict=True):
        assert response.status_code == 503, response.get_data(as_text=True)
        assert f"control file {name} is damaged" in response.get_data(as_text=True)
    assert control.read_bytes() == damaged
    _restore(admins, accounts)
    _restore(control, before)
    assert admin.create_token("new")
    assert AdminClient(quiet_app.test_client()).sign_in(USERNAME).status_code == 302


def test_token_uses_are_not_saved_over_a_damaged_control_file(
    quiet_app: Flask, scim: ScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The last-use times saved in the background: refused with one error line (no traceback),
    kept pending, and saved once the file is repaired."""
    document = quiet_app.extensions["proware.backend"].document("control.json")
    tokens = TokenStore(document)
    (token,) = tokens.list()
    control = settled(quiet_app) / "control.json"
    before = _broken(control)
    damaged = control.read_bytes()

    with caplog.at_level(logging.WARNING):
        tokens.record_use(token)  # the first use is saved at once, on a thread of its own
        tokens.wait_for_save()

    assert control.read_bytes() == damaged
    (line,) = problems(caplog)
    assert line.levelname == "ERROR" and line.exc_info is None
    assert str(control) in line.getMessage()
    _restore(control, before)
    tokens.flush()
    (saved,) = TokenStore(document).list()
    assert saved.last_used is not None


def test_a_damaged_connection_status_is_left_alone_and_logged_once(
    quiet_app: Flask, scim: ScimClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The Connection status is this process's own view: the pages that show it still work,
    and its saves leave the damaged file as it is."""
    admin = signed_in(quiet_app)
    scim.get("/Users")
    path = settled(quiet_app) / "connection-status.json"
    before = _broken(path)
    damaged = path.read_bytes()

    with caplog.at_level(logging.WARNING):
        pages = [admin.get("/admin/settings"), admin.get("/admin/activity")]

    assert [page.status_code for page in pages] == [200, 200]
    assert path.read_bytes() == damaged
    (line,) = problems(caplog)
    assert line.levelname == "ERROR" and line.exc_info is None
    _restore(path, before)
    assert admin.get("/admin/settings").status_code == 200
    assert path.read_bytes() != damaged
