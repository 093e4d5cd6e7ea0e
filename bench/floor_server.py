"""A constant-response WSGI app under one of the sidecar's servers: the floor.

    python bench/floor_server.py SERVER PORT THREADS

The app answers every request with the same JSON body, of the size of a sidecar
hit, and does nothing else. It runs through ``cachecore_server._serve.serve``,
so each server has the same worker, limits and threads as under the sidecar.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

from cachecore_server._serve import serve

BODY = b'{"ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:x", ' + (
    b'"SecretString": "' + b"v" * 150 + b'"}'
)
HEADERS = [
    ("Content-Type", "application/json"),
    ("Content-Length", str(len(BODY))),
    ("Cache-Control", "no-store"),
]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The same answer to every request."""
    start_response("200 OK", HEADERS)
    return [BODY]


if __name__ == "__main__":
    server, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    serve(
        app,
        host="127.0.0.1",
        ports=[port],
        server=server,
        threads=threads,
        graceful_timeout=2,
        request_timeout=5,
        max_connections=256,
    )
