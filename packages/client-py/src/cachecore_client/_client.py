"""``SecretsClient``: reads secrets from the cachecore sidecar or Lambda extension.

One urllib3 connection pool per client keeps connections to the sidecar alive
between reads; the client is safe to share between threads. Every read is a GET
of the AWS dialect (``/secretsmanager/get``, ``/systemsmanager/parameters/get``)
with the token header, its query values percent-encoded in full so that a name
reaches Secrets Manager exactly as given.

Retries (``RetryPolicy``): a 429 or 503 answer and a try on which no byte of an
answer arrived (refused, connecting timed out, reset or closed first) are tried
again after a pause of full jitter, ``Retry-After`` when the answer names one,
for at most ``attempts`` tries and ``budget`` seconds. A kept-alive connection
that the server closed under the request is tried again once at once, without a
pause and without counting as a try. Every other answer is final: a 4xx means
"no", and asking again would not change it; an answer that began but was cut
short, or is not HTTP, is an ``UnexpectedResponseError``, never "unreachable".

Time: ``timeout`` bounds each try as a whole (connecting, waiting for the answer,
reading all of it, and the free redo of a closed connection), and no try begins
after ``budget`` seconds; so a call lasts at most about ``budget + timeout``.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import urllib3
from urllib3.exceptions import (
    ClosedPoolError,
    HTTPError,
    ProtocolError,
    ReadTimeoutError,
)

import cachecore
from cachecore import (
    ConfigError,
    SecretReader,
    SecretValue,
    check_parameter,
    check_secret_id,
    resolve_token,
)

from ._config import environment, resolve_base_url
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

__all__ = ["DEFAULT_TIMEOUT", "TOKEN_HEADER", "RetryPolicy", "SecretsClient"]

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Aws-Parameters-Secrets-Token"
#: Longer than the sidecar's own upstream timeout (5 s) times botocore's three
#: attempts, so that a slow Secrets Manager reaches the caller as the sidecar's 504.
DEFAULT_TIMEOUT = 20.0
_RETRIED_STATUSES = frozenset({429, 503})
_TOKEN_TYPES = frozenset({"MissingTokenException", "InvalidTokenException"})
_DECRYPTION_TYPES = frozenset({"DecryptionFailure", "InvalidKeyId"})
_MAX_MESSAGE = 500
_MAX_ERROR_BODY = 64 * 1024
#: A secret is at most 64 KiB, as base64 in JSON about 90 KiB: far below this.
_MAX_BODY = 1024 * 1024
_READ_SIZE = 64 * 1024

Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and for how long, a read is tried again.

    ``attempts`` counts every try, the first included (1: never try again). The
    pause before try ``n + 1`` is drawn at random from 0 to ``backoff_base * 2 **
    (n - 1)`` seconds, at most ``backoff_max``, unless the answer said
    ``Retry-After``; then it is that many seconds and a little jitter. No try is
    made whose pause would end more than ``budget`` seconds after the first try
    began; the last error is raised instead. As each try lasts at most the
    client's ``timeout``, a whole call lasts at most about ``budget + timeout``.
    """

    attempts: int = 4
    backoff_base: float = 0.1
    backoff_max: float = 1.0
    budget: float = 5.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or not 1 <= self.attempts <= 100
        ):
            raise ConfigError(
                f"attempts must be an integer from 1 to 100, got {self.attempts!r}"
            )
        for name in ("backoff_base", "backoff_max", "budget"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 <= value <= 3600
            ):
                raise ConfigError(
                    f"{name} must be a number of seconds from 0 to 3600, got {value!r}"
                )

    def pause(self, retry: int, draw: float) -> float:
        """Seconds to wait before retry number ``retry`` (1, 2 …), given a draw."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (retry - 1))
        return draw * ceiling


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After", "").strip()
    if raw.isascii() and raw.isdigit():
        return float(raw)
    return None  # absent, or an HTTP date: the policy's own pause is used


def _error_body(body: bytes) -> tuple[str | None, str | None]:
    """The ``__type`` and ``message`` of a JSON error body, when it is one."""
    if len(body) > _MAX_ERROR_BODY:
        return None, None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        return None, None
    if not isinstance(document, dict):
        return None, None
    aws_type = document.get("__type")
    message = document.get("message")
    return (
        aws_type if isinstance(aws_type, str) and aws_type else None,
        " ".join(message.split())[:_MAX_MESSAGE] if isinstance(message, str) else None,
    )


def _error_class(status: int, aws_type: str | None) -> type[SidecarError]:
    """The class of an answer's error, by its status and then its ``__type``."""
    if status == 400:
        return InvalidRequestError
    if status == 401 or (status == 403 and aws_type in _TOKEN_TYPES):
        return TokenRejectedError
    if status == 403:
        return AccessDeniedError
    if status == 404 and aws_type not in (None, "UnknownOperationException"):
        return SecretNotFoundError
    if status == 429:
        return ThrottledError
    if status == 502:
        if aws_type in _DECRYPTION_TYPES:
            return DecryptionError
        return UpstreamUnavailableError
    if status == 503:
        return SidecarNotReadyError
    if status == 504:
        return UpstreamTimeoutError
    return UnexpectedResponseError


