"""What each of Proware's sessions tells PostgreSQL when it connects: who it is, and how long
the database waits for it once it falls silent.

Both travel in the startup packet (libpq's ``application_name`` and ``options``), so they
cost no round trip, and hold from the session's first moment.

- A name (:func:`session_name`): ``pg_stat_activity`` shows what a session is for, the
  process and its machine, so an operator (and a refused ``restore``) can tell which server
  holds the database.
- Settings of the session's server side (:func:`database_silence_options`): PostgreSQL's
  own TCP keepalives and ``tcp_user_timeout`` on this session's socket. A client machine
  that vanishes without closing its connections (powered off, cut off by a network
  partition or a firewall) sends nothing more; without these the database keeps its
  sessions, and a server's shared serving lock with them (:mod:`storage.postgres.serving`),
  until the database host's keepalives notice, two hours by default. With them it drops the
  session within about ``timeout`` seconds, as the client drops a silent database
  (:func:`~storage.postgres.connection.silence_options`), and a restore may proceed.
"""

from __future__ import annotations

import os
import socket

# The settings, processed in order: one the DSN's ``options`` (or PGOPTIONS) sets itself
# comes after ours, and wins.
_SETTINGS = (
    "-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
    "-c tcp_keepalives_count={count} -c tcp_user_timeout={user_timeout}"
)


def keepalive_schedule(timeout: int) -> tuple[int, int, int]:
    """TCP keepalives that give up on a peer silent for about ``timeout`` seconds: the
    seconds of quiet before the first probe, the seconds between probes, and how many go
    unanswered before the connection is dropped (``idle + interval * count == timeout``,
    for ``timeout`` of two seconds or more)."""
    idle = max(1, timeout // 2)
    return idle, 1, max(1, timeout - idle)


def database_silence_options(timeout: int) -> str:
    """The ``options`` startup parameter that has PostgreSQL drop this session once its
    client has been silent for about ``timeout`` seconds: its keepalives probe a quiet
    session, and ``tcp_user_timeout`` (milliseconds, PostgreSQL 12 and later) abandons an
    answer that stays unacknowledged. Ignored over a unix socket. A client that is there
    acknowledges both from its kernel, however busy the process, so no session that works
    is cut short."""
    idle, interval, count = keepalive_schedule(timeout)
    return _SETTINGS.format(idle=idle, interval=interval, count=count, user_timeout=timeout * 1000)


def with_database_silence_options(options: dict[str, str | int | None], timeout: int) -> None:
    """Add :func:`database_silence_options` to libpq connection ``options`` in place, before
    the settings they (or, without them, the ``PGOPTIONS`` environment variable, which an
    ``options`` of ours would hide from libpq) carry already, so that those win."""
    theirs = str(options.get("options") or os.environ.get("PGOPTIONS") or "").strip()
    ours = database_silence_options(timeout)
    options["options"] = f"{ours} {theirs}" if theirs else ours


def session_name(purpose: str) -> str:
    """What ``pg_stat_activity.application_name`` shows for a session of this process:
    ``purpose`` (``proware server``), then the process id and the machine, in an order that
    keeps the id when PostgreSQL cuts a long name at 63 bytes."""
    return f"{purpose} pid {os.getpid()} on {socket.gethostname()}"
