"""cachecore: a local cache for AWS Secrets Manager secrets, used in-process.

``SecretCache`` holds the cache policy (TTL, bounded size, single flight, forced
refresh, backoff, stale-if-error) and is a ``SecretReader``, the protocol it
shares with the HTTP client of ``cachecore-client``; a ``Fetcher`` such as
``SecretsManagerFetcher`` (or ``ParameterStoreFetcher`` for SSM parameters) reads
from AWS; ``Config`` gathers the settings from arguments, ``CACHECORE_*``
environment variables and defaults. Every error raised on purpose is a ``CacheError``.
"""

from ._cache import CacheStats, Lookup, SecretCache, check_parameter, check_secret_id
from ._config import ENV_NAMES, TOKEN_SOURCES, Config, resolve_token
from ._errors import (
    AccessDeniedError,
    CacheError,
    ConfigError,
    DecryptionError,
    FetchError,
    InvalidRequestError,
    SecretNotFoundError,
    ThrottledError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ._fetchers import (
    Fetcher,
    FetchObserver,
    ParameterFetcher,
    ParameterStoreFetcher,
    SecretsManagerFetcher,
    translate_error,
)
from ._reader import SecretReader
from ._redact import RedactingFilter
from ._value import ParameterValue, SecretValue

__all__ = [
    "AccessDeniedError",
    "CacheError",
    "CacheStats",
    "Config",
    "ConfigError",
    "DecryptionError",
    "ENV_NAMES",
    "FetchError",
    "FetchObserver",
    "Fetcher",
    "InvalidRequestError",
    "Lookup",
    "ParameterFetcher",
    "ParameterStoreFetcher",
    "ParameterValue",
    "RedactingFilter",
    "SecretCache",
    "SecretNotFoundError",
    "SecretReader",
    "SecretValue",
    "SecretsManagerFetcher",
    "TOKEN_SOURCES",
    "ThrottledError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "check_parameter",
    "check_secret_id",
    "resolve_token",
    "translate_error",
]
