"""The ceiling: a trivial WSGI app on waitress, served like the real one.

``python -m bench.trivial --port P --threads 8`` answers every request with a small JSON body
after reading the request body, so the benchmark can measure what waitress and the client
alone cost on this machine and report Proware's throughput as a fraction of it.
``--flask`` serves the same answer from a one-route Flask app instead: what the framework
itself costs per request, before any SCIM work (a reference, not a target). ``--proware``
serves the trivial app through Proware's own server module (:func:`server.httpserver.serve`,
which with one thread runs each request on waitress's main loop): what the service's HTTP
layer alone allows, the other reference the service is shown against.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterable

import waitress

from server import httpserver

_BODY = b'{"schemas":["urn:ietf:params:scim:api:messages:2.0:ListResponse"],"totalResults":0}'


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    """Read the body (as a real app must), answer 200 with a fixed JSON document."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response(
        "200 OK",
        [("Content-Type", "application/scim+json"), ("Content-Length", str(len(_BODY)))],
    )
    return [_BODY]


def flask_app() -> Callable[..., Iterable[bytes]]:
    """The same answer from a minimal Flask app: one route for every path and method."""
    from flask import Flask, Response, request

    application = Flask("bench.trivial")

    @application.route("/", defaults={"path": ""}, methods=["GET", "POST", "PATCH"])
    @application.route("/<path:path>", methods=["GET", "POST", "PATCH"])
    def answer(path: str) -> Response:
        request.get_data()
        return Response(_BODY, mimetype="application/scim+json")

    return application


def spawn(
    port: int, threads: int, *, flask: bool = False, proware: bool = False
) -> subprocess.Popen:
    """Start this module as a server process on 127.0.0.1:``port``."""
    command = [
        sys.executable,
        "-m",
        "bench.trivial",
        "--port",
        str(port),
        "--threads",
        str(threads),
    ]
    return subprocess.Popen(
        command + (["--flask"] if flask else []) + (["--proware"] if proware else []),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--flask", action="store_true", help="serve a one-route Flask app")
    parser.add_argument(
        "--proware", action="store_true", help="serve with server.httpserver, not stock waitress"
    )
    args = parser.parse_args(argv)
    served = flask_app() if args.flask else app
    options = {"host": "127.0.0.1", "port": args.port, "threads": args.threads, "ident": "trivial"}
    if args.proware:
        httpserver.serve(served, **options)
    else:
        waitress.serve(served, **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
