"""A lean HTTP/1.1 client for the benchmark, and the driver that runs concurrent clients.

With two cores shared by server and client, the client's own CPU cost matters. So each
client keeps one keep-alive socket, sends request bytes built before the clock starts, and
parses only what it needs (status, ``Location``, body). :func:`drive` runs one task per
client and reports wall time, the server's and the client's CPU time, and every request's
latency by operation, and the CPU time other processes took meanwhile (a busy neighbour
stretches latency tails).

Several clients run in processes of their own (forked), so that they are as concurrent as
Entra's connections are: client threads of one Python process take turns at the GIL and
send, in effect, one request at a time, which hid a server cost that only concurrent
connections cause.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import resource
import socket
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

HOST = "127.0.0.1"
SCIM_JSON = b"application/scim+json; charset=utf-8"  # Entra's request type (entra-provisioning A0)
_MAX_LINE = 65536
_KEPT_ERROR_SAMPLES = 5


class ProtocolError(Exception):
    """The server closed the connection or sent something that is not an HTTP response."""


class Deadline(Exception):
    """The run's time limit passed: the client stops before sending another request."""


def build_request(
    method: str, target: str, *, token: str | None, body: bytes | None = None, port: int = 0
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive), ready to send."""
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {HOST}:{port}",
    ]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    head = "\r\n".join(lines).encode("ascii")
    if body is None:
        return head + b"\r\n\r\n"
    return (
        head
        + b"\r\nContent-Type: "
        + SCIM_JSON
        + b"\r\nContent-Length: "
        + str(len(body)).encode("ascii")
        + b"\r\n\r\n"
        + body
    )


@dataclass(frozen=True)
class Reply:
    """What the benchmark reads from a response (status 0: no answer)."""

    status: int
    location: bytes
    body: bytes


class Connection:
    """One keep-alive connection; reconnects after the server closes it."""

    def __init__(self, port: int, timeout: float = 120.0) -> None:
        self.port = port
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._rfile: BinaryIO | None = None

    def exchange(self, raw: bytes) -> Reply:
        """Send one request and read its whole response.

        :raises OSError, ProtocolError: the connection is closed; the next call reconnects.
        """
        if self._sock is None:
            self._connect()
        assert self._sock is not None and self._rfile is not None
        try:
            self._sock.sendall(raw)
            reply, keep_alive = _read_response(self._rfile)
        except BaseException:
            self.close()
            raise
        if not keep_alive:
            self.close()
        return reply

    def close(self) -> None:
        if self._sock is not None:
            if self._rfile is not None:
                self._rfile.close()
            self._sock.close()
        self._sock = self._rfile = None

    def _connect(self) -> None:
        sock = socket.create_connection((HOST, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._rfile = sock, sock.makefile("rb")  # buffered: one read per line


def _read_response(rfile: BinaryIO) -> tuple[Reply, bool]:
    """Parse one response: status line, headers, then a Content-Length or chunked body."""
    line = rfile.readline(_MAX_LINE)
    if not line:
        raise ProtocolError("the server closed the connection")
    try:
        status = int(line.split(None, 2)[1])
    except (IndexError, ValueError):
        raise ProtocolError(f"not an HTTP status line: {line[:80]!r}") from None
    length: int | None = None
    chunked, keep_alive = False, True
    location = b""
    while True:
        header = rfile.readline(_MAX_LINE)
        if not header:
            raise ProtocolError("the server closed the connection inside the headers")
        if header in (b"\r\n", b"\n"):
            break
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
        elif name == b"location":
            location = value.strip()
    if chunked:
        body = _read_chunked(rfile)
    elif length is not None:
        body = rfile.read(length)
        if len(body) != length:
            raise ProtocolError("the server closed the connection inside the body")
    elif status in (204, 304) or status < 200:
        body = b""
    else:
        body, keep_alive = rfile.read(), False  # delimited by the connection's end
    return Reply(status, location, body), keep_alive


def _read_chunked(rfile: BinaryIO) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int(rfile.readline(_MAX_LINE).split(b";")[0], 16)
        if size == 0:
            while rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(parts)
        parts.append(rfile.read(size))
        rfile.readline(_MAX_LINE)


@dataclass
class Worker:
    """One client: its connection, and the latencies and errors of the current phase."""

    connection: Connection
    deadline: float | None = None  # time.monotonic() value after which no request is sent
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_samples: list[str] = field(default_factory=list)
    # What the server handed out in this phase, e.g. ("users", 7) -> the id of user 7: tasks
    # note it here (a client process cannot change the workload), the caller reads it after.
    found: dict[tuple[str, int], str] = field(default_factory=dict)

    def call(self, label: str, raw: bytes, expect: int) -> Reply:
        """Send ``raw``, time it under ``label``, and count an error unless ``expect`` comes."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Deadline
        started = time.perf_counter()
        try:
            reply = self.connection.exchange(raw)
        except (OSError, ProtocolError) as exc:
            self.fail(label, f"no answer: {exc}")
            return Reply(0, b"", b"")
        self.latencies[label].append(time.perf_counter() - started)
        if reply.status != expect:
            self.fail(label, f"status {reply.status} (expected {expect}): {reply.body[:300]!r}")
        return reply

    def fail(self, label: str, message: str) -> None:
        """Count a failed request or a wrong answer."""
        self.errors[label] += 1
        if len(self.error_samples) < _KEPT_ERROR_SAMPLES:
            self.error_samples.append(f"{label}: {message}")

    def reset(self) -> None:
        self.latencies = defaultdict(list)
        self.errors = defaultdict(int)
        self.error_samples = []
        self.found = {}


Task = Callable[[Worker], None]


