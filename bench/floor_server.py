"""A constant-response WSGI app under one of the sidecar's servers: the floor.

    python bench/floor_server.py SERVER PORT THREADS [wsgi|rsgi]

The app answers every request with the same JSON body, of the size of a sidecar
hit, and does nothing else. It runs through ``cachecore_server._serve.serve``,
so each server has the same worker, limits and threads as under the sidecar.

granian serves the sidecar through an RSGI bridge (``cachecore_server._granian``)
that a plain WSGI app would only slow down, so its floors are granian's own: the
WSGI app on granian's WSGI interface on THREADS threads (``wsgi``), or the same
answer as an RSGI app on granian's event loop (``rsgi``).
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


async def rsgi_app(scope: Any, proto: Any) -> None:
    """The same answer, as an RSGI app."""
    proto.response_bytes(200, HEADERS, BODY)


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The same answer to every request."""
    start_response("200 OK", HEADERS)
    return [BODY]


if __name__ == "__main__":
    server, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if server == "granian":
        from cachecore_server._granian import serve_granian

        interface = sys.argv[4] if len(sys.argv) > 4 else "wsgi"
        serve_granian(
            rsgi_app if interface == "rsgi" else app,
            "127.0.0.1",
            port,
            threads,
            graceful_timeout=2,
            request_timeout=5,
            max_connections=256,
            interface=interface,
        )
        sys.exit(0)
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
