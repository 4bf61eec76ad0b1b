"""The operator command line, ``app.main([...])``: tokens, the provisioning switch, serve."""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask

import scim.tokens as tokens_module
from app import create_app, main
from scim.tokens import FILE_NAME as CONTROL_FILE
from scim.tokens import utcnow
from server import cli, commands, httpserver
from server.config import CONFIG_ENV, LogSettings, ServerSettings, Settings, load_settings
from storage import controlfile, ownership
from storage.journal.lock import DataDirLock
from storage.journal.snapshot import DATA_FILE

PREFIX = "/scim/v2"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config file whose data directory is ./data beside it."""
    path = tmp_path / "proware.toml"
    path.write_text('[storage]\npath = "data"\n\n[server]\nport = 8123\n', encoding="utf-8")
    return path


@pytest.fixture
def data_dir(config: Path) -> Path:
    return config.parent / "data"


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """Run one command; its exit code, standard output and standard error."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def create_token(capsys, config: Path, name: str = "entra", *extra: str) -> str:
    code, out, _ = run(capsys, "--config", str(config), "token", "create", "--name", name, *extra)
    assert code == 0
    return out.strip()


# -- tokens --------------------------------------------------------------------------------


def test_token_create_prints_only_the_token_on_stdout(capsys, config: Path) -> None:
    code, out, err = run(capsys, "token", "create", "--name", "entra", "--config", str(config))

    assert code == 0
    assert out.count("\n") == 1
    secret = out.strip()
    assert secret.startswith("pw_") and " " not in secret
    assert "read-write token 'entra'" in err
    assert "shown only this once" in err


def test_token_create_read_only_with_expiry(capsys, config: Path) -> None:
    create_token(capsys, config, "auditor", "--read-only", "--expires", "30")

    _, out, _ = run(capsys, "--config", str(config), "token", "list")

    [row] = [line for line in out.splitlines() if line.startswith("auditor")]
    assert "read-only" in row and "active" in row
    assert row.rstrip().endswith("UTC")  # the expiry date is shown


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["--name", "entra"], "already exists", id="name-taken"),
        pytest.param(["--name", "bad/name"], "is not allowed", id="bad-name"),
    ],
)
def test_token_create_refuses_bad_requests_with_exit_2(
    capsys, config: Path, argv: list[str], message: str
) -> None:
    create_token(capsys, config, "entra")

    code, out, err = run(capsys, "--config", str(config), "token", "create", *argv)

    assert code == 2
    assert out == ""
    assert message in err


@pytest.mark.parametrize(
    ("days", "refusal"),
    [
        pytest.param("0", "must be a whole number of days, 1 or more", id="zero"),
        pytest.param("-1", "must be a whole number of days, 1 or more", id="negative"),
        pytest.param("soon", "must be a whole number of days, 1 or more", id="not-a-number"),
        # As the control panel refuses it; 3,000,000 days (past the year 9999) was a traceback.
        pytest.param("3651", "must be at most 3650 days", id="over-ten-years"),
        pytest.param("3000000", "must be at most 3650 days", id="past-year-9999"),
    ],
)
def test_token_create_names_the_expires_option_when_refusing_its_value(
    capsys, config: Path, days: str, refusal: str
) -> None:
    with pytest.raises(SystemExit) as usage_error:
        main(["--config", str(config), "token", "create", "--name", "x", "--expires", days])

    assert usage_error.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --expires: {refusal}, not '{days}'" in err
    assert "expires_in_days" not in err
    assert run(capsys, "--config", str(config), "token", "list")[1].count("\n") == 1  # header


def test_token_list_never_shows_a_secret_or_hash(capsys, config: Path, data_dir: Path) -> None:
    first = create_token(capsys, config, "entra")
    second = create_token(capsys, config, "backup", "--read-only")
    run(capsys, "--config", str(config), "token", "revoke", "backup")
    hashes = [t["hash"] for t in json.loads((data_dir / CONTROL_FILE).read_text())["tokens"]]

    code, out, err = run(capsys, "--config", str(config), "token", "list")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "STATUS", "CREATED", "LAST", "USED", "EXPIRES"]
    assert {line.split()[0]: line.split()[2] for line in lines[1:]} == {
        "entra": "active",
        "backup": "revoked",
    }
    for secret in (first, second, *hashes):
        assert secret not in out + err


