"""Micro-benchmark of the app without HTTP: Flask, SCIM service and journal store in-process.

    .venv/bin/python -m bench.app_micro [--users 10000] [--samples 1000] [--profile]
                                        [--backend postgresql]
    .venv/bin/python -m bench.app_micro --filters [--filter-samples 10]
    .venv/bin/python -m bench.app_micro --compare REV [--rounds 5]

Between ``bench.store_micro`` (the store alone) and ``bench.run`` (waitress, sockets, a
client process), this calls the WSGI app directly with Entra's requests, one at a time, on a
real data directory: so the cost of one request can be split into store, app and HTTP. It
creates ``--users`` users and one group holding up to 10,000 of them, then times matching
lookups, GETs by id, PATCHes in the new dialect, and member removes and adds in the big
group, a page of a plain listing and creates: p50/p99/max of each, CPU per request (fsync's
system time included), and the garbage collector's pauses meanwhile. ``--profile`` adds, per
request kind, where the CPU goes (:mod:`bench.cpu_split`): Flask/werkzeug, auth, marshmallow,
the service, projection, JSON, the store, the audit log.

``--filters`` times searches instead (:data:`FILTERS`): or-ed comparisons, a value path and
a sub-attribute, each once as the store can answer it itself and once with a term it cannot
(so the SCIM matcher tests every user), beside Entra's matching lookup. ``--compare REV``
times the same searches on revision ``REV`` and on this tree, in two processes taking turns
(:mod:`bench.micro_compare`).
"""

from __future__ import annotations

import argparse
import functools
import gc
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import quote_plus

from app import create_app
from bench import cpu_split, entra, unloaded
from bench.store_micro import percentiles

try:
    from server.config import Settings, StorageSettings
except ImportError:  # a tree from before the layout change (bench.compare runs old trees)
    from scim.config import Settings, StorageSettings  # type: ignore[no-redef]

PREFIX = entra.PREFIX
Request = tuple[str, str, dict | None, int]  # method, target, body, expected status


class InProcessClient:
    """Requests straight into ``app.wsgi_app``, with a bearer token."""

    def __init__(self, app: Callable[..., Iterable[bytes]], token: str) -> None:
        self.app = app
        self.authorization = f"Bearer {token}"

    def call(self, method: str, target: str, body: dict | None = None) -> tuple[int, bytes]:
        """One request; returns its status code and body."""
        path, _, query = target.partition("?")
        data = json.dumps(body).encode() if body is not None else b""
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8000",
            "HTTP_AUTHORIZATION": self.authorization,
            "CONTENT_TYPE": "application/scim+json; charset=utf-8",
            "CONTENT_LENGTH": str(len(data)),
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(data),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        status: list[str] = []
        chunks = self.app(environ, lambda line, headers, exc_info=None: status.append(line))
        try:
            payload = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
        return int(status[0].split()[0]), payload


