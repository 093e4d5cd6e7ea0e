"""The WSGI app of the extension's port while the cache is being built.

The port listens before botocore and Falcon are loaded, so that a function whose
own init reads a secret finds it open. Until ``open`` hands over the real app,
every request is answered 503 with ``Retry-After``, in the same shape as the real
app's errors: one plain line on ``/cache`` and ``/ping``, JSON elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Gate", "RETRY_AFTER_SECONDS"]

RETRY_AFTER_SECONDS = "1"
_MESSAGE = "cachecore is starting and cannot serve yet: retry after a moment"
_PLAIN_ROUTES = ("/cache", "/ping")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Gate:
    """Answers 503 until ``open(app)``; from then on, every request goes to ``app``."""

    def __init__(self) -> None:
        self._app: WSGIApp | None = None

    @property
    def ready(self) -> bool:
        """Whether the real app serves now."""
        return self._app is not None

    def open(self, app: WSGIApp) -> None:
        """Serve ``app`` from the next request on."""
        self._app = app

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """Serve one request: by the real app, or 503 while there is none."""
        app = self._app
        if app is not None:
            return app(environ, start_response)
        if environ.get("PATH_INFO", "") in _PLAIN_ROUTES:
            body = (_MESSAGE + "\n").encode()
            kind = "text/plain; charset=utf-8"
        else:
            body = json.dumps(
                {"__type": "ServiceUnavailableException", "message": _MESSAGE}
            ).encode()
            kind = "application/json"
        start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", kind),
                ("Content-Length", str(len(body))),
                ("Retry-After", RETRY_AFTER_SECONDS),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]
