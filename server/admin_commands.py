"""The control panel's commands: ``python app.py admin ...`` and ``python app.py activity tail``.

    python app.py admin create USERNAME           # password from stdin, or asked twice
    python app.py admin reset-password USERNAME   # also unlocks and signs out everywhere
    python app.py admin setup-link                # a new one-time link for the first admin
    python app.py activity tail [-n N] [--follow]
    python app.py sso status [--check]            # never prints the client secret
    python app.py sso local-sign-in on|off        # the control panel's override, from here
    python app.py sso reset-policy                # forget the control panel's [sso] changes

They work while the server runs: the accounts and single sign-on documents are updated under
their lock (a file of the data directory, or the database's row), which every server process
re-reads when it changes, and the activity log is only read.
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TextIO

from admin import activity, audit
from admin.accounts import FILE_NAME as ACCOUNTS_FILE
from admin.accounts import AdminAccounts
from admin.context import setup_url
from admin.setup_link import FILE_NAME as SETUP_FILE
from admin.setup_link import SetupLinks
from admin.sso import RelyingParty, SignInFailed
from admin.sso_access import FILE_NAME as SSO_FILE
from admin.sso_access import utcnow
from scim.service import INDEXES
from server.config import ConfigError, Settings, client_secret
from storage.backend import SharedState, open_state
from storage.documents import SharedDocument
from storage.errors import StorageError

POLL_SECONDS = 1.0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Add the ``admin`` and ``activity`` commands to the operator command line."""
    admin = sub.add_parser("admin", parents=[common], help="manage control panel admins")
    admin_sub = admin.add_subparsers(dest="action", required=True)
    for action, text in (
        ("create", "add an admin; the password is read from stdin or asked for"),
        ("reset-password", "set a new password; unlocks the account, ends its sessions"),
    ):
        parser = admin_sub.add_parser(action, parents=[common], help=text)
        parser.add_argument("username", metavar="USERNAME")
    admin_sub.add_parser(
        "setup-link",
        parents=[common],
        help="print a new setup link for the first admin (earlier links stop working)",
    )

    activity_parser = sub.add_parser(
        "activity", parents=[common], help="show provisioning activity (the audit log)"
    )
    activity_sub = activity_parser.add_subparsers(dest="action", required=True)
    tail = activity_sub.add_parser(
        "tail", parents=[common], help="print the newest events, oldest of them first"
    )
    tail.add_argument(
        "-n", type=_event_count, default=20, metavar="N", help="how many (default 20)"
    )
    tail.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C"
    )

    sso = sub.add_parser("sso", parents=[common], help="single sign-on with Microsoft Entra ID")
    sso_sub = sso.add_subparsers(dest="action", required=True)
    status = sso_sub.add_parser(
        "status", parents=[common], help="the single sign-on settings and last sign-in attempt"
    )
    status.add_argument(
        "--check",
        action="store_true",
        help="also read the identity provider's discovery document and signing keys",
    )
    local = sso_sub.add_parser(
        "local-sign-in",
        parents=[common],
        help="let local (password) accounts sign in, or not; overrides config.toml like the "
        "control panel does",
    )
    local.add_argument("state", choices=["on", "off"])
    sso_sub.add_parser(
        "reset-policy",
        parents=[common],
        help="forget the control panel's single sign-on changes: config.toml's [sso] applies",
    )


def _event_count(text: str) -> int:
    """``activity tail -n``: a whole number, 0 or more."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number, 0 or more, not {text!r}")
    return count


def run(
    settings: Settings,
    args: argparse.Namespace,
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run an ``admin`` or ``activity`` command; returns the exit code."""
    stdin = stdin or sys.stdin
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        state = open_state(settings.storage, INDEXES)
    except StorageError as exc:
        print(f"error: {exc}", file=err)
        return 1
    try:
        return _run(state, settings, args, stdin, out, err)
    finally:
        state.close()


