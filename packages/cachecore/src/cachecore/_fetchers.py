"""Fetchers: the one place where cachecore talks to AWS.

A fetcher turns ``(secret_id, version_id, version_stage)`` into a ``SecretValue``
or raises a ``FetchError``. ``SecretsManagerFetcher`` calls GetSecretValue through a
botocore client, which may be injected (tests, custom sessions) or built from a
region, an endpoint URL and timeouts. Left unset, the endpoint follows AWS's own
``AWS_ENDPOINT_URL_SECRETS_MANAGER`` and ``AWS_ENDPOINT_URL`` variables, as botocore
reads them. ``ParameterStoreFetcher`` does the same for SSM's GetParameter (and
``AWS_ENDPOINT_URL_SSM``), giving a ``ParameterValue``. botocore is imported only
when a client is built or an error is translated, so importing cachecore stays
cheap.

Every botocore error is translated by ``translate_error`` and nowhere else. Each
call to AWS is logged once at INFO, with its outcome and latency as structured
fields (the record's ``fields``), and reported to the fetcher's observers
(``add_observer``), which is how a server counts calls without this library
knowing of any metrics system.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._config import DEFAULT_UPSTREAM_TIMEOUT, Config
from ._errors import (
    AccessDeniedError,
    ConfigError,
    DecryptionError,
    FetchError,
    InvalidRequestError,
    SecretNotFoundError,
    ThrottledError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ._value import ParameterValue, SecretValue

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "FetchObserver",
    "Fetcher",
    "ParameterFetcher",
    "ParameterStoreFetcher",
    "SecretsManagerFetcher",
    "translate_error",
]

logger = logging.getLogger(__name__)

#: Told of every call to AWS: ``(operation, seconds, error_code)``, where
#: ``operation`` is the API's name (``GetSecretValue``) and ``error_code`` is the
#: ``code`` of the ``FetchError`` the call became, or ``None`` when it succeeded.
FetchObserver = Callable[[str, float, "str | None"], None]

#: Error codes of Secrets Manager (and of AWS's common errors) by the class they
#: become. A code that is not here is classed by its HTTP status.
_CODES: Mapping[str, type[FetchError]] = {
    "ResourceNotFoundException": SecretNotFoundError,
    "AccessDeniedException": AccessDeniedError,
    "AccessDenied": AccessDeniedError,
    "UnrecognizedClientException": AccessDeniedError,
    "InvalidClientTokenId": AccessDeniedError,
    "InvalidSignatureException": AccessDeniedError,
    "SignatureDoesNotMatch": AccessDeniedError,
    "ExpiredTokenException": AccessDeniedError,
    "ExpiredToken": AccessDeniedError,
    "MissingAuthenticationToken": AccessDeniedError,
    "IncompleteSignature": AccessDeniedError,
    "DecryptionFailure": DecryptionError,
    "InvalidParameterException": InvalidRequestError,
    "InvalidRequestException": InvalidRequestError,
    "ValidationException": InvalidRequestError,
    "MissingParameter": InvalidRequestError,
    "InvalidParameterCombination": InvalidRequestError,
    "InvalidParameterValue": InvalidRequestError,
    "ThrottlingException": ThrottledError,
    "Throttling": ThrottledError,
    "TooManyRequestsException": ThrottledError,
    "RequestLimitExceeded": ThrottledError,
    "RequestThrottled": ThrottledError,
    "RequestThrottledException": ThrottledError,
    "SlowDown": ThrottledError,
    "LimitExceededException": ThrottledError,
    "PriorRequestNotComplete": UpstreamUnavailableError,
    "RequestExpired": AccessDeniedError,
    "InternalServiceError": UpstreamUnavailableError,
    "InternalFailure": UpstreamUnavailableError,
    "ServiceUnavailable": UpstreamUnavailableError,
    "ServiceUnavailableException": UpstreamUnavailableError,
    "RequestTimeout": UpstreamTimeoutError,
    "RequestTimeoutException": UpstreamTimeoutError,
    # Parameter Store's own codes for GetParameter.
    "ParameterNotFound": SecretNotFoundError,
    "ParameterVersionNotFound": SecretNotFoundError,
    "InvalidKeyId": DecryptionError,
    "InternalServerError": UpstreamUnavailableError,
    "TooManyUpdates": ThrottledError,
}


@runtime_checkable
class Fetcher(Protocol):
    """What ``SecretCache`` needs from a backend."""

    def fetch(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
    ) -> SecretValue:
        """Return the value of one version of a secret, or raise ``FetchError``."""
        ...


def _coded_error(
    code: str,
    message: str,
    status: object,
    secret_id: str | None,
    service: str = "Secrets Manager",
) -> FetchError:
    if code.isdigit():
        # No AWS error code: botocore names the error by its status, so something
        # other than AWS answered (a proxy, a load balancer). Only the status is
        # known, and none of it means the secret was revoked.
        status = int(code)
        kind: type[FetchError] = (
            ThrottledError
            if status == 429
            else UpstreamTimeoutError
            if status in (408, 504)
            else UpstreamUnavailableError
        )
        return kind(f"{service} answered HTTP {status}: {message}", secret_id=secret_id)
    kind_or_none = _CODES.get(code)
    if kind_or_none is not None:
        kind = kind_or_none
    elif status == 429:
        kind = ThrottledError
    elif isinstance(status, int) and status >= 500:
        kind = UpstreamUnavailableError
    else:
        kind = FetchError
    return kind(
        f"{service} answered {code or status}: {message}",
        secret_id=secret_id,
        code=code or None,
    )


@runtime_checkable
class ParameterFetcher(Protocol):
    """What ``SecretCache.get_parameter`` needs from a backend."""

    def fetch_parameter(
        self, name: str, *, selector: str | None = None, with_decryption: bool = False
    ) -> ParameterValue:
        """Return one parameter (``selector``: a version or label), or raise."""
        ...


def _client_error(exc: Any, secret_id: str | None, service: str) -> FetchError:
    error = exc.response.get("Error", {})
    return _coded_error(
        str(error.get("Code") or ""),
        str(error.get("Message") or "no message"),
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        secret_id,
        service,
    )


def translate_error(
    exc: BaseException,
    secret_id: str | None = None,
    service: str = "Secrets Manager",
) -> FetchError:
    """Map an error from botocore (or below it) to the ``CacheError`` tree.

    Errors that are already ``FetchError`` pass through; anything unknown becomes
    a transient ``UpstreamUnavailableError`` so that it is never mistaken for a
    revocation.
    """
    from botocore import exceptions as bce

    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, bce.ClientError):
        return _client_error(exc, secret_id, service)
    if isinstance(exc, bce.ConnectTimeoutError | bce.ReadTimeoutError | TimeoutError):
        return UpstreamTimeoutError(
            f"{service} did not answer in time: {exc}", secret_id=secret_id
        )
    if isinstance(exc, bce.ParamValidationError):
        return InvalidRequestError(
            f"the request was refused before it was sent: {exc}",
            secret_id=secret_id,
            code="InvalidParameterException",
        )
    if isinstance(
        exc,
        bce.NoCredentialsError
        | bce.PartialCredentialsError
        | bce.CredentialRetrievalError,
    ):
        return AccessDeniedError(
            f"the cache has no usable AWS credentials: {exc}", secret_id=secret_id
        )
    return UpstreamUnavailableError(
        f"{service} could not be reached: {type(exc).__name__}: {exc}",
        secret_id=secret_id,
    )


def _snake(operation: str) -> str:
    """``GetSecretValue`` -> ``get_secret_value``, botocore's method name."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


