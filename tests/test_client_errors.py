"""Every error class of the client, caused for real: moto behind the fault proxy,
a real cachecore-server in front, the client reading through it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from client_support import aws_client, client_env, sidecar_client
from faultproxy import FaultProxy
from support import TOKEN, free_port

import cachecore
import cachecore_client as cc
from cachecore_client import RetryPolicy

SENTINEL = "sentinel-client-e2e-value-4Wm"
ONCE = RetryPolicy(attempts=1)


@pytest.fixture(scope="module")
def proxy(moto_url: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url) as running:
        yield running


@pytest.fixture(scope="module")
def sidecar(moto_url, proxy, start_module_sidecar):
    env = client_env(
        moto_url,
        CACHECORE_UPSTREAM_TIMEOUT="1",
        CACHECORE_BACKOFF_BASE_SECONDS="0.05",
        CACHECORE_BACKOFF_MAX_SECONDS="0.05",
        AWS_MAX_ATTEMPTS="1",
    )
    env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = proxy.url
    env["AWS_ENDPOINT_URL_SSM"] = proxy.url
    # moto loads its SSM backend on the first call, slower than the sidecar's 1 s
    ssm = aws_client("ssm", moto_url)
    ssm.put_parameter(
        Name="/client-errors-warm-up", Type="String", Value="x", Overwrite=True
    )
    ssm.close()
    return start_module_sidecar(env=env)


@pytest.fixture
def fresh(secretsmanager) -> str:
    """A secret of its own, holding the sentinel, so no case sees another's state."""
    name = f"client-errors-{uuid.uuid4().hex[:10]}"
    secretsmanager.create_secret(Name=name, SecretString=SENTINEL)
    return name


def no_secret_in(error: BaseException) -> None:
    assert SENTINEL not in str(error) + repr(error)


# cause -> (fault kind, client class, status, __type)
UPSTREAM = {
    "denied": ("deny", cc.AccessDeniedError, 403, "AccessDeniedException"),
    "not found": (
        "not_found",
        cc.SecretNotFoundError,
        404,
        "ResourceNotFoundException",
    ),
    "throttled": ("throttle", cc.ThrottledError, 429, "ThrottlingException"),
    "5xx": ("error500", cc.UpstreamUnavailableError, 502, "InternalServiceError"),
    "decryption": ("decrypt", cc.DecryptionError, 502, "DecryptionFailure"),
    "deleted": ("deleted", cc.InvalidRequestError, 400, "InvalidRequestException"),
    "timeout": ("black_hole", cc.UpstreamTimeoutError, 504, "RequestTimeout"),
}


@pytest.mark.parametrize("cause", list(UPSTREAM))
def test_each_upstream_failure_raises_its_class_with_status_and_type(
    sidecar, proxy, fresh, cause
):
    kind, error_class, status, aws_type = UPSTREAM[cause]
    if kind == "black_hole":
        proxy.black_hole("GetSecretValue")
    else:
        proxy.fail("GetSecretValue", kind)
    try:
        with pytest.raises(error_class) as caught:
            sidecar_client(sidecar.port, retry=ONCE).get_secret_string(fresh)
    finally:
        proxy.clear("GetSecretValue")

    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.aws_type, error.code) == (status, aws_type, aws_type)
    assert error.secret_id == fresh
    no_secret_in(error)


@pytest.mark.parametrize(
    ("kind", "error_class", "aws_type"),
    [
        ("deny", cc.AccessDeniedError, "AccessDeniedException"),
        ("not_found", cc.SecretNotFoundError, "ResourceNotFoundException"),
    ],
)
def test_parameter_failures_raise_the_same_classes(
    sidecar, proxy, kind, error_class, aws_type
):
    proxy.fail("GetParameter", kind)
    try:
        with pytest.raises(error_class) as caught:
            sidecar_client(sidecar.port, retry=ONCE).get_parameter(
                f"/client-errors-{uuid.uuid4().hex[:10]}"
            )
    finally:
        proxy.clear("GetParameter")

    assert caught.value.aws_type == aws_type
    assert isinstance(caught.value, cachecore.FetchError)