def _run(
    state: SharedState,
    settings: Settings,
    args: argparse.Namespace,
    stdin: TextIO,
    out: TextIO,
    err: TextIO,
) -> int:
    if args.command == "activity":
        log = audit.activity_log(state)
        if isinstance(log, audit.AuditLog):  # a file, followed as it grows
            return tail(log.path, args.n, follow=args.follow, out=out)
        return tail_log(log, args.n, follow=args.follow, out=out)
    if args.command == "sso":
        if args.action == "status":
            return sso_status(settings, state.document(SSO_FILE), check=args.check, out=out)
        return sso_policy(
            settings, state.document(SSO_FILE), args, audit.activity_log(state), out=out, err=err
        )
    accounts = AdminAccounts(state.document(ACCOUNTS_FILE))
    if args.action == "setup-link":
        return print_setup_link(settings, accounts, state.document(SETUP_FILE), out=out, err=err)
    try:
        password = read_password(stdin, err)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    try:
        if args.action == "create":
            account = accounts.create(args.username, password, created_by="cli")
            print(f"Created admin {account.username!r}; sign in at /admin.", file=out)
        else:
            account = accounts.reset_password(args.username, password)
            print(
                f"New password set for {account.username!r}; the account is unlocked and its "
                "sessions are signed out.",
                file=out,
            )
    except KeyError:
        print(f"error: no admin named {args.username!r}", file=err)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except StorageError as exc:
        print(f"error: {exc}", file=err)
        return 1
    return 0


def print_setup_link(
    settings: Settings,
    accounts: AdminAccounts,
    document: SharedDocument,
    *,
    out: IO[str],
    err: IO[str],
) -> int:
    """Print a new setup link while no admin exists, as ``serve`` does at start (for when
    that one expired or was lost, without a restart); any earlier link stops working."""
    if accounts.any():
        print(
            "error: the control panel is set up (an admin exists): sign in, or add an admin "
            "with: python app.py admin create USERNAME",
            file=err,
        )
        return 1
    links = SetupLinks(document, utcnow)
    try:
        secret = links.issue()
    except StorageError as exc:
        print(f"error: {exc}", file=err)
        return 1
    base = settings.server.public_url or settings.local_url
    print(
        f"Set up the control panel (the link creates one admin, for {links.minutes} minutes; "
        f"earlier links no longer work):\n  {setup_url(base, secret)}",
        file=out,
    )
    if note := settings.own_address_note():
        print(f"  {note}", file=out)
    return 0


def sso_status(
    settings: Settings, document: SharedDocument, *, check: bool = False, out: IO[str]
) -> int:
    """Print what the settings page's Single sign-on section shows (never the secret).

    Exit code 0 when single sign-on is configured and, with ``check``, its provider answers.
    """
    from admin import single_sign_on  # imports the Flask integration: only for this command

    problem = None
    try:
        secret = client_secret(settings.sso)
    except ConfigError as exc:
        problem, secret = str(exc), None
    sso = single_sign_on(settings.sso, secret, document, utcnow)
    policy = sso.policy()
    state = "enabled" if sso.enabled() else "disabled"
    changed = (
        f" (overridden: {policy.overridden_names}, {policy.changed} by {policy.changed_by}; "
        "sso reset-policy returns to config.toml)"
        if policy.overridden
        else ""
    )
    provider = sso.provider
    public_url = settings.server.public_url
    callback_url = (public_url or settings.local_url).rstrip("/") + "/admin/sso/callback"
    redirect = callback_url
    if not public_url:
        redirect += "  (this server's own address: set [server] public_url to the one browsers use)"
    local = "allowed" if sso.local_allowed() else "off"
    rows = [
        ("Issuer", provider.issuer or "not set"),
        ("Client ID", provider.client_id or "not set"),
        (
            "Client secret",
            problem
            or (f"configured ({provider.secret_source})" if provider.secret_source else "not set"),
        ),
        ("Scopes", provider.scopes),
        ("Username claim", provider.username_claim),
        ("Admin group", policy.admin_group or "not set"),
        ("Local sign-in", local),
        ("Redirect URI", redirect),
    ]
    healthy = sso.relying_party is not None and problem is None
    if check and sso.relying_party is not None:
        checked, answers = _check_provider(sso.relying_party, callback_url)
        rows += checked
        healthy = healthy and answers
    elif check:  # exit 1 says something is wrong: say what was not checked, and why
        rows.append(
            ("Discovery", "not checked: [sso] issuer, client_id and a client secret are needed")
        )
    differs = sso.started_elsewhere()  # here: from the config.toml just read
    if problem is not None:  # the secret is unreadable here, not necessarily to the server
        differs = [key for key in differs if key != "configured"]
    if differs:
        started = (
            f"the last one started with another [sso] (it differs in {', '.join(differs)})"
            if sso.state.recorded_config() is not None
            else "none has started with this [sso] yet"
        )
        rows.append(
            ("Servers", f"{started}: restart every server process, all with this config.toml")
        )
    for label, attempt in (
        ("Last attempt", sso.state.last_attempt()),
        ("Last success", sso.state.last_success()),
    ):
        if attempt is None:
            rows.append((label, "none"))
            continue
        text = f"{attempt.time} {attempt.outcome}"
        if attempt.user:
            text += f", {attempt.user}"
        if attempt.outcome != "success":
            text += f" ({attempt.reason}): {attempt.message}"
        rows.append((label, text))
    # Attempts and "changed by" carry names from the identity provider: printed escaped.
    print(f"Single sign-on is {state}{activity.printable(changed)}", file=out)
    width = max(len(label) for label, _ in rows) + 1
    for label, value in rows:
        print(f"  {label + ':':<{width}} {activity.printable(value)}", file=out)
    return 0 if healthy else 1


