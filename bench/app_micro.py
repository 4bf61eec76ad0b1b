"""Micro-benchmark of the app without HTTP: Flask, SCIM service and journal store in-process.

    .venv/bin/python -m bench.app_micro [--users 10000] [--samples 1000]

Between ``bench.store_micro`` (the store alone) and ``bench.run`` (waitress, sockets, a
client process), this calls the WSGI app directly with Entra's requests, one at a time, on a
real data directory: so the cost of one request can be split into store, app and HTTP. It
creates ``--users`` users and one group holding up to 10,000 of them, then times matching
lookups, GETs by id, PATCHes in the new dialect, and member removes and adds in the big
group: p50/p99/max of each, and CPU per request (fsync's system time included).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from app import create_app
from bench import entra, unloaded
from bench.store_micro import percentiles
from server.config import Settings, StorageSettings

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


def timed(client: InProcessClient, requests: Sequence[Request]) -> str:
    """Send ``requests`` (method, target, body, expected status) in turn; their figures."""
    samples = []
    cpu = time.process_time()
    for method, target, body, expected in requests:
        started = time.perf_counter()
        status, payload = client.call(method, target, body)
        samples.append((time.perf_counter() - started) * 1000)
        if status != expected:
            answer = f"{status} (expected {expected}): {payload[:300]!r}"
            raise SystemExit(f"{method} {target}: {answer}")
    cpu_ms = (time.process_time() - cpu) / len(requests) * 1000
    return f"{percentiles(samples)}  CPU {cpu_ms:.3f} ms/request"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=1000, help="requests per operation")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="proware-app-") as directory:
        app = create_app(Settings(storage=StorageSettings(path=Path(directory) / "data")))
        services = app.extensions["proware"]
        secret, _ = services.tokens.create("bench")
        services.switch.set(True)
        client = InProcessClient(app.wsgi_app, secret)
        try:
            run(client, args.users, args.samples)
        finally:
            services.repository.close()


def run(client: InProcessClient, users: int, samples: int) -> None:
    started = time.perf_counter()
    ids = []
    for index in range(users):
        status, payload = client.call("POST", f"{PREFIX}/Users", entra.user_body(index))
        if status != 201:
            raise SystemExit(f"create {index}: {status} {payload[:300]!r}")
        ids.append(json.loads(payload)["id"])
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
    lookups = [("GET", entra.user_filter_target(entra.user_name(i)), None, 200) for i in picks]
    gets = [("GET", f"{PREFIX}/Users/{ids[i]}", None, 200) for i in picks]
    patches = [
        ("PATCH", f"{PREFIX}/Users/{ids[i]}", entra.new_dialect_patch_body(i), 200) for i in picks
    ]
    leaving = [members[index * 7919 % len(members)] for index in range(samples)]
    removes = [("PATCH", group, unloaded.remove_member_body(u), 204) for u in leaving]
    adds = [("PATCH", group, entra.add_members_body([u]), 204) for u in leaving]
    print(f"  matching lookup           {timed(client, lookups)}")
    print(f"  get user by id            {timed(client, gets)}")
    print(f"  patch user (new dialect)  {timed(client, patches)}")
    pairs = [request for pair in zip(removes, adds, strict=True) for request in pair]
    print(f"  remove and add 1 member   {timed(client, pairs)}")


if __name__ == "__main__":
    main()
