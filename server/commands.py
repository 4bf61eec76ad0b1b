"""The operator commands behind ``python app.py``: serve, token, provisioning.

The token and provisioning commands change the control file under its lock; a running
server sees the change on its next request, so they work while it serves.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

from flask import Flask

from admin.context import EXTENSION as ADMIN_EXTENSION
from scim.tokens import ProvisioningSwitch, TokenStore, propagation
from server import httpserver, processes
from server.config import ConfigError, Settings, request_threads
from storage.documents import SharedDocument
from storage.errors import StorageError, log_background_failure

log = logging.getLogger("proware")


# Libraries whose warnings reach the output among Proware's lines: the PostgreSQL driver and
# its pool, and waitress. Left to the root logger, they came out in Python's default format
# ("WARNING:psycopg:error ignored ..."), which a reader or a log parser takes for another
# program's.
LIBRARY_LOGGERS = ("psycopg", "waitress")


def configure_logging(settings: Settings) -> None:
    """Log lines, access log included, to standard output; with the pid when several
    processes serve, so that their lines can be told apart. The libraries' lines take the
    same format, from WARNING up whatever the [log] level: below it they are per-connection
    chatter (psycopg's pool logs each checkout at INFO)."""
    pid = " [%(process)d]" if settings.server.processes > 1 else ""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(f"%(asctime)s{pid} %(levelname)s %(name)s %(message)s"))
    level = logging.getLevelName(settings.log.level.upper())
    levels = {"proware": level} | {name: max(level, logging.WARNING) for name in LIBRARY_LOGGERS}
    for name, at_least in levels.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(at_least)
        logger.propagate = False
    access = logging.getLogger("proware.access")
    access.disabled = not settings.log.access_log
    # access_log alone decides the request lines: they are INFO, and a quieter [log] level
    # (chosen to drop the storage's INFO lines) would otherwise drop them too.
    access.setLevel(logging.INFO)


def serve(settings: Settings, create_app: Callable[[Settings], Flask], command: str) -> int:
    """Start waitress; print the Tenant URL and how to get a token.

    With ``[server] processes`` above 1, :func:`server.processes.serve` runs that many worker
    processes on one listening socket, each with an app of its own.
    """
    configure_logging(settings)
    _collect_garbage_rarely()  # also for the workers: forked, they keep the thresholds
    open_app = partial(_app_of_this_process, create_app)
    try:
        if settings.server.processes > 1:
            return processes.serve(
                settings,
                open_app,
                _waitress_options(settings),
                announce=partial(_print_start_up, command=command),
            )
        with open_app(settings) as app:
            previous = httpserver.stop_on_signals()
            try:
                httpserver.serve(
                    app,
                    announce=partial(_print_start_up, settings, app, command),
                    host=settings.server.host,
                    port=settings.server.port,
                    **_waitress_options(settings),
                )
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
    except (StorageError, httpserver.CannotListen) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _print_start_up(settings: Settings, app: Flask, command: str) -> None:
    """Where the service listens, the Tenant URL, and the next steps (a token, the switch)."""
    services = app.extensions["proware"]
    tokens = [t for t in services.tokens.list() if t.status == "active"]
    print(f"Proware SCIM service on {settings.local_url} (config: {settings.source})")
    print(f"  Tenant URL:   {_tenant_url_shown(settings)}")
    print(f"  Data:         {app.extensions['proware.backend'].describe()}")
    if not tokens:
        print(
            f"  Create a token for Entra's Secret Token field: {command} token create --name entra"
        )
    state = "enabled" if services.switch.enabled() else "disabled"
    print(f"  User Provisioning is {state}", end="")
    print("" if state == "enabled" else f": turn it on with {command} provisioning enable")
    for hook in app.extensions.get("serve_hooks", ()):  # e.g. the control panel's setup link
        hook(
            command,
            settings.server.public_url or settings.local_url,
            note=settings.own_address_note(),
        )
    sys.stdout.flush()


def _tenant_url_shown(settings: Settings) -> str:
    """The Tenant URL for the start-up lines. Behind a trusted proxy without ``public_url``
    it is the URL clients use through the proxy, which only their requests tell."""
    server = settings.server
    if server.trusted_proxy and not server.public_url:
        return (
            f"the URL clients use through the proxy + {settings.scim.prefix} (the control "
            "panel shows it; set [server] public_url to print it here)"
        )
    return settings.tenant_url()