def _check_provider(
    relying_party: RelyingParty, redirect_uri: str
) -> tuple[list[tuple[str, str]], bool]:
    """``sso status --check``: the rows saying what the provider answered, and whether all
    of it is usable (the discovery document, the signing keys it points to, and whether the
    token endpoint refuses the client id and secret)."""
    try:
        metadata = relying_party.check_discovery()
    except SignInFailed as failure:
        return [("Discovery", failure.message)], False
    rows = [("Discovery", f"ok, sign-in page {metadata['authorization_endpoint']}")]
    try:
        algorithms = relying_party.check_signing_keys()
    except SignInFailed as failure:
        return [*rows, ("Signing keys", failure.message)], False
    rows.append(("Signing keys", f"ok, {metadata['jwks_uri']} verifies {', '.join(algorithms)}"))
    try:
        secret = relying_party.check_client_secret(redirect_uri)
    except SignInFailed as failure:
        return [*rows, ("Secret check", failure.message)], False
    return [*rows, ("Secret check", secret)], True


def sso_policy(
    settings: Settings,
    document: SharedDocument,
    args: argparse.Namespace,
    log: Any,
    *,
    out: IO[str],
    err: IO[str],
) -> int:
    """``sso local-sign-in on|off`` and ``sso reset-policy``: the operator's way to change
    what the control panel changed (it refuses to turn local sign-in off from a password
    session; a local account locked out by an override is let back in from here).

    :param log: the activity log (:func:`admin.audit.activity_log`), which records the
        change as it records the control panel's: it can end every password session.
    """
    from admin import single_sign_on  # imports the Flask integration: only for this command

    state = single_sign_on(settings.sso, None, document, utcnow).state
    try:
        if args.action == "reset-policy":
            policy = state.reset_policy()
            print("The control panel's single sign-on changes are undone: ", end="", file=out)
            print("config.toml's [sso] applies again.", file=out)
        else:
            policy = state.change_policy("cli", local_sign_in=args.state == "on")
    except StorageError as exc:
        print(f"error: {exc}", file=err)
        return 1
    command = "sso " + " ".join(filter(None, (args.action, getattr(args, "state", None))))
    operation = (
        "reset single sign-on"
        if args.action == "reset-policy"
        else f"{'enable' if args.state == 'on' else 'disable'} local sign-in"
    )
    log.append(
        activity.admin_event(
            utcnow(),
            "cli",
            operation,
            local_sign_in=policy.local_sign_in,
            detail=f"From the command line: python app.py {command}.",
        )
    )
    sso = "enabled" if policy.enabled else "disabled"
    if policy.local_sign_in:
        print("Local sign-in is on: local accounts may sign in with their passwords.", file=out)
    elif policy.enabled:
        print(
            "Local sign-in is off: everyone signs in with Microsoft, and local accounts' "
            "sessions have ended.",
            file=out,
        )
    else:
        print(
            "Local sign-in is off, from when single sign-on is enabled; while it is disabled, "
            "local accounts still sign in with their passwords.",
            file=out,
        )
    where = (
        "the control panel's override" if "local_sign_in" in policy.overridden else "config.toml"
    )
    print(f"  (local sign-in: {where}; single sign-on: {sso})", file=out)
    return 0


