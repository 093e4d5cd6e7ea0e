"""The one exception tree of cachecore.

Every error the library raises on purpose is a ``CacheError``. Errors from botocore
are translated into this tree at one boundary (``cachecore._fetchers``), so callers
never need to import botocore to handle a failure. Each ``FetchError`` says whether
it is *transient* (worth retrying, and later worth masking with a stale value) or
*permanent* (a revocation or a bad request, which must never be masked)::

    CacheError
    ├── ConfigError                 (also ValueError)      a setting is invalid
    └── FetchError                                         the backend said no
        ├── InvalidRequestError     (also ValueError)      permanent, HTTP 400
        ├── SecretNotFoundError     (also LookupError)     permanent, HTTP 404
        ├── AccessDeniedError       (also PermissionError) permanent, HTTP 403
        ├── DecryptionError                                permanent, HTTP 502
        ├── ThrottledError                                 transient, HTTP 429
        ├── UpstreamUnavailableError (also ConnectionError) transient, HTTP 502
        └── UpstreamTimeoutError    (also TimeoutError)    transient, HTTP 504

No message or ``repr`` of these errors holds a secret value: they carry the secret
id, the backend's error code and the backend's own message, never a payload.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "CacheError",
    "ConfigError",
    "DecryptionError",
    "FetchError",
    "InvalidRequestError",
    "SecretNotFoundError",
    "ThrottledError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]


class CacheError(Exception):
    """Root of every error cachecore raises on purpose."""


class ConfigError(CacheError, ValueError):
    """A setting is invalid; the message names the setting and what it accepts."""


class FetchError(CacheError):
    """The backend could not give a value for a secret id.

    ``code`` is the backend's error code where there was one (for example
    ``ResourceNotFoundException``); ``transient`` says whether trying again later may
    succeed.
    """

    transient: bool = False
    default_code: str = "InternalServiceError"

    def __init__(
        self, message: str, *, secret_id: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.secret_id = secret_id
        self.code = code or self.default_code

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, secret_id={self.secret_id!r}, "
            f"code={self.code!r})"
        )


class InvalidRequestError(FetchError, ValueError):
    """The request cannot be answered as asked: a bad id, version or parameter."""

    default_code = "InvalidRequestException"


class SecretNotFoundError(FetchError, LookupError):
    """No such secret, or no such version of it."""

    default_code = "ResourceNotFoundException"


class AccessDeniedError(FetchError, PermissionError):
    """The cache's AWS identity may not read this secret (or has no credentials)."""

    default_code = "AccessDeniedException"


class DecryptionError(FetchError):
    """Secrets Manager could not decrypt the secret with its KMS key."""

    default_code = "DecryptionFailure"


class ThrottledError(FetchError):
    """The backend throttled the request."""

    transient = True
    default_code = "ThrottlingException"


class UpstreamUnavailableError(FetchError, ConnectionError):
    """The backend failed (5xx) or could not be reached."""

    transient = True
    default_code = "InternalServiceError"


class UpstreamTimeoutError(FetchError, TimeoutError):
    """The backend did not answer within the configured timeout."""

    transient = True
    default_code = "RequestTimeout"