@dataclass
class PhaseResult:
    """One phase: how many requests in how long, at what CPU cost, and each latency."""

    name: str
    requests: int
    seconds: float
    server_cpu: float
    client_cpu: float
    errors: int
    cut: bool
    latencies: dict[str, list[float]]
    error_samples: list[str]
    other_cpu: float = 0.0  # CPU seconds the rest of the machine used meanwhile
    compactions: int | None = None  # store compactions started meanwhile (None: not known)
    database_cpu: float | None = None  # PostgreSQL's CPU seconds meanwhile (None: no database)
    # CPU ms of bench.unloaded.machine_speed_ms's fixed loop just before the phase (None: not
    # measured): how fast the machine ran then.
    speed_loop_ms: float | None = None

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def client_cpu_seconds() -> float:
    """CPU time this (client) process and its ended client processes have used."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def machine_cpu_seconds() -> float:
    """CPU time every process on this machine has used since boot (Linux ``/proc/stat``)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()  # "cpu  user nice system idle iowait irq softirq steal"
    busy = sum(int(fields[k]) for k in (1, 2, 3, 6, 7, 8))
    return busy / os.sysconf("SC_CLK_TCK")


def drive(
    name: str,
    tasks: list[Task],
    workers: list[Worker],
    server_cpu: Callable[[], float],
    *,
    processes: bool | None = None,
    database_cpu: Callable[[], float] | None = None,
) -> PhaseResult:
    """Run ``tasks[i]`` on ``workers[i]`` and measure the phase.

    :param server_cpu: the server's CPU seconds so far (all its processes).
    :param processes: each task in a forked process of its own (default: when there are
        several), else in a thread of this one; a worker's results come back either way.
    :param database_cpu: the database server's CPU seconds so far, counted apart from the
        server's and from the rest of the machine's.

    A task that passes the workers' deadline stops early and marks the phase as cut; any
    other exception in a task is raised here.
    """
    pairs = list(zip(tasks, workers, strict=False))
    for worker in workers:
        worker.reset()
    if processes is None:
        processes = len(pairs) > 1
    database = database_cpu or (lambda: 0.0)
    server_before, client_before = server_cpu(), client_cpu_seconds()
    machine_before, database_before = machine_cpu_seconds(), database()
    started = time.perf_counter()
    outcomes = _in_processes(pairs) if processes else _in_threads(pairs)
    seconds = time.perf_counter() - started
    server_used, client_used = server_cpu() - server_before, client_cpu_seconds() - client_before
    machine_used = machine_cpu_seconds() - machine_before
    database_used = database() - database_before
    failures = [outcome for outcome in outcomes if outcome not in ("done", "cut")]
    if failures:
        raise RuntimeError(f"a client of phase {name!r} failed:\n{failures[0]}")
    cut = "cut" in outcomes
    latencies: dict[str, list[float]] = defaultdict(list)
    samples: list[str] = []
    errors = 0
    for worker in workers:
        for label, values in worker.latencies.items():
            latencies[label].extend(values)
        errors += sum(worker.errors.values())
        samples.extend(worker.error_samples)
    requests = sum(len(values) for values in latencies.values())
    return PhaseResult(
        name=name,
        requests=requests,
        seconds=seconds,
        server_cpu=server_used,
        client_cpu=client_used,
        errors=errors,
        cut=cut,
        latencies=dict(latencies),
        error_samples=samples[:_KEPT_ERROR_SAMPLES],
        other_cpu=max(0.0, machine_used - server_used - client_used - database_used),
        database_cpu=database_used if database_cpu else None,
    )


def _run(task: Task, worker: Worker) -> str:
    """Run one task: "done", "cut" (the deadline passed), or the traceback of a failure."""
    try:
        task(worker)
    except Deadline:
        return "cut"
    except BaseException:
        return traceback.format_exc()
    return "done"


def _in_threads(pairs: list[tuple[Task, Worker]]) -> list[str]:
    outcomes = ["done"] * len(pairs)

    def run(index: int, task: Task, worker: Worker) -> None:
        outcomes[index] = _run(task, worker)

    threads = [
        threading.Thread(target=run, args=(index, task, worker))
        for index, (task, worker) in enumerate(pairs)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def _in_processes(pairs: list[tuple[Task, Worker]]) -> list[str]:
    """Each task in a forked child; its worker's figures come back through a pipe.

    Fork, not spawn: the tasks are closures over request bytes built before the clock
    starts, and the children inherit them as they are.
    """
    context = multiprocessing.get_context("fork")
    children = []
    for task, worker in pairs:
        receiving, sending = context.Pipe(duplex=False)
        child = context.Process(target=_child, args=(task, worker, sending), daemon=True)
        child.start()
        sending.close()
        children.append((child, receiving, worker))
    outcomes = []
    for child, receiving, worker in children:
        try:
            outcome, latencies, errors, samples, found = receiving.recv()
        except EOFError:
            outcome, latencies, errors, samples, found = "the client process died", {}, {}, [], {}
        child.join()
        worker.latencies.update(latencies)
        worker.errors.update(errors)
        worker.error_samples.extend(samples)
        worker.found.update(found)
        outcomes.append(outcome)
    return outcomes


def _child(task: Task, worker: Worker, sending) -> None:  # type: ignore[no-untyped-def]
    outcome = _run(task, worker)
    worker.connection.close()
    sending.send(
        (outcome, dict(worker.latencies), dict(worker.errors), worker.error_samples, worker.found)
    )
    sending.close()


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` 0.99 for p99)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarize(values: list[float]) -> dict[str, float]:
    """Count, p50, p99 and max of latencies in seconds, as milliseconds."""
    return {
        "count": len(values),
        "p50_ms": percentile(values, 0.50) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": max(values) * 1000 if values else math.nan,
    }