def _to_value(response: Mapping[str, Any], secret_id: str) -> SecretValue:
    binary = response.get("SecretBinary")
    if response.get("SecretString") is None and binary is None:
        # A 200 without a value (a proxy's error page, a truncated answer) must not
        # be cached as an empty secret.
        raise UpstreamUnavailableError(
            "Secrets Manager answered without a SecretString or SecretBinary",
            secret_id=secret_id,
        )
    return SecretValue(
        name=response.get("Name") or secret_id,
        arn=response.get("ARN"),
        version_id=response.get("VersionId"),
        version_stages=tuple(response.get("VersionStages") or ()),
        secret_string=response.get("SecretString"),
        secret_binary=bytes(binary) if binary is not None else None,
        created_date=_in_utc(response.get("CreatedDate")),
    )


def _in_utc(moment: Any) -> datetime | None:
    """A timestamp of botocore's as the same instant in UTC.

    botocore gives each parsed timestamp a time zone object of its own; a cached
    value keeps it for as long as it is cached, some 400 bytes per entry.
    ``datetime.UTC`` is one object for all of them.
    """
    if not isinstance(moment, datetime):
        return None
    return moment if moment.tzinfo is None else moment.astimezone(UTC)


_NO_REGION = (
    "no AWS region is set: set AWS_REGION (or AWS_DEFAULT_REGION), or pass region="
)


