"""The operator command line, ``python app.py COMMAND``: one parser for every subsystem.

The commands themselves live in :mod:`server.commands` (serve, tokens, provisioning),
:mod:`server.storage_commands` (backup, restore, moving between stores) and
:mod:`server.admin_commands` (control panel admins, activity, single sign-on).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from flask import Flask

from scim.service import INDEXES
from scim.tokens import FILE_NAME as TOKENS_FILE
from scim.tokens import MAX_EXPIRY_DAYS
from server import admin_commands, commands, storage_commands
from server.config import (
    ConfigError,
    Settings,
    load_settings,
    resolve_config_path,
    with_processes,
)
from storage.backend import open_state
from storage.errors import PermissionDenied, StorageError
from storage.ownership import root_refusal
from storage.settings import POSTGRESQL

DESCRIPTION = "Proware provisioning: the SCIM service, its control panel and its operator commands."


def build_parser() -> argparse.ArgumentParser:
    """The operator command line."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="TOML config file (default: $PROWARE_CONFIG, else ./config.toml, else built-in)",
    )
    parser = argparse.ArgumentParser(
        prog="python app.py", description=DESCRIPTION, parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", parents=[common], help="run the service with waitress")
    serve.add_argument(
        "--processes",
        type=_one_or_more(),
        metavar="N",
        help="server processes sharing the port (default: [server] processes, else 1); "
        'more than 1 needs [storage] backend = "postgresql"',
    )

    token = sub.add_parser("token", parents=[common], help="manage bearer tokens")
    token_sub = token.add_subparsers(dest="action", required=True)
    create = token_sub.add_parser("create", parents=[common], help="create a token, print it once")
    create.add_argument("--name", required=True, help="a name to tell tokens apart, e.g. entra")
    create.add_argument(
        "--read-only", action="store_true", help="may only read (GET and POST /.search)"
    )
    create.add_argument(
        "--expires",
        type=_one_or_more("days", maximum=MAX_EXPIRY_DAYS),
        metavar="DAYS",
        help=f"expire after DAYS days (1 to {MAX_EXPIRY_DAYS})",
    )
    token_sub.add_parser("list", parents=[common], help="list tokens (never the secret)")
    revoke = token_sub.add_parser("revoke", parents=[common], help="revoke a token by name")
    revoke.add_argument("name", metavar="NAME", help="the name the token was created with")

    provisioning = sub.add_parser(
        "provisioning", parents=[common], help="turn User Provisioning on or off"
    )
    switch = provisioning.add_subparsers(dest="action", required=True)
    for action, text in (
        ("enable", "let the SCIM service accept requests (Entra's Test Connection too)"),
        ("disable", "refuse every SCIM request with 403 until enabled; data and tokens stay"),
        ("status", "say whether it is on, since when and who turned it"),
    ):
        switch.add_parser(action, parents=[common], help=text)
    storage_commands.add_parsers(sub, common)
    admin_commands.add_parsers(sub, common)
    return parser


def _one_or_more(unit: str = "", maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number, 1 or more (of ``unit``, which the refusal names),
    and at most ``maximum`` when given."""
    what = f"a whole number of {unit}" if unit else "a whole number"

    def parse(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = 0
        if number < 1:
            raise argparse.ArgumentTypeError(f"must be {what}, 1 or more, not {text!r}")
        if maximum is not None and number > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum} {unit}, not {text!r}")
        return number

    return parse


# Login shells that are none: a system account, which an operator cannot log in as.
_NO_LOGIN = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"})


def operator_command(
    config_path: Path | None, *, at_terminal: bool, account: pwd.struct_passwd
) -> str:
    """How to run this install's commands, as the start-up lines print it.

    At a terminal (`make run`): ".venv/bin/python app.py", for the person in this directory.
    Otherwise the lines go to a log (the journal of a systemd service) read from anywhere,
    so absolute paths; and when this process's user has no login shell (the service's
    ``proware``), ``sudo -u proware`` first: pasted from the journal as root, a command wrote
    files that user's server could not open (README, "Running as a systemd service").
    """
    app_py = Path(__file__).resolve().parent.parent / "app.py"
    if at_terminal:
        relative = os.path.relpath(sys.executable)
        python = "python" if relative.startswith("..") else relative
        command = f"{python} {os.path.relpath(app_py)}"
        return command + (f" --config {shlex.quote(str(config_path))}" if config_path else "")
    command = f"{shlex.quote(sys.executable)} {shlex.quote(str(app_py))}"
    if account.pw_uid != 0 and account.pw_shell in _NO_LOGIN:
        command = f"sudo -u {account.pw_name} {command}"
    if config_path is None:  # the built-in defaults: data under ./data, from this directory
        return f"cd {shlex.quote(os.getcwd())} && {command}"
    return f"{command} --config {shlex.quote(str(config_path.absolute()))}"


def main(argv: list[str] | None, create_app: Callable[[Settings], Flask]) -> int:
    """Run one command; returns the process exit code."""
    try:
        code = _command(argv, create_app)
        sys.stdout.flush()  # a reader gone (below) fails here, not in the exit's flush
        return code
    except PermissionError as exc:
        if exc.filename is None:
            raise
        # A file of the data directory that a command run as root left behind (README,
        # "Running as a systemd service"): one line naming it and what to do, not a traceback.
        print(f"error: {PermissionDenied(Path(exc.filename), exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of the output left early (`activity tail | head`, `token list | head`):
        # stop quietly as other commands do; it was a traceback. What is still buffered goes
        # nowhere, so that the exit's flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _command(argv: list[str] | None, create_app: Callable[[Settings], Flask]) -> int:
    args = build_parser().parse_args(argv)
    config_arg = getattr(args, "config", None)
    try:
        config_path = resolve_config_path(config_arg)
        settings = load_settings(config_path)
        if getattr(args, "processes", None) is not None:  # serve --processes N
            settings = with_processes(settings, args.processes)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command != "backup" and settings.storage.backend != POSTGRESQL:
        # backup only reads the directory (a root cron job may write it where root likes).
        refusal = root_refusal(Path(settings.storage.path))
        if refusal is not None:
            print(f"error: {refusal}", file=sys.stderr)
            return 1
    command_hint = operator_command(
        config_path, at_terminal=sys.stdout.isatty(), account=pwd.getpwuid(os.geteuid())
    )
    if args.command == "serve":
        return commands.serve(settings, create_app, command_hint)
    if args.command in ("admin", "activity", "sso"):
        return admin_commands.run(settings, args)
    if args.command in ("backup", "restore", "storage"):
        return storage_commands.run(settings, args)
    # token and provisioning: the control document, which a running server reads too.
    try:
        state = open_state(settings.storage, INDEXES)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        control = state.document(TOKENS_FILE)
        if args.command == "token":
            return commands.token(args, control, state.name)
        return commands.provisioning(args.action, control)
    except StorageError as exc:  # e.g. the disk is full: nothing was changed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        state.close()
