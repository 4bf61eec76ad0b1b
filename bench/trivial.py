"""The ceiling: a trivial WSGI app on waitress, served like the real one.

``python -m bench.trivial --port P --threads 8`` answers every request with a small JSON body
after reading the request body, so the benchmark can measure what waitress and the client
alone cost on this machine and report Proware's throughput as a fraction of it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Iterable

import waitress

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


def spawn(port: int, threads: int) -> subprocess.Popen:
    """Start this module as a server process on 127.0.0.1:``port``."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.trivial", "--port", str(port), "--threads", str(threads)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    waitress.serve(app, host="127.0.0.1", port=args.port, threads=args.threads, ident="trivial")
    return 0


if __name__ == "__main__":
    sys.exit(main())
