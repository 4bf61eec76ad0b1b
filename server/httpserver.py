"""Serve the app with waitress: connections kept open after a 204 or 304, and no busy loop.

waitress 3.0.2 closes an HTTP/1.1 connection after every response that has no Content-Length,
and it never gives one to a 204 or 304 (RFC 9110 §8.6 forbids it). Those responses have no
body by definition (RFC 9112 §6.3), so the client knows where the next response starts; closing
is needless. For Entra it is costly: every group PATCH and DELETE is answered 204 (A11-A13),
so each one cost a new TCP (and, through a tunnel, TLS) connection, and the member change
after it waited for the handshake. :class:`KeepAliveTask` keeps the connection unless the
client asked to close it.

waitress's main loop also spun while a worker thread was writing a response: a channel is
"writable" whenever its output buffer holds bytes, but while a task runs the worker sends
them itself, holding the buffer's lock, so the loop's ``handle_write`` can do nothing, and
``select`` returns at once (the socket's send buffer is empty). With several connections the
other clients' requests keep waking the loop, it samples a channel inside that window
often, and every turn retakes the GIL the worker needs to return from ``send``. Measured
with four client processes on keep-alive connections and one worker thread: 10 ``select``
calls per request instead of 2, and 0.28 against 0.21 ms of CPU per request for a trivial
app (0.76 against 0.69 for one that works 0.5 ms). :class:`ProwareChannel` is writable during
a task only when the worker asked the loop to send for it. Everything else is waitress's
own behaviour.

waitress also warned "Task queue depth is 1" whenever a keep-alive client's next request
arrived before the worker that had just answered it was back waiting for work, which is most
of the time: with four clients and four threads (PostgreSQL's default) the bench's server
logged 2,932 such lines in its first 20 seconds, one request in seven, though no request
waited for a thread. :class:`WaitWatchingDispatcher` logs instead the requests that did wait
long for a worker thread, once a minute at most.

With one thread (the default) there is no worker at all: :class:`InlineDispatcher` runs each
request on the main loop's own thread, after the poll that completed it, the earliest arrival
first. A worker thread only took turns with the loop under the GIL anyway, and every hand-off
cost a lock, a condition wake-up, a trigger write and a ``select`` return: measured with a
trivial app and four keep-alive clients, 0.20-0.25 ms of CPU per request with one worker
thread, 0.07 ms inline (0.15 against 0.11 ms with one client). More threads keep waitress's
dispatcher: they only help when fsync is slow enough that requests should share one.

The loop also waits for each write's fdatasync. Letting it run the requests behind a write
meanwhile was tried: the commit returned at once, a syncer thread made it durable (one
fdatasync for all written meanwhile) and only then was the answer sent. In four bench runs
at 10,000 users, alternating with the loop as it is, it served 0.75-1.02x the requests per
second for 8-57 % more server CPU a request and a longer p99.9: the syncer thread's turns
at the GIL cost more than the fsync waits they hid, about a tenth of the loop's time.

Every channel notes when the data it reads arrived (:class:`StampedChannel`, the kernel's
receive timestamp), so that the slow-request log (:mod:`server.requestcost`) can say how long
a request waited for its turn: with one thread, behind the request the loop was running.

Some requests waitress answers itself, before the app sees them: a body over
``max_request_body_size`` (from its Content-Length, or once a chunked body passes it), a
malformed request or chunk, headers too large. Its answer is a text/plain page; under the
SCIM prefix :class:`ScimErrorTask` makes it an RFC 7644 §3.12 error body, so that a client
reading SCIM errors (Entra reads only the status, A0; others read the ``detail``) gets one.
The body is never parsed for that: the answer goes out and the connection is closed. Proware's
app answers that error itself (``ScimErrors.app_answers``): handed the request without its
body, marked as refused (:data:`scim.api.SERVER_REFUSAL`), it records the refusal as it
records its own (activity log, the token's Connection status, access log) and renders it.

Closing that connection at once lost the answer: the body still unread in the socket made
the kernel send a reset, and a client still sending it (nginx forwards a whole body before
it reads the answer) failed to write and never read the 413; nginx turned about half of
them into its own 502. After such an answer the connection lingers instead, as nginx's and
Apache's do (:meth:`StampedChannel.handle_close`): it stops writing (a FIN after the answer),
reads and drops what still comes for up to :data:`LINGER_SECONDS`, and closes once the
client has closed its side.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, split_uri
from waitress.server import BaseWSGIServer, MultiSocketServer, create_server
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask
from waitress.utilities import RequestEntityTooLarge, RequestHeaderFieldsTooLarge
from waitress.wasyncore import _DISCONNECTED

from scim import constants, errors
from scim.api import SERVER_REFUSAL, collapse_slashes
from server.requestcost import QUEUED_AT
from storage.wording import counted

log = logging.getLogger("waitress")
queue_log = logging.getLogger("waitress.queue")

# A request that waited this long for a worker thread is worth a line in the log...
LONG_WAIT = 1.0  # seconds
# ... and one such line a minute tells enough.
WAIT_WARNING_INTERVAL = 60.0  # seconds


# After refusing a request whose body it did not read, how long a connection goes on reading
# and dropping what the client still sends, so that the client gets to read the answer; a
# client sending longer than this is cut off (nginx's lingering_time is 30 s, for any body).
LINGER_SECONDS = 5.0
# ... and what it reads from the socket at a time meanwhile.
LINGER_READ = 256 * 1024  # bytes

# A response body up to this size leaves in one write with its header (KeepAliveTask.write).
COALESCE_LIMIT = 64 * 1024  # bytes


class KeepAliveTask(WSGITask):
    """waitress's WSGI task, minus the close after a response that cannot have a body, and
    with a small response's header and body in one write.

    waitress writes the header, then the body, and with its ``send_bytes = 1`` each write is
    a ``send`` of its own: two TCP segments that the client reads with two wake-ups, and,
    with worker threads, a release of the interpreter's lock in between, which another
    thread may take before the body goes out.
    """

    _bodiless_keep_alive = False

    def write(self, data: bytes) -> None:
        done = self.wrote_header  # type: ignore[has-type]
        if done or not self.complete or not data or len(data) > COALESCE_LIMIT:
            super().write(data)
            return
        header = self.build_response_header()
        self.wrote_header = True
        length = self.content_length
        if (
            self.has_body
            and not self.chunked_response
            and length is not None
            and len(data) <= length
        ):
            self.content_bytes_written = len(data)
            self.channel.write_soon(header + data)
        else:  # chunked, bodiless or past its Content-Length: waitress's own way
            self.channel.write_soon(header)
            super().write(data)

    def get_environment(self) -> dict:
        environ = super().get_environment()
        # When the request was queued for its turn (by this module's dispatchers), for the
        # slow-request log: the time it waited behind others is part of what a client sees.
        queued_at = getattr(self.channel, "queued_at", None)
        if queued_at is not None:
            environ[QUEUED_AT] = queued_at
        return environ

    def build_response_header(self) -> bytes:
        if getattr(self.channel.server.task_dispatcher, "stop_requested", False):
            # The server is stopping (:func:`run`): this is the connection's last answer, and
            # says so, so that the client sends its next request elsewhere.
            super().set_close_on_finish()
        self._bodiless_keep_alive = (
            self.version == "1.1"
            and not self.has_body
            and not self.close_on_finish
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        )
        try:
            return super().build_response_header()
        finally:
            self._bodiless_keep_alive = False

    def set_close_on_finish(self) -> None:
        # Called by build_response_header for "no Content-Length"; a 204/304 needs none.
        if not self._bodiless_keep_alive:
            super().set_close_on_finish()


@dataclass(frozen=True)
class ScimErrors:
    """Which of waitress's own error answers are SCIM error bodies: those to requests under
    ``prefix``; ``max_body_bytes`` is the limit a 413 names (``[server] max_body_bytes``).

    ``app_answers``: the app answers them (and so records them), given the request without
    its body and marked with :data:`scim.api.SERVER_REFUSAL`; only for an app that knows the
    mark (Proware's), since any other would serve the request as it is.
    """

    prefix: str
    max_body_bytes: int
    app_answers: bool = False

    def covers(self, path: str) -> bool:
        """Whether ``path`` is under the SCIM prefix, as the app will route it (repeated
        slashes collapsed, as :class:`scim.api.NormalizeSlashes` does)."""
        path = collapse_slashes(path)
        return path == self.prefix or path.startswith(self.prefix + "/")

    def detail(self, error: Any) -> str:
        """The ``detail`` for one of waitress's errors (``waitress.utilities.Error``)."""
        if isinstance(error, RequestEntityTooLarge):
            return errors.too_large_detail(self.max_body_bytes)
        if isinstance(error, RequestHeaderFieldsTooLarge):
            # Most likely a long filter in the URL: say where a filter of any length can go.
            return (
                f"request line and headers too large ({error.body} bytes); send a long "
                "filter in the body of a POST to /.search instead (RFC 7644 §3.4.3)"
            )
        return f"{error.reason}: {error.body}"

    def body(self, error: Any) -> bytes:
        """The RFC 7644 §3.12 body for one of waitress's errors."""
        document = errors.error_document(error.code, self.detail(error))
        return json.dumps(document).encode("utf-8")


# A response: its status line, headers and body.
Answer = tuple[str, list[tuple[str, str]], bytes]


class PathKeepingParser(HTTPRequestParser):
    """waitress's request parser, remembering the path of the request line as it arrives.

    A header section over ``max_request_header_size`` (a very long URL, such as a filter of
    thousands of terms, or headers) is refused with a 431 on a request waitress replaces by
    ``GET /``: without the path sent, the refusal could not be told to be under the SCIM
    prefix and went out as waitress's text/plain page.
    """

    requested_path = ""  # "" until the request line has been read, or if it cannot be split
    _line_read = False

    def received(self, data: bytes) -> int:
        # Looked at in the first data (a request line too long for the limit has its path
        # there, before the "?") and in the data that ends the line: one copy at most.
        if not self._line_read and self.body_rcv is None:
            if not self.header_plus or b"\n" in data:
                self._note_path(self.header_plus + data)
        return super().received(data)

    def _note_path(self, head: bytes) -> None:
        line, newline, _ = head.lstrip(b"\r\n").partition(b"\n")
        self._line_read = bool(newline)
        parts = line.split(b" ", 2)
        if len(parts) < 2:
            return
        target = parts[1]
        if not (newline or len(parts) == 3):
            target, query, _ = target.partition(b"?")
            if not query:
                return  # the path itself may go on in the next data
        self._line_read = True
        try:
            self.requested_path = split_uri(target)[2]
        except ParsingError:
            pass


class ScimErrorTask(ErrorTask):
    """waitress's answer to a request it refused itself, as a SCIM error body under the SCIM
    prefix (:class:`ScimErrors`, set on the server by :func:`create`), the app's own when it
    answers them; elsewhere (the control panel) waitress's own text/plain page.

    Like waitress's, it closes the connection: the rest of a refused body is never read.
    """

    def execute(self) -> None:
        scim_errors: ScimErrors | None = getattr(self.channel.server, "scim_errors", None)
        path = getattr(self.request, "path", "") or ""
        if isinstance(self.request.error, RequestHeaderFieldsTooLarge):
            path = getattr(self.request, "requested_path", "") or path
        if scim_errors is None or not scim_errors.covers(path):
            super().execute()
            return
        error = self.request.error
        answer = None
        if scim_errors.app_answers:
            answer = self._apps_answer(error.code, scim_errors.detail(error), path)
        if answer is None:
            answer = (
                f"{error.code} {error.reason}",
                [("Content-Type", constants.SCIM_MEDIA_TYPE)],
                scim_errors.body(error),
            )
        self.status, headers, body = answer
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.channel.linger_on_close = True
        self.content_length = len(body)
        self.write(body)

    def _apps_answer(self, status: int, detail: str, path: str) -> Answer | None:
        """The app's answer to the refused request, handed over without its body and marked
        (:data:`scim.api.SERVER_REFUSAL`); None if it is not the refusal (a failure, logged)."""
        environ = KeepAliveTask(self.channel, self.request).get_environment()
        environ.update(
            {
                "wsgi.input": io.BytesIO(),
                "CONTENT_LENGTH": "0",
                "PATH_INFO": path,  # the one sent, where waitress put "/" (PathKeepingParser)
                SERVER_REFUSAL: (status, detail),
            }
        )
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(status: str, headers: list, exc_info: object = None) -> Callable:
            started[:] = [(status, headers)]
            return lambda data: None  # the app returns its body (Flask never calls write)

        try:
            chunks = self.channel.server.application(environ, start_response)
            try:
                body = b"".join(chunks)
            finally:
                getattr(chunks, "close", lambda: None)()
        except Exception:  # as waitress does for a failing app: log; the server's body goes out
            log.exception("the app failed to answer a refused request to %r", environ["PATH_INFO"])
            return None
        if not started or not started[0][0].startswith(f"{status} "):
            log.warning(
                "the app answered a refused request (%d) to %r with %r; sent the server's answer",
                status,
                environ["PATH_INFO"],
                started[0][0] if started else "nothing",
            )
            return None
        status_line, headers = started[0]
        kept = [(name, value) for name, value in headers if name.lower() != "content-length"]
        return status_line, kept, body


# Linux's receive timestamps (socket(7)): the kernel stamps each packet as it arrives, and
# recvmsg hands over a stamp of what it read (a struct timespec, CLOCK_REALTIME).
SO_TIMESTAMPNS = 35
_STAMP = struct.Struct("qq")
_STAMP_SPACE = socket.CMSG_SPACE(_STAMP.size)


class StampedChannel(HTTPChannel):
    """waitress's channel, noting when the data it reads arrived: the kernel's receive
    timestamp, for the slow-request log (:func:`_note_queued`).

    With one thread the loop reads a request only once the one it runs is answered, so the
    time the request waited behind it is visible only in the packet's own timestamp. Where
    the socket option does not exist (not Linux), reads are waitress's own and a request's
    wait counts from the moment it was queued.
    """

    error_task_class = ScimErrorTask
    parser_class = PathKeepingParser
    _stamped = False
    arrived_at: float | None = None  # time.perf_counter() when the last data read arrived
    # Set when the answer is a refusal whose body may still be coming (ScimErrorTask); then,
    # once the answer is sent, the time.monotonic() until which the connection drains it.
    linger_on_close = False
    lingering_until: float | None = None

    def __init__(self, server, sock, addr, adj, map=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(server, sock, addr, adj, map)
        if sys.platform == "linux":
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self._stamped = True
            except OSError:
                pass

    def recv(self, buffer_size: int) -> bytes:
        if not self._stamped:
            return super().recv(buffer_size)
        try:  # wasyncore.dispatcher.recv, with recvmsg
            data, ancillary, _, _ = self.socket.recvmsg(buffer_size, _STAMP_SPACE)
        except OSError as why:
            if why.args[0] in _DISCONNECTED:
                self.handle_close()
                return b""
            raise
        if not data:
            self.handle_close()
            return b""
        self.arrived_at = _arrival(ancillary)
        return data

    def handle_close(self) -> None:
        """Close; after a refusal, first linger: stop writing and drain what still comes
        (see the module docstring), unless the client is gone already."""
        if self.linger_on_close and self.lingering_until is None and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the client is gone: nothing to wait for
            else:
                self.will_close = self.close_when_flushed = False
                self.lingering_until = time.monotonic() + LINGER_SECONDS
                return
        super().handle_close()

    def readable(self) -> bool:
        return self.lingering_until is not None or super().readable()

    def handle_read(self) -> None:
        if self.lingering_until is None:
            super().handle_read()
            return
        # Lingering: the client's end of the body, dropped unread. An idle client that never
        # closes is closed by waitress's channel_timeout, as any idle connection.
        try:
            data = self.socket.recv(LINGER_READ)
        except OSError:
            data = b""
        if not data or time.monotonic() >= self.lingering_until:
            super().handle_close()


def _arrival(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The receive timestamp in ``ancillary``, on the ``time.perf_counter`` clock."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= _STAMP.size:
            seconds, nanoseconds = _STAMP.unpack_from(payload)
            age = time.time() - (seconds + nanoseconds / 1e9)
            return time.perf_counter() - age
    return None  # a packet stamped before timestamping was on: no age known


class ProwareChannel(StampedChannel):
    """waitress's channel with :class:`KeepAliveTask`, whose main loop waits while a worker
    writes (see the module docstring)."""

    task_class = KeepAliveTask
    # Set by the worker when it leaves output it could not send for the main loop to send.
    _main_flush = False

    def writable(self) -> bool:
        if self.will_close or self.close_when_flushed:
            return True
        if not self.total_outbufs_len:
            return False
        # No task running: the main loop owns the output, as in waitress. A task: its
        # worker sends its own writes, and asks (_main_flush) when it could not.
        return not self.requests or self._main_flush

    def write_soon(self, data: bytes) -> int:
        written = super().write_soon(data)
        if self.total_outbufs_len and not self._main_flush:
            # Bytes the worker's own send left (the socket's buffer was full): hand them to
            # the main loop, setting the flag before the trigger wakes the loop.
            self._main_flush = True
            self.server.pull_trigger()
        return written

    def _flush_outbufs_below_high_watermark(self) -> None:
        if self.total_outbufs_len > self.adj.outbuf_high_watermark:
            self._main_flush = True  # the worker is about to wait for the loop to drain it
        super()._flush_outbufs_below_high_watermark()

    def handle_write(self) -> None:
        super().handle_write()
        if self._main_flush and not self.total_outbufs_len:
            # Cleared only under the lock, so that a write the worker just left is not lost.
            if self.outbuf_lock.acquire(False):
                try:
                    if not self.total_outbufs_len:
                        self._main_flush = False
                finally:
                    self.outbuf_lock.release()


class InlineChannel(StampedChannel):
    """waitress's channel with :class:`KeepAliveTask`, for tasks run on the main loop.

    Only the main loop sends, so a task never waits for output to drain below the high
    watermark (that wait is for the loop, which would be the thread waiting): pipelined
    requests take turns with the loop's sends instead (:meth:`InlineDispatcher.run_pending`).
    """

    task_class = KeepAliveTask

    def _flush_outbufs_below_high_watermark(self) -> None:
        return None


def _note_queued(task: Any) -> None:
    """Note when ``task`` (a channel whose request is complete) began to wait for its turn,
    for the slow-request log (:meth:`KeepAliveTask.get_environment`): when the data that
    completed the request arrived (:class:`StampedChannel`), else now."""
    now = time.perf_counter()
    arrived = getattr(task, "arrived_at", None)
    task.queued_at = now if arrived is None or arrived > now else arrived


class InlineDispatcher:
    """A waitress task dispatcher that runs each task on the thread of the main loop.

    ``add_task`` is called by the loop while it reads a request (holding the channel's
    lock), so tasks are queued and run by :func:`run` after each poll, the one whose
    request arrived first first (:func:`_note_queued`).

    Run in the order the poll reported the sockets, as waitress's queue would have them,
    the same connection came last in every batch, and a request that arrived just after a
    poll waited for the rest of that batch and then for all of the next one: at 50,000
    users with four clients, requests waited up to 25 ms while six others were answered,
    though at most three were ahead of them. In arrival order, a request waits at most for
    the rest of the batch that was running when it arrived and for the requests that arrived
    before it. (Polling between tasks instead, to let later arrivals in, cost more server
    CPU per request: 5 % for GETs by id from four clients, 0.447 against 0.425 ms, and
    10 % in the Entra-shaped bench, where the machine drifted too.)
    """

    def __init__(self) -> None:
        self.queue: deque = deque()
        self.busy = False  # a task is running: a stop signal waits for it (stop_on_signals)
        self.stop_requested = False

    def set_thread_count(self, count: int) -> None:
        return None

    def add_task(self, task) -> None:  # type: ignore[no-untyped-def]
        _note_queued(task)
        self.queue.append(task)

    def run_pending(self, *, stopping: bool = False) -> None:
        """Run the tasks queued so far, in the order their requests arrived; those they
        queue (pipelined requests) wait for the next turn, after the loop has sent what is
        ready.

        A stop signal that arrived during a task stops the loop after it (the tasks not run
        yet are queued again, for the stop to answer); ``stopping``: the stop is running
        this, so none does.
        """
        pending = deque(sorted(self.queue, key=attrgetter("queued_at")))  # one a connection
        self.queue.clear()
        while pending:
            task = pending.popleft()
            self.busy = True
            try:
                task.service()
            except Exception:  # as waitress's worker threads do: log, keep serving
                log.exception("Exception when servicing %r", task)
            finally:
                self.busy = False
            if self.stop_requested and not stopping:
                self.queue.extendleft(reversed(pending))
                raise KeyboardInterrupt("stop signal received during a request")

    def shutdown(self, cancel_pending: bool = True, timeout: float = 5) -> bool:
        self.queue.clear()
        return True


class WaitWatchingDispatcher(ThreadedTaskDispatcher):
    """waitress's worker threads, logging the requests that waited long for one.

    Replaces waitress's warning of the queue's depth (module docstring): each task is
    queued with the time it was queued; the worker that takes it logs a wait longer than
    ``long_wait``, at most once every ``interval`` seconds, with how many waited that long
    since the last line and the longest wait.
    """

    def __init__(
        self,
        *,
        long_wait: float = LONG_WAIT,
        interval: float = WAIT_WARNING_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.long_wait = long_wait
        self.interval = interval
        self.monotonic = monotonic
        self._waits: list[float] = []  # long waits not yet logged
        self._logged_at: float | None = None
        self.stop_requested = False  # set by run() on a stop: answers say Connection: close

    def add_task(self, task: Any) -> None:
        _note_queued(task)
        with self.lock:
            self.queue.append(_Queued(task, self.monotonic(), self))
            self.queue_cv.notify()

    def taken(self, queued_at: float) -> None:
        """A worker took a task queued at ``queued_at``: note a long wait, log now and then."""
        now = self.monotonic()
        if now - queued_at < self.long_wait:
            return
        with self.lock:
            self._waits.append(now - queued_at)
            if self._logged_at is not None and now - self._logged_at < self.interval:
                return
            waits, self._waits, self._logged_at = self._waits, [], now
        queue_log.warning(
            "%s waited %g s or more for a free worker thread (the longest %.1f s): "
            "more [server] threads, or more processes, may be needed",
            counted(len(waits), "request"),
            self.long_wait,
            max(waits),
        )


class _Queued:
    """A task in :class:`WaitWatchingDispatcher`'s queue, with the time it was queued."""

    __slots__ = ("task", "queued_at", "dispatcher")

    def __init__(self, task: Any, queued_at: float, dispatcher: WaitWatchingDispatcher) -> None:
        self.task = task
        self.queued_at = queued_at
        self.dispatcher = dispatcher

    def service(self) -> None:
        self.dispatcher.taken(self.queued_at)
        self.task.service()

    def cancel(self) -> None:  # waitress's shutdown cancels the tasks still queued
        self.task.cancel()


# The inline dispatcher of the server running in this process (signals are per process).
_inline: InlineDispatcher | None = None


def create(app, *, scim_errors: ScimErrors | None = None, **options):  # type: ignore[no-untyped-def]
    """waitress's ``create_server(app, **options)``: with one thread (waitress's default is
    four), requests run on the main loop (:class:`InlineDispatcher`); with more, waitress's
    worker threads (:class:`WaitWatchingDispatcher`) and :class:`ProwareChannel`.

    :param scim_errors: where waitress's own error answers become SCIM error bodies
        (:class:`ScimErrorTask`); None: waitress's text/plain pages everywhere.
    """
    inline = options.get("threads") == 1
    dispatcher = InlineDispatcher() if inline else WaitWatchingDispatcher()
    server = create_server(app, _dispatcher=dispatcher, **options)
    # waitress starts the threads only of a dispatcher it made: as many as it parsed.
    dispatcher.set_thread_count(server.adj.threads)
    listeners = server.map.values() if isinstance(server, MultiSocketServer) else [server]
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = InlineChannel if inline else ProwareChannel  # type: ignore[misc]
            listener.scim_errors = scim_errors  # type: ignore[attr-defined]
            _stamp_arrivals(listener.socket)
    return server


def _stamp_arrivals(listener: socket.socket) -> None:
    """Have the kernel stamp every packet from now on, and the connections accepted from
    ``listener`` hand the stamps over (they inherit the option).

    Set on each accepted socket only, the first one switched stamping on for the whole
    machine a moment later (Linux enables it from a work queue), and the packets of a
    request that came meanwhile had no stamp: with one thread, a request sent while the loop
    ran another then counted its wait from being read, not from its arrival (seen in the
    tests on a loaded machine: 2 runs in 25).
    """
    if sys.platform == "linux":
        try:
            listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass


def run(server) -> None:  # type: ignore[no-untyped-def]
    """Serve until the server closes or a stop signal arrives (then :func:`_stop`)."""
    dispatcher = server.task_dispatcher
    socket_map = server.map if isinstance(server, MultiSocketServer) else server._map
    poll = wasyncore.poll2 if server.adj.asyncore_use_poll else wasyncore.poll
    timeout = server.adj.asyncore_loop_timeout
    if not isinstance(dispatcher, InlineDispatcher):
        try:
            while socket_map:  # waitress's own loop (server.run())
                poll(timeout, socket_map)
        except (SystemExit, KeyboardInterrupt):
            _stop(socket_map, dispatcher, poll)
        return
    global _inline
    previous = _inline
    # Signals are handled on the main thread: a loop elsewhere (a test's) registers nothing.
    registered = threading.current_thread() is threading.main_thread()
    if registered:
        _inline = dispatcher
    try:
        while socket_map:
            poll(0.0 if dispatcher.queue else timeout, socket_map)
            dispatcher.run_pending()
    except (SystemExit, KeyboardInterrupt):
        _stop(socket_map, dispatcher, poll)
    finally:
        if registered:
            _inline = previous


def _stop(socket_map: dict, dispatcher: Any, poll: Callable, limit: float = 5.0) -> None:
    """Stop serving: accept nothing more, close the idle connections, answer the requests
    running or already sent (each answer says ``Connection: close``), for at most ``limit``
    seconds, then close the rest.

    waitress closed every connection only once the running requests were done, and read
    nothing meanwhile: a keep-alive client of this process that sent its next request then
    waited for them and had its connection reset, not knowing whether its request ran (it
    had not). Seen with ``serve --processes 3`` under four clients: a worker stopped while
    one request waited 2 s for a row lock left each of its three other clients hanging 2 s,
    then reset. Closed at once, an idle connection shows its client a closed connection
    before it sends, and it opens a new one (to another process); a request already on its
    way is answered. A second stop signal (to a single process: a worker ignores it) ends
    the wait.
    """
    dispatcher.stop_requested = True
    deadline = time.monotonic() + limit
    try:
        for channel in list(socket_map.values()):
            if isinstance(channel, BaseWSGIServer):  # a listener (other workers may share it)
                channel.del_channel()
                channel.socket.close()
            elif isinstance(channel, HTTPChannel) and _idle(channel):
                channel.handle_close()
        while time.monotonic() < deadline and any(
            isinstance(channel, HTTPChannel) for channel in list(socket_map.values())
        ):
            poll(0.05, socket_map)  # answers leave; a channel closes after its last one
            if isinstance(dispatcher, InlineDispatcher):
                dispatcher.run_pending(stopping=True)
    except (SystemExit, KeyboardInterrupt):
        pass
    # What is left of the time (waitress gave running requests 5 s, and a worker gets
    # SIGKILLed 10 s after the stop: server.processes.STOP_TIMEOUT), and the moment idle
    # worker threads take to end (else counted as "still running").
    dispatcher.shutdown(timeout=max(0.5, deadline - time.monotonic()))
    wasyncore.close_all(socket_map)


def _idle(channel: HTTPChannel) -> bool:
    """Whether ``channel`` is between requests: nothing running, being read, to send, or
    sent by the client and not yet read."""
    with channel.requests_lock:
        if channel.requests or channel.request is not None or channel.total_outbufs_len:
            return False
    try:
        return not channel.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True  # nothing sent
    except OSError:
        return True  # reset: nothing to answer


class CannotListen(Exception):
    """The server's address cannot be bound: in use, not this machine's, or not resolvable."""

    def __init__(self, host: str, port: int, cause: OSError | ValueError) -> None:
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else cause
        super().__init__(f"cannot listen on {host} port {port}: {reason}")


def serve(app, *, announce: Callable[[], None] | None = None, **options) -> None:  # type: ignore[no-untyped-def]
    """What ``waitress.serve(app, **options)`` does, with this module's server.

    :param announce: prints the start-up lines, once the address is bound: before, a
        server that could not listen (a port in use, below 1024 for a service's user)
        printed its Tenant URL and setup link on every start, then the error.
    :raises CannotListen: rather than waitress's traceback, as ``serve --processes`` says it.
    """
    logging.basicConfig()  # as waitress.serve does; idempotent once logging is configured
    socket_map: dict = {}  # ours, so that a failed bind's socket and trigger can be closed
    try:
        server = create(app, map=socket_map, **options)
    except (OSError, ValueError) as exc:  # ValueError: waitress cannot resolve the host
        wasyncore.close_all(socket_map)
        raise CannotListen(options.get("host", ""), options.get("port", 0), exc) from None
    if announce is not None:
        try:
            announce()
        except BaseException:
            wasyncore.close_all(socket_map)
            raise
    server.print_listen("Serving on http://{}:{}")
    run(server)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals() -> dict[int, signal.Handlers | Callable | int | None]:
    """Make SIGTERM and SIGINT stop the server as Ctrl-C does; returns the handlers replaced.

    SIGTERM is how systemd and docker stop a service. By default it kills the process
    before ``serve``'s ``finally`` can save token use and close the store; raised as
    KeyboardInterrupt it ends the main loop, which then returns. A request running on the
    main loop is finished first, so the store is never closed under a transaction.
    SIGINT is set too: a process started as a background job of a non-interactive shell
    inherits SIGINT *ignored*, and Python keeps it so, so Ctrl-C or a polite stop did nothing.
    Signal handlers can only be set from the main thread; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _interrupt) for signum in STOP_SIGNALS}


def _interrupt(signum: int, frame: object) -> None:
    if _inline is not None and _inline.busy:
        _inline.stop_requested = True
        return
    raise KeyboardInterrupt(f"signal {signum}")
