"""The extension's settings: ``CACHECORE_*``, and the names of the earlier extensions.

A function that used AWS's Parameters and Secrets extension, or the Go cache
extension, keeps its environment: each of their variables is translated into the
``CACHECORE_*`` variable it means, and ``Config.from_env`` reads the result. Where
several names of one setting are set, the first in ``ALIASES`` wins and a warning
names the ones ignored. Nothing here imports botocore.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cachecore import ConfigError
from cachecore._config import (
    _PARSERS,
    ENV_NAMES,
    ENV_SHUTDOWN_TIMEOUT,
    MAX_TTL,
    MAX_UPSTREAM_TIMEOUT,
    _seconds,
)

__all__ = [
    "ALIASES",
    "DEFAULT_PORTS",
    "ENV_LOG_LEVEL",
    "ENV_PREFETCH",
    "ENV_SHUTDOWN_TIMEOUT",
    "IGNORED",
    "LambdaSettings",
    "MAX_PREFETCH",
    "go_duration_seconds",
    "read_settings",
]

ENV_PREFETCH = "CACHECORE_PREFETCH"
ENV_LOG_LEVEL = "CACHECORE_LOG_LEVEL"
AWS_PORT = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"
AWS_CACHE_ENABLED = "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED"
AWS_CACHE_SIZE = "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE"
AWS_LOG_LEVEL = "PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL"
AWS_TTL = "SECRETS_MANAGER_TTL"
AWS_TIMEOUT = "SECRETS_MANAGER_TIMEOUT_MILLIS"
AWS_SSM_TTL = "SSM_PARAMETER_STORE_TTL"
GO_TTL = "CACHE_EXTENSION_TTL"

#: The Go extension listens on 8015, AWS's on 2773: by default both are served.
GO_PORT = 8015
AWS_DEFAULT_PORT = 2773
DEFAULT_PORTS = f"{GO_PORT},{AWS_DEFAULT_PORT}"
#: The most ids ``CACHECORE_PREFETCH`` may name, and the time prefetch may take.
MAX_PREFETCH = 100
PREFETCH_TIMEOUT = 2.0
#: What the extension takes to stop, at most, when SIGTERM rather than SHUTDOWN
#: asks it to (SHUTDOWN brings its own deadline).
DEFAULT_SHUTDOWN_TIMEOUT = 1.5

#: Variables of the earlier extensions that cachecore has no use for.
IGNORED = {
    "SSM_PARAMETER_STORE_TIMEOUT_MILLIS": (
        "cachecore has one upstream timeout for both services: "
        "set CACHECORE_UPSTREAM_TIMEOUT"
    ),
    "PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS": (
        "cachecore keeps one pooled connection per service and thread"
    ),
}

_LOG_LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "none": "CRITICAL",
}

_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DIGITS = re.compile(r"[0-9]+")


def go_duration_seconds(variable: str, raw: str) -> float:
    """Seconds in a Go duration such as ``60m``, ``90s`` or ``1h30m``.

    The syntax of Go's ``time.ParseDuration``: decimal numbers, each with a
    unit (ns, us, ms, s, m, h), or a bare ``0``. A negative duration is refused.
    """
    text = raw.strip()
    rule = f"{variable} must be a Go duration such as 60m, 90s or 1h30m, got {raw!r}"
    if text == "0":
        return 0.0
    if text.startswith("+"):
        text = text[1:]
    if not text:
        raise ConfigError(rule)
    total = 0.0
    position = 0
    while position < len(text):
        match = _GO_PART.match(text, position)
        if match is None:
            raise ConfigError(rule)
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        position = match.end()
    if not math.isfinite(total):
        raise ConfigError(rule)
    return total


def _whole_seconds(variable: str, seconds: float, raw: str) -> str:
    if seconds != int(seconds):
        raise ConfigError(
            f"{variable} must be a whole number of seconds, got {raw!r} ({seconds:g} s)"
        )
    return str(int(seconds))


def _from_go_ttl(variable: str, raw: str) -> str:
    seconds = go_duration_seconds(variable, raw)
    if seconds > MAX_TTL:
        raise ConfigError(
            f"{variable} must be at most {MAX_TTL // 3600}h ({MAX_TTL} s), got {raw!r}"
        )
    return _whole_seconds(variable, seconds, raw)


def _ascii_integer(raw: str) -> int | None:
    text = raw.strip()
    return int(text, 10) if _DIGITS.fullmatch(text) else None


def _from_millis(variable: str, raw: str) -> str:
    highest = int(MAX_UPSTREAM_TIMEOUT * 1000)
    rule = (
        f"{variable} must be a whole number of milliseconds from 0 to {highest}, "
        f"got {raw!r}"
    )
    millis = _ascii_integer(raw)
    if millis is None or millis > highest:
        raise ConfigError(rule)
    if millis == 0:
        # AWS's extension reads 0 as "no timeout"; the longest allowed here.
        return f"{MAX_UPSTREAM_TIMEOUT:g}"
    return f"{millis / 1000:g}"


def _from_log_level(variable: str, raw: str) -> str:
    level = _LOG_LEVELS.get(raw.strip().lower())
    if level is None:
        raise ConfigError(
            f"{variable} must be one of debug, info, warn, error, none, got {raw!r}"
        )
    return level


def _same(variable: str, raw: str) -> str:
    return raw.strip()


Translate = Callable[[str, str], str]

#: For each ``CACHECORE_*`` variable, the names that may set it, in order of
#: precedence, with how each value is translated into the ``CACHECORE_*`` form.
ALIASES: dict[str, tuple[tuple[str, Translate], ...]] = {
    "CACHECORE_TTL": (
        ("CACHECORE_TTL", _same),
        (AWS_TTL, _same),
        (GO_TTL, _from_go_ttl),
    ),
    "CACHECORE_PARAMETER_TTL": (
        ("CACHECORE_PARAMETER_TTL", _same),
        (AWS_SSM_TTL, _same),
    ),
    "CACHECORE_MAX_ENTRIES": (
        ("CACHECORE_MAX_ENTRIES", _same),
        (AWS_CACHE_SIZE, _same),
    ),
    "CACHECORE_UPSTREAM_TIMEOUT": (
        ("CACHECORE_UPSTREAM_TIMEOUT", _same),
        (AWS_TIMEOUT, _from_millis),
    ),
    ENV_LOG_LEVEL: (
        (ENV_LOG_LEVEL, _from_log_level),
        (AWS_LOG_LEVEL, _from_log_level),
    ),
}


@dataclass
class LambdaSettings:
    """The environment for ``Config.from_env``, and what only the extension reads."""

    environ: dict[str, str]
    log_level: str = "INFO"
    prefetch: tuple[str, ...] = ()
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    warnings: list[str] = field(default_factory=list)


_TTLS = ("CACHECORE_TTL", "CACHECORE_PARAMETER_TTL")
_SETTINGS = {variable: name for name, variable in ENV_NAMES.items()}


def _set(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name, "")
    return raw if raw.strip() else None


def _cache_disabled(environ: Mapping[str, str]) -> bool:
    """AWS's ``CACHE_ENABLED=false`` or ``CACHE_SIZE=0``: cache nothing."""
    enabled = _set(environ, AWS_CACHE_ENABLED)
    if enabled is not None and enabled.strip().lower() not in ("true", "false"):
        raise ConfigError(f"{AWS_CACHE_ENABLED} must be true or false, got {enabled!r}")
    size = _set(environ, AWS_CACHE_SIZE)
    return (enabled is not None and enabled.strip().lower() == "false") or (
        size is not None and _ascii_integer(size) == 0
    )


