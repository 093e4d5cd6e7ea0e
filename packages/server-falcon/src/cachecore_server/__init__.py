"""cachecore-server: the cachecore sidecar, a Falcon WSGI app and its CLI.

``create_app(cache, config)`` builds the WSGI app that serves a ``SecretCache`` over
HTTP in two dialects (``/cache`` and ``/secretsmanager/get``); ``main`` is the
``cachecore-server`` command, which runs it under waitress (the default), gunicorn
or granian.

The names are loaded on first use, so that importing one module of the package
(as the Lambda extension does with its server before anything else) does not load
Falcon.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOMES = {
    "TOKEN_HEADER": "._app",
    "ApiError": "._app",
    "create_app": "._app",
    "parse_query": "._app",
    "secret_document": "._app",
    "main": "._cli",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value
