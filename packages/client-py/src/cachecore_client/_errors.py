"""The errors of the client: the library's own tree, with what the sidecar said.

Each error the client raises from an HTTP answer is a subclass of the library's
class of the same meaning, so ``except cachecore.SecretNotFoundError`` catches a
missing secret whether it was read in-process or through the sidecar. Each also
derives from ``SidecarError``, which carries ``status`` (the HTTP status, or
``None`` when there was no answer) and ``aws_type`` (the ``__type`` of the JSON
error body, or ``None``)::

    cachecore.CacheError
    ├── ClientClosedError (RuntimeError)        a read after close()
    └── SidecarError                            status, aws_type
        ├── TokenRejectedError (PermissionError)    401, 403 from the token check
        ├── UnexpectedResponseError (FetchError)    any answer not in this table,
        │                                           cut short, or not HTTP at all
        ├── InvalidRequestError                     400; an argument refused here
        ├── SecretNotFoundError                     404
        ├── AccessDeniedError                       403
        ├── DecryptionError                         502 DecryptionFailure
        ├── ThrottledError                          429, once retries are spent
        ├── UpstreamUnavailableError                502
        │   ├── SidecarNotReadyError                503, once retries are spent
        │   └── SidecarUnavailableError             no byte of an answer arrived
        └── UpstreamTimeoutError                    504
            └── SidecarTimeoutError                 no whole answer within timeout

Apart from ``SidecarError`` and ``TokenRejectedError``, each class is also a
``cachecore.FetchError`` with ``secret_id``, ``code`` (``aws_type`` when there is
one, else the class's default, such as ``SidecarUnavailable``) and ``transient``.
A message is the server's own ``message`` (which never holds a secret value) or
one written here; never a response body. No error keeps a lower-level exception
that holds part of an answer (urllib3's, http.client's ``IncompleteRead``) as its
cause or context.
"""

from __future__ import annotations

import cachecore

__all__ = [
    "AccessDeniedError",
    "ClientClosedError",
    "DecryptionError",
    "InvalidRequestError",
    "SecretNotFoundError",
    "SidecarError",
    "SidecarNotReadyError",
    "SidecarTimeoutError",
    "SidecarUnavailableError",
    "ThrottledError",
    "TokenRejectedError",
    "UnexpectedResponseError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]


class ClientClosedError(cachecore.CacheError, RuntimeError):
    """A read on a client after its ``close()``: nothing is sent, nor any fallback read.

    Make a new ``SecretsClient``; a closed one stays closed.
    """


class SidecarError(cachecore.CacheError):
    """Root of the errors the client raises about an answer, or the lack of one.

    ``status`` is the HTTP status of the answer (``None`` when none came) and
    ``aws_type`` the ``__type`` of its JSON body (``None`` when it had none).
    """

    status: int | None = None
    aws_type: str | None = None

    def __repr__(self) -> str:
        secret_id = getattr(self, "secret_id", None)
        about = f", secret_id={secret_id!r}" if secret_id is not None else ""
        return (
            f"{type(self).__name__}({str(self)!r}{about}, status={self.status!r}, "
            f"aws_type={self.aws_type!r})"
        )


class TokenRejectedError(SidecarError, PermissionError):
    """The sidecar refused the token: missing (401) or wrong (403).

    Set ``CACHECORE_TOKEN`` (or another token source) to the sidecar's token.
    """


class UnexpectedResponseError(SidecarError, cachecore.FetchError):
    """An answer the client does not expect: an unknown route, status or body.

    A body that is not the JSON of a secret counts too, and so does an answer
    that began (bytes arrived) but was cut short or is not HTTP (``status`` is
    then the status received, or ``None`` before one). Most often ``base_url``
    points at a server that is not cachecore; it is never retried, and never
    read from the fallback.
    """

    default_code = "UnexpectedResponse"


class InvalidRequestError(SidecarError, cachecore.InvalidRequestError):
    """400: the request cannot be answered as asked (a bad id, version, name).

    The client checks its arguments as ``cachecore.SecretCache`` does
    (``cachecore.check_secret_id``, ``check_parameter``) and raises this before
    sending anything when they fail; ``status`` is then ``None``.
    """


class SecretNotFoundError(SidecarError, cachecore.SecretNotFoundError):
    """404: no such secret, parameter or version."""


class AccessDeniedError(SidecarError, cachecore.AccessDeniedError):
    """403: the sidecar's AWS identity may not read this secret."""


class DecryptionError(SidecarError, cachecore.DecryptionError):
    """502 ``DecryptionFailure``: the secret could not be decrypted with its key."""


class ThrottledError(SidecarError, cachecore.ThrottledError):
    """429, still after the retries: throttled upstream, or too many connections."""


class UpstreamUnavailableError(SidecarError, cachecore.UpstreamUnavailableError):
    """502: Secrets Manager failed or could not be reached by the sidecar."""


class SidecarNotReadyError(UpstreamUnavailableError):
    """503, still after the retries: the sidecar (a Lambda extension) is starting."""

    default_code = "ServiceUnavailableException"


class SidecarUnavailableError(UpstreamUnavailableError):
    """No answer from the sidecar, after the retries: not a byte of one arrived.

    Refused, connecting timed out, reset or closed before any byte of an answer.
    This is the one error on which the optional in-process fallback is used.
    """

    default_code = "SidecarUnavailable"


class UpstreamTimeoutError(SidecarError, cachecore.UpstreamTimeoutError):
    """504: Secrets Manager did not answer the sidecar in time."""


class SidecarTimeoutError(UpstreamTimeoutError):
    """The sidecar's whole answer did not arrive within the client's ``timeout``.

    ``status`` is ``None`` when not even the status line came, else that status.
    """

    default_code = "SidecarTimeout"