class Pauses:
    """The garbage collector's pauses while it is installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []  # (generation, seconds)
        self._started = 0.0

    def __enter__(self) -> Pauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))

    def summary(self) -> str:
        if not self.pauses:
            return "no GC"
        worst = max(self.pauses, key=lambda pause: pause[1])
        full = sum(1 for generation, _ in self.pauses if generation == 2)
        return (
            f"GC {len(self.pauses)}x ({full} full), longest {worst[1] * 1000:.2f} ms "
            f"(gen {worst[0]})"
        )


def send(client: InProcessClient, requests: Sequence[Request]) -> list[float]:
    """Send ``requests`` (method, target, body, expected status) in turn; their latencies (ms)."""
    samples = []
    for method, target, body, expected in requests:
        started = time.perf_counter()
        status, payload = client.call(method, target, body)
        samples.append((time.perf_counter() - started) * 1000)
        if status != expected:
            answer = f"{status} (expected {expected}): {payload[:300]!r}"
            raise SystemExit(f"{method} {target}: {answer}")
    return samples


def timed(client: InProcessClient, requests: Sequence[Request]) -> tuple[str, float]:
    """The figures of sending ``requests``, and the CPU per request in ms."""
    cpu = time.process_time()
    with Pauses() as pauses:
        samples = send(client, requests)
    cpu_ms = (time.process_time() - cpu) / len(requests) * 1000
    return f"{percentiles(samples)}  CPU {cpu_ms:.3f} ms/request  {pauses.summary()}", cpu_ms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1000, help="requests per operation")
    parser.add_argument(
        "--profile", action="store_true", help="also split each request kind's CPU by layer"
    )
    parser.add_argument(
        "--backend",
        choices=["tinydb", "postgresql"],
        default="tinydb",
        help="the store (postgresql: a throwaway server, as make bench starts; CPU is then "
        "profiled as process time, so waiting on the database does not count)",
    )
    parser.add_argument(
        "--filters", action="store_true", help="time searches (FILTERS) instead of Entra's cycle"
    )
    parser.add_argument(
        "--filter-samples",
        type=int,
        default=10,
        help="requests per search (--filters, --compare); the lookups take --samples",
    )
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="time the searches on revision REV and on this tree, taking turns",
    )
    parser.add_argument("--rounds", type=int, default=5, help="turns each side takes (--compare)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compare:
        # Imported here: a revision's tree runs this file as --worker, without this module.
        from bench import micro_compare

        micro_compare.compare(args.compare, args)
        return
    with serving(args.backend) as (client, timer):
        if args.worker:
            serve_rounds(client, args)
        elif args.filters:
            run_filters(client, args.users, args.samples, args.filter_samples)
        else:
            run(client, args.users, args.samples, profile=args.profile, timer=timer)


@contextmanager
def serving(backend: str) -> Iterator[tuple[InProcessClient, Callable[[], float] | None]]:
    """A fresh app on a temporary data directory (and on PostgreSQL a throwaway database),
    a client holding a token for it, and the timer to profile CPU with."""
    with tempfile.TemporaryDirectory(prefix="proware-app-") as directory, ExitStack() as stack:
        storage = StorageSettings(path=Path(directory) / "data")
        timer = None
        if backend == "postgresql":
            from bench.database import BenchDatabase  # needs the test helpers' server

            database = stack.enter_context(BenchDatabase())
            storage = StorageSettings(
                path=storage.path, backend="postgresql", dsn=database.create()
            )
            timer = time.process_time
        app = create_app(Settings(storage=storage))
        services = app.extensions["proware"]
        secret, _ = services.tokens.create("bench")
        services.switch.set(True)
        try:
            yield InProcessClient(app.wsgi_app, secret), timer
        finally:
            # A tree from before the PostgreSQL store has no backend, only its repository.
            backend_object = app.extensions.get("proware.backend", services.repository)
            backend_object.close()


def create_users(client: InProcessClient, users: int, *, emails: bool = False) -> list[str]:
    """Create Entra's users 0..users-1 (with a work email each if ``emails``); their ids."""
    ids = []
    for index in range(users):
        body = entra.user_body(index)
        if emails:
            body["emails"] = [{"value": body["userName"], "type": "work", "primary": True}]
        status, payload = client.call("POST", f"{PREFIX}/Users", body)
        if status != 201:
            raise SystemExit(f"create {index}: {status} {payload[:300]!r}")
        ids.append(json.loads(payload)["id"])
    return ids


