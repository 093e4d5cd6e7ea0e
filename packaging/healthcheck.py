"""Exit 0 when the cachecore sidecar in this container answers ``/ping``, else 1.

The image's ``HEALTHCHECK`` and the exec probes of the ECS and Kubernetes examples
run this file with the image's Python, since the slim base has no curl. It asks
the first port of ``CACHECORE_PORT`` (default 8015) on ``CACHECORE_HOST``
(default 127.0.0.1; a wildcard address is asked on loopback). It uses
``http.client``, not ``urllib``, so that no ``HTTP_PROXY`` setting can send the
probe elsewhere: the sidecar refuses proxied requests.
"""

from __future__ import annotations

import http.client
import os
import signal
import sys
from collections.abc import Mapping
from types import FrameType

TIMEOUT_SECONDS = 2.0
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def ping_target(env: Mapping[str, str]) -> tuple[str, int]:
    """The host and port the sidecar answers on, by its own variables."""
    host = env.get("CACHECORE_HOST", "").strip() or "127.0.0.1"
    host = _WILDCARDS.get(host, host).strip("[]")
    port = env.get("CACHECORE_PORT", "").split(",")[0].strip() or "8015"
    return host, int(port)


class _TooSlow(Exception):
    """The whole check took longer than ``TIMEOUT_SECONDS``."""


def _too_slow(signum: int, frame: FrameType | None) -> None:
    raise _TooSlow


def main() -> int:
    """Ask ``/ping`` once; 0 if it answers ``healthy`` within the timeout in all.

    The socket timeout bounds each step; an alarm bounds the whole check, so that
    a server trickling its answer cannot hold the probe.
    """
    signal.signal(signal.SIGALRM, _too_slow)
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT_SECONDS)
    try:
        host, port = ping_target(os.environ)
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)
        try:
            connection.request("GET", "/ping")
            response = connection.getresponse()
            body = response.read(64)
        finally:
            connection.close()
    except _TooSlow:
        print(
            f"cachecore healthcheck: no whole answer within {TIMEOUT_SECONDS:g}s",
            file=sys.stderr,
        )
        return 1
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"cachecore healthcheck: no answer: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if response.status != 200 or body.strip() != b"healthy":
        print(
            f"cachecore healthcheck: /ping answered {response.status}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
