"""Where the client finds the sidecar and its token, and which reader to build.

Every setting follows the rule of the rest of cachecore: an argument, then the
environment variable named here, then the default. The token is found by the
server's own rules (``cachecore.resolve_token``): the first of
``cachecore.TOKEN_SOURCES`` that is set, a ``file://PATH`` read from that file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal
from urllib.parse import urlsplit

from cachecore import ENV_NAMES, ConfigError

__all__ = [
    "DEFAULT_PORT",
    "ENV_FALLBACK",
    "ENV_MODE",
    "ENV_PORT",
    "ENV_URL",
    "FALLBACK_CHOICES",
    "MODE_CHOICES",
    "resolve_base_url",
    "resolve_choice",
]

ENV_URL = "CACHECORE_URL"
ENV_PORT = ENV_NAMES["port"]
ENV_MODE = "CACHECORE_CLIENT_MODE"
ENV_FALLBACK = "CACHECORE_CLIENT_FALLBACK"
DEFAULT_PORT = 8015

Mode = Literal["sidecar", "in-process"]
Fallback = Literal["off", "in-process"]
MODE_CHOICES: tuple[Mode, ...] = ("sidecar", "in-process")
FALLBACK_CHOICES: tuple[Fallback, ...] = ("off", "in-process")


def _shown(raw: str) -> str:
    """``raw`` for a message: all up to its last ``@`` (a password) left out."""
    _, at, rest = raw.rpartition("@")
    return repr(f"...@{rest}" if at else raw)


def _check_url(label: str, raw: str) -> str:
    rule = (
        f"{label} must be an http:// or https:// URL of a host, with no query, "
        f"fragment or user name, got {_shown(raw)}"
    )
    try:
        parts = urlsplit(raw.strip())
        port = parts.port  # raises ValueError when it is not a port number
    except ValueError:
        raise ConfigError(rule) from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or "?" in raw  # an empty query or fragment ("http://h/?") splits as none
        or "#" in raw
        or "@" in parts.netloc
        or port == 0
    ):
        raise ConfigError(rule)
    return raw.strip().rstrip("/")


def _first_port(raw: str) -> int:
    first = raw.split(",")[0].strip()
    if not (first.isascii() and first.isdigit() and 1 <= int(first) <= 65535):
        raise ConfigError(
            f"{ENV_PORT} must be a port from 1 to 65535, or ports separated by "
            f"commas (8015,2773), got {raw!r}"
        )
    return int(first)


def resolve_base_url(base_url: str | None, environ: Mapping[str, str]) -> str:
    """The sidecar's URL: ``base_url``, else ``CACHECORE_URL``, else localhost.

    On localhost the port is the first of ``CACHECORE_PORT``, else 8015. A
    trailing slash is dropped; a path is kept as a prefix of every route.
    """
    if base_url is not None:
        return _check_url("base_url", base_url)
    raw = environ.get(ENV_URL, "").strip()
    if raw:
        return _check_url(ENV_URL, raw)
    ports = environ.get(ENV_PORT, "").strip()
    port = _first_port(ports) if ports else DEFAULT_PORT
    return f"http://localhost:{port}"


def resolve_choice(
    label: str, raw: str | None, choices: tuple[str, ...], default: str
) -> str:
    """One of ``choices`` (any case), ``default`` for ``None`` or an empty value."""
    if raw is None or not raw.strip():
        return default
    for choice in choices:
        if raw.strip().lower() == choice:
            return choice
    allowed = " or ".join(repr(c) for c in choices)
    raise ConfigError(f"{label} must be {allowed}, got {raw!r}")


def environment(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """``environ``, or the process's environment when it is ``None``."""
    return os.environ if environ is None else environ