def run(
    client: InProcessClient,
    users: int,
    samples: int,
    *,
    profile: bool = False,
    timer: Callable[[], float] | None = None,
) -> None:
    started = time.perf_counter()
    ids = create_users(client, users)
    _, payload = client.call("POST", f"{PREFIX}/Groups", entra.group_body(0))
    group = f"{PREFIX}/Groups/{json.loads(payload)['id']}"
    members = ids[: min(users, 10_000)]
    for start in range(0, len(members), 50):
        client.call("PATCH", group, entra.add_members_body(members[start : start + 50]))
    print(
        f"== {users:,} users, a group of {len(members):,} members "
        f"(filled in {time.perf_counter() - started:.1f} s)"
    )
    picks = [index * 7919 % users for index in range(samples)]
    leaving = [members[index * 7919 % len(members)] for index in range(samples)]
    pages = max(1, users // 100)
    kinds: list[tuple[str, list[Request]]] = [
        (
            "matching lookup",
            [("GET", entra.user_filter_target(entra.user_name(i)), None, 200) for i in picks],
        ),
        (
            "create user",
            [("POST", f"{PREFIX}/Users", entra.user_body(users + k), 201) for k in range(samples)],
        ),
        (
            "patch user (new dialect)",
            [
                ("PATCH", f"{PREFIX}/Users/{ids[i]}", entra.new_dialect_patch_body(i), 200)
                for i in picks
            ],
        ),
        (
            "remove and add 1 member",
            [
                request
                for user in leaving
                for request in (
                    ("PATCH", group, unloaded.remove_member_body(user), 204),
                    ("PATCH", group, entra.add_members_body([user]), 204),
                )
            ],
        ),
        ("get user by id", [("GET", f"{PREFIX}/Users/{ids[i]}", None, 200) for i in picks]),
        (
            "list page (count=100)",
            [
                ("GET", f"{PREFIX}/Users?startIndex={(k % pages) * 100 + 1}&count=100", None, 200)
                for k in range(max(1, samples // 10))
            ],
        ),
    ]
    measured = []
    for label, requests in kinds:
        figures, cpu_ms = timed(client, requests)
        measured.append((label, requests, cpu_ms))
        print(f"  {label:<26}{figures}")
    if not profile:
        return
    print("\n  where the CPU goes (cProfile, own time by layer; CPU/req measured unprofiled):")
    print(cpu_split.header())
    for label, requests, cpu_ms in measured:
        # Creates must not collide with the ones timed above: other userNames.
        if label == "create user":
            requests = [
                ("POST", f"{PREFIX}/Users", entra.user_body(users + samples + k), 201)
                for k in range(len(requests))
            ]
        seconds = cpu_split.profile(functools.partial(send, client, requests), timer)
        print(cpu_split.row(label, cpu_ms, seconds))


# -- searches ------------------------------------------------------------------------------

# A dateTime finer than the stored milliseconds: the store cannot compare it as text
# (scim.queries), so an or with this term leaves the whole filter to the SCIM matcher, which
# then tests every user, on either store. A client sending Python's isoformat() does this.
PYTHON_ONLY = 'meta.lastModified lt "2000-01-01T00:00:00.000001Z"'


def _titles(count: int) -> str:
    return " or ".join(f'title co "zz{k}"' for k in range(count))


# (label, filter): none matches a bench user, so the time is the search, not the page.
FILTERS: list[tuple[str, str]] = [
    ("8 x title co, or", _titles(8)),
    ("8 x title co, or; matcher", f"{_titles(7)} or {PYTHON_ONLY}"),
    ("32 x title co, or", _titles(32)),
    ("32 x title co, or; matcher", f"{_titles(31)} or {PYTHON_ONLY}"),
    ("emails[type and value ew]", 'emails[type eq "work" and value ew "@example.com"]'),
    (
        "emails[type and value ew]; matcher",
        f'emails[type eq "work" and value ew "@example.com"] or {PYTHON_ONLY}',
    ),
    ("name.familyName sw", 'name.familyName sw "A"'),
    ("name.familyName sw; matcher", f'name.familyName sw "A" or {PYTHON_ONLY}'),
]
LOOKUP = "matching lookup (userName eq)"


def filter_requests(users: int, samples: int, filter_samples: int) -> list[tuple[str, list]]:
    """Entra's matching lookup (``samples`` users, exact and indexed), then each of
    :data:`FILTERS` ``filter_samples`` times."""
    lookups = [
        ("GET", entra.user_filter_target(entra.user_name(index * 7919 % users)), None, 200)
        for index in range(samples)
    ]
    return [(LOOKUP, lookups)] + [
        (label, [("GET", f"{PREFIX}/Users?filter={quote_plus(text)}", None, 200)] * filter_samples)
        for label, text in FILTERS
    ]


def run_filters(client: InProcessClient, users: int, samples: int, filter_samples: int) -> None:
    started = time.perf_counter()
    create_users(client, users, emails=True)
    print(
        f"== {users:,} users with an email each (filled in {time.perf_counter() - started:.1f} s)"
    )
    for label, requests in filter_requests(users, samples, filter_samples):
        figures, _ = timed(client, requests)
        print(f"  {label:<36}{figures}")


def serve_rounds(client: InProcessClient, args: argparse.Namespace) -> None:
    """A side of ``--compare``: fill, then for each "round" line on stdin time every search
    and answer one line of JSON, {label: {"ms": [latency, ...], "cpu_s": CPU seconds}};
    protocol lines start with "@@"."""
    create_users(client, args.users, emails=True)
    cases = filter_requests(args.users, args.samples, args.filter_samples)
    print("@@ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        figures = {}
        for label, requests in cases:
            cpu = time.process_time()
            latencies = send(client, requests)
            figures[label] = {"ms": latencies, "cpu_s": time.process_time() - cpu}
        print("@@" + json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
