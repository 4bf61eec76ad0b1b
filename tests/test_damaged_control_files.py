"""Shared documents of the data directory (control.json, admins.json, ...) broken by a hand
edit while the server runs: a clear 503, one error line in the log, nothing written over
them, and everything works again once the file is repaired, without a restart."""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from psycopg.types.json import Jsonb

from app import main
from scim.tokens import TokenStore
from storage import controlfile
from storage.settings import POSTGRESQL, TINYDB
from storage.shapes import DocumentShape
from tests.admin_support import (
    USERNAME,
    AdminClient,
    another_process,
    csrf_of,
    data_dir_of,
    signed_in,
)
from tests.conftest import ScimClient, wait_for

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
    saves_done(app)
    return data_dir_of(app)


def saves_done(app: Flask) -> None:
    """Return once the background saves (token uses, the connection status) are over."""
    app.extensions["proware"].tokens.wait_for_save()
    app.extensions["proware.admin"].connection.wait_for_save()


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


# -- valid JSON of the wrong shape -----------------------------------------------------------
#
# A hand edit can leave valid JSON that the readers cannot use: it is damage like a stray
# comma (storage.shapes), on both backends, and the message says where it is.


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda content: content.__setitem__(key, value)


def _first(key: str, change: Callable[[dict], None]) -> Callable[[dict], None]:
    """Change the first record of the list ``key``."""
    return lambda content: change(content[key][0])


def _first_is(key: str, value: object) -> Callable[[dict], None]:
    return lambda content: content[key].__setitem__(0, value)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda record: record.pop(key)


# (document, the hand edit, where the message says the damage is)
WRONG_SHAPES = [
    pytest.param("control.json", _set("tokens", 5), "tokens: not a list", id="tokens-a-number"),
    pytest.param(
        "control.json", _first_is("tokens", "entra"), "tokens[0]: not an object", id="token-a-str"
    ),
    pytest.param(
        "control.json",
        _first("tokens", _drop("hash")),
        "tokens[0].hash: missing",
        id="token-without-hash",
    ),
    pytest.param(
        "control.json",
        _first("tokens", lambda token: token.update(hash=7)),
        "tokens[0].hash: not a string",
        id="token-hash-a-number",
    ),
    pytest.param(
        "control.json",
        _first("tokens", lambda token: token.update(scope="admin")),
        "tokens[0].scope: not 'read-write' or 'read-only'",
        id="token-scope-unknown",
    ),
    pytest.param(
        "control.json",
        _first("tokens", lambda token: token.update(expires="next week")),
        "tokens[0].expires: not a date and time with its UTC offset (ISO 8601)",
        id="token-expires-not-a-date",
    ),
    pytest.param(
        "control.json", _set("provisioning", [True]), "provisioning: not an object", id="switch"
    ),
    pytest.param("admins.json", _set("admins", {"ann": {}}), "admins: not a list", id="admins"),
    pytest.param(
        "admins.json",
        _first("admins", _drop("password_hash")),
        "admins[0].password_hash: missing",
        id="admin-without-hash",
    ),
    pytest.param(
        "admins.json",
        _first("admins", lambda admin: admin.update(failures=3)),
        "admins[0].failures: not a list",
        id="admin-failures-a-number",
    ),
    pytest.param(
        "sessions.json", _set("revoked", ["sid"]), "revoked: not an object", id="sign-outs-a-list"
    ),
    pytest.param(
        "sessions.json",
        _set("revoked", {"sid": 5}),
        "revoked['sid']: not a date and time",
        id="sign-out-a-number",
    ),
    pytest.param(
        "sso.json",
        _set("policy", {"enabled": "yes"}),
        "policy.enabled: not true or false",
        id="sso-enabled-a-string",
    ),
    pytest.param(
        "sso.json", _set("ended", {"local": 1}), "ended.local: not a date and time", id="sso-ended"
    ),
    # Written by a newer Proware (a backup restored across a downgrade), or edited.
    pytest.param(
        "control.json",
        _set("format", 2),
        "format 2 is newer than this version of Proware reads (1)",
        id="control-of-a-newer-format",
    ),
    pytest.param(
        "admins.json",
        _set("format", "1"),
        "format: '1' is no format of Proware's (it reads 1)",
        id="admins-of-an-unknown-format",
    ),
    pytest.param(
        "sso.json",
        _set("format", 3),
        "format 3 is newer than this version of Proware reads (1)",
        id="sso-of-a-newer-format",
    ),
]