def _ports(environ: Mapping[str, str], warnings: list[str]) -> str:
    ours = _set(environ, "CACHECORE_PORT")
    aws = _set(environ, AWS_PORT)
    if ours is not None:
        if aws is not None:
            warnings.append(
                f"both CACHECORE_PORT and {AWS_PORT} are set: serving "
                f"CACHECORE_PORT={ours.strip()}, ignoring {AWS_PORT}"
            )
        return ours
    if aws is None:
        return DEFAULT_PORTS
    port = _ascii_integer(aws)
    if port is None or not 1 <= port <= 65535:
        raise ConfigError(f"{AWS_PORT} must be a port from 1 to 65535, got {aws!r}")
    # It moves AWS's port; the Go extension's callers keep 8015.
    return str(port) if port == GO_PORT else f"{GO_PORT},{port}"


def _prefetch(environ: Mapping[str, str]) -> tuple[str, ...]:
    raw = _set(environ, ENV_PREFETCH)
    if raw is None:
        return ()
    ids = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
    if len(ids) > MAX_PREFETCH:
        raise ConfigError(
            f"{ENV_PREFETCH} names {len(ids)} secrets; at most {MAX_PREFETCH} "
            "are prefetched at start"
        )
    return ids


def _shutdown_timeout(environ: Mapping[str, str]) -> float:
    """The sidecar's variable, bounded here by Lambda's 2 s for a stop."""
    raw = _set(environ, ENV_SHUTDOWN_TIMEOUT)
    if raw is None:
        return DEFAULT_SHUTDOWN_TIMEOUT
    return _seconds(ENV_SHUTDOWN_TIMEOUT, raw, 2)


def read_settings(environ: Mapping[str, str]) -> LambdaSettings:
    """Translate ``environ`` for the extension; raises ``ConfigError`` on bad values.

    Every ``CACHECORE_*`` variable of ``ALIASES`` is set in the result from the
    first of its names that is set; the rest of ``environ`` is kept as it is.
    """
    env = dict(environ)
    warnings: list[str] = []
    disabled = _cache_disabled(environ)
    for target, names in ALIASES.items():
        present = [(name, fn) for name, fn in names if _set(environ, name) is not None]
        if not present:
            env.pop(target, None)
            if disabled and target in _TTLS:
                env[target] = "0"
            continue
        name, translate = present[0]
        value = translate(name, environ[name])
        setting = _SETTINGS.get(target)
        switched_off = name == AWS_CACHE_SIZE and _ascii_integer(value) == 0
        if setting is not None and not switched_off:
            _PARSERS[setting](name, value)  # a bad value is named as the user set it
        if disabled and name != target:
            # AWS's switch turns caching off over AWS's own TTLs and size; a
            # CACHECORE_* value was set on purpose and stays.
            if target in _TTLS:
                value = "0"
            elif target == "CACHECORE_MAX_ENTRIES":
                value = "1"  # nothing is kept anyway, and 0 is not a bound
        env[target] = value
        if len(present) > 1:
            ignored = ", ".join(other for other, _ in present[1:])
            warnings.append(f"{name} is set and wins; ignoring {ignored}")
    env["CACHECORE_PORT"] = _ports(environ, warnings)
    for name, reason in IGNORED.items():
        if _set(environ, name) is not None:
            warnings.append(f"{name} is not used: {reason}")
    return LambdaSettings(
        environ=env,
        log_level=env.pop(ENV_LOG_LEVEL, "INFO"),
        prefetch=_prefetch(environ),
        shutdown_timeout=_shutdown_timeout(environ),
        warnings=warnings,
    )
