"""granian, a server written in Rust, running the sidecar's WSGI app.

granian is an optional extra (``cachecore-server[granian]``): its wheel holds a
compiled Rust library that the default install should not need. As under gunicorn,
the app is built in the main process, so a bad setting stops start-up in the
foreground, and one worker process is forked from it (one process, one cache);
the worker runs the app on ``threads`` blocking threads. The worker is forked, not
spawned, because the app holds a cache and clients that cannot be pickled.

What granian applies of the sidecar's limits, and what it does not:

- ``CACHECORE_REQUEST_TIMEOUT`` becomes granian's time to read a request head;
  a connection that has not sent one by then is closed, without the 408 answer
  of the other servers. An idle kept-alive connection is closed after as long.
- ``CACHECORE_SHUTDOWN_TIMEOUT`` bounds the stop: on SIGTERM or SIGINT the main
  process closes the listener and signals the worker to stop, and kills it if it
  has not exited once the time is up. That the worker finishes the requests under
  way first is granian's behaviour, not tested here as it is for the others.
- ``CACHECORE_MAX_CONNECTIONS`` bounds the requests under way at once (granian's
  backpressure) and the listener's backlog, not the connections open: a
  connection beyond it waits instead of being answered 429.
- The answers of ``_limits`` are not given: granian (hyper) answers a request
  line or head over its buffer, or a bad request, in its own way (often by
  closing the connection), and reads bodies up to its own buffer size, not 413
  at ``MAX_REQUEST_BODY``. The app's own answers (400, 401, 403, 404, 405, ...)
  are the same as under the other servers.
- One port only: granian binds one address.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
from collections.abc import Callable
from typing import Any

__all__ = ["available", "serve_granian"]

logger = logging.getLogger(__name__)

#: granian's lines go to the root logger, whose handler the CLI has set up.
_LOG_CONFIG: dict[str, Any] = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True},
        "granian.access": {"handlers": [], "propagate": False},
    },
}


def available() -> bool:
    """Whether granian can be imported (the ``granian`` extra is installed)."""
    try:
        import granian  # noqa: F401
    except ImportError:
        return False
    return True


def serve_granian(
    app: Callable[..., Any],
    host: str,
    port: int,
    threads: int,
    graceful_timeout: float,
    request_timeout: float,
    max_connections: int,
) -> None:
    """Serve ``app`` under granian on ``host:port`` until SIGTERM or SIGINT."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    # The worker must inherit the app built here; spawning would pickle it.
    multiprocessing.set_start_method("fork", force=True)
    server = Granian(
        "cachecore_server:app",  # a name for the process title; never imported
        address=host.strip("[]"),
        port=port,
        interface=Interfaces.WSGI,
        workers=1,
        blocking_threads=threads,
        runtime_threads=1,
        http=HTTPModes.http1,
        websockets=False,
        backlog=max_connections,
        backpressure=max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(1, round(request_timeout * 1000)),
            keep_alive=True,
        ),
        log_dictconfig=_LOG_CONFIG,
        log_level=LogLevels.info,
        workers_kill_timeout=max(1, math.ceil(graceful_timeout)),
    )
    logger.info("granian serving on http://%s:%s", host, port)
    server.serve(target_loader=lambda *args: app, wrap_loader=False)
