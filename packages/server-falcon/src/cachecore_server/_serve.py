"""Running the WSGI app under a real server: gunicorn (default) or waitress.

The sidecar is one process holding one cache, so gunicorn runs a single ``gthread``
worker with several threads, and the app is built before the worker is forked
(``preload_app``) so that a bad setting stops start-up in the foreground instead
of in a worker that gunicorn would keep restarting. waitress runs in this process;
SIGTERM and SIGINT stop it after the requests under way.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = [
    "DEFAULT_THREADS",
    "SERVERS",
    "bind_address",
    "check_bindable",
    "serve",
]

logger = logging.getLogger(__name__)

SERVERS = ("gunicorn", "waitress")
DEFAULT_THREADS = 8
DEFAULT_GRACEFUL_TIMEOUT = 5.0
MAX_REQUEST_BODY = 1024 * 1024

WSGIApp = Callable[..., Any]


def bind_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def check_bindable(host: str, port: int) -> None:
    """Raise ``OSError`` now if ``host:port`` cannot be bound, with a clear reason.

    Both servers would otherwise report it their own way (gunicorn after retrying
    for seconds). The probe socket is closed before the server binds.
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host.strip("[]"), port))


def _serve_gunicorn(
    app: WSGIApp, address: str, threads: int, graceful_timeout: float
) -> None:
    from gunicorn.app.base import BaseApplication

    options: dict[str, Any] = {
        "bind": [address],
        "workers": 1,
        "worker_class": "gthread",
        "threads": threads,
        "preload_app": True,
        "graceful_timeout": max(1, math.ceil(graceful_timeout)),
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "cachecore-server",
        # A secret id may be 2048 bytes, three times that once %-encoded: the
        # request line must fit it (gunicorn's default is 4094, its maximum 8190).
        "limit_request_line": 8190,
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


def _serve_waitress(app: WSGIApp, address: str, threads: int) -> None:
    import waitress

    server = waitress.create_server(
        app,
        listen=address,
        threads=threads,
        ident="cachecore",
        # waitress drops X-Forwarded-* and Forwarded before the app sees them
        # unless told not to; the app must see them to refuse such requests.
        clear_untrusted_proxy_headers=False,
        # POST /cache ignores its body; do not spool large ones to disk.
        max_request_body_size=MAX_REQUEST_BODY,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    logger.info("waitress serving on http://%s", address)
    server.run()  # returns once a signal has raised SystemExit inside it
    server.close()


def serve(
    app: WSGIApp,
    *,
    host: str,
    port: int,
    server: str = "gunicorn",
    threads: int = DEFAULT_THREADS,
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT,
) -> None:
    """Serve ``app`` on ``host:port`` until SIGTERM or SIGINT."""
    address = bind_address(host, port)
    if server == "gunicorn":
        _serve_gunicorn(app, address, threads, graceful_timeout)
    elif server == "waitress":
        _serve_waitress(app, address, threads)
    else:
        raise ValueError(f"server must be one of {', '.join(SERVERS)}, got {server!r}")