def _waitress_options(settings: Settings) -> dict[str, Any]:
    """waitress's adjustments from ``[server]``, but where to listen (host and port), and
    where its own error answers are SCIM errors (:func:`server.httpserver.create`)."""
    server = settings.server
    options: dict[str, Any] = {
        "threads": request_threads(settings),
        # waitress refuses a body of max_request_body_size bytes or more, Flask's
        # MAX_CONTENT_LENGTH one of more: one byte more here, and both allow exactly the limit.
        "max_request_body_size": server.max_body_bytes + 1,
        "ident": "Proware",
        # waitress's own refusals (a body over the limit above all) under the SCIM prefix
        # are SCIM error bodies, not text/plain pages, answered and recorded by the app.
        "scim_errors": httpserver.ScimErrors(
            settings.scim.prefix, server.max_body_bytes, app_answers=True
        ),
    }
    if server.trusted_proxy:
        options.update(
            trusted_proxy=server.trusted_proxy,
            trusted_proxy_count=server.trusted_proxy_count,
            trusted_proxy_headers=" ".join(server.trusted_proxy_headers),
            clear_untrusted_proxy_headers=True,
        )
    return options


@contextmanager
def _app_of_this_process(
    create_app: Callable[[Settings], Flask], settings: Settings
) -> Iterator[Flask]:
    """The app one server process serves, writing the counts of repeated refusals when their
    window ends; on leaving, those still counted are written, its token use and connection
    status are saved (after the saves in flight, a thread's), and its backend closed
    (the store, and with PostgreSQL the pool: none may outlive it into a fork)."""
    app = create_app(settings)
    refusals = app.extensions[ADMIN_EXTENSION].refusals
    refusals.write_on_time()
    _freeze_what_lives_on()
    try:
        yield app
    finally:
        refusals.close()  # the counts of repeated refusals reach the log before the store closes
        try:
            app.extensions["proware"].tokens.flush()
        except (OSError, StorageError) as exc:
            # Last-use times are bookkeeping: a full disk must not keep the store open.
            log_background_failure(log, "could not save token last-use times at shutdown", exc)
        # Saved now: a worker leaves without the atexit hooks that would (processes.py).
        app.extensions[ADMIN_EXTENSION].connection.flush()
        app.extensions["proware.backend"].close()


# gen0 and gen1 as Python's defaults; a full collection after 1,000 gen1 ones, not 10.
_GC_THRESHOLDS = (700, 10, 1000)


def _freeze_what_lives_on() -> None:
    """Collect once, then keep everything built so far out of every later collection.

    The app, its schemas, the libraries' modules: they live as long as the process. The
    store freezes the directory when it opens it, but what is built after (the app) was
    still walked by the first full collection, which at 50,000 users came during the
    bench's first requests and took 16-17 ms.
    """
    gc.collect()
    gc.freeze()


def _collect_garbage_rarely() -> None:
    """Make full garbage collections rare in the server process.

    A full collection stops every thread while it walks every tracked object not frozen;
    at 50,000 users that took 15-20 ms, each one a latency spike for whatever request was
    running. The directory itself is frozen after loading and after each compaction (see
    storage.journal) and stored documents are acyclic, freed by reference counting, so
    little is left for a full collection to find; young collections still run as usual.
    """
    gc.set_threshold(*_GC_THRESHOLDS)


def token(args: argparse.Namespace, control: SharedDocument, backend: str) -> int:
    """token create | list | revoke, on the control document of the ``backend`` named."""
    store = TokenStore(control)
    if args.action == "create":
        try:
            secret, info = store.create(
                args.name, read_only=args.read_only, expires_in_days=args.expires
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        # Only the token on stdout, so scripts can capture it; guidance on stderr.
        print(secret)
        print(
            f"Created {info.scope} token {info.name!r}"
            + (f", expires {_date(info.expires)}" if info.expires else "")
            + ". It is shown only this once: paste it into Entra's Secret Token field.",
            file=sys.stderr,
        )
        return 0
    if args.action == "list":
        rows = [("NAME", "SCOPE", "STATUS", "CREATED", "LAST USED", "EXPIRES")]
        for info in store.list():
            rows.append(
                (
                    info.name,
                    info.scope,
                    info.status,
                    _date(info.created),
                    _date(info.last_used),
                    _date(info.expires),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            print(
                "  ".join(
                    cell.ljust(width) for cell, width in zip(row, widths, strict=True)
                ).rstrip()
            )
        return 0
    try:
        info = store.revoke(args.name)
    except KeyError:
        print(f"error: no active token named {args.name!r}", file=sys.stderr)
        return 1
    applies = propagation(backend, from_cli=True)
    print(f"Revoked token {info.name!r}; requests with it get 401, {applies}.")
    return 0


def provisioning(action: str, control: SharedDocument) -> int:
    """provisioning enable | disable | status, on the control document."""
    switch = ProvisioningSwitch(control)
    if action in ("enable", "disable"):
        switch.set(action == "enable", by="cli")
    status = switch.status()
    state = "enabled" if status["enabled"] else "disabled"
    since = f" (since {status['changed']} by {status['changed_by']})" if status["changed"] else ""
    print(f"User Provisioning is {state}{since}")
    return 0


def _date(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