def _make_error(
    kind: type[SidecarError],
    message: str,
    secret_id: str,
    status: int | None = None,
    aws_type: str | None = None,
) -> SidecarError:
    if issubclass(kind, TokenRejectedError):
        error: SidecarError = kind(message)
    else:
        # Every other class is also a cachecore.FetchError.
        error = kind(message, secret_id=secret_id, code=aws_type)  # type: ignore[call-arg]
    error.status = status
    error.aws_type = aws_type
    return error


def answer_error(
    status: int, headers: Mapping[str, str], body: bytes, secret_id: str
) -> SidecarError:
    """The error of an answer other than 200; the body is read, never repeated."""
    aws_type, message = _error_body(body)
    kind = _error_class(status, aws_type)
    if message is None:
        message = f"the sidecar answered HTTP {status} without a JSON error"
    elif kind is UnexpectedResponseError:
        message = f"the sidecar answered HTTP {status}: {message}"
    return _make_error(kind, message, secret_id, status, aws_type)


def _refused(exc: cachecore.InvalidRequestError, secret_id: str) -> InvalidRequestError:
    """The client's own class for an argument the library's check refused.

    Nothing was sent, so it has no status and no ``aws_type``; its code is the
    library's.
    """
    return InvalidRequestError(exc.message, secret_id=secret_id, code=exc.code)


def _created(raw: object) -> datetime | None:
    if isinstance(raw, str | int | float) and not isinstance(raw, bool):
        try:
            return datetime.fromtimestamp(float(raw), UTC)
        except (ValueError, OverflowError, OSError):
            return None
    return None


def secret_from_document(document: object, secret_id: str) -> SecretValue | None:
    """A ``SecretValue`` from GetSecretValue-shaped JSON, or ``None`` if it is not.

    Never raises: an error raised while the answer is in hand could carry a
    piece of it in its context.
    """
    if not isinstance(document, dict):
        return None
    text = document.get("SecretString")
    encoded = document.get("SecretBinary")
    binary = None
    if isinstance(encoded, str):
        try:
            binary = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
    elif not isinstance(text, str):
        return None
    stages = document.get("VersionStages")
    name, arn, version_id = (document.get(key) for key in ("Name", "ARN", "VersionId"))
    return SecretValue(
        name=name if isinstance(name, str) else secret_id,
        arn=arn if isinstance(arn, str) else None,
        version_id=version_id if isinstance(version_id, str) else None,
        version_stages=tuple(s for s in stages if isinstance(s, str))
        if isinstance(stages, list)
        else (),
        secret_string=text if binary is None else None,
        secret_binary=binary,
        created_date=_created(document.get("CreatedDate")),
    )


