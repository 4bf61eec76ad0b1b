"""server/httpserver.py: requests run on waitress's main loop with one thread; with more,
worker threads and ProwareChannel, which waits while a worker writes.

The channel's rule, then real servers on 127.0.0.1: concurrent keep-alive connections,
pipelined requests and large or slowly read responses arrive whole, whether a worker or the
main loop sends them; a stop signal lets the running request finish.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import request
from waitress.channel import HTTPChannel

from app import create_app
from server import httpserver
from server.config import LogSettings, Settings
from server.httpserver import ProwareChannel
from server.requestcost import LINE
from tests.conftest import wait_for
from tests.serverproc import HOST, free_port

BIG = 5 * 1024 * 1024


def _channel(**state: object) -> ProwareChannel:
    """A channel with just the state ``writable`` reads (no socket, no server)."""
    channel = ProwareChannel.__new__(ProwareChannel)
    defaults: dict[str, object] = {
        "will_close": False,
        "close_when_flushed": False,
        "total_outbufs_len": 0,
        "requests": [],
    }
    for name, value in {**defaults, **state}.items():
        setattr(channel, name, value)
    return channel


def test_output_during_a_task_is_left_to_the_worker_that_sends_it() -> None:
    """waitress says "writable" here, and its loop spins without being able to send."""
    assert not _channel(total_outbufs_len=512, requests=["running"]).writable()


def test_output_the_worker_could_not_send_is_the_main_loops() -> None:
    channel = _channel(total_outbufs_len=512, requests=["running"])
    channel._main_flush = True
    assert channel.writable()


@pytest.mark.parametrize(
    ("state", "writable"),
    [
        ({"total_outbufs_len": 512}, True),  # no task: the loop sends, as in waitress
        ({}, False),  # nothing to send
        ({"will_close": True, "requests": ["running"]}, True),
        ({"close_when_flushed": True, "requests": ["running"]}, True),
    ],
)
def test_otherwise_the_channel_is_writable_as_in_waitress(state: dict, writable: bool) -> None:
    assert _channel(**state).writable() is writable


def _app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """/small: 2 KB; /big: 5 MB in one piece; /stream: 40 chunks of 64 KB; /big-stream: 5 MB
    in 80 chunks."""
    path = environ["PATH_INFO"]
    if path in ("/stream", "/big-stream"):
        chunks = 40 if path == "/stream" else BIG // 65536
        start_response("200 OK", [("Content-Length", str(chunks * 65536))])
        return (bytes([index % 256]) * 65536 for index in range(chunks))
    size = BIG if path == "/big" else 2048
    start_response("200 OK", [("Content-Length", str(size))])
    return [b"x" * size]


@pytest.fixture
def serve() -> Iterator[Callable[..., int]]:
    """Run :func:`server.httpserver.create`'s server on a free port with N worker threads
    (serving ``_app`` unless given another)."""
    running = []

    def start(threads: int, app: Callable = _app, **options: int) -> int:
        server = httpserver.create(app, host=HOST, port=free_port(), threads=threads, **options)
        loop = threading.Thread(target=httpserver.run, args=(server,), daemon=True)
        loop.start()
        running.append((server, loop))
        return server.effective_port

    yield start
    for server, loop in running:
        # Closed on the loop's own thread, which then ends: closing its sockets from here
        # raced its poll, which failed with EBADF in a later test now and then. The thunk is
        # queued and the trigger pulled under the trigger's lock, under which the loop runs
        # thunks: woken by anything else between the two (pull_trigger's own order), the
        # loop closed the trigger first, and the pull's write failed with EBADF.
        trigger = server.trigger
        with trigger.lock:
            trigger.thunks.append(lambda server=server: _close(server))
            trigger.pull_trigger()
        loop.join(10)
        assert not loop.is_alive(), "the server's loop did not stop"


def _close(server: Any) -> None:
    server.task_dispatcher.shutdown()
    for dispatcher in list(server._map.values()):
        if isinstance(dispatcher, HTTPChannel):
            dispatcher.handle_close()  # its output buffers too (a 5 MB one is a file)
        else:
            dispatcher.close()


@pytest.mark.parametrize("threads", [1, 4])
def test_concurrent_keep_alive_connections_get_whole_responses(
    serve: Callable[..., int], threads: int
) -> None:
    """With a loop timeout of a minute (the clients give up after 30 s), a worker that left
    the loop unaware of its connection would hang a client instead of delaying it by 1 s."""
    port = serve(threads, asyncore_loop_timeout=60)
    failures: list[str] = []

    def client(number: int) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            for request in range(60):
                path = "/stream" if request % 20 == 7 else "/small"
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                expected = 40 * 65536 if path == "/stream" else 2048
                if response.status != 200 or len(body) != expected:
                    failures.append(f"client {number} request {request}: {len(body)} bytes")
                if path == "/stream" and body[65536 * 39] != 39:
                    failures.append(f"client {number}: chunks out of order")
        finally:
            connection.close()

    clients = [threading.Thread(target=client, args=(number,)) for number in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    assert failures == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/big", b"x" * BIG),
        ("/big-stream", b"".join(bytes([n]) * 65536 for n in range(BIG // 65536))),
    ],
    ids=["one-piece", "past-the-high-watermark"],
)
@pytest.mark.parametrize("threads", [1, 2], ids=["inline", "worker"])
def test_a_slowly_read_large_response_is_sent_whole_by_the_main_loop(
    serve: Callable[..., int], path: str, expected: bytes, threads: int
) -> None:
    """A worker fills the socket's buffer and hands the rest to the main loop; past the
    output buffer's high watermark it waits for the loop to drain it (which a loop that never
    sent during a task would never do). Inline, the loop sends it all after the task, without
    waiting for itself. Nothing is lost or reordered."""
    port = serve(threads, outbuf_high_watermark=256 * 1024)
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = bytearray()
        deadline = time.monotonic() + 30
        head = body = b""
        while time.monotonic() < deadline:
            time.sleep(0.0005)  # a slow reader
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
            head, _, body = bytes(received).partition(b"\r\n\r\n")
            if len(body) >= BIG:
                break
        sock.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")  # still alive afterwards
        after = sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200")
    assert body == expected
    assert after.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("threads", [1, 4], ids=["inline", "workers"])
def test_pipelined_requests_are_answered_in_order(serve: Callable[..., int], threads: int) -> None:
    """Inline, the main loop runs them in turns with its sends; with workers, the worker that
    answers one queues the next (waitress's ``service``). With a loop timeout of a minute, a
    missed wake-up of the loop would hang the test rather than slow it down."""
    port = serve(threads, outbuf_high_watermark=256 * 1024, asyncore_loop_timeout=60)
    paths = ["/small", "/big", "/small", "/stream", "/small"]
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
        stream = sock.makefile("rb")
        answers = []
        for _ in paths:
            status = stream.readline()
            headers = dict(
                line.decode().strip().lower().split(": ", 1)
                for line in iter(stream.readline, b"\r\n")
            )
            body = stream.read(int(headers["content-length"]))
            answers.append((status.split()[1], len(body), body[-1:]))
    chunk_39 = bytes([39])
    assert answers == [
        (b"200", 2048, b"x"),
        (b"200", BIG, b"x"),
        (b"200", 2048, b"x"),
        (b"200", 40 * 65536, chunk_39),
        (b"200", 2048, b"x"),
    ]


def stop_requested() -> bool:
    """Whether the stop signal's handler has run while a request was busy on the main loop."""
    inline = httpserver._inline
    return inline is not None and inline.stop_requested


def unread_requests(server: Any) -> int:
    """How many of the server's connections hold bytes it has not read yet."""
    count = 0
    for channel in list(server._map.values()):
        if isinstance(channel, HTTPChannel):
            try:
                count += bool(channel.socket.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
            except BlockingIOError:
                pass
    return count


def run_until_stopped(server: Any, client: Callable[[], None]) -> None:
    """Serve on this (the main) thread, with the stop signals handled as ``serve`` handles
    them, while ``client`` runs on another and sends the signal; returns once both are done."""
    thread = threading.Thread(target=client)
    thread.start()
    previous = httpserver.stop_on_signals()
    try:
        httpserver.run(server)  # returns once the signal stops it
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        server.close()
    thread.join(15)


def test_a_stop_signal_lets_the_request_on_the_main_loop_finish() -> None:
    """SIGTERM arriving mid-request: the response is sent whole, then the loop stops (a store
    closed under a running transaction would be the alternative)."""
    started = threading.Event()

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        os.kill(os.getpid(), signal.SIGTERM)
        # The handler runs on this (the main) thread between two bytecodes of this loop.
        wait_for(stop_requested, what="the SIGTERM handler")
        start_response("200 OK", [("Content-Length", "4")])
        return [b"done"]

    server = httpserver.create(app, host=HOST, port=free_port(), threads=1)
    answers: list[bytes] = []

    def client() -> None:
        started.wait(10)
        connection = http.client.HTTPConnection(HOST, server.effective_port, timeout=10)
        connection.request("GET", "/")
        response = connection.getresponse()
        answers.append((response.getheader("Connection"), response.read()))
        connection.close()

    started.set()
    run_until_stopped(server, client)
    assert answers == [("close", b"done")]  # the connection's last answer says so


def held_app(running: threading.Event, release: threading.Event) -> Callable:
    """An app answering "ok"; ``/slow`` sets ``running``, then waits for ``release``."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slow":
            running.set()
            release.wait(10)
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    return app


def test_a_stop_closes_idle_connections_at_once_while_the_running_request_finishes() -> None:
    """With worker threads (PostgreSQL's default): a keep-alive client between requests sees
    its connection closed when the stop signal arrives, not once the running request is
    done (its next request then waited, unread, and was reset; ``serve --processes``)."""
    running, release = threading.Event(), threading.Event()
    server = httpserver.create(held_app(running, release), host=HOST, port=free_port(), threads=4)
    seen: dict[str, object] = {}

    def clients() -> None:
        idle = socket.create_connection((HOST, server.effective_port), timeout=10)
        idle.sendall(b"GET /fast HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\nok"):
            answer += idle.recv(4096)
        busy = http.client.HTTPConnection(HOST, server.effective_port, timeout=10)
        busy.request("GET", "/slow")
        running.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)
        idle.settimeout(2)
        try:
            seen["idle"] = idle.recv(4096)  # b"": closed by the server
        except TimeoutError:
            seen["idle"] = "still open"
        seen["running"] = not release.is_set()
        release.set()
        response = busy.getresponse()
        seen["busy"] = (response.status, response.getheader("Connection"), response.read())
        idle.close()
        busy.close()

    run_until_stopped(server, clients)
    assert seen == {"idle": b"", "running": True, "busy": (200, "close", b"ok")}


def test_a_request_sent_before_the_stop_is_answered_not_reset() -> None:
    """On the main loop (one thread), a keep-alive client's request that arrived while the
    loop ran another is read and answered by the stop, with ``Connection: close``; it was
    left unread and the connection reset."""
    running, release = threading.Event(), threading.Event()
    server = httpserver.create(held_app(running, release), host=HOST, port=free_port(), threads=1)
    seen: list[tuple[int, str | None, bytes]] = []

    def clients() -> None:
        waiting = http.client.HTTPConnection(HOST, server.effective_port, timeout=10)
        waiting.request("GET", "/fast")
        waiting.getresponse().read()  # a keep-alive connection, between requests
        busy = http.client.HTTPConnection(HOST, server.effective_port, timeout=10)
        busy.request("GET", "/slow")
        running.wait(10)
        waiting.request("GET", "/fast")  # unread: the loop is running /slow
        wait_for(lambda: unread_requests(server) == 1, what="the request at the server")
        os.kill(os.getpid(), signal.SIGTERM)
        # Delivered, it is handled on the main thread as /slow wakes there, still running.
        wait_for(lambda: signal.SIGTERM not in signal.sigpending(), what="SIGTERM delivered")
        release.set()
        for connection in (busy, waiting):
            response = connection.getresponse()
            seen.append((response.status, response.getheader("Connection"), response.read()))
            connection.close()

    run_until_stopped(server, clients)
    assert seen == [(200, "close", b"ok"), (200, "close", b"ok")]


# -- worker threads: the log tells of requests that waited for one -------------------------


def test_keep_alive_clients_as_many_as_worker_threads_log_no_queue(
    serve: Callable[..., int], caplog: pytest.LogCaptureFixture
) -> None:
    """Each client's next request arrives before its worker is back waiting; waitress
    warned "Task queue depth is 1" for about one request in seven of the bench."""
    port = serve(4)

    def client() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            for _ in range(300):
                connection.request("GET", "/small")
                connection.getresponse().read()
        finally:
            connection.close()

    with caplog.at_level(logging.INFO, logger="waitress"):
        clients = [threading.Thread(target=client) for _ in range(4)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(60)

    assert [
        record.getMessage() for record in caplog.records if record.name == "waitress.queue"
    ] == []


class SleepingTask:
    """A waitress task that holds its worker thread for ``seconds``."""

    def __init__(self, seconds: float, done: list[str], name: str) -> None:
        self.seconds = seconds
        self.done = done
        self.name = name
        self.started = threading.Event()

    def service(self) -> None:
        self.started.set()
        time.sleep(self.seconds)
        self.done.append(self.name)

    def cancel(self) -> None:
        self.done.append(f"{self.name} cancelled")


def test_a_request_that_waited_long_for_a_worker_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = httpserver.WaitWatchingDispatcher(long_wait=0.2)
    dispatcher.set_thread_count(1)
    done: list[str] = []
    try:
        with caplog.at_level(logging.WARNING, logger="waitress.queue"):
            dispatcher.add_task(SleepingTask(0.4, done, "first"))
            dispatcher.add_task(SleepingTask(0, done, "second"))  # waits for the first
            deadline = time.monotonic() + 10
            while len(done) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        dispatcher.shutdown()
    assert done == ["first", "second"]
    # (Servers of earlier tests may still log, as "waitress": only the queue's lines count.)
    [line] = [record.getMessage() for record in caplog.records if record.name == "waitress.queue"]
    assert line.startswith("1 request waited 0.2 s or more for a free worker thread")


def test_long_waits_are_logged_once_an_interval_with_their_count() -> None:
    clock = [100.0]
    dispatcher = httpserver.WaitWatchingDispatcher(
        long_wait=1.0, interval=60.0, monotonic=lambda: clock[0]
    )
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    httpserver.queue_log.addHandler(handler)
    try:
        dispatcher.taken(queued_at=99.5)  # half a second: not long
        dispatcher.taken(queued_at=98.0)  # 2 s: logged
        clock[0] = 130.0
        dispatcher.taken(queued_at=127.0)  # 3 s, within the minute: counted for later
        dispatcher.taken(queued_at=125.0)  # 5 s
        clock[0] = 161.0
        dispatcher.taken(queued_at=159.5)  # 1.5 s, a minute after the first line: logged
    finally:
        httpserver.queue_log.removeHandler(handler)
    assert [line.split(":")[0] for line in logged] == [
        "1 request waited 1 s or more for a free worker thread (the longest 2.0 s)",
        "3 requests waited 1 s or more for a free worker thread (the longest 5.0 s)",
    ]


def test_tasks_still_queued_at_shutdown_are_cancelled() -> None:
    dispatcher = httpserver.WaitWatchingDispatcher()
    dispatcher.set_thread_count(1)
    done: list[str] = []
    running = SleepingTask(0.3, done, "running")
    dispatcher.add_task(running)
    assert running.started.wait(10)  # the worker has taken it
    dispatcher.add_task(SleepingTask(0, done, "queued"))
    dispatcher.shutdown(cancel_pending=True, timeout=5)
    assert done == ["running", "queued cancelled"]


# -- a small response leaves in one write -------------------------------------------------


@pytest.mark.parametrize("threads", [1, 4], ids=["inline", "worker"])
@pytest.mark.parametrize(
    ("path", "writes"),
    [
        ("/small", 1),  # header and 2 KB body together
        ("/stream", 40),  # the header with the first 64 KB chunk, then the 39 others
        ("/big", 2),  # 5 MB: not copied behind the header
    ],
)
def test_a_small_response_is_one_write_with_its_header(
    serve: Callable[..., int], monkeypatch: pytest.MonkeyPatch, threads: int, path: str, writes: int
) -> None:
    """waitress wrote the header and the body apart: two sends, two TCP segments."""
    written: list[bytes] = []
    write_soon = HTTPChannel.write_soon

    def record(channel: HTTPChannel, data: bytes) -> int:
        if data:
            written.append(bytes(data[:12]))
        return write_soon(channel, data)

    monkeypatch.setattr(HTTPChannel, "write_soon", record)
    port = serve(threads)
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()

    assert response.status == 200 and len(body) == int(response.headers["Content-Length"])
    assert len(written) == writes
    assert written[0].startswith(b"HTTP/1.1 200")


HOLD = 0.1  # seconds the held request runs on once the test lets it go


@pytest.mark.parametrize("threads", [1, 2])
def test_a_request_queued_behind_a_slow_one_logs_its_wait(
    serve: Callable[..., int], settings: Settings, threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The slow-request log counts the wait in the queue: with one thread, behind the
    request the loop is running; with two, for the worker the slow one does not hold.

    The held request waits until the test lets it go: once the other request is sent (one
    thread), or answered (two). Timed by sleeps instead, a loaded machine ran the requests
    in either order and queued even the first one for 28 ms."""
    app = create_app(replace(settings, log=LogSettings(slow_request_ms=30)))
    holding, release = threading.Event(), threading.Event()
    released: list[bool] = []  # False: the wait timed out, the other was not answered meanwhile

    def hold() -> None:
        if request.args.get("held"):
            holding.set()
            released.append(release.wait(10))
            time.sleep(HOLD)

    app.before_request(hold)
    port = serve(threads, app=app)
    caplog.set_level(logging.WARNING, logger="proware.slow")
    statuses: dict[str, int] = {}

    def get(name: str) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        connection.request("GET", f"/healthz?{name}=1")
        if name == "waiting":
            release.set()  # sent: from now on it waits for the held one's HOLD at least
        statuses[name] = connection.getresponse().status
        connection.close()

    try:
        held = threading.Thread(target=get, args=("held",))
        held.start()
        assert holding.wait(10)
        get("waiting" if threads == 1 else "answered")
        release.set()
        held.join(30)
    finally:
        app.extensions["proware.backend"].close()

    lines = [LINE.search(r.getMessage()) for r in caplog.records if r.name == "proware.slow"]
    slow = {line["path"].partition("?")[2].partition("=")[0]: line for line in lines if line}
    assert released == [True] and "held" in slow
    if threads == 1:
        assert statuses == {"waiting": 200, "held": 200}
        assert float(slow["waiting"]["queued"]) >= HOLD * 1000
    else:
        # Answered while the other held its worker: it had one of its own.
        assert statuses == {"answered": 200, "held": 200}


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's receive timestamps")
@pytest.mark.parametrize("threads", [1, 4])
def test_packets_are_stamped_from_the_listening_sockets_start(threads: int) -> None:
    """Not from the first accepted connection's: stamping switched on a moment after that,
    and a request sent meanwhile lost its arrival time (the test above, 2 runs in 25)."""
    server = httpserver.create(_app, host=HOST, port=free_port(), threads=threads)
    try:
        assert server.socket.getsockopt(socket.SOL_SOCKET, httpserver.SO_TIMESTAMPNS) == 1
    finally:
        server.close()


def test_a_wait_counts_from_the_packets_arrival_else_from_being_queued() -> None:
    class Channel:
        arrived_at: float | None = None

    stamped, unstamped, ahead = Channel(), Channel(), Channel()
    stamped.arrived_at = time.perf_counter() - 0.5
    ahead.arrived_at = time.perf_counter() + 10  # a realtime clock stepped back meanwhile
    before = time.perf_counter()
    for channel in (stamped, unstamped, ahead):
        httpserver._note_queued(channel)
    after = time.perf_counter()

    assert stamped.queued_at == stamped.arrived_at  # type: ignore[attr-defined]
    assert before <= unstamped.queued_at <= after  # type: ignore[attr-defined]
    assert before <= ahead.queued_at <= after  # type: ignore[attr-defined]


def test_on_the_main_loop_the_request_that_arrived_first_runs_first() -> None:
    """Not the order the poll reported the sockets in: one connection would come last in
    every batch. A request its task queues (pipelined) waits for the next turn."""
    ran: list[str] = []
    dispatcher = httpserver.InlineDispatcher()

    class Channel:
        def __init__(self, name: str, arrived: float, then: Channel | None = None) -> None:
            self.name, self.arrived_at, self.then = name, arrived, then

        def service(self) -> None:
            ran.append(self.name)
            if self.then is not None:
                dispatcher.add_task(self.then)

    now = time.perf_counter()
    pipelined = Channel("pipelined", now - 0.010)
    for name, age, then in (
        ("polled first", 0.001, None),
        ("arrived first", 0.003, pipelined),
        ("second", 0.002, None),
    ):
        dispatcher.add_task(Channel(name, now - age, then))

    dispatcher.run_pending()
    assert ran == ["arrived first", "second", "polled first"]
    dispatcher.run_pending()
    dispatcher.run_pending()  # nothing left
    assert ran == ["arrived first", "second", "polled first", "pipelined"]


# -- waitress's own refusals under the SCIM prefix are SCIM errors ----------------------------


def _refused(port: int, head: bytes) -> tuple[int, dict[str, str], dict]:
    """Send ``head`` on a connection of its own: the status, headers (lower-case names) and
    the JSON body of the answer."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(head)
        response = http.client.HTTPResponse(sock)
        response.begin()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, json.loads(response.read())


@pytest.mark.parametrize("threads", [1, 4])
def test_waitress_refusals_under_the_scim_prefix_are_scim_errors(serve, threads: int) -> None:
    """Over the limit (413) or a malformed chunk (400): both channel classes answer SCIM."""
    scim_errors = httpserver.ScimErrors("/scim/v2", 2048)
    port = serve(threads, scim_errors=scim_errors, max_request_body_size=2049)

    too_large = _refused(
        port, b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nContent-Length: 2049\r\n\r\n"
    )
    bad_chunk = _refused(
        port,
        b"POST /scim/v2/Groups/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    )

    status, headers, body = too_large
    assert (status, headers["content-type"]) == (413, "application/scim+json")
    assert body == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "status": "413",
        "detail": "request body too large: the limit is 2048 bytes ([server] max_body_bytes)",
    }
    status, headers, body = bad_chunk
    assert (status, body["status"]) == (400, "400")
    assert headers["content-type"] == "application/scim+json"
    assert body["detail"] == "Bad Request: Invalid chunk size"


HEADER_LIMIT = 4096
LONG_URL = b"GET /scim/v2/Users?filter=" + b"a" * 2 * HEADER_LIMIT + b" HTTP/1.1\r\nHost: x\r\n\r\n"
LONG_HEADER = b"GET /scim/v2/Groups HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 2 * HEADER_LIMIT


@pytest.mark.parametrize("app_answers", [False, True], ids=["server", "app"])
@pytest.mark.parametrize(("head", "path"), [(LONG_URL, "/Users"), (LONG_HEADER, "/Groups")])
def test_headers_too_large_under_the_scim_prefix_are_a_scim_error(
    serve, app, token: str, events: list[dict], app_answers: bool, head: bytes, path: str
) -> None:
    """waitress answers a header section over its limit as a request for "/", so the 431 was
    its text/plain page even under the SCIM prefix; the path as sent decides now, and the app
    records the refusal under that path."""
    scim_errors = httpserver.ScimErrors("/scim/v2", 2048, app_answers=app_answers)
    port = serve(1, app, scim_errors=scim_errors, max_request_header_size=HEADER_LIMIT)

    status, headers, body = _refused(port, head)

    assert (status, headers["content-type"], body["status"]) == (
        431,
        "application/scim+json",
        "431",
    )
    assert body["detail"] == (
        f"request line and headers too large (exceeds max_header of {HEADER_LIMIT} bytes); "
        "send a long filter in the body of a POST to /.search instead (RFC 7644 §3.4.3)"
    )
    if app_answers:
        [event] = events
        assert (event["path"], event["status"]) == ("/scim/v2" + path, 431)


def test_headers_too_large_elsewhere_stay_waitress_own_page(serve) -> None:
    port = serve(
        1, scim_errors=httpserver.ScimErrors("/scim/v2", 2048), max_request_header_size=HEADER_LIMIT
    )

    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"GET /admin?" + b"a" * 2 * HEADER_LIMIT + b" HTTP/1.1\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()

    assert response.status == 431
    assert response.getheader("Content-Type").startswith("text/plain")


@pytest.mark.parametrize("threads", [1, 4])
@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 20000000\r\n\r\n" + b" " * 20_000_000,
        b"Transfer-Encoding: chunked\r\n\r\n" + (b"10000\r\n" + b" " * 0x10000 + b"\r\n") * 300,
    ],
    ids=["content-length", "chunked"],
)
def test_a_refused_body_sent_whole_still_gets_its_answer(serve, threads: int, framing) -> None:
    """A proxy (nginx) or client that sends the whole body before it reads gets the 413.

    Closed with the body unread in its receive buffer, the socket sent a reset, and a client
    still sending got ConnectionResetError instead of the answer (nginx answered 502 for
    about half of the refusals). The server now stops writing, reads and drops what is still
    coming, and closes once the client does (bodies larger than the sockets' buffers).
    """
    scim_errors = httpserver.ScimErrors("/scim/v2", 2048)
    port = serve(threads, scim_errors=scim_errors, max_request_body_size=2049)
    head = b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\n"

    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(head + framing)
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = json.loads(response.read())

    assert (response.status, body["status"]) == (413, "413")
    assert response.getheader("Connection") == "close"


def test_a_refused_connection_lingers_only_so_long(serve, monkeypatch) -> None:
    """A client that goes on sending after the answer is cut off after LINGER_SECONDS."""
    monkeypatch.setattr(httpserver, "LINGER_SECONDS", 0.3)
    port = serve(1, max_request_body_size=2049)
    piece = b" " * 65536

    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while time.monotonic() - started < 5:
                sock.sendall(piece)
                time.sleep(0.01)

    assert time.monotonic() - started < 2


# -- ... and recorded as the app records its own refusals -------------------------------------

LIMIT = 2048
TOO_LARGE = f"request body too large: the limit is {LIMIT} bytes ([server] max_body_bytes)"


def _too_large(authorization: str | None) -> bytes:
    lines = ["POST /scim/v2/Users HTTP/1.1", "Host: x", f"Content-Length: {LIMIT + 1}"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _bad_chunk(authorization: str | None) -> bytes:
    lines = ["POST //scim/v2/Groups/1 HTTP/1.1", "Host: x", "Transfer-Encoding: chunked"]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\nzz\r\n").encode()


@pytest.fixture
def serve_app(serve, app) -> Callable[[int], int]:
    """Proware's app behind this module's server, answering waitress's refusals itself."""

    def start(threads: int) -> int:
        scim_errors = httpserver.ScimErrors("/scim/v2", LIMIT, app_answers=True)
        return serve(threads, app, scim_errors=scim_errors, max_request_body_size=LIMIT + 1)

    return start


def _connection(app) -> dict:
    """Each token's Connection status (None: requests without a valid token), by name."""
    return {status.name: status for status in app.extensions["proware.admin"].connection.tokens()}


@pytest.mark.parametrize("threads", [1, 4])
def test_a_refusal_of_the_server_is_recorded_under_the_token_it_presented(
    serve_app, app, token: str, events: list[dict], threads: int
) -> None:
    """As the app records a refusal of its own: in the activity log, the access log and the
    token's Connection status, with the path, status and detail, never the secret."""
    port = serve_app(threads)

    status, headers, body = _refused(port, _too_large(f"Bearer {token}"))

    assert (status, body["status"], body["detail"]) == (413, "413", TOO_LARGE)
    assert headers["content-type"] == "application/scim+json"
    assert headers["connection"] == "close"
    [event] = events
    assert {key: event[key] for key in ("token", "method", "path", "status", "detail")} == {
        "token": "entra",
        "method": "POST",
        "path": "/scim/v2/Users",
        "status": 413,
        "detail": TOO_LARGE,
    }
    assert event["operation"] == "failed" and "reason" not in event
    assert event["request_id"] == headers["x-request-id"]
    [row] = _connection(app)["entra"].recent
    assert (row.method, row.target, row.status, row.result) == (
        "POST",
        "/scim/v2/Users",
        413,
        TOO_LARGE,
    )
    [info] = app.extensions["proware"].tokens.list()
    assert info.last_used is not None
    logged = (app.extensions["proware.admin"].audit.path).read_text(encoding="utf-8")
    assert json.loads(logged)["detail"] == TOO_LARGE and token not in logged


@pytest.mark.parametrize("threads", [1, 4])
def test_a_refusal_of_the_server_without_a_valid_token_is_recorded_as_unauthenticated_ones(
    serve_app, app, token: str, events: list[dict], threads: int
) -> None:
    """Under "no valid token", with the reason authentication gives (as for every request
    without a valid token): identical refusals counted on one row of the Connection status,
    and in the activity log the first in full, the repeat counted (admin.refusals)."""
    port = serve_app(threads)
    app.extensions["proware"].tokens.revoke("entra")

    answers = [
        _refused(port, _bad_chunk(None)),
        _refused(port, _bad_chunk(None)),
        _refused(port, _bad_chunk("Bearer pw_guess")),
        _refused(port, _too_large(f"Bearer {token}")),
    ]

    assert [(status, body["detail"]) for status, _, body in answers] == [
        (400, "Bad Request: Invalid chunk size"),
        (400, "Bad Request: Invalid chunk size"),
        (400, "Bad Request: Invalid chunk size"),
        (413, TOO_LARGE),
    ]
    assert all("www-authenticate" not in headers for _, headers, _ in answers)
    app.extensions["proware.admin"].refusals.close()  # the server stops: counts are written
    shown = [
        (e["operation"], e["reason"], e["token"], e.get("path"), e["status"], e.get("repeated"))
        for e in events
    ]
    assert shown == [
        ("refused", "no-header", None, "/scim/v2/Groups/1", 400, None),
        ("refused", "unknown-token", None, "/scim/v2/Groups/1", 400, None),
        ("refused", "revoked-token", "entra", "/scim/v2/Users", 413, None),
        ("refused", "no-header", None, None, 400, 1),
    ]
    statuses = _connection(app)
    refusals = [(r.reason, r.count, r.detail) for r in statuses[None].refusals]
    assert refusals == [
        ("unknown-token", 1, "Bad Request: Invalid chunk size"),
        ("no-header", 2, "Bad Request: Invalid chunk size"),
    ]
    assert [(r.reason, r.status) for r in statuses["entra"].refusals] == [("revoked-token", 413)]
    recorded = json.dumps(events) + (app.extensions["proware.admin"].audit.path).read_text()
    assert token not in recorded and "pw_guess" not in recorded


@pytest.mark.parametrize("threads", [1, 4])
def test_an_app_that_answers_a_refusal_otherwise_leaves_the_servers_answer(
    serve, threads: int, caplog: pytest.LogCaptureFixture
) -> None:
    """An app that does not know the mark (or fails) cannot turn a refusal into a 200."""
    scim_errors = httpserver.ScimErrors("/scim/v2", LIMIT, app_answers=True)
    port = serve(threads, scim_errors=scim_errors, max_request_body_size=LIMIT + 1)

    with caplog.at_level(logging.WARNING, logger="waitress"):
        status, headers, body = _refused(port, _too_large(None))

    assert (status, headers["content-type"], body["detail"]) == (
        413,
        "application/scim+json",
        TOO_LARGE,
    )
    assert "sent the server's answer" in caplog.text