def _build_client(
    service: str,
    *,
    session: Any,
    region: str | None,
    endpoint_url: str | None,
    connect_timeout: float,
    read_timeout: float,
    max_attempts: int,
) -> Any:
    import botocore.config
    import botocore.exceptions
    import botocore.session

    if session is None:
        session = botocore.session.Session()
    if region is None:
        # botocore itself reads only AWS_DEFAULT_REGION and the profile; Lambda, ECS
        # and the other AWS SDKs set AWS_REGION, so honour that too.
        region = os.environ.get("AWS_REGION", "").strip() or None
    if region is None and not (session.get_config_variable("region") or "").strip():
        # An empty AWS_DEFAULT_REGION would otherwise become an endpoint with no
        # region in it, and a puzzling "not a URL" error.
        raise ConfigError(_NO_REGION)
    retries: dict[str, Any] = {}
    if session.get_config_variable("max_attempts") is None:
        # botocore's own AWS_MAX_ATTEMPTS (or max_attempts in the profile) wins, and
        # so does its AWS_RETRY_MODE, whose default is "standard".
        retries["total_max_attempts"] = max_attempts
    client_config = botocore.config.Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries=retries,
    )
    try:
        return session.create_client(
            service,
            region_name=region,
            endpoint_url=endpoint_url,
            config=client_config,
        )
    except botocore.exceptions.NoRegionError:
        raise ConfigError(_NO_REGION) from None
    except botocore.exceptions.InvalidRegionError:
        raise ConfigError(
            f"the AWS region {region!r} is not a region name (AWS_REGION, "
            "AWS_DEFAULT_REGION or region=); a region name looks like us-east-1"
        ) from None
    except ValueError as exc:  # botocore: "Invalid endpoint: ..."
        raise ConfigError(
            f"the Secrets Manager endpoint is not a URL ({exc}): check "
            "AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL or endpoint_url="
        ) from None


def _fetch_fields(
    operation: str, name: str | None, seconds: float, code: str | None
) -> dict[str, object]:
    """The structured fields of the log line of one call to AWS."""
    fields: dict[str, object] = {"operation": operation}
    if name is not None:
        fields["name"] = name
    fields["outcome"] = "ok" if code is None else "error"
    if code is not None:
        fields["error"] = code
    fields["latency_ms"] = round(seconds * 1000, 3)
    return fields


class _ClientFetcher:
    """A fetcher built on one botocore client of ``service``.

    Pass ``client`` to use a botocore or boto3 client of your own; otherwise one is
    built from ``session`` (a botocore session; a new default one when not given),
    ``region``, ``endpoint_url`` and the timeouts (seconds). ``max_attempts``
    counts the first try and botocore's retries.
    """

    service = ""
    service_label = ""

    def __init__(
        self,
        client: Any = None,
        *,
        session: Any = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
        read_timeout: float = DEFAULT_UPSTREAM_TIMEOUT,
        max_attempts: int = 3,
    ) -> None:
        if client is None:
            client = _build_client(
                self.service,
                session=session,
                region=region,
                endpoint_url=endpoint_url,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_attempts=max_attempts,
            )
        self._client = client
        self._observers: tuple[FetchObserver, ...] = ()

    def add_observer(self, observer: FetchObserver) -> None:
        """Call ``observer(operation, seconds, error_code)`` after each call to AWS.

        It runs in the thread that made the call, after the call and before its
        value or error reaches the cache; it must be quick. An observer that
        raises is logged and ignored: it never fails a fetch.
        """
        self._observers = (*self._observers, observer)

    def _tell(self, operation: str, seconds: float, code: str | None) -> None:
        for observer in self._observers:
            try:
                observer(operation, seconds, code)
            except Exception:
                logger.warning("a fetch observer failed", exc_info=True)

    @property
    def client(self) -> Any:
        """The botocore client this fetcher calls."""
        return self._client

    def _call(
        self, operation: str, name: str | None, label: str, **request: Any
    ) -> Any:
        """Call one operation, log its outcome and latency, translate its error.

        ``name`` is the id the error is about (``None`` for a batch); ``label`` is
        what the log line calls the subject of the call. The log record carries
        ``fields``: ``operation``, ``name`` (but for a batch), ``outcome``
        (``ok`` or ``error``), ``error`` (the code, on an error) and
        ``latency_ms``.
        """
        started = time.monotonic()
        try:
            response = getattr(self._client, _snake(operation))(**request)
        except Exception as exc:
            error = translate_error(exc, name, self.service_label)
            seconds = time.monotonic() - started
            self._tell(operation, seconds, error.code)
            fields = _fetch_fields(operation, name, seconds, error.code)
            logger.info(
                "%s %s failed after %.3fs: %s",
                operation,
                label,
                seconds,
                error.code,
                extra={"fields": fields},
            )
            raise error from exc
        seconds = time.monotonic() - started
        self._tell(operation, seconds, None)
        fields = _fetch_fields(operation, name, seconds, None)
        logger.info(
            "%s %s ok in %.3fs", operation, label, seconds, extra={"fields": fields}
        )
        return response

    def close(self) -> None:
        """Close the client's connection pool."""
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