def read_password(stdin: TextIO, err: TextIO) -> str:
    """The new password: asked twice on a terminal, else the first line of stdin.

    :raises ValueError: if the two entries differ or nothing was given.
    """
    if stdin.isatty():
        first = getpass.getpass("New password: ", stream=err)
        if getpass.getpass("Repeat it: ", stream=err) != first:
            raise ValueError("the two passwords differ")
        password = first
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise ValueError("no password given (type it at the prompt, or pipe it on stdin)")
    return password


def tail(
    path: Path,
    count: int,
    *,
    follow: bool = False,
    out: IO[str],
    poll: float = POLL_SECONDS,
    keep_going: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the last ``count`` events; with ``follow``, then every new one as it comes."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - kept open while following
    except FileNotFoundError:
        handle = None
    # The events already in the current file end where the handle starts following.
    position = os.fstat(handle.fileno()).st_size if handle else 0
    current = handle.read(position) if handle else b""
    lines = current.splitlines()
    events = [e for e in (audit.decode(line) for line in reversed(lines)) if e is not None]
    if len(events) < count:
        rotated = [file for file in audit.log_files(path) if file != path]
        for event in audit.read_files_newest_first(rotated):
            events.append(event)
            if len(events) >= count:
                break
    for event in reversed(events[: max(count, 0)]):
        print(activity.describe(event), file=out)
    out.flush()
    if not follow:
        if handle:
            handle.close()
        return 0
    try:
        _follow(path, handle, out, poll=poll, keep_going=keep_going, sleep=sleep)
    except KeyboardInterrupt:
        pass
    return 0


def tail_log(
    log: Any,
    count: int,
    *,
    follow: bool = False,
    out: IO[str],
    poll: float = POLL_SECONDS,
    keep_going: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """:func:`tail` for a backend's own event log (PostgreSQL), whose events carry ``seq``."""
    events = list(itertools.islice(log.newest_first(), max(count, 0)))
    for event in reversed(events):
        print(activity.describe(event), file=out)
    out.flush()
    last = max((event.get("seq", 0) for event in events), default=log.last_seq())
    try:
        while follow and keep_going():
            sleep(poll)
            newer = _newer_than(log, last)
            for event in reversed(newer):
                print(activity.describe(event), file=out)
            if newer:
                out.flush()
                last = newer[0].get("seq", last)
    except KeyboardInterrupt:
        pass
    return 0


def _newer_than(log: Any, seq: int) -> list[dict]:
    """The events after ``seq``, newest first."""
    return list(itertools.takewhile(lambda event: event.get("seq", 0) > seq, log.newest_first()))


def _follow(
    path: Path,
    handle: IO[bytes] | None,
    out: IO[str],
    *,
    poll: float,
    keep_going: Callable[[], bool],
    sleep: Callable[[float], None],
) -> None:
    """Print events appended to ``path``, across rotations (like ``tail -F``)."""
    pending = b""
    while keep_going():
        # Look for a rotation first, then drain: whatever the old file got before it was
        # renamed is read before moving on to the new one.
        replaced = _replaced(path, handle)
        if handle is not None:
            pending = _print_complete_lines(pending + handle.read(), out)
        if replaced:
            if handle is not None:
                handle.close()
            try:
                handle = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                handle = None
            pending = b""
            continue
        sleep(poll)
    if handle is not None:
        handle.close()


def _print_complete_lines(data: bytes, out: IO[str]) -> bytes:
    """Print the events of the whole lines in ``data``; returns the unfinished rest."""
    *complete, rest = data.split(b"\n")
    for line in complete:
        event = audit.decode(line)
        if event is not None:
            print(activity.describe(event), file=out)
    if complete:
        out.flush()
    return rest


def _replaced(path: Path, handle: IO[bytes] | None) -> bool:
    """Whether ``path`` is now another file than the one ``handle`` reads."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return False
    if handle is None:
        return True
    return os.fstat(handle.fileno()).st_ino != status.st_ino
