"""Running the WSGI app under a real server: waitress (default), gunicorn or granian.

The sidecar is one process holding one cache. waitress runs in this process.
gunicorn runs a single ``gthread`` worker with several threads, and the app is
built before the worker is forked (``preload_app``) so that a bad setting stops
start-up in the foreground instead of in a worker that gunicorn would keep
restarting. granian (an optional extra, ``_granian``) forks one worker from this
process too. On SIGTERM or SIGINT waitress and gunicorn stop taking connections at
once (those already waiting in the listener's backlog are still served, later ones
are refused), answer the requests under way, and exit within the graceful timeout.

waitress and gunicorn get the same limits (``_limits``): a bounded request, a time
to send it in, and a number of connections beyond which a new one is answered 429.
The server of ``_waitress`` and the worker of ``_gthread`` apply them; granian
applies only some of them, which ``_granian`` lists.
"""

from __future__ import annotations

import logging
import math
import resource
import signal
import socket
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from ._limits import MAX_HEADER_FIELD, MAX_HEADER_FIELDS, MAX_REQUEST_LINE

__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_THREADS",
    "SERVERS",
    "bind_address",
    "check_bindable",
    "serve",
]

logger = logging.getLogger(__name__)

SERVERS = ("gunicorn", "waitress", "granian")
#: The servers that apply every limit of ``_limits`` (granian applies some).
FULL_LIMITS = ("gunicorn", "waitress")
#: The server ``cachecore-server`` runs without ``--server``.
DEFAULT_SERVER = "waitress"
DEFAULT_THREADS = 8
DEFAULT_GRACEFUL_TIMEOUT = 5.0
#: Files the process needs open besides its client connections.
_SPARE_FILES = 64

WSGIApp = Callable[..., Any]


def bind_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def check_bindable(host: str, port: int) -> None:
    """Raise ``OSError`` now if ``host:port`` cannot be bound, with a clear reason.

    Each server would otherwise report it its own way (gunicorn after retrying
    for seconds). The probe socket is closed before the server binds.
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host.strip("[]"), port))


def ensure_file_limit(max_connections: int) -> None:
    """Raise the soft limit on open files so that ``max_connections`` fit, or warn.

    Without files to spare, accepting fails before the limit is reached.
    """
    needed = max_connections + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError):
        wanted = soft
    if wanted < needed:
        logger.warning(
            "at most %s files may be open, too few for %s connections "
            "(CACHECORE_MAX_CONNECTIONS) and %s more",
            wanted,
            max_connections,
            _SPARE_FILES,
        )


def _serve_gunicorn(
    app: WSGIApp,
    addresses: list[str],
    threads: int,
    graceful_timeout: float,
    request_timeout: float,
    max_connections: int,
) -> None:
    from gunicorn.app.base import BaseApplication

    from ._gthread import worker_class
    from ._logs import gunicorn_logger_class

    options: dict[str, Any] = {
        "bind": addresses,
        "workers": 1,
        "worker_class": worker_class(
            request_timeout, max_connections, graceful_timeout
        ),
        "threads": threads,
        # The worker answers 429 beyond max_connections itself: gunicorn must not
        # stop accepting first. It times out idle connections at request_timeout;
        # keepalive only needs to be on.
        "worker_connections": max_connections + threads,
        "keepalive": max(1, math.ceil(request_timeout)),
        "preload_app": True,
        "graceful_timeout": max(1, math.ceil(graceful_timeout)),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "cachecore-server",
        # gunicorn's lines go through the CLI's handler: one format, one filter.
        "logger_class": gunicorn_logger_class(),
        # The worker checks each head against these before a thread parses it;
        # gunicorn's parser checks them again.
        "limit_request_line": MAX_REQUEST_LINE,
        "limit_request_fields": MAX_HEADER_FIELDS,
        "limit_request_field_size": MAX_HEADER_FIELD,
    }

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn 24+ opens a control socket in $HOME by default; a sidecar
                # needs none, and several servers on one host would share its path.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> WSGIApp:
            return app

    _Gunicorn().run()


def _serve_waitress(
    app: WSGIApp,
    addresses: list[str],
    threads: int,
    request_timeout: float,
    max_connections: int,
    graceful_timeout: float,
) -> None:
    from ._waitress import GracefulLoop, create_server

    server = create_server(
        app,
        request_timeout=request_timeout,
        max_connections=max_connections,
        listen=" ".join(addresses),
        threads=threads,
        ident="cachecore",
        # waitress drops X-Forwarded-* and Forwarded before the app sees them
        # unless told not to; the app must see them to refuse such requests.
        clear_untrusted_proxy_headers=False,
    )
    loop = GracefulLoop(server)

    def stop(signum: int, frame: FrameType | None) -> None:
        logger.info(
            "%s: no new connections; stopping within %gs once the requests under "
            "way are answered",
            signal.Signals(signum).name,
            graceful_timeout,
        )
        loop.request_stop(graceful_timeout)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for address in addresses:
        logger.info("waitress serving on http://%s", address)
    loop.run()  # returns once a stop has drained the server, or its time is up
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=0.1)
    logger.info("stopped %s", "cleanly" if loop.drained else "with requests unfinished")


def serve(
    app: WSGIApp,
    *,
    host: str,
    ports: Sequence[int],
    server: str = DEFAULT_SERVER,
    threads: int = DEFAULT_THREADS,
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
    request_timeout: float,
    max_connections: int,
) -> None:
    """Serve ``app`` on each of ``ports`` of ``host`` until SIGTERM or SIGINT.

    Under waitress and gunicorn a connection has ``request_timeout`` seconds to
    send each request, and one beyond ``max_connections`` open is answered 429;
    granian applies these as ``_granian`` says.
    """
    addresses = [bind_address(host, port) for port in ports]
    if server not in SERVERS:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
    ensure_file_limit(max_connections)
    if server == "gunicorn":
        _serve_gunicorn(
            app, addresses, threads, graceful_timeout, request_timeout, max_connections
        )
    elif server == "granian":
        from ._granian import serve_granian

        if len(addresses) != 1:
            raise ValueError(f"granian serves one port, got {len(addresses)}")
        serve_granian(
            app,
            host,
            ports[0],
            threads,
            graceful_timeout,
            request_timeout,
            max_connections,
        )
    else:
        _serve_waitress(
            app,
            addresses,
            threads,
            request_timeout,
            max_connections,
            graceful_timeout,
        )