class SecretsManagerFetcher(_ClientFetcher):
    """Reads secrets with GetSecretValue (and BatchGetSecretValue for prefetch)."""

    service = "secretsmanager"
    service_label = "Secrets Manager"

    @classmethod
    def from_config(
        cls, config: Config, *, session: Any = None
    ) -> SecretsManagerFetcher:
        """A fetcher with the region, endpoint and timeout of ``config``."""
        return cls(
            session=session,
            region=config.region,
            endpoint_url=config.endpoint_url,
            connect_timeout=config.upstream_timeout,
            read_timeout=config.upstream_timeout,
        )

    def fetch(
        self,
        secret_id: str,
        *,
        version_id: str | None = None,
        version_stage: str | None = None,
    ) -> SecretValue:
        """Call GetSecretValue once (botocore may retry) and return the value."""
        request: dict[str, str] = {"SecretId": secret_id}
        if version_id is not None:
            request["VersionId"] = version_id
        if version_stage is not None:
            request["VersionStage"] = version_stage

        response = self._call("GetSecretValue", secret_id, secret_id, **request)
        return _to_value(response, secret_id)

    def fetch_many(
        self, secret_ids: list[str]
    ) -> tuple[dict[str, SecretValue], dict[str, FetchError]]:
        """Read the current values of up to 20 ids with one BatchGetSecretValue.

        Returns the values and the errors, each by the id as it was asked for; an
        id the answer does not mention is in neither. A failure of the call as a
        whole raises ``FetchError``.
        """
        response = self._call(
            "BatchGetSecretValue",
            None,
            f"of {len(secret_ids)} ids",
            SecretIdList=secret_ids,
        )

        asked = set(secret_ids)
        values: dict[str, SecretValue] = {}
        errors: dict[str, FetchError] = {}
        for item in response.get("SecretValues") or ():
            for name in (item.get("Name"), item.get("ARN")):
                if name in asked:
                    try:
                        values[name] = _to_value(item, name)
                    except FetchError as exc:
                        errors[name] = exc
        for item in response.get("Errors") or ():
            secret_id = item.get("SecretId")
            if secret_id in asked:
                errors[secret_id] = _coded_error(
                    str(item.get("ErrorCode") or ""),
                    str(item.get("Message") or "no message"),
                    None,
                    secret_id,
                )
        return values, errors


class ParameterStoreFetcher(_ClientFetcher):
    """Reads SSM Parameter Store parameters with GetParameter.

    Built like ``SecretsManagerFetcher``; left unset, the endpoint follows
    ``AWS_ENDPOINT_URL_SSM``, then ``AWS_ENDPOINT_URL``.
    """

    service = "ssm"
    service_label = "Parameter Store"

    @classmethod
    def from_config(
        cls, config: Config, *, session: Any = None
    ) -> ParameterStoreFetcher:
        """A fetcher with the region and timeout of ``config``.

        ``config.endpoint_url`` is for Secrets Manager and is not used here.
        """
        return cls(
            session=session,
            region=config.region,
            connect_timeout=config.upstream_timeout,
            read_timeout=config.upstream_timeout,
        )

    def fetch_parameter(
        self, name: str, *, selector: str | None = None, with_decryption: bool = False
    ) -> ParameterValue:
        """Call GetParameter for ``name`` (``name:selector`` when a selector is set)."""
        asked = f"{name}:{selector}" if selector is not None else name

        response = self._call(
            "GetParameter", name, name, Name=asked, WithDecryption=with_decryption
        )

        parameter = response.get("Parameter") or {}
        if parameter.get("Value") is None:
            raise UpstreamUnavailableError(
                "Parameter Store answered without a Value", secret_id=name
            )
        return ParameterValue(
            name=parameter.get("Name") or name,
            type=parameter.get("Type") or "String",
            value=parameter["Value"],
            version=parameter.get("Version"),
            selector=parameter.get("Selector"),
            source_result=parameter.get("SourceResult"),
            arn=parameter.get("ARN"),
            data_type=parameter.get("DataType"),
            last_modified_date=_in_utc(parameter.get("LastModifiedDate")),
        )
