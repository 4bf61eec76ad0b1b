"""``python app.py admin ...`` and ``python app.py activity tail``."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

import app as app_module
from admin.accounts import AdminAccounts
from admin.audit import AuditLog
from server import admin_commands as commands
from server import cli
from server.config import load_settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[storage]\npath = "data"\n')
    return path


def run(config: Path, *args: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    parsed = cli.build_parser().parse_args(["--config", str(config), *args])
    settings = load_settings(config)
    code = commands.run(settings, parsed, stdin=io.StringIO(stdin), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def accounts(config: Path) -> AdminAccounts:
    return AdminAccounts(config.parent / "data" / "admins.json")


def test_admin_create_reads_the_password_from_stdin(config: Path) -> None:
    code, out, _ = run(config, "admin", "create", "alice", stdin=PASSWORD + "\n")
    assert code == 0
    assert "Created admin 'alice'" in out
    assert accounts(config).sign_in("alice", PASSWORD).outcome == "ok"
    assert PASSWORD not in (config.parent / "data" / "admins.json").read_text()


def test_admin_create_asks_twice_on_a_terminal(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr(commands.getpass, "getpass", lambda prompt, stream=None: next(answers))
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    parsed = cli.build_parser().parse_args(["--config", str(config), "admin", "create", "alice"])
    code = commands.run(load_settings(config), parsed, stdin=terminal, out=io.StringIO())
    assert code == 0


def test_admin_create_refuses_differing_entries_on_a_terminal(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([PASSWORD, "something else entirely"])
    monkeypatch.setattr(commands.getpass, "getpass", lambda prompt, stream=None: next(answers))
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    err = io.StringIO()
    parsed = cli.build_parser().parse_args(["--config", str(config), "admin", "create", "alice"])
    assert commands.run(load_settings(config), parsed, stdin=terminal, err=err) == 2
    assert "differ" in err.getvalue()


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        pytest.param("", "no password given", id="empty"),
        pytest.param("short\n", "at least 12", id="weak"),
        pytest.param(" " * 12 + "\n", "not be only spaces", id="spaces"),
        pytest.param("a" * 12 + "\n", "at least 4 different characters", id="one-character"),
    ],
)
def test_admin_create_refuses_a_missing_or_weak_password(
    config: Path, stdin: str, message: str
) -> None:
    code, _, err = run(config, "admin", "create", "alice", stdin=stdin)
    assert code == 2 and message in err
    assert not accounts(config).any()


def test_admin_create_refuses_a_taken_name(config: Path) -> None:
    run(config, "admin", "create", "alice", stdin=PASSWORD)
    code, _, err = run(config, "admin", "create", "alice", stdin=PASSWORD)
    assert code == 2 and "already exists" in err


def test_admin_create_names_the_existing_account_a_name_differing_in_case_clashes_with(
    config: Path,
) -> None:
    run(config, "admin", "create", "admin", stdin=PASSWORD)
    code, _, err = run(config, "admin", "create", "ADMIN", stdin=PASSWORD)
    assert code == 2
    assert "an admin named 'admin' already exists (names are compared ignoring case)" in err


def test_reset_password_sets_a_new_one_and_unlocks(config: Path) -> None:
    run(config, "admin", "create", "alice", stdin=PASSWORD)
    for attempt in range(5):
        accounts(config).sign_in("alice", f"wrong {attempt}")
    assert accounts(config).sign_in("alice", PASSWORD).outcome == "locked"
    code, out, _ = run(config, "admin", "reset-password", "alice", stdin="a new long passphrase\n")
    assert code == 0 and "unlocked" in out
    assert accounts(config).sign_in("alice", "a new long passphrase").outcome == "ok"


def test_reset_password_refuses_a_repeated_character(config: Path) -> None:
    run(config, "admin", "create", "alice", stdin=PASSWORD)
    code, _, err = run(config, "admin", "reset-password", "alice", stdin="z" * 20)
    assert code == 2 and "at least 4 different characters" in err


def test_reset_password_of_an_unknown_admin_fails(config: Path) -> None:
    code, _, err = run(config, "admin", "reset-password", "nobody", stdin=PASSWORD)
    assert code == 1 and "no admin named 'nobody'" in err


def test_the_main_entry_point_runs_the_admin_command(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert app_module.main(["--config", str(config), "admin", "create", "alice"]) == 0
    assert accounts(config).any()


def test_setup_link_prints_a_new_link_the_server_accepts(config: Path) -> None:
    app = app_module.create_app(load_settings(config))
    try:
        earlier = app.extensions["proware.admin"].setup.issue()  # the one serve printed
        code, out, _ = run(config, "admin", "setup-link")
        assert code == 0
        found = re.search(r"http://127\.0\.0\.1:8000(/admin/setup/\S+)", out)
        assert found, out
        assert "earlier links no longer work" in out
        client = app.test_client()
        assert client.get(found.group(1)).status_code == 200
        assert client.get(f"/admin/setup/{earlier}").status_code == 404
    finally:
        app.extensions["proware.backend"].close()


def test_setup_link_behind_a_proxy_says_it_is_this_servers_own_address(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text('[server]\ntrusted_proxy = "127.0.0.1"\n', encoding="utf-8")
    code, out, _ = run(config, "admin", "setup-link")
    assert code == 0
    assert re.search(
        r"\n  http://127\.0\.0\.1:8000/admin/setup/\S+\n  \(this server's own address: open "
        r"the same path through the proxy, or set \[server\] public_url to print the "
        r"address browsers use\)\n$",
        out,
    ), out


def test_setup_link_refuses_once_an_admin_exists(config: Path) -> None:
    run(config, "admin", "create", "alice", stdin=PASSWORD + "\n")
    code, out, err = run(config, "admin", "setup-link")
    assert code == 1 and out == ""
    assert "the control panel is set up" in err and "admin create USERNAME" in err


# -- activity tail ----------------------------------------------------------------------------


def write_events(config: Path, count: int, **log_options: int) -> AuditLog:
    log = AuditLog(config.parent / "data" / "activity.jsonl", **log_options)
    for number in range(count):
        log.append(
            {
                "time": f"2026-11-26T10:00:{number:02d}.000+00:00",
                "status": 201,
                "operation": "create",
                "resourceType": "User",
                "name": f"user{number}",
                "token": "entra",
            }
        )
    return log


def test_tail_prints_the_last_n_events_oldest_first(config: Path) -> None:
    write_events(config, 30)
    code, out, _ = run(config, "activity", "tail", "-n", "3")
    assert code == 0
    assert [line.split("  ")[3] for line in out.splitlines()] == [
        "User user27",
        "User user28",
        "User user29",
    ]
    assert out.splitlines()[0].startswith("2026-11-26T10:00:27.000+00:00  201  create  User user27")


def test_tail_reaches_into_rotated_files(config: Path) -> None:
    write_events(config, 40, max_bytes=1024, backups=3)
    assert (config.parent / "data" / "activity.jsonl.1").exists()
    _, out, _ = run(config, "activity", "tail", "-n", "25")
    names = [line.split("  ")[3] for line in out.splitlines()]
    assert names == [f"User user{n}" for n in range(15, 40)]


def test_tail_shows_refusal_details(config: Path) -> None:
    log = AuditLog(config.parent / "data" / "activity.jsonl")
    log.append(
        {
            "time": "2026-11-26T10:00:00Z",
            "status": 401,
            "operation": "refused",
            "method": "GET",
            "path": "/scim/v2/Users",
            "reason": "jwt",
            "detail": "the bearer token is a JWT issued by Entra",
        }
    )
    _, out, _ = run(config, "activity", "tail")
    assert "401  refused  GET /scim/v2/Users" in out
    assert "reason=jwt" in out
    assert "\n    the bearer token is a JWT issued by Entra" in out


def test_tail_escapes_control_characters_from_the_stored_events(config: Path) -> None:
    """A client-chosen name or detail reaches the terminal as text: no escape sequence acts,
    no line is forged."""
    log = AuditLog(config.parent / "data" / "activity.jsonl")
    log.append(
        {
            "time": "2026-11-26T10:00:00Z",
            "status": 401,
            "operation": "sign-in refused",
            "name": "evil\x1b[31mRED\x1b[0m",
            "client": "10.0.0.9\r",
            "detail": "x\n2026-11-26T10:00:01Z  200  sign in  alice\u202e",
        }
    )

    code, out, _ = run(config, "activity", "tail")

    assert code == 0
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
    assert out.splitlines() == [
        "2026-11-26T10:00:00Z  401  sign-in refused  evil\\x1b[31mRED\\x1b[0m  token=-  "
        "client=10.0.0.9\\r  request=-",
        "    x\\n2026-11-26T10:00:01Z  200  sign in  alice\\u202e",
    ]


@pytest.mark.parametrize("count", ["-3", "many"])
def test_tail_refuses_a_count_that_is_not_a_whole_number_of_0_or_more(
    config: Path, count: str, capsys: pytest.CaptureFixture
) -> None:
    write_events(config, 5)
    with pytest.raises(SystemExit) as usage_error:
        app_module.main(["--config", str(config), "activity", "tail", "-n", count])
    assert usage_error.value.code == 2
    captured = capsys.readouterr()
    assert f"argument -n: must be a whole number, 0 or more, not '{count}'" in captured.err
    assert captured.out == ""


def test_tail_of_an_empty_log_prints_nothing(config: Path) -> None:
    assert run(config, "activity", "tail") == (0, "", "")


def test_follow_prints_new_events_across_a_rotation(config: Path) -> None:
    log = write_events(config, 2, max_bytes=1024, backups=2)
    path = config.parent / "data" / "activity.jsonl"
    out = io.StringIO()
    polls = 0

    def keep_going() -> bool:
        nonlocal polls
        polls += 1
        if polls == 2:
            for number in range(30):  # enough to rotate the file
                log.append({"operation": "delete", "name": f"late{number}", "status": 204})
        return polls < 6

    commands.tail(path, 1, follow=True, out=out, keep_going=keep_going, sleep=lambda _: None)
    names = [line.split("  ")[3] for line in out.getvalue().splitlines()]
    assert names[0] == "User user1"
    assert names[1:] == [f"late{number}" for number in range(30)]


def test_events_are_plain_json_lines_for_other_tools(config: Path) -> None:
    write_events(config, 1)
    line = (config.parent / "data" / "activity.jsonl").read_text().strip()
    assert json.loads(line)["name"] == "user0"


def test_tail_and_follow_read_the_database_on_postgresql(tmp_path: Path) -> None:
    """With PostgreSQL the activity log is a table: tail prints its newest events, and
    --follow those added after, by their seq."""
    from storage.postgres.connection import Database
    from storage.postgres.events import PostgresEventLog
    from tests.pgserver import clean_database

    dsn = clean_database()
    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nbackend = "postgresql"\ndsn = "{dsn}"\n', encoding="utf-8")
    database = Database(dsn)
    log = PostgresEventLog(database)
    for number in range(5):
        log.append(
            {
                "time": f"2026-11-26T10:00:0{number}Z",
                "status": 201,
                "operation": "create",
                "resourceType": "User",
                "name": f"user{number}",
            }
        )

    code, out, _ = run(config, "activity", "tail", "-n", "2")

    assert code == 0
    assert [line.split("  ")[3] for line in out.splitlines()] == ["User user3", "User user4"]

    followed = io.StringIO()
    polls = iter([True, True, False])

    def sleep(seconds: float) -> None:  # another process appends while we wait
        log.append(
            {
                "time": "2026-11-26T10:01:00Z",
                "status": 204,
                "operation": "delete",
                "resourceType": "User",
                "name": "late",
            }
        )

    commands.tail_log(
        log, 1, follow=True, out=followed, keep_going=lambda: next(polls), sleep=sleep
    )
    database.close()

    assert [line.split("  ")[3] for line in followed.getvalue().splitlines()] == [
        "User user4",
        "User late",
        "User late",
    ]


def test_sso_status_check_without_a_provider_says_what_it_did_not_check(config: Path) -> None:
    """A fresh install: the check exits 1, and the output says why rather than nothing."""
    code, out, _ = run(config, "sso", "status", "--check")

    assert code == 1
    assert (
        "  Discovery:      not checked: [sso] issuer, client_id and a client secret are needed\n"
    ) in out
    assert "Discovery" not in run(config, "sso", "status")[1]
