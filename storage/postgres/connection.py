"""One PostgreSQL database: a pool of connections, its schema brought up to date, and errors.

:class:`Database` is what the repository, the shared documents and the event log of one
process hold together. Opening one connects once directly (so a wrong address or password
fails at start-up with one clear line, not after a pool timeout), applies the migrations,
then opens the pool. Pooled connections are in autocommit mode: a plain read costs one round
trip, and a transaction is ``BEGIN`` ... ``COMMIT`` on one checked-out connection.

Errors a caller can act on become storage errors here, with messages that never show a
password (:func:`redact_dsn`):

- a lost or unreachable server, a pool with no free connection within ``checkout_timeout``
  and a lock wait past ``lock_timeout`` become :class:`storage.errors.Unavailable` (the
  service answers 503 and the client retries). A server that goes silent (a network cut, a
  firewall dropping packets, a paused VM) is given up after about ``timeout`` seconds by
  the TCP options of :func:`silence_options`, not after the kernel's fifteen minutes;
- a deadlock or serialization failure between two transactions (SQLSTATE class 40) becomes
  :class:`storage.errors.Contention`, an :class:`Unavailable` that says the transaction was
  rolled back whole. Failed statements are never retried here: a retry has to replay the
  caller's whole transaction, which only the caller can do (:mod:`storage.retry`).
- a value PostgreSQL cannot hold (U+0000 in a string, a lone surrogate, an index key past
  PostgreSQL's size limit) becomes :class:`storage.errors.Unstorable` (a ValueError).

If the connection is lost during ``COMMIT``, the transaction may or may not have committed;
the :class:`Unavailable` raised then says so.
"""

from __future__ import annotations

import json
import logging
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from typing import Any, Protocol
from weakref import WeakKeyDictionary

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.errors import Contention, Unavailable, Unstorable
from storage.postgres.migrations import apply_migrations
from storage.postgres.sessions import (
    keepalive_schedule,
    session_name,
    with_database_silence_options,
)
from storage.waits import add_wait, clocks

ROLLBACK = b"ROLLBACK"
IDLE = psycopg.pq.TransactionStatus.IDLE

MASK = "********"
# Connection options whose values are secrets (libpq: password, and the client key's).
_SECRET_OPTIONS = frozenset({"password", "sslpassword"})

# Compact JSON for the wire; ASCII escapes, so a lone surrogate reaches the server as text
# it refuses (a DataError, hence Unstorable) rather than failing inside the client.
dumps = partial(json.dumps, separators=(",", ":"))

# The pipeline of each connection inside Database.transaction, for settle().
_pipelines: WeakKeyDictionary[psycopg.Connection, psycopg.Pipeline] = WeakKeyDictionary()