def _parameter_value(document: object) -> str | None:
    if isinstance(document, dict):
        parameter = document.get("Parameter")
        if isinstance(parameter, dict):
            value = parameter.get("Value")
            if isinstance(value, str):
                return value
    return None


def _query(**values: str | None) -> str:
    # safe="": / + = @ ! & and every other reserved character are escaped, so
    # the server, which keeps a bare + as a plus, reads back exactly the value.
    return "&".join(
        f"{name}={quote(value, safe='')}"
        for name, value in values.items()
        if value is not None
    )


def _token_header(token: str, source: str) -> str:
    """The token as a header value that http.client sends as the token's UTF-8.

    The sidecar compares the header's bytes with the token's UTF-8, and
    http.client encodes a header given as text in latin-1; so the text handed
    over is the UTF-8 bytes read as latin-1. The messages never show the token.
    """
    try:
        data = token.encode("utf-8")
    except UnicodeEncodeError:
        data = None  # raised below: the encode error holds the token
    if data is None:
        raise ConfigError(f"{source} is not valid Unicode text")
    if any(byte < 0x20 or byte == 0x7F for byte in data):
        raise ConfigError(
            f"{source} must not hold line breaks or other control characters, "
            "which no HTTP header can carry"
        )
    return data.decode("latin-1")


@dataclass(frozen=True, slots=True)
class _Unreached:
    """A try on which not a byte of an answer arrived; ``how`` says what failed."""

    how: str
    cause: BaseException
    redo: bool  # a kept-alive connection closed under the request: redo it once