def test_token_revoke_and_revoking_again(capsys, config: Path) -> None:
    create_token(capsys, config, "entra")

    first = run(capsys, "--config", str(config), "token", "revoke", "entra")
    second = run(capsys, "--config", str(config), "token", "revoke", "entra")

    assert first[0] == 0 and "Revoked token 'entra'" in first[1]
    # The one embedded server stats the control file on every request.
    assert "get 401, from the next request on." in first[1]
    assert second[0] == 1 and "no active token named 'entra'" in second[2]


# -- the provisioning switch ---------------------------------------------------------------


def test_provisioning_enable_disable_status(capsys, config: Path) -> None:
    fresh = run(capsys, "--config", str(config), "provisioning", "status")
    enabled = run(capsys, "--config", str(config), "provisioning", "enable")
    status = run(capsys, "--config", str(config), "provisioning", "status")
    disabled = run(capsys, "--config", str(config), "provisioning", "disable")

    assert fresh == (0, "User Provisioning is disabled\n", "")
    assert enabled[1].startswith("User Provisioning is enabled (since ")
    assert "by cli)" in enabled[1]
    assert status[1] == enabled[1]
    assert disabled[1].startswith("User Provisioning is disabled (since ")


def test_provisioning_help_says_what_each_action_does(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["provisioning", "--help"])
    out = capsys.readouterr().out

    assert "enable    " in out and "accept requests" in out
    assert "disable    " in out and "403" in out
    assert "status    " in out and "since when" in out


def test_provisioning_without_an_action_says_which_there_are(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["provisioning"])

    assert exited.value.code == 2
    assert "{enable,disable,status}" in capsys.readouterr().err


# -- where the config comes from ------------------------------------------------------------


def test_the_config_can_come_from_the_environment(
    capsys, config: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(config))

    code, _, _ = run(capsys, "provisioning", "enable")

    assert code == 0
    assert (data_dir / CONTROL_FILE).is_file()