class AbortedPipelineNote(logging.Filter):
    """Turns psycopg's warning that a pipeline could not end, after its block raised, into a
    DEBUG line (shown only where psycopg's logger is set to DEBUG).

    A statement that fails in a pipeline (a deadlock rolled back, a unique key taken) raises
    inside the block; leaving the pipeline then syncs, and psycopg warns "error ignored
    terminating <Pipeline [INERROR]>: pipeline aborted" while it lets the block's error
    through. That error is the one translated here, retried (:mod:`storage.retry`) and
    logged; the warning only repeats that it happened. Other errors at the pipeline's end
    (a lost connection) stay warnings.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            record.msg == "error ignored terminating %r: %s"
            and isinstance(args, tuple)
            and len(args) == 2
            and isinstance(args[0], psycopg.Pipeline)
            and isinstance(args[1], pg_errors.PipelineAborted)
        ):
            record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


# On the logger psycopg's pipelines write to (itself, not a child: a logger's filters see
# only its own records), once, when this module is first imported.
logging.getLogger("psycopg").addFilter(AbortedPipelineNote())


def jsonb(value: Any) -> Jsonb:
    """``value`` as a jsonb query parameter."""
    return Jsonb(value, dumps=dumps)


def redact_dsn(dsn: str) -> str:
    """``dsn`` as it may be shown in a message or a log: the password replaced by asterisks.

    Accepts both ``key=value`` strings and ``postgresql://`` URIs; one that cannot be parsed
    is not shown at all (it could be a password pasted in the wrong place).
    """
    try:
        options = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(a connection string that cannot be parsed)"
    shown = {key: MASK if key in _SECRET_OPTIONS else value for key, value in options.items()}
    return make_conninfo("", **shown)


# The connection options that say which database a connection string names; libpq's
# defaults stand in for those left out (the database is named after the user).
_WHERE_OPTIONS = ("host", "hostaddr", "port", "dbname")
_DEFAULT_PORT = "5432"


def same_database(first: str, second: str) -> bool:
    """Whether two connection strings (``key=value`` or URIs) name one database of one
    server; a string that cannot be parsed names none."""
    try:
        one, other = conninfo_to_dict(first), conninfo_to_dict(second)
    except psycopg.Error:
        return False
    return _where_to(one) == _where_to(other)


def _where_to(options: dict) -> tuple:
    found = {key: str(options[key]) if options.get(key) else None for key in _WHERE_OPTIONS}
    found["port"] = found["port"] or _DEFAULT_PORT
    found["dbname"] = found["dbname"] or (str(options["user"]) if options.get("user") else None)
    return tuple(found.values())


def _secrets(dsn: str) -> list[str]:
    try:
        options = conninfo_to_dict(dsn)
    except psycopg.Error:
        return []
    return [str(options[key]) for key in _SECRET_OPTIONS if options.get(key)]


def silence_options(timeout: int) -> dict[str, int]:
    """libpq options that give up on a server silent for about ``timeout`` seconds.

    A server that vanishes without closing its connections (a network cut, a firewall
    dropping packets, a paused VM) leaves a statement waiting for an answer that never
    comes, and an idle connection (the serving lock's) looking healthy: the kernel
    retransmits for about fifteen minutes (``tcp_retries2``) and sends no keepalive for two
    hours. These bound both, in the kernel, at no cost to a request:

    - ``connect_timeout``: a new connection that gets no answer;
    - ``tcp_user_timeout`` (milliseconds): what was sent is still unacknowledged;
    - TCP keepalives: a quiet connection probed after ``timeout // 2`` seconds, then every
      second, and dropped when the probes go unanswered, by ``timeout`` seconds in all.
      This also catches a statement whose request arrived but whose answer never will.

    A slow statement is not cut short: the server's kernel still acknowledges and answers
    probes. libpq ignores all but ``connect_timeout`` on a unix socket, where there is no
    network to lose. The database side of the same bound is
    :func:`~storage.postgres.sessions.database_silence_options`.
    """
    idle, interval, count = keepalive_schedule(timeout)
    return {
        "connect_timeout": max(1, timeout),
        "tcp_user_timeout": timeout * 1000,
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
    }


def check_if_stirred(connection: psycopg.Connection) -> None:
    """Check a pooled connection before it is handed out, with a round trip only when needed.

    An idle connection in autocommit mode expects nothing from the server. If its socket is
    readable, the server said something anyway: almost always that it is shutting down (an
    error, then end of file), so the pool's real check runs, fails, and the pool opens a new
    connection. A quiet socket costs one ``poll`` instead of an empty statement, which was a
    fifth of the round trips of a request. A server that vanished without a word (a host
    gone) is found by the request itself, exactly as it was by the empty statement, or
    earlier by its keepalives (:func:`silence_options`), which make the socket readable.

    :raises psycopg.OperationalError: if the connection is closed or no longer works.
    """
    if connection.closed:  # broken ones too: a broken connection is always closed
        raise psycopg.OperationalError("the connection is closed")
    if stirred(connection):
        ConnectionPool.check_connection(connection)


def stirred(connection: psycopg.Connection) -> bool:
    """Whether an idle connection's socket has something to read, or the connection is gone:
    one ``poll``, no round trip."""
    if connection.closed:
        return True
    poller = select.poll()
    try:
        poller.register(connection.fileno(), select.POLLIN)
    except (ValueError, psycopg.Error):  # closed meanwhile
        return True
    return bool(poller.poll(0))


def rolled_back(error: psycopg.Error) -> bool:
    """Whether the server rolled the transaction back because of another one: SQLSTATE class
    40, serialization failure and deadlock included (psycopg's ``DeadlockDetected`` is no
    ``TransactionRollback``, so the class is read from the code)."""
    return (error.sqlstate or "").startswith("40")


class Database:
    """A pool of connections to one PostgreSQL database whose schema is up to date.

    :param dsn: a libpq connection string or URI; never shown with its password.
    :param pool_size: connections kept at most (one per concurrent request is plenty).
    :param checkout_timeout: seconds a request waits for a free connection before
        :class:`Unavailable`.
    :param timeout: seconds the server may stay silent before a new connection, a
        statement or a quiet connection is given up as lost (:func:`silence_options`),
        and this process before the server drops its sessions
        (:func:`~storage.postgres.sessions.database_silence_options`); each option the
        DSN sets itself is kept.
    :param lock_timeout: seconds a statement waits for a row lock before :class:`Unavailable`.
    :param idle_timeout: seconds a transaction may wait for this process, between its
        statements, before the server ends the session and lets go of its row locks
        (PostgreSQL's ``idle_in_transaction_session_timeout``): a request's transaction waits
        for nothing but the process's own work, so only a frozen process gets there
        (:func:`settle`).
    :param reconnect_timeout: seconds the pool retries a lost connection (after 1, 2, 4 ...
        seconds) before it gives up and tries afresh on the next request. The retries back
        off, so this bounds how long requests still fail once the database is back.
    :raises Unavailable: if the server cannot be reached or refuses the login.
    :raises CorruptStore: if the database's schema is newer than this code knows.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        checkout_timeout: float = 5.0,
        timeout: int = 5,
        lock_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        reconnect_timeout: float = 10.0,
    ) -> None:
        self.shown = redact_dsn(dsn)
        self._secrets = _secrets(dsn)
        self._checkout_timeout = checkout_timeout
        self.timeout = timeout
        # When a use of the database last raised Unavailable (time.monotonic()), until one
        # succeeds: see unavailable_just_now.
        self._unavailable_at: float | None = None
        self._lock_timeout_ms = round(lock_timeout * 1000)
        self._idle_timeout_ms = round(idle_timeout * 1000)
        try:
            options = conninfo_to_dict(dsn)
        except psycopg.Error:
            raise Unavailable(
                "PostgreSQL: the connection string cannot be parsed "
                "(expected key=value pairs or a postgresql:// URI)"
            ) from None
        options = {**silence_options(timeout), **options}  # the DSN's own win
        with_database_silence_options(options, timeout)
        # Unless the DSN (or PGAPPNAME) names the sessions, pg_stat_activity tells whose.
        options.setdefault("fallback_application_name", session_name("proware"))
        self._conninfo = conninfo = make_conninfo("", **options)
        with self.errors(), psycopg.connect(conninfo, autocommit=True) as connection:
            apply_migrations(connection)
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            # After a server restart the pool hands out a new connection instead of a dead
            # one, so recovery costs no failed request; a quiet connection costs no query.
            check=check_if_stirred,
            timeout=checkout_timeout,
            reconnect_timeout=reconnect_timeout,
            name="proware",
            open=False,
        )
        try:
            with self.errors():
                self.pool.open(wait=True, timeout=max(checkout_timeout, timeout))
        except Unavailable:
            self.pool.close()  # stops the workers that would go on trying to connect
            raise

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection in autocommit mode, with errors translated."""
        with self.errors(), self.pool.connection() as connection:
            yield connection
        self._unavailable_at = None

    def unavailable_just_now(self) -> bool:
        """Whether the last use of the database, less than ``timeout`` seconds ago, found it
        unavailable: for writes a failed request makes on its way out (the activity log),
        which would otherwise wait for a connection as long again before the 503 is sent."""
        failed = self._unavailable_at
        return failed is not None and time.monotonic() - failed < self.timeout

    @contextmanager
    def own_connection(self) -> Iterator[psycopg.Connection]:
        """A new connection outside the pool (autocommit, closed after), for maintenance
        that takes long enough that a request should not wait for the pooled one it holds."""
        with self.errors(), psycopg.connect(self._conninfo, autocommit=True) as connection:
            yield connection

    def connect(self, purpose: str) -> psycopg.Connection:
        """A new connection outside the pool (autocommit) that the caller closes, for a
        session-level lock held as long as the caller wants (:mod:`storage.postgres.serving`).

        :param purpose: what ``pg_stat_activity`` shows for it, with this process and its
            machine (:func:`~storage.postgres.sessions.session_name`).
        """
        conninfo = make_conninfo(self._conninfo, application_name=session_name(purpose))
        with self.errors():
            return psycopg.connect(conninfo, autocommit=True)

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside one database transaction: committed on normal exit,
        rolled back on exception.

        The connection is in pipeline mode: ``BEGIN`` goes with the first statement whose
        result is read, and a statement whose result nobody reads (an UPDATE, an activity
        row) goes with the next one that is, or with ``COMMIT``. So a create or a PATCH
        costs two round trips.

        ``BEGIN`` and ``COMMIT`` (or ``ROLLBACK``) come from psycopg's own
        :class:`psycopg.Transaction`, entered inside the pipeline: it queues them with the
        next statement. Sent as statements of their own, each was one more exchange with
        the socket and one more release of the interpreter's lock, and with four threads
        serving the Entra-shaped bench took 6 % more server CPU (0.97 against 0.93 ms per
        request, 970 against 1,024 requests a second, one run each, alternating). Not
        ``connection.transaction()``: inside a pipeline it syncs before and after the
        block, a round trip each. On a rollback psycopg forgets the connection's prepared
        statements (they are prepared again after five more runs); a rollback is an error
        answer, which is rare.

        Statements in the block translate their own errors (:meth:`errors`); an error in a
        statement whose result was not read surfaces at the next read or at the end, and
        rolls the transaction back all the same. What this adds is the translation of the
        end, where ``COMMIT`` may leave the outcome unknown.

        A read whose locks must not outlive a frozen process is waited for with
        :func:`settle`, not a flush.
        """
        with self.connection() as connection:
            try:
                with (
                    self.errors(committing=True),
                    connection.pipeline() as pipeline,
                    psycopg.Transaction(connection),
                ):
                    _pipelines[connection] = pipeline
                    yield connection
                    committing = clocks()
                # What the block did not read, then COMMIT: waited for in the exits above.
                add_wait(committing)
            finally:
                _pipelines.pop(connection, None)
                # Anything but success leaves the transaction open (or failed) once the
                # pipeline has ended; a broken connection the pool throws away.
                if connection.info.transaction_status != IDLE and not connection.broken:
                    with suppress(psycopg.Error):
                        connection.execute(ROLLBACK)

    @contextmanager
    def errors(self, *, committing: bool = False) -> Iterator[None]:
        """Turn the psycopg errors a caller can act on into storage errors (module docstring).

        :param committing: the block commits, so a lost connection leaves its outcome unknown.
        """
        try:
            yield
        except (pg_errors.ProgramLimitExceeded, psycopg.DataError) as error:
            raise Unstorable(
                f"PostgreSQL cannot store this value: {self._first_line(error)}"
            ) from error
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            if rolled_back(error):
                # By the server, even when it surfaced at COMMIT: nothing was committed.
                raise Contention(self._describe(error, committing=False)) from None
            if not isinstance(error, pg_errors.LockNotAvailable):  # busy, not unreachable
                self._unavailable_at = time.monotonic()
            raise Unavailable(self._describe(error, committing)) from None

    def close(self) -> None:
        """Close every connection; later calls raise :class:`Unavailable`."""
        self.pool.close()

    def _configure(self, connection: psycopg.Connection) -> None:
        # A request never waits without end behind a transaction that holds a row lock.
        # (SET takes no bound parameter; the value is our own number.)
        connection.execute(
            sql.SQL("SET lock_timeout = {}").format(sql.Literal(self._lock_timeout_ms))
        )
        # No just-in-time compilation: the planner's cost of a search over 50,000 users (a
        # SubPlan per row for emails.value) passed jit_optimize_above_cost, and compiling
        # took 250 ms of the control panel's 485 ms search, to save nothing on rows this few.
        connection.execute("SET jit = off")
        # A transaction whose process froze (SIGSTOP, a paused VM, swapping) ends, and its
        # row locks go, once it has been idle this long; only after a settle() (which see).
        connection.execute(
            sql.SQL("SET idle_in_transaction_session_timeout = {}").format(
                sql.Literal(self._idle_timeout_ms)
            )
        )

    def _describe(self, error: psycopg.Error, committing: bool) -> str:
        if isinstance(error, PoolTimeout):
            why = (
                f"no connection became free or could be opened within {self._checkout_timeout:g} s"
            )
        elif rolled_back(error):
            why = (
                "a concurrent transaction conflicted with this one "
                "(deadlock or serialization failure); try again"
            )
        elif isinstance(error, pg_errors.LockNotAvailable):
            why = "another transaction held a row lock for too long; try again"
        else:
            why = self._first_line(error)
        if committing:
            why += " (the transaction may or may not have been committed)"
        return f"PostgreSQL at {self.shown} is unavailable: {why}"

    def _first_line(self, error: BaseException) -> str:
        text = (str(error).strip().splitlines() or [type(error).__name__])[0]
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