def test_a_missing_parameter_is_not_found_with_ssms_type(sidecar):
    with pytest.raises(cc.SecretNotFoundError) as caught:
        sidecar_client(sidecar.port).get_parameter(f"/absent-{uuid.uuid4().hex}")

    assert (caught.value.status, caught.value.aws_type) == (404, "ParameterNotFound")


def test_a_throttle_that_passes_is_retried_after_the_servers_retry_after(
    sidecar, proxy, fresh
):
    proxy.fail("GetSecretValue", "throttle", times=1)
    started = time.monotonic()

    assert sidecar_client(sidecar.port).get_secret_string(fresh) == SENTINEL
    assert time.monotonic() - started >= 1.0  # the sidecar said Retry-After: 1


def test_a_throttle_that_lasts_beyond_the_budget_is_raised_without_waiting(
    sidecar, proxy, fresh
):
    proxy.fail("GetSecretValue", "throttle")
    started = time.monotonic()
    try:
        with pytest.raises(cachecore.ThrottledError):
            sidecar_client(
                sidecar.port, retry=RetryPolicy(budget=0.5)
            ).get_secret_string(fresh)
    finally:
        proxy.clear("GetSecretValue")

    assert time.monotonic() - started < 1.0


def test_a_bad_request_is_invalid_request(sidecar, fresh):
    client = sidecar_client(sidecar.port)

    # Refused by the client itself, with SecretCache's own checks: nothing is sent.
    for read in (
        lambda: client.get_secret_string(fresh, version_stage=""),
        lambda: client.get_secret_string("bad\x01name"),
        lambda: client.get_parameter("/p", version=1, label="both"),
    ):
        with pytest.raises(cc.InvalidRequestError) as refused:
            read()
        assert (refused.value.status, refused.value.aws_type) == (None, None)
    # Passes those checks, refused by the sidecar: the SDK wants a 32-character id.
    with pytest.raises(cc.InvalidRequestError) as caught:
        client.get_secret_string(fresh, version_id="short")

    assert (caught.value.status, caught.value.aws_type) == (
        400,
        "InvalidParameterException",
    )
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("token", "status", "aws_type"),
    [(None, 401, "MissingTokenException"), ("wrong", 403, "InvalidTokenException")],
)
def test_a_missing_or_wrong_token_is_token_rejected(
    sidecar, fresh, token, status, aws_type
):
    client = cc.SecretsClient(f"http://127.0.0.1:{sidecar.port}", token, environ={})

    with pytest.raises(cc.TokenRejectedError) as caught:
        client.get_secret_string(fresh)

    assert (caught.value.status, caught.value.aws_type) == (status, aws_type)
    assert TOKEN not in str(caught.value) + repr(caught.value)
    assert not isinstance(caught.value, cachecore.AccessDeniedError)


def test_a_url_that_is_not_the_sidecars_is_an_unexpected_response(sidecar, fresh):
    client = cc.SecretsClient(
        f"http://127.0.0.1:{sidecar.port}/not-here", TOKEN, environ={}
    )

    with pytest.raises(cc.UnexpectedResponseError) as caught:
        client.get_secret_string(fresh)

    assert (caught.value.status, caught.value.aws_type) == (
        404,
        "UnknownOperationException",
    )


def test_a_sidecar_slower_than_the_timeout_is_a_sidecar_timeout(sidecar, proxy, fresh):
    proxy.black_hole("GetSecretValue")
    started = time.monotonic()
    try:
        with pytest.raises(cc.SidecarTimeoutError) as caught:
            sidecar_client(sidecar.port, timeout=0.3).get_secret_string(fresh)
    finally:
        proxy.clear("GetSecretValue")

    assert time.monotonic() - started < 0.9  # not retried
    assert isinstance(caught.value, cachecore.UpstreamTimeoutError)
    assert caught.value.status is None


def test_no_sidecar_is_sidecar_unavailable():
    with pytest.raises(cc.SidecarUnavailableError) as caught:
        sidecar_client(free_port()).get_secret_string("anything")

    assert isinstance(caught.value, cachecore.UpstreamUnavailableError)
    assert isinstance(caught.value, ConnectionError)
    assert caught.value.status is None