def test_config_flag_wins_over_the_environment(
    capsys, config: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.toml"))

    code, _, _ = run(capsys, "provisioning", "enable", "--config", str(config))

    assert code == 0
    assert (data_dir / CONTROL_FILE).is_file()


def test_config_toml_in_the_working_directory_is_picked_up(
    capsys, config: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    (config.parent / "config.toml").write_text(config.read_text())
    monkeypatch.chdir(config.parent)

    code, _, _ = run(capsys, "provisioning", "enable")

    assert code == 0
    assert (data_dir / CONTROL_FILE).is_file()


def test_without_any_config_the_defaults_are_used(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)

    code, out, _ = run(capsys, "provisioning", "status")

    assert code == 0
    assert out == "User Provisioning is disabled\n"


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param("[server]\nport = 0\n", "[server] port", id="bad-port"),
        pytest.param("[server]\nprot = 80\n", "[server] prot", id="unknown-key"),
        pytest.param("[sever]\n", "[sever]", id="unknown-section"),
        pytest.param('[scim]\nmax_results = "10"\n', "[scim] max_results", id="wrong-type"),
        pytest.param("[server\n", "not valid TOML", id="not-toml"),
    ],
)
def test_a_bad_config_exits_2_naming_the_key(capsys, tmp_path: Path, text: str, names: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")

    code, out, err = run(capsys, "--config", str(path), "token", "list")

    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and names in err and str(path) in err


def test_a_missing_config_file_exits_2(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.toml"), "token", "list")

    assert code == 2
    assert "no such config file" in err


# -- the CLI and a running server share the data directory ----------------------------------


@pytest.fixture
def running_app(config: Path) -> Iterator[Flask]:
    """An app serving from the config's data directory, as `serve` would build it."""
    application = create_app(load_settings(config))
    yield application
    application.extensions["proware"].repository.close()


def test_a_cli_token_works_at_once_and_fails_at_once_when_revoked(
    capsys, config: Path, running_app: Flask
) -> None:
    client = running_app.test_client()
    secret = create_token(capsys, config, "entra")
    headers = {"Authorization": f"Bearer {secret}"}

    disabled = client.get(f"{PREFIX}/Users", headers=headers)
    run(capsys, "--config", str(config), "provisioning", "enable")
    allowed = client.get(f"{PREFIX}/Users", headers=headers)
    run(capsys, "--config", str(config), "token", "revoke", "entra")
    revoked = client.get(f"{PREFIX}/Users", headers=headers)

    assert disabled.status_code == 403
    assert allowed.status_code == 200
    assert revoked.status_code == 401
    assert "revoked" in revoked.get_json()["detail"]


def test_token_list_shows_when_the_server_last_saw_a_token(
    capsys, config: Path, running_app: Flask
) -> None:
    secret = create_token(capsys, config, "entra")
    run(capsys, "--config", str(config), "provisioning", "enable")

    running_app.test_client().get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {secret}"})
    running_app.extensions["proware"].tokens.wait_for_save()  # the server's save, a thread's
    _, out, _ = run(capsys, "--config", str(config), "token", "list")

    [row] = out.splitlines()[1:]
    assert row.split()[2] == "active"
    assert row.count("UTC") == 2  # created and last used; never expires


class _ManualTimer:
    def cancel(self) -> None:
        pass


def test_token_list_shows_a_use_within_the_minute_once_it_is_up_without_more_requests(
    capsys, config: Path, running_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's rotation: revoke the old token once `token list` shows the new one in use."""
    due: list[Callable[[], None]] = []

    def start_timer(delay: float, call: Callable[[], None]) -> _ManualTimer:
        assert 0 < delay <= 60
        due.append(call)
        return _ManualTimer()

    monkeypatch.setattr(tokens_module, "start_timer", start_timer)
    old = create_token(capsys, config, "entra")
    new = create_token(capsys, config, "entra-2027")
    run(capsys, "--config", str(config), "provisioning", "enable")
    client = running_app.test_client()
    client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {old}"})  # saved at once
    running_app.extensions["proware"].tokens.wait_for_save()

    client.get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {new}"})  # Test Connection
    running_app.extensions["proware"].tokens.wait_for_save()

    def dates_of_new() -> int:
        """How many dates the new token's row shows: created, and last used once saved."""
        _, out, _ = run(capsys, "--config", str(config), "token", "list")
        [row] = [line for line in out.splitlines() if line.startswith("entra-2027 ")]
        return row.count("UTC")

    assert dates_of_new() == 1
    [call] = due  # no further request: the minute's end saves it
    call()
    running_app.extensions["proware"].tokens.wait_for_save()
    assert dates_of_new() == 2


# -- backup and restore ------------------------------------------------------------------------


def _create_user(app: Flask, secret: str, name: str) -> None:
    response = app.test_client().post(
        f"{PREFIX}/Users",
        json={"userName": name},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 201


def test_backup_while_serving_then_restore_into_the_stopped_instance(
    capsys, config: Path, tmp_path: Path
) -> None:
    """backup works while the server owns the data directory; restore only once it stopped."""
    app = create_app(load_settings(config))
    secret = create_token(capsys, config)
    run(capsys, "--config", str(config), "provisioning", "enable")
    _create_user(app, secret, "kept@contoso.com")
    snapshot = tmp_path / "snapshot.json"

    backed_up = run(capsys, "--config", str(config), "backup", str(snapshot))
    _create_user(app, secret, "after-backup@contoso.com")
    refused = run(capsys, "--config", str(config), "restore", str(snapshot))
    app.extensions["proware"].repository.close()
    restored = run(capsys, "--config", str(config), "restore", str(snapshot))

    assert backed_up[0] == 0 and f"Wrote {snapshot}: 1 user, 0 groups." in backed_up[1]
    assert refused[0] == 1 and "in use by another Proware server" in refused[2]
    assert restored[0] == 0 and f"Restored 1 user and 0 groups from {snapshot}." in restored[1]
    app = create_app(load_settings(config))
    try:
        names = [user["userName"] for user in app.extensions["proware"].repository.all("User")]
    finally:
        app.extensions["proware"].repository.close()
    assert names == ["kept@contoso.com"]


def test_the_data_a_restore_replaced_is_put_back_by_restoring_its_kept_directory(
    capsys, config: Path, tmp_path: Path
) -> None:
    """README: the replaced data is kept in proware.before-restore-*.bak/ in the data
    directory; restoring that directory puts it back, changes only in its journal included."""
    app = create_app(load_settings(config))
    secret = create_token(capsys, config)
    run(capsys, "--config", str(config), "provisioning", "enable")
    _create_user(app, secret, "kept@contoso.com")
    snapshot = tmp_path / "snapshot.json"
    run(capsys, "--config", str(config), "backup", str(snapshot))
    _create_user(app, secret, "after-backup@contoso.com")  # in the journal only
    app.extensions["proware"].repository.close()
    code, out, _ = run(capsys, "--config", str(config), "restore", str(snapshot))
    assert code == 0
    kept = out.split("The previous data is kept in ")[1].split(" (restore it the same way)")[0]

    code, out, err = run(capsys, "--config", str(config), "restore", kept)

    assert (code, err) == (0, "")
    assert f"Restored 2 users and 0 groups from {kept}." in out
    app = create_app(load_settings(config))
    try:
        names = [user["userName"] for user in app.extensions["proware"].repository.all("User")]
    finally:
        app.extensions["proware"].repository.close()
    assert names == ["kept@contoso.com", "after-backup@contoso.com"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        pytest.param("missing/backup.json", "there is no directory", id="no-directory"),
        pytest.param(".", "it is a directory", id="a-directory"),
        # The live data file itself, or anything beside it, is no backup.
        pytest.param("data/proware.json", "it is in the data directory", id="the-data-file"),
        pytest.param("data/../data/b.json", "it is in the data directory", id="in-data-dir"),
    ],
)
def test_backup_to_a_path_it_cannot_write_says_why(
    capsys, config: Path, tmp_path: Path, target: str, message: str
) -> None:
    """README's `backup /backups/proware-$(date +%F).json` before /backups exists."""
    app = create_app(load_settings(config))
    app.extensions["proware"].repository.close()
    before = sorted(tmp_path.rglob("*"))

    code, out, err = run(capsys, "--config", str(config), "backup", str(tmp_path / target))

    assert (code, out) == (1, "")
    assert err.startswith(f"error: no backup written to {tmp_path / target}: {message}")
    assert sorted(tmp_path.rglob("*")) == before


def test_backup_that_the_system_refuses_to_write_says_why(
    capsys, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory the operator's user may not write in (root, who runs the tests, may)."""
    app = create_app(load_settings(config))
    app.extensions["proware"].repository.close()

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / ".backup.json.tmp"))

    monkeypatch.setattr("storage.controlfile.tempfile.mkstemp", refuse)
    code, out, err = run(capsys, "--config", str(config), "backup", str(tmp_path / "backup.json"))

    assert (code, out) == (1, "")
    assert err == (
        f"error: no backup written to {tmp_path / 'backup.json'}: Permission denied "
        f"({tmp_path / '.backup.json.tmp'})\n"
    )


def test_restore_refuses_a_file_that_is_not_a_snapshot(
    capsys, config: Path, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.json"
    bogus.write_text("{not json", encoding="utf-8")

    code, _, err = run(capsys, "--config", str(config), "restore", str(bogus))

    assert code == 1 and err.startswith("error: ") and "bogus.json" in err


# -- serve -------------------------------------------------------------------------------------


@pytest.mark.parametrize("processes", [1, 3])
def test_the_libraries_warnings_are_written_like_proware_s_own_lines(
    capsys, restore_logging, processes: int
) -> None:
    """psycopg's, its pool's and waitress's lines went to the root logger, in Python's
    default format ("WARNING:psycopg:..."); their INFO chatter stays out."""
    settings = Settings(
        server=ServerSettings(processes=processes),
        log=LogSettings(level="INFO", access_log=False),
        source="test",
    )
    commands.configure_logging(settings)

    for name in ("proware.storage", "psycopg", "psycopg.pool", "waitress.queue"):
        logging.getLogger(name).warning("a warning of %s", name)
    logging.getLogger("psycopg.pool").info("connection given by 'pool-1'")

    pid = rf" \[{os.getpid()}\]" if processes > 1 else ""
    lines = capsys.readouterr().out.splitlines()
    assert [
        re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}" + pid, "TIME", line) for line in lines
    ] == [
        "TIME WARNING proware.storage a warning of proware.storage",
        "TIME WARNING psycopg a warning of psycopg",
        "TIME WARNING psycopg.pool a warning of psycopg.pool",
        "TIME WARNING waitress.queue a warning of waitress.queue",
    ]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, restore_logging) -> list[tuple[Flask, dict]]:
    """Stand-in for httpserver.serve: records the app and options instead of listening
    (and prints the start-up lines, as a server that could listen does)."""
    calls: list[tuple[Flask, dict]] = []

    def serve(app: Flask, *, announce: Callable[[], None] | None = None, **options) -> None:
        calls.append((app, options))
        if announce is not None:
            announce()

    monkeypatch.setattr(commands.httpserver, "serve", serve)
    return calls


def test_a_server_that_cannot_listen_prints_only_why(capsys, config: Path, restore_logging) -> None:
    """Not its Tenant URL, setup link and next steps first, on every start that
    Restart=on-failure tries (a port in use, below 1024 for the service's user)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(
            f'[storage]\npath = "data"\n\n[server]\nport = {port}\n', encoding="utf-8"
        )

        code, out, err = run(capsys, "--config", str(config), "serve")

    assert (code, out) == (1, "")
    assert err.startswith(f"error: cannot listen on 127.0.0.1 port {port}: ")


def test_serve_makes_full_garbage_collections_rare(capsys, config: Path, served) -> None:
    """A full collection pauses every request thread; the server raises its threshold from
    Python's 10 gen1 collections to 1,000 and leaves the young generations alone."""
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        run(capsys, "--config", str(config), "serve")
        assert gc.get_threshold() == (700, 10, 1000)
    finally:
        gc.set_threshold(*before)


def test_serve_keeps_the_app_out_of_later_garbage_collections(capsys, config: Path, served) -> None:
    """What is built before serving lives as long as the process: it is frozen, so no full
    collection during a request walks it (the first one took 16 ms at 50,000 users)."""
    run(capsys, "--config", str(config), "serve")

    [(app, _)] = served
    assert gc.get_freeze_count() > 0
    assert all(tracked is not app for tracked in gc.get_objects())


def test_serve_prints_the_tenant_url_and_next_steps(capsys, config: Path, served) -> None:
    code, out, _ = run(capsys, "--config", str(config), "serve")

    assert code == 0
    assert "Tenant URL:   http://127.0.0.1:8123/scim/v2" in out
    assert "token create --name entra" in out
    assert f"--config {config}" in out
    assert "User Provisioning is disabled: turn it on with" in out
    [(_, options)] = served
    assert options["host"] == "127.0.0.1" and options["port"] == 8123
    assert options["max_request_body_size"] == 1_048_577  # refused from this size on
    assert options["scim_errors"] == httpserver.ScimErrors("/scim/v2", 1_048_576, app_answers=True)
    assert "trusted_proxy" not in options


def test_serve_passes_proxy_settings_to_waitress(capsys, tmp_path: Path, served) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[server]\npublic_url = "https://proware.example.com"\ntrusted_proxy = "127.0.0.1"\n'
        '[log]\naccess_log = false\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    create_token(capsys, config, "entra")
    run(capsys, "--config", str(config), "provisioning", "enable")

    code, out, _ = run(capsys, "--config", str(config), "serve")

    assert code == 0
    assert "Tenant URL:   https://proware.example.com/scim/v2" in out
    assert "token create" not in out  # a token exists already
    assert "User Provisioning is enabled\n" in out
    [(_, options)] = served
    assert options["trusted_proxy"] == "127.0.0.1"
    assert options["trusted_proxy_headers"] == "x-forwarded-proto x-forwarded-host x-forwarded-for"
    assert options["clear_untrusted_proxy_headers"] is True
    assert logging.getLogger("proware.access").disabled
    assert logging.getLogger("proware").level == logging.WARNING


def test_an_address_in_use_stops_serve_with_a_message_and_exit_1(
    capsys, tmp_path: Path, restore_logging
) -> None:
    """As ``serve --processes N`` says it: a single process ended in waitress's traceback."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = tmp_path / "taken.toml"
        config.write_text(f"[server]\nport = {port}\n", encoding="utf-8")

        code, _, err = run(capsys, "--config", str(config), "serve")

    assert code == 1
    assert err == f"error: cannot listen on 127.0.0.1 port {port}: Address already in use\n"


@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_access_log_true_logs_each_request_whatever_the_level(
    capsys, tmp_path: Path, served, level: str
) -> None:
    """[log] access_log alone decides the request lines: a quieter level (to drop the
    storage's INFO lines) used to drop them too, since they are logged at INFO."""
    config = tmp_path / "quiet.toml"
    config.write_text(f'[log]\nlevel = "{level}"\naccess_log = true\n', encoding="utf-8")
    run(capsys, "--config", str(config), "serve")
    [(app, _)] = served

    app.test_client().get("/scim/v2/Users")

    out = capsys.readouterr().out
    assert ' INFO proware.access 127.0.0.1 "GET /scim/v2/Users" 401 ' in out
    assert logging.getLogger("proware").level == logging.getLevelName(level)


def test_serve_behind_a_proxy_without_public_url_does_not_print_its_own_address(
    capsys, tmp_path: Path, served
) -> None:
    """The README's TLS proxy setup: http://127.0.0.1:8000/scim/v2 is not what Entra uses."""
    config = tmp_path / "proxy.toml"
    config.write_text('[server]\ntrusted_proxy = "127.0.0.1"\n', encoding="utf-8")

    code, out, _ = run(capsys, "--config", str(config), "serve")

    assert code == 0
    assert (
        "  Tenant URL:   the URL clients use through the proxy + /scim/v2 (the control panel "
        "shows it; set [server] public_url to print it here)\n"
    ) in out
    # The setup link is this server's own address too, and says so.
    assert re.search(
        r"\n    http://127\.0\.0\.1:8000/admin/setup/\S+\n"
        r"    \(this server's own address: open the same path through the proxy, or set "
        r"\[server\] public_url to print the address browsers use\)\n",
        out,
    ), out


def test_serve_refuses_a_corrupt_data_file_with_exit_1(
    capsys, config: Path, data_dir: Path, served
) -> None:
    data_dir.mkdir()
    (data_dir / DATA_FILE).write_text("{not json", encoding="utf-8")

    code, _, err = run(capsys, "--config", str(config), "serve")

    assert code == 1
    assert err.startswith("error: ") and DATA_FILE in err
    assert "nothing was changed: repair the file, or restore the last backup with" in err
    assert served == []


@pytest.mark.parametrize(
    ("command", "name"),
    [("serve", DATA_FILE), ("serve", "proware.lock"), ("restore", "proware.lock")],
)
def test_a_data_file_root_left_is_a_one_line_error_naming_its_owner(
    capsys,
    config: Path,
    data_dir: Path,
    tmp_path: Path,
    served,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    name: str,
) -> None:
    """README (systemd): operator commands run as the service's user; one run as root (no
    `sudo -u proware`) leaves files the service's user may not open. Was a traceback."""
    snapshot = tmp_path / "snapshot.json"
    create_app(load_settings(config)).extensions["proware"].repository.close()
    assert run(capsys, "--config", str(config), "backup", str(snapshot))[0] == 0
    denied = data_dir / name
    real_read, real_open = Path.read_bytes, os.open

    def read_bytes(path: Path) -> bytes:
        if path == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_read(path)

    def open_file(path: object, *args: object, **kwargs: object) -> int:
        if Path(str(path)) == denied:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    monkeypatch.setattr(os, "open", open_file)
    before = sorted(data_dir.iterdir())

    arguments = [str(snapshot)] if command == "restore" else []
    code, _, err = run(capsys, "--config", str(config), command, *arguments)

    assert (code, err) == (
        1,
        f"error: cannot open {denied}: Permission denied; run Proware and its commands as the "
        f"user that owns {data_dir} (and give the file back to that user)\n",
    )
    assert sorted(data_dir.iterdir()) == before
    assert served == []


def test_any_file_a_command_may_not_open_is_a_one_line_error(
    capsys, config: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """session.key, a journal segment, activity.jsonl left root's: each was a traceback."""
    denied = data_dir / "session.key"

    def refuse(*args: object) -> int:
        raise PermissionError(13, "Permission denied", str(denied))

    monkeypatch.setattr("server.commands.serve", refuse)
    code, out, err = run(capsys, "--config", str(config), "serve")

    assert (code, out) == (1, "")
    assert err == (
        f"error: cannot open {denied}: Permission denied; run Proware and its commands as the "
        f"user that owns {data_dir} (and give the file back to that user)\n"
    )


def test_serve_refuses_a_damaged_session_key_with_exit_1_saying_what_to_do(
    capsys, config: Path, data_dir: Path, served
) -> None:
    """Not a traceback: the key file is a storage file like the others."""
    data_dir.mkdir()
    (data_dir / "session.key").write_text("z" * 64 + "\n", encoding="ascii")
    (data_dir / "session.key").chmod(0o600)

    code, _, err = run(capsys, "--config", str(config), "serve")

    assert code == 1
    assert err.startswith("error: ")
    assert "session.key holds no valid session key; delete it and restart" in err
    assert "Traceback" not in err
    assert served == []


def test_serve_stopping_on_a_full_disk_still_closes_the_store_and_exits_0(
    capsys, config: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch, restore_logging
) -> None:
    """The token uses saved at shutdown are bookkeeping: a full disk (when an operator is most
    likely to restart) must not skip closing the store nor turn the stop into a failure."""
    secret = create_token(capsys, config)

    def serve_on_a_full_disk(app: Flask, **options: object) -> None:
        monkeypatch.setattr(controlfile.tempfile, "mkstemp", full)  # no new file fits
        app.test_client().get(PREFIX + "/Users", headers={"Authorization": f"Bearer {secret}"})

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(commands.httpserver, "serve", serve_on_a_full_disk)
    code, out, err = run(capsys, "--config", str(config), "serve")
    monkeypatch.undo()

    assert code == 0, err
    assert "could not save token last-use times at shutdown" in out
    DataDirLock(data_dir).release()  # the store let the directory go


@pytest.mark.parametrize("command", [["serve"], ["token", "list"]], ids=["serve", "token-list"])
def test_a_data_directory_that_cannot_be_created_is_named_with_exit_1(
    capsys, tmp_path: Path, served, command: list[str]
) -> None:
    """Not a traceback: the start (or a command) says which directory and what to do."""
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    config = tmp_path / "proware.toml"
    config.write_text('[storage]\npath = "a-file/data"\n', encoding="utf-8")

    code, out, err = run(capsys, "--config", str(config), *command)

    assert (code, out, served) == (1, "", [])
    assert err == (
        f"error: cannot create the data directory {tmp_path / 'a-file' / 'data'}: "
        "Not a directory; create it for this user, or set [storage] path\n"
    )


def test_a_data_directory_this_user_cannot_write_in_is_named_with_exit_1(
    capsys, config: Path, data_dir: Path, served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As /var/lib/proware made by root would be for the proware user (the tests run as
    root, whom permissions do not stop: os.access stands in for the kernel's answer)."""
    data_dir.mkdir()
    monkeypatch.setattr("storage.backend.os.access", lambda path, mode: path != data_dir)

    code, _, err = run(capsys, "--config", str(config), "serve")

    assert (code, served) == (1, [])
    assert err == (
        f"error: the data directory {data_dir} is not writable by this user; give it to the "
        "user that runs Proware, or set [storage] path\n"
    )
    assert list(data_dir.iterdir()) == []


def account(name: str, uid: int, shell: str) -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, uid, "", f"/var/lib/{name}", shell))


APP_PY = Path(cli.__file__).resolve().parent.parent / "app.py"
SERVICE = account("proware", 999, "/usr/sbin/nologin")


def test_the_start_up_lines_of_a_service_give_commands_to_paste_from_anywhere_as_its_user() -> None:
    """journalctl is read from another directory, as root: ".venv/bin/python app.py ..."
    ran from /opt/proware only, and pasted as root it left control.json root's (a 503 for
    every SCIM request)."""
    command = cli.operator_command(
        Path("/etc/proware/config.toml"), at_terminal=False, account=SERVICE
    )

    assert command == (
        f"sudo -u proware {sys.executable} {APP_PY} --config /etc/proware/config.toml"
    )


@pytest.mark.parametrize(
    "user",
    [account("root", 0, "/usr/sbin/nologin"), account("ann", 1000, "/bin/bash")],
    ids=["root", "login-user"],
)
def test_a_user_who_can_log_in_is_given_the_command_without_sudo(
    user: pwd.struct_passwd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    command = cli.operator_command(Path("proware.toml"), at_terminal=False, account=user)

    assert command == f"{sys.executable} {APP_PY} --config {tmp_path / 'proware.toml'}"


def test_without_a_config_file_the_command_runs_from_the_servers_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The built-in defaults keep the data in ./data: another directory is another install."""
    monkeypatch.chdir(tmp_path)

    command = cli.operator_command(None, at_terminal=False, account=SERVICE)

    assert command == f"cd {tmp_path} && sudo -u proware {sys.executable} {APP_PY}"


def test_at_a_terminal_the_command_is_relative_to_where_make_run_was_typed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(APP_PY.parent)

    command = cli.operator_command(Path("config.toml"), at_terminal=True, account=SERVICE)

    assert command.endswith(" app.py --config config.toml")
    assert not command.startswith("sudo")


SERVICE_UID = 54321  # the service's user (``proware``); no such user need exist here


@pytest.mark.parametrize(
    "command",
    [
        ["serve"],
        ["token", "create", "--name", "entra"],
        ["provisioning", "enable"],
        ["admin", "setup-link"],
        ["restore", "snapshot.json"],
        ["storage", "migrate", "--to", "elsewhere"],
    ],
    ids=lambda command: "-".join(command[:2]),
)
def test_root_is_refused_on_a_data_directory_another_user_owns_and_nothing_is_written(
    capsys,
    config: Path,
    data_dir: Path,
    served,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    """README (systemd): a command run as root, not `sudo -u proware`, wrote control.json
    (or a journal, the snapshot, ...) as root's: the server then refused every SCIM request
    with a 503 until someone found the file. Refused before anything is written instead.
    (Whether tests run as root or not: the process's and the directory's owners are faked.)"""
    data_dir.mkdir()
    monkeypatch.setattr(ownership.os, "geteuid", lambda: 0)
    real_owner_of = ownership.owner_of
    monkeypatch.setattr(
        ownership,
        "owner_of",
        lambda path: SERVICE_UID if path == data_dir else real_owner_of(path),
    )
    if command[0] == "restore":  # a backup there is: root's refusal comes first
        command = [command[0], str(config.parent / command[1])]

    code, out, err = run(capsys, "--config", str(config), *command)

    name = ownership.user_name(SERVICE_UID)
    assert (code, out, served) == (1, "", [])
    assert err == (
        f"error: the data directory {data_dir} belongs to {name}: run this as {name} "
        f"(sudo -u {name} ...), not as root, whose files {name}'s server may not open\n"
    )
    assert list(data_dir.iterdir()) == []


def test_root_may_back_up_a_data_directory_another_user_owns_and_leaves_nothing_there(
    capsys, config: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup only reads the directory (while its server runs): a root cron job may write
    it where only root may."""
    create_app(load_settings(config)).extensions["proware"].repository.close()
    before = {path: path.stat().st_mtime_ns for path in data_dir.iterdir()}
    monkeypatch.setattr(ownership.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ownership, "owner_of", lambda path: SERVICE_UID)

    code, out, _ = run(capsys, "--config", str(config), "backup", str(tmp_path / "b.json"))

    assert (code, out.startswith("Wrote ")) == (0, True)
    assert {path: path.stat().st_mtime_ns for path in data_dir.iterdir()} == before


def test_root_may_use_a_data_directory_root_owns(
    capsys, config: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run as root throughout (no service user): nothing to protect."""
    data_dir.mkdir()
    monkeypatch.setattr(ownership.os, "geteuid", lambda: 0)
    monkeypatch.setattr(ownership, "owner_of", lambda path: 0)

    assert run(capsys, "--config", str(config), "provisioning", "enable")[0] == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_serve_cleanly_and_the_handler_is_restored(
    capsys, config: Path, monkeypatch: pytest.MonkeyPatch, restore_logging, signum: int
) -> None:
    """systemd and docker stop with SIGTERM, a terminal with SIGINT; cleanup still runs.

    SIGINT starts out ignored here, as it is for a background job of a non-interactive shell
    (``make run &`` in a script): serve must still stop on it.
    """
    stopped: list[str] = []

    def serve_until_signal(app: Flask, **options) -> None:
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler interrupts this at once
        except KeyboardInterrupt:  # what waitress's loop catches to shut down
            stopped.append("stopped")

    monkeypatch.setattr(commands.httpserver, "serve", serve_until_signal)
    original = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        before = signal.getsignal(signum)

        code, _, _ = run(capsys, "--config", str(config), "serve")

        assert code == 0
        assert stopped == ["stopped"]
        assert signal.getsignal(signum) is before
    finally:
        signal.signal(signal.SIGINT, original)


def test_serve_saves_token_use_when_it_stops(
    capsys, config: Path, served, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = create_token(capsys, config, "entra")
    run(capsys, "--config", str(config), "provisioning", "enable")

    def serve_one_request(app: Flask, **options) -> None:
        app.test_client().get(f"{PREFIX}/Users", headers={"Authorization": f"Bearer {secret}"})

    monkeypatch.setattr(commands.httpserver, "serve", serve_one_request)
    run(capsys, "--config", str(config), "serve")
    _, out, _ = run(capsys, "--config", str(config), "token", "list")

    assert out.splitlines()[1].count("UTC") == 2


def test_output_piped_into_a_reader_that_left_ends_quietly(config: Path) -> None:
    """``token list | head``: the reader closes the pipe early; the command stops without a
    traceback (it printed one for each command with output)."""
    assert main(["--config", str(config), "token", "create", "--name", "entra"]) == 0
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "app.py", "--config", str(config), "token", "list"],
            cwd=Path(__file__).resolve().parents[1],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""


def test_a_server_process_saves_its_connection_status_when_it_stops(config: Path) -> None:
    """A worker of ``serve --processes`` leaves with ``os._exit``, without the atexit hook
    that saved: the requests since its last save (at most a minute's) were lost."""
    from admin.connection import FILE_NAME as CONNECTION_FILE
    from admin.connection import ConnectionStatus

    with commands._app_of_this_process(create_app, load_settings(config)) as app:
        secret, _ = app.extensions["proware"].tokens.create("entra")
        app.extensions["proware"].switch.set(True)
        client = app.test_client()
        for path in ("/Users/1", "/Users/2"):  # the first is saved at once, the second later
            client.get(PREFIX + path, headers={"Authorization": f"Bearer {secret}"})

    saved = ConnectionStatus(config.parent / "data" / CONNECTION_FILE, clock=utcnow)
    assert [row.target for row in saved.tokens()[0].recent] == [
        f"{PREFIX}/Users/2",
        f"{PREFIX}/Users/1",
    ]