def settle(connection: psycopg.Connection) -> None:
    """Wait for every statement sent in the transaction's pipeline with a Sync, so that the
    server reports the transaction idle while this process works on what it read.

    A flush (what psycopg sends to fetch a result in a pipeline) leaves the server inside
    the extended-query protocol: ``pg_stat_activity`` shows the session ``active``, waiting
    for its client, and no timeout applies. A frozen process then held its row locks for as
    long as it stayed frozen, and every other process's write to those rows failed after
    ``lock_timeout``. After a Sync the server answers ReadyForQuery and the session is
    ``idle in transaction``, which ``idle_in_transaction_session_timeout`` bounds
    (:class:`Database`). Sent with the statement just queued, the Sync costs no round trip of
    its own: the result was to be waited for anyway.

    A statement whose result was not read (an UPDATE) keeps its own error until here, or
    until ``COMMIT``. Outside :meth:`Database.transaction` this does nothing.

    Not bounded: a freeze between sending a statement and the Sync that follows (the query
    goes out at ``execute``, the Sync here), or between sending a write and the next read or
    ``COMMIT``. Stopping a server at random moments of Entra-like PATCHes, about a fifth of
    the stops that caught a transaction holding locks were there. Closing them needs the
    Sync sent with each statement, which psycopg offers no public way to do, or PostgreSQL
    17's ``transaction_timeout``.
    """
    pipeline = _pipelines.get(connection)
    if pipeline is not None:
        pipeline.sync()


class HasDatabase(Protocol):
    """Anything that shares its :class:`Database` (the repository)."""

    database: Database


def database_of(source: Database | HasDatabase) -> Database:
    """``source`` itself if it is a :class:`Database`, else the one it holds."""
    return source if isinstance(source, Database) else source.database
