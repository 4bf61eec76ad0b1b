"""Several server processes on one listening socket: the supervisor behind ``serve --processes N``.

With ``[server] processes`` above 1, this process becomes a pre-fork supervisor: it binds the
listening socket once, prints the start-up lines, and forks N workers. Each worker builds its
own app after the fork and serves the inherited socket with waitress (:mod:`server.httpserver`,
with ``[server] threads``); the supervisor serves nothing itself, it only keeps N workers alive.

Why one shared socket
    The kernel queues new connections on the one socket, and whichever worker is free to
    accept takes the next: the load spreads with no proxy on the machine. The supervisor holds
    the socket for the whole run, so a worker that dies never takes it along: connections wait
    in the queue for the others or for its replacement instead of being refused. N ports
    would need a balancing proxy in front and fail the dead worker's share until it is back;
    with SO_REUSEPORT the kernel hashes each connection to one worker's socket in advance,
    busy or not, and a dead worker's queued connections are reset with its socket. Behind a
    proxy across machines, each machine runs its own ``serve --processes N``.

What crosses the fork
    The socket, the settings and the code, nothing else: apps, database pools and open files
    are built in each worker after the fork, because a connection or file shared by two
    processes interleaves their bytes. The supervisor builds one app before the first fork,
    only to print the start-up lines (tokens, provisioning switch, setup link) and to stop at
    once with the message and exit code of one process when none could start (a corrupt
    store, an unreachable database); it closes that app before forking.

Supervision
    A worker that dies is replaced at once, with one log line naming its pid and how it
    ended. One that dies before it could serve (its app could not be built) is a failed
    start: the next start then waits, twice as long after each failure in a row; after
    :data:`MAX_START_FAILURES` in a row with no worker serving, the supervisor gives up,
    stops the others and exits 1. SIGTERM or SIGINT stops every worker politely (SIGTERM:
    each finishes the request it is running, :func:`server.httpserver.stop_on_signals`),
    waits at most ``stop_timeout`` seconds, SIGKILLs the stragglers and exits 0; a second
    stop signal SIGKILLs at once. On Linux a worker whose supervisor dies gets SIGTERM, so
    no worker serves on unsupervised.

This module is part of :mod:`server`, above everything else: it may import ``admin``,
``scim`` and ``storage``, and uses only :mod:`server.config` and :mod:`server.httpserver`
from its own package (:mod:`server.commands` calls it, so it never imports that).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any, NoReturn

from flask import Flask
from waitress.adjustments import Adjustments

from server import httpserver
from server.config import ConfigError, Settings
from storage.errors import StorageError

log = logging.getLogger("proware.processes")

# Builds the app of one process and, on leaving, closes what it opened (store, pool, files).
OpenApp = Callable[[Settings], AbstractContextManager[Flask]]

# Seconds the workers have to finish their requests after a stop signal before SIGKILL.
STOP_TIMEOUT = 10.0
# Failed starts in a row, with no worker serving, after which the supervisor gives up.
MAX_START_FAILURES = 5
# Seconds before a start after the first failed start; doubled after each further one.
FIRST_RETRY_DELAY = 0.25
MAX_RETRY_DELAY = 30.0

# waitress's own log lines (root logger), as server.httpserver.serve sets up, with the pid.
_WAITRESS_LOG_FORMAT = "%(levelname)s [%(process)d] %(name)s: %(message)s"
_STOP_SIGNALS = frozenset(httpserver.STOP_SIGNALS)
_SUPERVISOR_SIGNALS = _STOP_SIGNALS | {signal.SIGCHLD}
_READY = b"r"  # what a worker writes on its ready pipe once it serves
_PR_SET_PDEATHSIG = 1  # prctl(2), <linux/prctl.h>


def serve(
    settings: Settings,
    open_app: OpenApp,
    options: dict[str, Any],
    *,
    announce: Callable[[Settings, Flask], None] | None = None,
    stop_timeout: float = STOP_TIMEOUT,
) -> int:
    """Serve with ``[server] processes`` workers on one socket until a stop signal.

    Call it from the main thread: it handles signals.

    :param open_app: the app of one process, called in each worker after the fork (and here
        once for ``announce``).
    :param options: waitress adjustments for the workers, without host and port, and
        :func:`server.httpserver.create`'s own (``scim_errors``).
    :param announce: prints the start-up lines, given the settings (with the port actually
        bound) and an app built here before any fork.
    :returns: the exit code: 0 once stopped by a signal, 1 if the address cannot be bound or
        no worker can start.
    :raises StorageError, ConfigError: from ``open_app`` here, before any worker starts.
    """
    host, port = settings.server.host, settings.server.port
    try:
        listeners = listen(host, port)
    except (OSError, ValueError) as exc:  # ValueError: waitress cannot resolve the host
        _print_error(str(httpserver.CannotListen(host, port, exc)))
        return 1
    try:
        bound = listeners[0].getsockname()[1]
        settings = replace(settings, server=replace(settings.server, port=bound))
        if announce is not None:
            with open_app(settings) as app:
                announce(settings, app)
            del app
            # A Flask app is full of reference cycles: whatever it held and did not close
            # goes now, not into every worker.
            gc.collect()
        _warn_of_threads()
        count = settings.server.processes
        print(f"Serving on {settings.local_url} with {count} processes", flush=True)
        logging.basicConfig(format=_WAITRESS_LOG_FORMAT)  # no-op once logging is configured
        return _Supervisor(listeners, settings, open_app, options, stop_timeout).run()
    finally:
        for listener in listeners:
            listener.close()


def listen(host: str, port: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` names, as waitress would bind them.

    Port 0 takes a free port, the same one on every address.
    :raises OSError: an address cannot be bound.
    :raises ValueError: ``host`` cannot be resolved.
    """
    adjustments = Adjustments(host=host, port=port)
    listeners: list[socket.socket] = []
    try:
        for family, socktype, proto, address in adjustments.listen:
            if port == 0 and listeners:
                address = (address[0], listeners[0].getsockname()[1], *address[2:])
            listener = socket.socket(family, socktype, proto)
            listeners.append(listener)
            # A restarted server binds at once, even with the last run's connections in
            # TIME_WAIT.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as waitress
            listener.bind(address)
            # Listening from now on: connections queue while the workers start.
            listener.listen(adjustments.backlog)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def _warn_of_threads() -> None:
    """Log the threads still running here: a forked worker has none of them, and a lock one
    of them held stays locked in the worker for good."""
    others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        log.warning("threads running before the workers are forked: %s", ", ".join(others))


