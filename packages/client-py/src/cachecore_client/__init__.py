"""cachecore-client: read secrets from the cachecore sidecar or Lambda extension.

``SecretsClient`` reads over HTTP with pooled keep-alive connections, bounded
retries (``RetryPolicy``) and errors from cachecore's own tree (``SidecarError``
adds the HTTP status and ``__type``). It is a ``cachecore.SecretReader``, as the
in-process ``cachecore.SecretCache`` is, so ``reader_from_env`` can pick either by
configuration. ``connect_with_rotation`` connects to a database with a cached
credential and reads it anew once when the password has rotated.
"""

from ._client import DEFAULT_TIMEOUT, TOKEN_HEADER, RetryPolicy, SecretsClient
from ._config import ENV_FALLBACK, ENV_MODE, ENV_URL
from ._errors import (
    AccessDeniedError,
    ClientClosedError,
    DecryptionError,
    InvalidRequestError,
    SecretNotFoundError,
    SidecarError,
    SidecarNotReadyError,
    SidecarTimeoutError,
    SidecarUnavailableError,
    ThrottledError,
    TokenRejectedError,
    UnexpectedResponseError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ._readers import in_process_cache, reader_from_env
from ._rotation import connect_with_rotation

__all__ = [
    "AccessDeniedError",
    "ClientClosedError",
    "DEFAULT_TIMEOUT",
    "DecryptionError",
    "ENV_FALLBACK",
    "ENV_MODE",
    "ENV_URL",
    "InvalidRequestError",
    "RetryPolicy",
    "SecretNotFoundError",
    "SecretsClient",
    "SidecarError",
    "SidecarNotReadyError",
    "SidecarTimeoutError",
    "SidecarUnavailableError",
    "TOKEN_HEADER",
    "ThrottledError",
    "TokenRejectedError",
    "UnexpectedResponseError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "connect_with_rotation",
    "in_process_cache",
    "reader_from_env",
]