def _content(app: Flask, name: str) -> dict:
    return app.extensions["proware.backend"].document(name).read()


def test_a_newer_format_names_no_backup_to_restore() -> None:
    """A backup holds users and groups: restoring one would not bring this document back."""
    problem = DocumentShape(1).problem({"format": 2})

    assert problem is not None
    assert "restore a backup" not in problem
    assert "run the newer Proware, or put back this document" in problem


def _write_by_hand(app: Flask, name: str, content: object) -> None:
    """Put ``content`` in the document ``name`` as an operator's edit would: over the file,
    or over the database row (with a new version, as any change must have to be seen)."""
    backend = app.extensions["proware.backend"]
    if backend.data_dir is not None:
        (backend.data_dir / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
        return
    with backend.database.connection() as connection:
        (version,) = connection.execute(
            "INSERT INTO documents (name, body, version) VALUES (%s, %s, 1) ON CONFLICT (name) "
            "DO UPDATE SET body = excluded.body, version = documents.version + 1 "
            "RETURNING version",
            (name, Jsonb(content)),
        ).fetchone()
    # The app's one object for the document trusts the version it saw for STAMP_TTL.
    document = backend.document(name)
    wait_for(lambda: document.stamp() == version, what=f"the app to see {name} changed")


def _named(app: Flask, name: str) -> str:
    """How a damaged document ``name`` is named to clients."""
    on_disk = app.extensions["proware.backend"].data_dir is not None
    return f"control file {name}" if on_disk else f"control document {name}"


@pytest.fixture
def with_sso_state(quiet_app: Flask) -> Flask:
    """The app with a sign-out and an SSO policy change recorded, so that sessions.json and
    sso.json hold something to damage."""
    admin = quiet_app.extensions["proware.admin"]
    admin.revoked.revoke("an-old-session", datetime.now(UTC) + timedelta(hours=1))
    admin.sso.state.change_policy("cli", admin_group="Proware Admins")
    return quiet_app


@pytest.mark.parametrize("backend", [TINYDB, POSTGRESQL], indirect=True)
@pytest.mark.parametrize(("name", "edit", "where"), WRONG_SHAPES)
def test_a_wrong_shape_is_refused_as_damage_saying_where_and_works_once_repaired(
    with_sso_state: Flask,
    name: str,
    edit: Callable[[dict], None],
    where: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a 500 with a TypeError from whichever reader met it: a 503 naming the document,
    one log line saying where, nothing written over it; repaired, it is used again."""
    app = with_sso_state
    scim = ScimClient(app.test_client(), _token(app))
    admin = signed_in(app)
    csrf = csrf_of(admin.get("/admin/settings"))
    saves_done(app)
    good = _content(app, name)
    damaged = copy.deepcopy(good)
    edit(damaged)
    _write_by_hand(app, name, damaged)

    with caplog.at_level(logging.WARNING):
        pages = [admin.get("/admin/settings"), admin.get("/admin/")]
        if name == "control.json":
            pages += [scim.get("/Users"), scim.post("/Users", {"userName": "bob"})]
            pages.append(
                admin.client.post(
                    "/admin/settings/tokens", data={"csrf_token": csrf, "name": "new"}
                )
            )

    for page in pages:
        assert page.status_code == 503, (page.status_code, page.get_data(as_text=True))
        assert f"{_named(app, name)} is damaged" in page.get_data(as_text=True)
        assert "Traceback" not in page.get_data(as_text=True)
    (line,) = problems(caplog)
    assert line.levelname == "ERROR" and line.exc_info is None
    assert f"is valid JSON but not what Proware reads: {where}" in line.getMessage()
    assert name in line.getMessage()
    assert another_process(app, name).read() == damaged  # read as stored, unchecked

    _write_by_hand(app, name, good)
    assert admin.get("/admin/settings").status_code == 200
    if name == "control.json":
        assert scim.get("/Users").status_code == 200


@pytest.mark.parametrize("backend", [TINYDB, POSTGRESQL], indirect=True)
@pytest.mark.parametrize("name", ["control.json", "admins.json", "sso.json"])
def test_a_document_that_is_no_object_is_refused_on_both_backends(
    quiet_app: Flask, name: str
) -> None:
    """A database row can hold any JSON value, as a file can: a list is damage too."""
    admin = signed_in(quiet_app)
    saves_done(quiet_app)
    good = _content(quiet_app, name)
    _write_by_hand(quiet_app, name, [good])

    page = admin.get("/admin/settings")
    assert page.status_code == 503
    assert f"{_named(quiet_app, name)} is damaged" in page.get_data(as_text=True)
    _write_by_hand(quiet_app, name, good)
    assert admin.get("/admin/settings").status_code == 200


def _token(app: Flask) -> str:
    services = app.extensions["proware"]
    secret, _ = services.tokens.create("entra")
    services.switch.set(True)
    return secret


# Documents as older versions wrote them: keys the readers find with .get were added later,
# and what a reader no longer looks at stays (storage.shapes lets both pass).
OLDER_DOCUMENTS = [
    pytest.param(
        "control.json",
        {
            "tokens": [
                {
                    "name": "entra",
                    "hash": "ab" * 32,
                    "scope": "read-write",
                    "created": "2026-11-26T10:54:52Z",
                    "created_by": "cli",
                    "expires": None,
                    "last_used": None,
                    "revoked": None,
                }
            ]
        },
        lambda app: [token.name for token in app.extensions["proware"].tokens.list()],
        ["entra"],
        id="control-without-format-or-switch",
    ),
    pytest.param(
        "admins.json",
        {
            "format": 1,
            "admins": [
                {
                    "username": "ann",
                    "password_hash": "scrypt:32768:8:1$x$y",
                    "created": "2026-11-26T10:54:52+00:00",
                    "password_changed": "2026-11-26T10:54:52+00:00",
                }
            ],
        },
        lambda app: [a.username for a in app.extensions["proware.admin"].accounts.list()],
        ["ann"],
        id="admin-without-later-keys",
    ),
    pytest.param(
        "setup.json",
        {"grants": {"cd" * 32: "2026-11-26T10:54:52+00:00"}},
        lambda app: app.extensions["proware.admin"].setup.check("an old grant").state,
        "unknown",
        id="setup-with-the-grants-of-old",
    ),
    pytest.param(
        "connection-status.json",
        {
            "format": 1,
            "tokens": [{"name": "entra", "recent": [], "refusals": [], "last_probe": None}],
        },
        lambda app: app.extensions["proware.admin"].connection.synced().tokens(),
        [],
        id="connection-status-without-token-ids",
    ),
]


@pytest.mark.parametrize(("name", "content", "use", "expected"), OLDER_DOCUMENTS)
def test_documents_older_versions_wrote_still_load(
    quiet_app: Flask, name: str, content: dict, use: Callable[[Flask], object], expected: object
) -> None:
    saves_done(quiet_app)
    _write_by_hand(quiet_app, name, content)

    assert use(quiet_app) == expected


def test_a_connection_status_of_another_format_is_saved_over_not_refused(
    quiet_app: Flask, scim: ScimClient
) -> None:
    """Bookkeeping: a newer Proware's history is not read, and this one's replaces it."""
    admin = signed_in(quiet_app)
    scim.get("/Users")
    saves_done(quiet_app)
    _write_by_hand(quiet_app, "connection-status.json", {"format": 2, "tokens": {"x": 1}})

    assert admin.get("/admin/settings").status_code == 200
    saves_done(quiet_app)
    assert _content(quiet_app, "connection-status.json")["format"] == 1


def test_the_shape_is_checked_once_a_version_not_on_each_request(
    quiet_app: Flask, scim: ScimClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every SCIM request looks its token up in the control document: the check is paid
    when the content changes, not per request (once it is settled: storage.controlfile)."""
    assert scim.get("/Users").status_code == 200
    saves_done(quiet_app)
    monkeypatch.setattr(controlfile, "_clock_ns", lambda: time.time_ns() + 1_000_000_000)
    checks: list[str] = []
    real = DocumentShape.problem

    def counting(self: DocumentShape, value: object, where: str = "") -> str | None:
        checks.append(where)
        return real(self, value, where)

    monkeypatch.setattr(DocumentShape, "problem", counting)
    for _ in range(5):
        assert scim.get("/Users").status_code == 200
    assert checks == []

    quiet_app.extensions["proware"].tokens.create("second")  # checked under the lock
    assert scim.get("/Users").status_code == 200
    assert len(checks) == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda good: good[: len(good) // 2], id="not-json"),
        pytest.param(lambda good: b'{"format": 1, "tokens": 5}', id="tokens-a-number"),
        pytest.param(lambda good: b'{"format": 1, "tokens": ["entra"]}', id="token-a-string"),
    ],
)
def test_a_damaged_connection_status_is_left_alone_and_logged_once_whatever_the_damage(
    quiet_app: Flask,
    scim: ScimClient,
    caplog: pytest.LogCaptureFixture,
    damage: Callable[[bytes], bytes],
) -> None:
    """The Connection status is this process's own view: the pages that show it still work,
    and its saves leave the damaged file as it is."""
    admin = signed_in(quiet_app)
    scim.get("/Users")
    path = settled(quiet_app) / "connection-status.json"
    good = path.read_bytes()
    path.write_bytes(damage(good))
    damaged = path.read_bytes()

    with caplog.at_level(logging.WARNING):
        pages = [admin.get("/admin/settings"), admin.get("/admin/activity")]

    assert [page.status_code for page in pages] == [200, 200]
    assert path.read_bytes() == damaged
    (line,) = problems(caplog)
    assert line.levelname == "ERROR" and line.exc_info is None
    path.write_bytes(good)
    assert admin.get("/admin/settings").status_code == 200
    assert path.read_bytes() != damaged


def test_the_command_line_refuses_a_wrong_shape_saying_where_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "proware.toml"
    config.write_text('[storage]\npath = "data"\n', encoding="utf-8")
    control = tmp_path / "data" / "control.json"
    control.parent.mkdir()
    control.write_text('{"format": 1, "tokens": [{"name": "entra"}]}', encoding="utf-8")
    damaged = control.read_bytes()

    for argv in (["token", "list"], ["token", "create", "--name", "new"]):
        code = main(["--config", str(config), *argv])
        err = capsys.readouterr().err
        assert code == 1, err
        assert f"{control} is valid JSON but not what Proware reads: tokens[0].hash: missing" in err
        assert "Traceback" not in err
    assert control.read_bytes() == damaged


def test_a_control_file_the_server_may_not_read_is_a_503_until_given_back(
    quiet_app: Flask,
    scim: ScimClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`token create` run as root rather than `sudo -u proware` leaves control.json root's
    (mode 0600), which the server's user may not read: was a 500 with a traceback."""
    control = settled(quiet_app) / "control.json"
    real_open = open

    def denied(file: object, *args: object, **kwargs: object) -> object:
        if Path(str(file)) == control:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(controlfile, "open", denied, raising=False)
    control.write_bytes(control.read_bytes())  # rewritten by root: read again
    with caplog.at_level(logging.WARNING):
        response = scim.get("/Users")

    assert response.status_code == 503
    assert response.get_json()["detail"] == (
        "the server may not read its file control.json; nothing was changed (the server log "
        "says why)"
    )
    (line,) = problems(caplog)
    assert line.exc_info is None
    assert line.getMessage().endswith(
        f"cannot open {control}: Permission denied; run Proware and its commands as the user "
        f"that owns {control.parent} (and give the file back to that user)"
    )
    monkeypatch.undo()  # given back to the server's user: served again, without a restart
    assert scim.get("/Users").status_code == 200