def describe_exit(status: int) -> str:
    """How a process ended, from its ``waitpid`` status: "exited with status 1"."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"was killed by {name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def retry_delay(failures: int) -> float:
    """Seconds to wait before the next start after ``failures`` failed starts in a row."""
    if failures < 1:
        return 0.0
    return min(FIRST_RETRY_DELAY * 2 ** (failures - 1), MAX_RETRY_DELAY)


@dataclass
class _Worker:
    """A worker process, as its supervisor knows it."""

    pid: int
    # Read end of the pipe the worker writes _READY to once it serves; None once read.
    ready_pipe: int | None
    serving: bool = False


class _Supervisor:
    """Keeps ``settings.server.processes`` workers serving ``listeners`` until a stop signal."""

    def __init__(
        self,
        listeners: list[socket.socket],
        settings: Settings,
        open_app: OpenApp,
        options: dict[str, Any],
        stop_timeout: float,
    ) -> None:
        self.listeners = listeners
        self.settings = settings
        self.open_app = open_app
        self.options = options
        self.stop_timeout = stop_timeout
        self.count = settings.server.processes
        self.workers: dict[int, _Worker] = {}
        self.start_failures = 0  # workers in a row that ended before they could serve
        self.next_start = 0.0  # time.monotonic() before which no worker is started
        self.supervisor_pid = os.getpid()
        # The signal handlers only write the signal's number here (signal.set_wakeup_fd):
        # the loop waits on this pipe and the ready pipes at once, and runs no code in a
        # handler.
        self.wakeup_read, self.wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def run(self) -> int:
        """Start the workers and supervise them; returns the exit code."""
        handlers = {signum: signal.signal(signum, _wake) for signum in _SUPERVISOR_SIGNALS}
        previous_wakeup = signal.set_wakeup_fd(self.wakeup_write)
        try:
            return self._supervise()
        finally:
            self._stop_workers()
            signal.set_wakeup_fd(previous_wakeup)
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            os.close(self.wakeup_read)
            os.close(self.wakeup_write)

    def _supervise(self) -> int:
        self._start_missing()
        while True:
            pipes = [w.ready_pipe for w in self.workers.values() if w.ready_pipe is not None]
            readable, _, _ = select.select([self.wakeup_read, *pipes], [], [], self._timeout())
            for worker in list(self.workers.values()):
                if worker.ready_pipe is not None and worker.ready_pipe in readable:
                    self._read_ready(worker)
            ended = self._reap()
            # Read after reaping: workers stopped by a Ctrl-C (sent to the whole process
            # group) are reaped only after this process's own SIGINT was written here, so
            # they are never taken for workers that died.
            if self._stop_signalled():
                log.info("stop signal: stopping %d workers", len(self.workers))
                return 0
            for worker, status in ended:
                self._ended(worker, status)
            if self._giving_up():
                _print_error(
                    f"no worker process could start: {self.start_failures} in a row ended "
                    "before serving (their errors are above); stopping"
                )
                return 1
            self._start_missing()

    def _timeout(self) -> float | None:
        """How long the loop may wait: until the next start is due, else for an event."""
        if len(self.workers) >= self.count:
            return None
        return max(0.0, self.next_start - time.monotonic())

    def _serving(self) -> bool:
        return any(worker.serving for worker in self.workers.values())

    def _start_missing(self) -> None:
        while len(self.workers) < self.count and time.monotonic() >= self.next_start:
            try:
                self._start_worker()
            except OSError as exc:  # fork: out of memory or processes
                log.error("cannot start a worker process: %s", exc)
                self._failed_start()

    def _failed_start(self) -> None:
        self.start_failures += 1
        self.next_start = time.monotonic() + self._delay()

    def _ended(self, worker: _Worker, status: int) -> None:
        """Log a worker's end; count it as a failed start if it never served."""
        if worker.serving:
            log.warning("worker %d %s; starting another", worker.pid, describe_exit(status))
            return
        self._failed_start()
        log.warning(
            "worker %d %s before it could serve (%d in a row)%s",
            worker.pid,
            describe_exit(status),
            self.start_failures,
            "" if self._giving_up() else f"; starting another in {self._delay():g} s",
        )

    def _delay(self) -> float:
        return retry_delay(self.start_failures)

    def _giving_up(self) -> bool:
        return self.start_failures >= MAX_START_FAILURES and not self._serving()

    def _read_ready(self, worker: _Worker) -> None:
        """Read what the worker wrote on its ready pipe: _READY, or nothing if it ended."""
        assert worker.ready_pipe is not None
        try:
            said = os.read(worker.ready_pipe, len(_READY))
        finally:
            os.close(worker.ready_pipe)
            worker.ready_pipe = None
        if said == _READY:
            worker.serving = True
            self.start_failures = 0
            log.info("worker %d serving", worker.pid)

    def _reap(self) -> list[tuple[_Worker, int]]:
        """The workers that ended since the last call, each with its ``waitpid`` status."""
        ended = []
        for pid in list(self.workers):
            done, status = os.waitpid(pid, os.WNOHANG)  # only our workers, no other child
            if done:
                worker = self.workers.pop(pid)
                if worker.ready_pipe is not None:
                    # Its pipe's last writer is gone: this read returns at once.
                    self._read_ready(worker)
                ended.append((worker, status))
        return ended

    def _stop_signalled(self) -> bool:
        """Whether SIGTERM or SIGINT arrived since the last call (empties the wake-up pipe)."""
        received = b""
        while True:
            try:
                chunk = os.read(self.wakeup_read, 256)
            except BlockingIOError:
                break
            if not chunk:
                break
            received += chunk
        return any(signum in _STOP_SIGNALS for signum in received)

    def _stop_workers(self) -> None:
        """SIGTERM every worker and reap them; SIGKILL those still running after
        ``stop_timeout`` seconds or a second stop signal."""
        for pid in self.workers:
            _send(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.workers:
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning(
                    "workers %s still running %.0f s after SIGTERM: killing them",
                    ", ".join(map(str, self.workers)),
                    self.stop_timeout,
                )
                break
            select.select([self.wakeup_read], [], [], min(left, 0.5))  # woken by SIGCHLD
            if self._stop_signalled():
                log.warning("second stop signal: killing the workers")
                break
            for worker, status in self._reap():
                log.debug("worker %d %s", worker.pid, describe_exit(status))
        for pid in self.workers:
            _send(pid, signal.SIGKILL)
        for pid, worker in self.workers.items():
            os.waitpid(pid, 0)
            if worker.ready_pipe is not None:
                os.close(worker.ready_pipe)
        self.workers.clear()

    def _start_worker(self) -> None:
        """Fork one worker; the child never returns from here."""
        ready_read, ready_write = os.pipe()
        # What the buffers hold would otherwise be written a second time, by the worker.
        sys.stdout.flush()
        sys.stderr.flush()
        # Blocked across the fork: a signal arriving before the worker has its own handlers
        # would run the supervisor's there.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SUPERVISOR_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(ready_read)
            os.close(ready_write)
            raise
        if pid == 0:
            os.close(ready_read)
            self._become_worker(ready_write, mask)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(ready_write)
        self.workers[pid] = _Worker(pid, ready_read)

    def _become_worker(self, ready_write: int, mask: Iterable[int]) -> NoReturn:
        """In the child: drop the supervisor's state, serve, and leave with ``os._exit``, so
        that nothing of the supervisor's runs here (its handlers, its atexit hooks, the
        ``finally`` blocks of its callers)."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _stop_once_on_signals()
            for worker in self.workers.values():
                if worker.ready_pipe is not None:
                    os.close(worker.ready_pipe)
            os.close(self.wakeup_read)
            os.close(self.wakeup_write)
            code = self._work(ready_write, mask)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                logging.shutdown()  # flushes the handlers
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _work(self, ready_write: int, mask: Iterable[int]) -> int:
        """One worker: build the app, say so on ``ready_write``, serve until a stop signal."""
        _stop_with_supervisor()
        try:
            # A stop signal sent since the fork arrives now, to the worker's own handler.
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            if os.getppid() != self.supervisor_pid:
                return 0  # the supervisor died before _stop_with_supervisor: no signal comes
            with self.open_app(self.settings) as app:
                server = httpserver.create(app, sockets=self.listeners, **self.options)
                os.write(ready_write, _READY)
                os.close(ready_write)
                httpserver.run(server)
        except KeyboardInterrupt:
            return 0  # stopped before it served
        except (StorageError, ConfigError) as exc:
            _print_error(str(exc))
            return 1
        return 0


def _stop_once_on_signals() -> None:
    """SIGTERM and SIGINT stop the worker as they stop one server process, once.

    A second stop signal is ignored: it would interrupt the first stop, while the worker
    sends its last response or closes its store. It comes often: systemd stops a service by
    signalling every process of it, a Ctrl-C reaches the whole process group, and the
    supervisor passes each stop on. A worker that does not stop is SIGKILLed by the
    supervisor after its timeout.
    """
    httpserver.stop_on_signals()
    stop = signal.getsignal(signal.SIGTERM)
    assert callable(stop)

    def stop_once(signum: int, frame: FrameType | None) -> None:
        for each in _STOP_SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        stop(signum, frame)

    for signum in _STOP_SIGNALS:
        signal.signal(signum, stop_once)


def _stop_with_supervisor() -> None:
    """Ask Linux for SIGTERM when the supervisor dies: a supervisor SIGKILLed cannot stop its
    workers, and a worker serving on unsupervised would keep the port (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _print_error(message: str) -> None:
    """``error: message`` on standard error in one write: several processes share it, and
    ``print`` writes the line's end apart."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _wake(signum: int, frame: FrameType | None) -> None:
    """The supervisor's handler: nothing, since Python writes the signal's number to the
    wake-up pipe before calling it."""


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # ended already; reaped below
