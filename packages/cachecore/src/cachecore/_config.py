"""Settings of the cache and of the servers built on it, in one object.

Every setting is read with the same precedence: an explicit argument, then the
environment variable named here, then the documented default. A value that does not
fit raises ``ConfigError`` naming the variable and what it accepts; nothing is ever
clamped or silently replaced. The names of all environment variables live in this
module as constants, so there is one place to look them up.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from ._errors import ConfigError

__all__ = [
    "Config",
    "DEFAULT_HOST",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_PORT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_TTL",
    "DEFAULT_UPSTREAM_TIMEOUT",
    "ENV_AUTH",
    "ENV_HOST",
    "ENV_LOG_FORMAT",
    "ENV_MAX_CONNECTIONS",
    "ENV_MAX_ENTRIES",
    "ENV_METRICS_NAMES",
    "ENV_NAMES",
    "ENV_PARAMETER_TTL",
    "ENV_PORT",
    "ENV_REQUEST_TIMEOUT",
    "ENV_SHUTDOWN_TIMEOUT",
    "ENV_TOKEN",
    "ENV_TTL",
    "ENV_UPSTREAM_TIMEOUT",
    "TOKEN_SOURCES",
    "resolve_token",
]

ENV_TTL = "CACHECORE_TTL"
ENV_PARAMETER_TTL = "CACHECORE_PARAMETER_TTL"
ENV_MAX_ENTRIES = "CACHECORE_MAX_ENTRIES"
ENV_TOKEN = "CACHECORE_TOKEN"
ENV_AUTH = "CACHECORE_AUTH"
ENV_HOST = "CACHECORE_HOST"
ENV_PORT = "CACHECORE_PORT"
ENV_UPSTREAM_TIMEOUT = "CACHECORE_UPSTREAM_TIMEOUT"
ENV_TTL_JITTER = "CACHECORE_TTL_JITTER"
ENV_REFRESH_MIN_INTERVAL = "CACHECORE_REFRESH_MIN_INTERVAL"
ENV_MAX_STALE = "CACHECORE_MAX_STALE"
ENV_BACKOFF_BASE = "CACHECORE_BACKOFF_BASE_SECONDS"
ENV_BACKOFF_GROWTH = "CACHECORE_BACKOFF_GROWTH"
ENV_BACKOFF_MAX = "CACHECORE_BACKOFF_MAX_SECONDS"
ENV_REFRESH_AHEAD = "CACHECORE_REFRESH_AHEAD"
ENV_REQUEST_TIMEOUT = "CACHECORE_REQUEST_TIMEOUT"
ENV_MAX_CONNECTIONS = "CACHECORE_MAX_CONNECTIONS"
ENV_SHUTDOWN_TIMEOUT = "CACHECORE_SHUTDOWN_TIMEOUT"
ENV_LOG_FORMAT = "CACHECORE_LOG_FORMAT"
ENV_METRICS_NAMES = "CACHECORE_METRICS_NAMES"

#: Where the HTTP token comes from: the first of these that is set and not empty.
TOKEN_SOURCES = (
    ENV_TOKEN,
    "AWS_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)

DEFAULT_TTL = 300
DEFAULT_MAX_ENTRIES = 1000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8015
DEFAULT_UPSTREAM_TIMEOUT = 5.0
DEFAULT_TTL_JITTER = 0.1
DEFAULT_REFRESH_MIN_INTERVAL = 1.0
DEFAULT_MAX_STALE = 3600.0
DEFAULT_BACKOFF_BASE = 1.0
DEFAULT_BACKOFF_GROWTH = 2.0
DEFAULT_BACKOFF_MAX = 60.0
DEFAULT_REFRESH_AHEAD = 0.0
DEFAULT_REQUEST_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_SHUTDOWN_TIMEOUT = 5.0

MAX_TTL = 86400
MAX_ENTRIES_LIMIT = 10_000_000
MAX_UPSTREAM_TIMEOUT = 300.0
MAX_STALE_LIMIT = 604800.0
MAX_REFRESH_MIN_INTERVAL = 3600.0
MAX_BACKOFF = 86400.0
MAX_REQUEST_TIMEOUT = 300.0
MAX_SHUTDOWN_TIMEOUT = 300.0
MAX_CONNECTIONS_LIMIT = 65535
#: At most this many ports are served at once.
MAX_PORTS = 8

AuthMode = Literal["token", "none"]
_AUTH_MODES: tuple[AuthMode, ...] = ("token", "none")
LogFormat = Literal["text", "json"]
_LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
_FILE_PREFIX = "file://"


_ASCII_INTEGER = re.compile(r"[+-]?[0-9]+")
_ASCII_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _integer(label: str, raw: object, low: int, high: int) -> int:
    rule = f"{label} must be an integer from {low} to {high}, got {raw!r}"
    if isinstance(raw, bool):
        raise ConfigError(rule)
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        # ASCII digits only: int() would also take "1_000" and other scripts' digits.
        if not _ASCII_INTEGER.fullmatch(raw.strip()):
            raise ConfigError(rule)
        value = int(raw.strip(), 10)
    else:
        raise ConfigError(rule)
    if not low <= value <= high:
        raise ConfigError(rule)
    return value


def _number(
    label: str,
    raw: object,
    low: float,
    high: float,
    *,
    unit: str = "seconds",
    above_low: bool = False,
) -> float:
    what = f"a number of {unit}" if unit else "a number"
    bounds = (
        f"above {low:g} and at most {high:g}"
        if above_low
        else f"from {low:g} to {high:g}"
    )
    rule = f"{label} must be {what} {bounds}, got {raw!r}"
    if isinstance(raw, bool):
        raise ConfigError(rule)
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        if not _ASCII_NUMBER.fullmatch(raw.strip()):
            raise ConfigError(rule)
        value = float(raw.strip())
    else:
        raise ConfigError(rule)
    inside = low < value <= high if above_low else low <= value <= high
    if not (math.isfinite(value) and inside):
        raise ConfigError(rule)
    return value


def _seconds(label: str, raw: object, high: float) -> float:
    return _number(label, raw, 0, high, above_low=True)


def _ports(label: str, raw: object) -> tuple[int, ...]:
    """Ports as ``8015`` or ``8015,2773``: distinct, at most ``MAX_PORTS``."""
    rule = (
        f"{label} must be a port from 1 to 65535, or up to {MAX_PORTS} distinct "
        f"ports separated by commas (8015,2773), got {raw!r}"
    )
    if isinstance(raw, str):
        items: list[object] = list(raw.split(","))
    elif isinstance(raw, int) and not isinstance(raw, bool):
        items = [raw]
    elif isinstance(raw, tuple | list):
        items = list(raw)
    else:
        raise ConfigError(rule)
    try:
        ports = tuple(_integer(label, item, 1, 65535) for item in items)
    except ConfigError:
        raise ConfigError(rule) from None
    if not ports or len(ports) > MAX_PORTS or len(set(ports)) != len(ports):
        raise ConfigError(rule)
    return ports


def _optional_ttl(label: str, raw: object) -> int | None:
    return None if raw is None else _integer(label, raw, 0, MAX_TTL)


def _auth(label: str, raw: object) -> AuthMode:
    if isinstance(raw, str):
        for mode in _AUTH_MODES:
            if raw.strip().lower() == mode:
                return mode
    raise ConfigError(f"{label} must be 'token' or 'none', got {raw!r}")


def _log_format(label: str, raw: object) -> LogFormat:
    if isinstance(raw, str):
        for log_format in _LOG_FORMATS:
            if raw.strip().lower() == log_format:
                return log_format
    raise ConfigError(f"{label} must be 'text' or 'json', got {raw!r}")


def _boolean(label: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
    raise ConfigError(f"{label} must be true or false (or 1 or 0), got {raw!r}")


def _host(label: str, raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip() or any(c.isspace() for c in raw):
        raise ConfigError(
            f"{label} must be a host name or IP address without spaces, got {raw!r}"
        )
    return raw.strip()


def _optional_text(label: str, raw: object) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{label} must be a non-empty string, got {raw!r}")
    return raw.strip()


MAX_TOKEN_FILE = 64 * 1024


def _read_token_file(variable: str, path: str) -> str:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"{variable} names {path!r}, which is not a regular file")
        with open(path, "rb") as handle:
            data = handle.read(MAX_TOKEN_FILE + 1)
        if len(data) > MAX_TOKEN_FILE:
            raise ConfigError(
                f"{variable} names the token file {path!r}, which is over "
                f"{MAX_TOKEN_FILE} bytes"
            )
        token = data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(
            f"{variable} names the token file {path!r}, which cannot be read: {reason}"
        ) from None
    if not token:
        raise ConfigError(f"{variable} names the token file {path!r}, which is empty")
    return token


def resolve_token(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """Find the HTTP token: ``(token, name of the variable it came from)``.

    The first variable of ``TOKEN_SOURCES`` that is set and not empty wins; a value
    ``file://PATH`` is replaced by the contents of that file, stripped of white
    space. With no source the answer is ``(None, None)``.
    """
    for variable in TOKEN_SOURCES:
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        if raw.startswith(_FILE_PREFIX):
            return _read_token_file(variable, raw[len(_FILE_PREFIX) :]), variable
        return raw, variable
    return None, None


_PARSERS: dict[str, Callable[[str, object], Any]] = {
    "ttl": lambda label, raw: _integer(label, raw, 0, MAX_TTL),
    "parameter_ttl": _optional_ttl,
    "max_entries": lambda label, raw: _integer(label, raw, 1, MAX_ENTRIES_LIMIT),
    "auth": _auth,
    "host": _host,
    "port": lambda label, raw: _integer(label, raw, 1, 65535),
    "upstream_timeout": lambda label, raw: _seconds(label, raw, MAX_UPSTREAM_TIMEOUT),
    "region": _optional_text,
    "endpoint_url": _optional_text,
    "ttl_jitter": lambda label, raw: _number(label, raw, 0, 0.5, unit=""),
    "refresh_min_interval": lambda label, raw: _number(
        label, raw, 0, MAX_REFRESH_MIN_INTERVAL
    ),
    "max_stale": lambda label, raw: _number(label, raw, 0, MAX_STALE_LIMIT),
    "backoff_base_seconds": lambda label, raw: _seconds(label, raw, MAX_BACKOFF),
    "backoff_growth": lambda label, raw: _number(label, raw, 1, 10, unit=""),
    "backoff_max_seconds": lambda label, raw: _seconds(label, raw, MAX_BACKOFF),
    "refresh_ahead": lambda label, raw: _number(label, raw, 0, 0.9, unit=""),
    "request_timeout": lambda label, raw: _number(label, raw, 0.1, MAX_REQUEST_TIMEOUT),
    "max_connections": lambda label, raw: _integer(
        label, raw, 1, MAX_CONNECTIONS_LIMIT
    ),
    "shutdown_timeout": lambda label, raw: _seconds(label, raw, MAX_SHUTDOWN_TIMEOUT),
    "log_format": _log_format,
    "metrics_names": _boolean,
}

#: The environment variable of each setting that has one.
ENV_NAMES = {
    "ttl": ENV_TTL,
    "parameter_ttl": ENV_PARAMETER_TTL,
    "max_entries": ENV_MAX_ENTRIES,
    "auth": ENV_AUTH,
    "host": ENV_HOST,
    "port": ENV_PORT,
    "upstream_timeout": ENV_UPSTREAM_TIMEOUT,
    "ttl_jitter": ENV_TTL_JITTER,
    "refresh_min_interval": ENV_REFRESH_MIN_INTERVAL,
    "max_stale": ENV_MAX_STALE,
    "backoff_base_seconds": ENV_BACKOFF_BASE,
    "backoff_growth": ENV_BACKOFF_GROWTH,
    "backoff_max_seconds": ENV_BACKOFF_MAX,
    "refresh_ahead": ENV_REFRESH_AHEAD,
    "request_timeout": ENV_REQUEST_TIMEOUT,
    "max_connections": ENV_MAX_CONNECTIONS,
    "shutdown_timeout": ENV_SHUTDOWN_TIMEOUT,
    "log_format": ENV_LOG_FORMAT,
    "metrics_names": ENV_METRICS_NAMES,
}


@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Every setting of a cache and its server; invalid values raise ``ConfigError``.

    Times are in seconds. ``parameter_ttl`` is the TTL of SSM parameters, the
    same as ``ttl`` when it is ``None``. ``ports`` are all the ports served;
    ``port`` is always the first of them (given ``ports``, it is set from them).
    ``token`` is never shown by ``repr``; ``token_source``
    names the variable it came from (or ``"argument"``).

    The cache policy: a value is fresh for ``ttl`` seconds, shortened at random by
    up to ``ttl_jitter`` of it. A forced refresh reaches the backend at most once
    per ``refresh_min_interval`` seconds per key. After ``n`` failures in a row a
    key waits ``backoff_base_seconds * backoff_growth ** (n - 1)`` seconds, at most
    ``backoff_max_seconds``, before it is tried again. On a transient failure a
    value up to ``max_stale`` seconds past its expiry is served, marked stale.
    With ``refresh_ahead`` above 0, a key read in the last part of its TTL of that
    size is fetched again in the background.

    The servers: a connection gets ``request_timeout`` seconds, from when it opens
    or from its previous answer, to send a complete request head; at most
    ``max_connections`` are open at once, and one more is answered 429. On SIGTERM
    a server stops taking connections and exits within ``shutdown_timeout``
    seconds, once the requests under way are answered.

    Operations: ``log_format`` is ``"text"`` (the default) or ``"json"`` (one
    object a line), for the entry points that configure logging; with
    ``metrics_names`` the HTTP app's ``/metrics`` labels lookups with the name
    of the secret or parameter (off by default: names stay out of the metrics).
    """

    ttl: int = DEFAULT_TTL
    parameter_ttl: int | None = None
    max_entries: int = DEFAULT_MAX_ENTRIES
    token: str | None = None
    token_source: str | None = None
    auth: AuthMode = "token"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    ports: tuple[int, ...] = ()
    upstream_timeout: float = DEFAULT_UPSTREAM_TIMEOUT
    region: str | None = None
    endpoint_url: str | None = None
    ttl_jitter: float = DEFAULT_TTL_JITTER
    refresh_min_interval: float = DEFAULT_REFRESH_MIN_INTERVAL
    max_stale: float = DEFAULT_MAX_STALE
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE
    backoff_growth: float = DEFAULT_BACKOFF_GROWTH
    backoff_max_seconds: float = DEFAULT_BACKOFF_MAX
    refresh_ahead: float = DEFAULT_REFRESH_AHEAD
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    log_format: LogFormat = "text"
    metrics_names: bool = False

    def __post_init__(self) -> None:
        for name, parse in _PARSERS.items():
            object.__setattr__(self, name, parse(name, getattr(self, name)))
        if self.ports:
            ports = _ports("ports", self.ports)
            object.__setattr__(self, "ports", ports)
            object.__setattr__(self, "port", ports[0])
        else:
            object.__setattr__(self, "ports", (self.port,))
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise ConfigError(
                f"backoff_max_seconds ({ENV_BACKOFF_MAX}) must be at least "
                f"backoff_base_seconds ({ENV_BACKOFF_BASE}), got "
                f"{self.backoff_max_seconds:g} < {self.backoff_base_seconds:g}"
            )
        if self.token is not None and (
            not isinstance(self.token, str) or not self.token.strip()
        ):
            raise ConfigError("token must be a non-empty string")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **arguments: Any
    ) -> Config:
        """Build a ``Config`` from arguments, then ``environ``, then the defaults.

        ``environ`` defaults to ``os.environ``. An argument given as ``None`` counts
        as not given; an empty environment variable counts as unset.
        """
        env = os.environ if environ is None else environ
        unknown = sorted(set(arguments) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        given = {k: v for k, v in arguments.items() if v is not None}

        values: dict[str, Any] = {}
        for name, variable in ENV_NAMES.items():
            raw = env.get(variable, "")
            if name in given or not raw.strip():
                continue
            if name == "port":
                values["ports"] = _ports(variable, raw)
            else:
                values[name] = _PARSERS[name](variable, raw)
        if "port" in given and "ports" not in given:
            values.pop("ports", None)
        if "token" in given:
            values["token_source"] = "argument"
        else:
            values["token"], values["token_source"] = resolve_token(env)
        values.update(given)
        return cls(**values)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "token" and value is not None:
                shown.append("token=<hidden>")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"Config({', '.join(shown)})"