class SecretsClient:
    """Reads secrets and parameters from the sidecar; a ``cachecore.SecretReader``.

    ``base_url`` defaults to ``CACHECORE_URL``, else ``http://localhost:`` and the
    first port of ``CACHECORE_PORT``, else port 8015. ``token`` defaults to the
    sidecar's own sources (``CACHECORE_TOKEN``, ``AWS_TOKEN``,
    ``AWS_SESSION_TOKEN``, ``AWS_CONTAINER_AUTHORIZATION_TOKEN``, a
    ``file://PATH`` read from the file), read once, here; with none, no token is
    sent. ``timeout`` bounds each try as a whole, in seconds: connecting,
    waiting for the answer and reading all of it. ``retry`` is the
    ``RetryPolicy``; a call lasts at most about ``retry.budget + timeout``.
    ``max_connections`` is the most connections kept alive.

    ``fallback`` (off by default) is a ``SecretReader`` used when the sidecar
    cannot be reached once the retries are spent, or a function or class that
    builds one on first need (``in_process_cache``); each use is logged as a
    warning. After ``close()`` every read raises ``ClientClosedError``.
    ``environ`` replaces ``os.environ``; ``clock``, ``sleep`` and ``random`` are
    for tests.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        retry: RetryPolicy | None = None,
        fallback: SecretReader | Callable[[], SecretReader] | None = None,
        max_connections: int = 10,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = random.random,
    ) -> None:
        env = environment(environ)
        self._base_url = resolve_base_url(base_url, env)
        source = "token"
        if token is None:
            token, variable = resolve_token(env)
            source = f"the token of {variable}"
        elif not isinstance(token, str) or not token.strip():
            raise ConfigError("token must be a non-empty string")
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= 3600
        ):
            raise ConfigError(
                f"timeout must be a number of seconds above 0 and at most 3600, "
                f"got {timeout!r}"
            )
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or not 1 <= max_connections <= 1000
        ):
            raise ConfigError(
                f"max_connections must be an integer from 1 to 1000, got "
                f"{max_connections!r}"
            )

        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(
                f"retry must be a RetryPolicy, got {type(retry).__name__}"
            )
        self._fallback: SecretReader | None = None
        self._build_fallback: Callable[[], SecretReader] | None = None
        if isinstance(fallback, type):
            # Before the protocol check: a class has the reader's methods too.
            self._build_fallback = fallback
        elif isinstance(fallback, SecretReader):
            self._fallback = fallback
        elif callable(fallback):
            self._build_fallback = fallback
        elif fallback is not None:
            raise ConfigError(
                "fallback must be a SecretReader, or a function or class that "
                f"builds one, got {type(fallback).__name__}"
            )

        self._retry = retry if retry is not None else RetryPolicy()
        self._timeout = float(timeout)
        self._prefix = urlsplit(self._base_url).path
        self._headers = {"Accept": "application/json"}
        if token is not None:
            self._headers[TOKEN_HEADER] = _token_header(token, source)
        self._pool = urllib3.connection_from_url(
            self._base_url,
            maxsize=max_connections,
            block=False,
            timeout=urllib3.Timeout(total=timeout),
            retries=False,
        )
        self._closed = False
        self._fallback_lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._random = random

    @property
    def base_url(self) -> str:
        """The URL of the sidecar, without a trailing slash."""
        return self._base_url

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of every read."""
        return self._retry

    # -- the reads of SecretReader ---------------------------------------------

    def get_secret_string(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> str:
        """The secret as text (a binary secret decoded as UTF-8)."""
        return self._read(
            secret_id,
            lambda: self._secret(secret_id, version_id, version_stage, refresh).text,
            lambda reader: reader.get_secret_string(
                secret_id,
                version_id=version_id,
                version_stage=version_stage,
                refresh=refresh,
            ),
        )

    def get_secret_json(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> Any:
        """The secret parsed as JSON; a new object on every call."""
        return self._read(
            secret_id,
            lambda: self._secret(secret_id, version_id, version_stage, refresh).json(),
            lambda reader: reader.get_secret_json(
                secret_id,
                version_id=version_id,
                version_stage=version_stage,
                refresh=refresh,
            ),
        )

    def get_secret_binary(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> bytes:
        """The secret as bytes (a string secret encoded as UTF-8)."""
        return self._read(
            secret_id,
            lambda: self._secret(secret_id, version_id, version_stage, refresh).data,
            lambda reader: reader.get_secret_binary(
                secret_id,
                version_id=version_id,
                version_stage=version_stage,
                refresh=refresh,
            ),
        )

    def get_parameter(
        self,
        name: str,
        *,
        version: int | None = None,
        label: str | None = None,
        with_decryption: bool = False,
    ) -> str:
        """The value of an SSM parameter (``version`` or ``label``, not both)."""
        return self._read(
            name,
            lambda: self._parameter(name, version, label, with_decryption),
            lambda reader: reader.get_parameter(
                name, version=version, label=label, with_decryption=with_decryption
            ),
        )

    def get_secret_value(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
        refresh: bool = False,
    ) -> SecretValue:
        """The whole answer as a ``SecretValue``: name, ARN, version id and stages.

        Not part of ``SecretReader``, and never read from the fallback.
        ``fetched_at`` is 0: the sidecar's cache, not this client, holds the value.
        """
        return self._secret(secret_id, version_id, version_stage, refresh)

    # -- HTTP ------------------------------------------------------------------

    def _secret(
        self,
        secret_id: str,
        version_id: str | None,
        version_stage: str | None,
        refresh: bool,
    ) -> SecretValue:
        self._check_open()
        try:
            check_secret_id(secret_id, version_id, version_stage)
        except cachecore.InvalidRequestError as exc:
            raise _refused(exc, secret_id) from None
        query = _query(
            secretId=secret_id,
            versionId=version_id,
            versionStage=version_stage,
            refreshNow="true" if refresh else None,
        )
        document = self._get(f"/secretsmanager/get?{query}", secret_id)
        value = secret_from_document(document, secret_id)
        if value is None:
            raise _make_error(
                UnexpectedResponseError,
                "the sidecar's answer is not the JSON of a secret",
                secret_id,
                200,
            )
        return value

    def _parameter(
        self,
        name: str,
        version: int | None,
        label: str | None,
        with_decryption: bool,
    ) -> str:
        self._check_open()
        try:
            check_parameter(name, version, label)
        except cachecore.InvalidRequestError as exc:
            raise _refused(exc, name) from None
        query = _query(
            name=name,
            version=None if version is None else str(version),
            label=label,
            withDecryption="true" if with_decryption else None,
        )
        value = _parameter_value(
            self._get(f"/systemsmanager/parameters/get?{query}", name)
        )
        if value is None:
            raise _make_error(
                UnexpectedResponseError,
                "the sidecar's answer is not the JSON of a parameter",
                name,
                200,
            )
        return value

    def _get(self, target: str, secret_id: str) -> object:
        """GET ``target`` under the retry policy; the parsed JSON of a 200."""
        policy = self._retry
        deadline = self._clock() + policy.budget
        url = self._prefix + target
        tries = 0
        redone = False  # a closed kept-alive connection is redone once for free
        while True:
            tries += 1
            cause: BaseException | None = None
            retry_after = None
            until = self._clock() + self._timeout  # the redo shares the try's time
            outcome = self._try(url, secret_id, until)
            if (
                isinstance(outcome, _Unreached)
                and outcome.redo
                and not redone
                and self._clock() < until
            ):
                redone = True
                logger.debug("the sidecar closed a connection; trying once more")
                outcome = self._try(url, secret_id, until)
            if isinstance(outcome, _Unreached):
                error: SidecarError = self._unavailable(secret_id, outcome.how)
                cause = outcome.cause
            else:
                status, headers, body = outcome
                if status == 200:
                    return self._parse(body, secret_id)
                error = answer_error(status, headers, body, secret_id)
                if status not in _RETRIED_STATUSES:
                    raise error
                retry_after = _retry_after(headers)

            if retry_after is not None:
                pause = retry_after + self._random() * policy.backoff_base
            else:
                pause = policy.pause(tries, self._random())
            if tries >= policy.attempts or self._clock() + pause > deadline:
                raise error from cause
            logger.debug(
                "try %d of %s failed (%s); again in %.2fs",
                tries,
                secret_id,
                type(error).__name__,
                pause,
            )
            self._sleep(pause)

    def _try(
        self, url: str, secret_id: str, until: float
    ) -> tuple[int, Mapping[str, str], bytes] | _Unreached:
        """One request, by ``until``: the whole answer, or how none came.

        Raises at once, as final, what is not "unreachable": the client closed,
        the time spent, and an answer that began but is cut short or not HTTP.
        """
        failure = None
        try:
            response = self._pool.urlopen(
                "GET",
                url,
                headers=self._headers,
                retries=False,
                redirect=False,
                preload_content=False,
                timeout=urllib3.Timeout(total=max(until - self._clock(), 0.001)),
            )
        except ClosedPoolError:
            failure = "closed"
        except ReadTimeoutError:
            failure = "timeout"
        except ProtocolError as exc:
            reason = exc.args[1] if len(exc.args) > 1 else None
            if isinstance(reason, http.client.HTTPException) and not isinstance(
                reason, ConnectionError
            ):
                failure = "not HTTP"  # bytes arrived, but no HTTP status line
            else:  # reset or closed before a byte of an answer
                return _Unreached("it closed the connection", exc, redo=True)
        except HTTPError as exc:  # refused, or connecting timed out
            return _Unreached("no connection", exc, redo=False)
        if failure is not None:
            # Raised outside the handler: a BadStatusLine holds what arrived.
            raise self._no_whole_answer(failure, secret_id, None)
        return self._read_answer(response, until, secret_id)

    def _read_answer(
        self, response: urllib3.BaseHTTPResponse, until: float, secret_id: str
    ) -> tuple[int, Mapping[str, str], bytes]:
        """The status, headers and body of an answer whose status line arrived.

        Each read from the socket waits at most until ``until``, and the time is
        checked between reads, so a server that trickles cannot hold the call.
        """
        status = response.status
        chunks: list[bytes] = []
        size = 0
        failure = None
        try:
            while True:
                left = until - self._clock()
                if left <= 0:
                    failure = "timeout"
                    break
                sock = getattr(response.connection, "sock", None)
                if sock is not None:
                    sock.settimeout(left)
                chunk = response.read1(_READ_SIZE)
                if not chunk:
                    break
                size += len(chunk)
                if size > _MAX_BODY:
                    failure = "too large"
                    break
                chunks.append(chunk)
        except ReadTimeoutError:
            failure = "timeout"
        except HTTPError:  # IncompleteRead, broken chunks: cut short or malformed
            failure = "cut short"
        if failure is not None:
            response.close()  # the rest of the answer must not be read as the next
            response.release_conn()
            chunks.clear()
            # Raised outside the handler: an IncompleteRead holds what arrived.
            raise self._no_whole_answer(failure, secret_id, status)
        response.release_conn()
        return status, response.headers, b"".join(chunks)

    def _no_whole_answer(
        self, failure: str, secret_id: str, status: int | None
    ) -> cachecore.CacheError:
        if failure == "closed":
            return ClientClosedError("this SecretsClient is closed")
        if failure == "timeout":
            return _make_error(
                SidecarTimeoutError,
                f"the sidecar at {self._base_url} did not answer in full within the "
                f"client's timeout of {self._timeout:g}s",
                secret_id,
                status,
            )
        if failure == "not HTTP":
            what = "an answer that is not HTTP; is it a cachecore sidecar?"
        elif failure == "too large":
            what = f"HTTP {status} with a body over {_MAX_BODY} bytes"
        else:
            what = f"HTTP {status}, but the answer was cut short or malformed"
        return _make_error(
            UnexpectedResponseError,
            f"the server at {self._base_url} sent {what}",
            secret_id,
            status,
        )

    def _unavailable(self, secret_id: str, how: str) -> SidecarError:
        return _make_error(
            SidecarUnavailableError,
            f"the sidecar at {self._base_url} cannot be reached: {how}",
            secret_id,
        )

    @staticmethod
    def _parse(body: bytes, secret_id: str) -> object:
        try:
            return json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            pass
        # Raised outside the handler: the decode error holds the whole body.
        raise _make_error(
            UnexpectedResponseError,
            "the sidecar's answer is not JSON",
            secret_id,
            200,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ClientClosedError("this SecretsClient is closed")

    # -- fallback ----------------------------------------------------------------

    def _read(
        self,
        secret_id: str,
        from_sidecar: Callable[[], Result],
        from_fallback: Callable[[SecretReader], Result],
    ) -> Result:
        try:
            return from_sidecar()
        except SidecarUnavailableError as exc:
            reader = self._fallback_reader()
            if reader is None:
                raise
            logger.warning(
                "%s; reading %s from the in-process fallback", exc, secret_id
            )
        return from_fallback(reader)

    def _fallback_reader(self) -> SecretReader | None:
        with self._fallback_lock:
            self._check_open()  # closed while the read was under way
            if self._fallback is None and self._build_fallback is not None:
                self._fallback = self._build_fallback()
            return self._fallback

    # -- lifetime --------------------------------------------------------------

    def close(self) -> None:
        """Close the pooled connections, and a fallback this client built.

        Every read after it raises ``ClientClosedError``; closing again does
        nothing.
        """
        with self._fallback_lock:
            self._closed = True
        self._pool.close()
        with self._fallback_lock:
            if self._build_fallback is None:
                return  # a reader the caller passed in is the caller's to close
            reader, self._fallback = self._fallback, None
        close = getattr(reader, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> SecretsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        token = "<hidden>" if TOKEN_HEADER in self._headers else None
        return f"SecretsClient(base_url={self._base_url!r}, token={token})"
