"""cachecore-server: the cachecore sidecar, a Falcon WSGI app and its CLI.

``create_app(cache, config)`` builds the WSGI app that serves a ``SecretCache`` over
HTTP in two dialects (``/cache`` and ``/secretsmanager/get``); ``main`` is the
``cachecore-server`` command, which runs it under gunicorn or waitress.
"""

from ._app import TOKEN_HEADER, ApiError, create_app, parse_query, secret_document
from ._cli import main

__all__ = [
    "TOKEN_HEADER",
    "ApiError",
    "create_app",
    "main",
    "parse_query",
    "secret_document",
]
